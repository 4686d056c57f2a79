"""Rule packs: loading, validation errors with file/line/field, extends, payer mapping, CLI."""

from __future__ import annotations

import copy
import json
import os
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import load_fixture

from fhir_checker import run
from fhir_checker.cli import main as cli_main
from fhir_checker.packs import (
    PackError,
    available_packs,
    default_pack_for,
    load_pack,
    load_pack_file,
    load_payer_map,
)
from fhir_checker.policies import MedicalNecessity, parse_icd_range

TODAY = date(2026, 11, 22)

GOOD = """\
id: {id}
version: "1.0"
title: A test pack
setting: outpatient-hospital
tables:
  ptp: outpatient-hospital
  effective: 2024-07-01
rules:
  select: [ALL]
  severity:
    DOC001: error
policies:
  medical_necessity:
    "36561":
      accept: [C00-D49, Z45.2]
      label: cancer
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_shipped_packs_load() -> None:
    packs = available_packs()
    assert {"cms-practitioner", "cms-outpatient-hospital", "port-and-infusion"} <= set(packs)
    assert "payers" not in packs  # the payer map lives next to the packs but is not one
    pi = load_pack("port-and-infusion")
    assert pi.extends == ("cms-outpatient-hospital",)
    assert pi.setting == "auto" and pi.tables_effective == "2024-07-01"
    mn = pi.policies["medical_necessity"]
    assert isinstance(mn, MedicalNecessity)
    assert {"36561", "96523", "96425", "96369", "96371"} <= set(mn.by_code)
    assert mn.by_code["36561"].supports("C92.00") and not mn.by_code["36561"].supports("D69.59")
    assert any("L33794" in s for s in pi.sources)


def test_good_pack(tmp_path: Path) -> None:
    pack = load_pack_file(_write(tmp_path, "good", GOOD.format(id="good")))
    assert pack.tables == {"ptp": "outpatient-hospital"} and pack.tables_effective == "2024-07-01"
    assert pack.severity["DOC001"].value == "error"
    assert pack.policies["medical_necessity"].by_code["36561"].accepted_text == "C00-D49, Z45.2"


@pytest.mark.parametrize(
    ("change", "line", "field"),
    [
        (("setting: outpatient-hospital", "setting: hospital"), 4, "setting"),
        (("title: A test pack", "title: A test pack\ncolour: blue"), 4, "colour"),
        (("  ptp: outpatient-hospital", "  ptp: inpatient"), 6, "tables.ptp"),
        (("  effective: 2024-07-01", "  effective: July 2024"), 7, "tables.effective"),
        (("  select: [ALL]", "  select: [NOPE999]"), 9, "rules.select"),
        (("    DOC001: error", "    DOC001: fatal"), 11, "rules.severity.DOC001"),
        (("    DOC001: error", "    ZZZ999: error"), 11, "rules.severity.ZZZ999"),
        (('    "36561":', '    "3656":'), 14, "policies.medical_necessity.3656"),
        (
            ("      accept: [C00-D49, Z45.2]", "      accept: [C00-D49, cancer]"),
            15,
            "policies.medical_necessity.36561.accept[1]",
        ),
        (
            ("      accept: [C00-D49, Z45.2]", "      accept: [D49-C00]"),
            15,
            "policies.medical_necessity.36561.accept[0]",
        ),
        (
            ("      accept: [C00-D49, Z45.2]", "      accept: []"),
            15,
            "policies.medical_necessity.36561.accept",
        ),
        (
            ("      label: cancer", "      label: cancer\n      rationale: x"),
            17,
            "policies.medical_necessity.36561.rationale",
        ),
        (("  medical_necessity:", "  prior_auth:"), 13, "policies.prior_auth"),
        (("id: {id}", "id: other"), 1, "id"),
    ],
)
def test_malformed_pack_names_file_line_and_field(
    tmp_path: Path, change: tuple[str, str], line: int, field: str
) -> None:
    text = GOOD.replace(change[0], change[1]).format(id="bad")
    path = _write(tmp_path, "bad", text)
    with pytest.raises(PackError) as exc:
        load_pack_file(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:{line}: {field}: "), msg


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken", GOOD.format(id="broken").replace("rules:", "rules: [oops"))
    with pytest.raises(PackError, match=re.escape(str(path)) + r":\d+: not valid YAML"):
        load_pack_file(path)


def test_missing_required_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "nover", GOOD.format(id="nover").replace('version: "1.0"\n', ""))
    with pytest.raises(PackError, match=r":1: version: required field is missing"):
        load_pack_file(path)


def test_never_half_loaded(tmp_path: Path) -> None:
    """A pack that becomes malformed is not served from the cache, nor in part."""
    path = _write(tmp_path, "flip", GOOD.format(id="flip"))
    assert load_pack(path).severity["DOC001"].value == "error"
    path.write_text(GOOD.format(id="flip").replace("ptp: outpatient-hospital", "ptp: nowhere"))
    import os

    os.utime(path, (1, 1))  # a different mtime even on coarse clocks
    with pytest.raises(PackError, match=r"tables\.ptp"):
        load_pack(path)


def test_extends_inherits_and_overrides(tmp_path: Path) -> None:
    _write(tmp_path, "base", GOOD.format(id="base"))
    child = _write(
        tmp_path,
        "child",
        """\
id: child
version: "2"
title: Child
extends: base
rules:
  ignore: [TIM]
  severity:
    UNB001: information
policies:
  medical_necessity:
    "96523":
      accept: [Z45.2]
""",
    )
    pack = load_pack_file(child)
    assert pack.extends == ("base",) and pack.setting == "outpatient-hospital"
    assert pack.tables == {"ptp": "outpatient-hospital"} and pack.tables_effective == "2024-07-01"
    assert pack.ignore == ("TIM",)
    assert pack.severity["DOC001"].value == "error" and pack.severity["UNB001"].value == "information"
    assert set(pack.policies["medical_necessity"].by_code) == {"36561", "96523"}  # merged per code


def test_extends_errors(tmp_path: Path) -> None:
    a = _write(tmp_path, "a", 'id: a\nversion: "1"\ntitle: A\nextends: b\n')
    _write(tmp_path, "b", 'id: b\nversion: "1"\ntitle: B\nextends: a\n')
    with pytest.raises(PackError, match=r"a\.yaml:4: extends: .*cycle"):
        load_pack_file(a)
    lost = _write(tmp_path, "lost", 'id: lost\nversion: "1"\ntitle: L\nextends: no-such-pack\n')
    with pytest.raises(PackError, match=r"lost\.yaml:4: extends: no rule pack named 'no-such-pack'"):
        load_pack_file(lost)
    _write(tmp_path, "badbase", 'id: badbase\nversion: "1"\ntitle: B\nsetting: mars\n')
    kid = _write(tmp_path, "kid", 'id: kid\nversion: "1"\ntitle: K\nextends: badbase\n')
    with pytest.raises(
        PackError, match=r"kid\.yaml:4: extends: the pack it extends is malformed: .*badbase\.yaml:4: setting"
    ):
        load_pack_file(kid)


def test_icd_ranges() -> None:
    r = parse_icd_range("C00-D49")
    assert r is not None and r.matches("C92.00") and r.matches("D49.9") and not r.matches("D50.0")
    one = parse_icd_range("T82.5")
    assert one is not None and one.matches("T82.594A") and not one.matches("T82.4")
    assert parse_icd_range("K90-K91.2") is not None
    assert parse_icd_range("D49-C00") is None and parse_icd_range("cancer") is None


def test_pack_severity_override_applies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "strict", GOOD.format(id="strict"))
    b = load_fixture("port-placement-aml.json")
    del b["entry"][0]["resource"]["item"][2]["procedureSequence"]
    b["entry"][8]["resource"]["performedDateTime"] = "2026-03-09T09:30:00-05:00"
    got = [
        f
        for f in run(b, profile=str(tmp_path / "strict.yaml"), today=TODAY).findings
        if f.rule_id == "DOC001"
    ]
    assert [f.severity.value for f in got] == ["error"]


# --- payer mapping -------------------------------------------------------------------


def _oncology_claim() -> dict[str, Any]:
    b = load_fixture("port-placement-aml.json")
    b = copy.deepcopy(b)
    cov = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Coverage")
    cov["payor"] = [
        {"reference": "Organization/org-oncology-plan", "display": "Example Oncology Health Plan"}
    ]
    claim = b["entry"][0]["resource"]
    claim["insurer"] = {"reference": "Organization/org-oncology-plan"}
    claim["item"][0]["diagnosisSequence"] = [2]  # D69.59 only: not accepted for 36561
    return b


def test_payer_mapping_picks_the_pack() -> None:
    result = run(_oncology_claim(), today=TODAY)
    assert result.pack is not None and result.pack.id == "port-and-infusion"
    assert [f.expression for f in result.findings if f.rule_id == "MNC001"] == [
        "Claim.item[0].diagnosisSequence"
    ]
    medicare = run(load_fixture("port-placement-aml.json"), today=TODAY)
    assert medicare.pack is not None and medicare.pack.id == "cms-outpatient-hospital"
    flush = run(load_fixture("port-flush-visit.json"), today=TODAY)
    assert flush.pack is not None and flush.pack.id == "cms-practitioner"


def test_caller_profile_wins_over_payer_mapping() -> None:
    result = run(_oncology_claim(), profile="cms-outpatient-hospital", today=TODAY)
    assert result.pack is not None and result.pack.id == "cms-outpatient-hospital"
    assert not [f for f in result.findings if f.rule_id == "MNC001"]


def test_default_pack_for_keys() -> None:
    inst = {"type": {"coding": [{"code": "institutional"}]}}
    prof = {"type": {"coding": [{"code": "professional"}]}}
    assert default_pack_for(inst) == "cms-outpatient-hospital"
    assert default_pack_for(prof) == "cms-practitioner"
    assert default_pack_for(prof, ["example oncology health plan"]) == "port-and-infusion"  # by name
    assert default_pack_for(prof, ["urn:oid:2.16.840.1.113883.3.9999.1|ONC-PLAN"]) == "port-and-infusion"
    assert default_pack_for(inst, ["Organization/org-medicare"]) == "cms-outpatient-hospital"
    assert default_pack_for(prof, ["Organization/unknown"]) == "cms-practitioner"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "version: 1\npayers:\n  - name: X\n    match: [A]\n    pack: nope\n",
            ":5: payers[0].pack: no rule pack named 'nope'",
        ),
        (
            "version: 1\npayers:\n  - name: X\n    match: []\n    pack: cms-practitioner\n",
            ":4: payers[0].match:",
        ),
        (
            "version: 1\npayers:\n  - name: X\n    match: [A]\n",
            ":3: payers[0]: give exactly one of pack or packs",
        ),
        (
            "version: 1\npayers:\n  - name: X\n    match: [A]\n    packs: {inpatient: cms-practitioner}\n",
            ":5: payers[0].packs.inpatient: not a claim type",
        ),
        ("version: 1\npayer: []\n", ":2: payer: unknown field"),
    ],
)
def test_malformed_payer_map(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "payers.yaml"
    path.write_text(text)
    with pytest.raises(PackError) as exc:
        load_payer_map(path)
    assert str(exc.value).startswith(str(path) + needle), str(exc.value)


# --- CLI -----------------------------------------------------------------------------


def test_rules_profile_shows_what_the_pack_turns_on(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["rules", "--profile", "port-and-infusion"]) == 0
    out = capsys.readouterr().out
    assert "rule pack port-and-infusion@" in out and "extends:  cms-outpatient-hospital" in out
    assert "medical necessity 36561: C00-D49" in out and "source:" in out
    assert re.search(
        r"^\s+MNC001\s+diagnosis-does-not-support-procedure\s+medical-necessity\s+warning", out, re.M
    )
    assert cli_main(["rules", "--profile", "port-and-infusion", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["policies"]["medical_necessity"]["96425"]["accept"] == ["C18-C21", "C22", "C23-C24", "C78.7"]
    assert {"id": "UNI001", "name": "drug-units-not-dose", "category": "units", "severity": "error"} in data[
        "rules"
    ]


def test_rules_profile_with_malformed_pack_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "bad", GOOD.format(id="bad").replace("DOC001: error", "DOC001: loud"))
    assert cli_main(["rules", "--profile", str(path)]) == 2
    assert "rules.severity.DOC001" in capsys.readouterr().err


# --- tables.effective: the oldest edit-table release a pack is written for ---------------


def test_pack_newer_than_the_loaded_tables_fails_at_load(tmp_path: Path) -> None:
    p = tmp_path / "future.yaml"
    p.write_text(GOOD.format(id="future").replace("effective: 2024-07-01", "effective: 2030-01-01"))
    with pytest.raises(PackError) as exc:
        load_pack_file(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}:7: tables.effective:"), msg
    # names the first table used that is too old, with its date, from the manifest
    assert "ptp_outpatient_hospital is effective 2026-04-01" in msg and "data import" in msg


def test_shipped_packs_match_the_tables_in_force(capsys: pytest.CaptureFixture[str]) -> None:
    from fhir_checker.tables import get_tables

    manifest = get_tables().manifest["tables"]
    for name in ("cms-practitioner", "cms-outpatient-hospital", "port-and-infusion"):
        assert cli_main(["rules", "--profile", name, "--format", "json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        loaded = shown["tables_loaded"]
        assert loaded and all(manifest[t]["effective"] == eff for t, eff in loaded.items())
        assert all(eff >= shown["tables_effective"] for eff in loaded.values())
    assert set(loaded) == {
        "ptp_practitioner",
        "ptp_outpatient_hospital",
        "mue_practitioner",
        "mue_outpatient_hospital",
        "addon_codes",
    }  # port-and-infusion: tables by each claim's setting


def test_default_pack_edit_is_picked_up_after_the_recheck_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fhir_checker import engine

    monkeypatch.setenv("FHIR_CHECKER_PROFILES", str(tmp_path))
    pack = GOOD.format(id="cms-outpatient-hospital").replace("DOC001: error", "MOD001: {sev}")
    path = _write(tmp_path, "cms-outpatient-hospital", pack.format(sev="warning"))
    claim = load_fixture("port-placement-miscoded.json")  # institutional: this default pack

    def mod001() -> list[str]:
        return [f.severity.value for f in run(claim, today=TODAY).findings if f.rule_id == "MOD001"]

    assert mod001() == ["warning"]
    path.write_text(pack.format(sev="information"))
    os.utime(path, (2, 2))  # a different mtime even on coarse clocks
    monkeypatch.setattr(engine, "PACK_RECHECK_SECONDS", 3600.0)
    assert mod001() == ["warning"]  # inside the interval: no stat calls, the cached pack
    monkeypatch.setattr(engine, "PACK_RECHECK_SECONDS", 0.0)
    assert mod001() == ["information"]  # past it: the edit is seen
