"""PTP, MUE, add-on and sole-service rules on real pairs of the shipped tables."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, assert_expressions_resolve, load_fixture

from fhir_checker import run
from fhir_checker.findings import Finding, Fix, Severity

sys.path.insert(0, str(ROOT / "scripts"))
from make_ncci_fixtures import Line, claim

TODAY = date(2026, 11, 22)
NCCI = ("PTP", "MUE", "ADD", "SOL")


def ncci_findings(c: dict[str, Any], profile: str | None = None) -> list[Finding]:
    result = run(c, today=TODAY, profile=profile)
    assert_expressions_resolve(result.outcome, c)
    return [f for f in result.findings if f.rule_id.startswith(NCCI)]


def ptp_only(fs: list[Finding]) -> list[Finding]:
    return [f for f in fs if f.rule_id.startswith("PTP")]


def ids(fs: list[Finding]) -> list[tuple[str, int | None]]:
    return sorted((f.rule_id, f.line) for f in fs)


def test_36561_with_96523_flags_96523_with_indicator_0_even_with_59() -> None:
    for mods in ([], ["59"], ["XU"], ["59", "XE"]):
        fs = ncci_findings(claim([("36561", [], 1), ("96523", mods, 1)]))
        ptp = [f for f in fs if f.rule_id.startswith("PTP")]
        assert [(f.rule_id, f.line) for f in ptp] == [("PTP001", 1)], mods
        f = ptp[0]
        assert f.severity is Severity.ERROR
        assert "36561/96523" in f.evidence and "modifier indicator 0" in f.evidence
        assert "CPT Manual or CMS manual coding instruction" in f.evidence
        assert "effective 2024-07-01" in f.evidence and "I/OCE edit 20" in f.evidence
        assert f.fix == Fix(kind="remove-line", line=1, label="Remove line 2 (96523)")


@pytest.mark.parametrize(
    ("mods_96413", "mods_96374", "fires"),
    [
        ([], [], True),
        ([], ["XU"], False),
        ([], ["59"], False),
        (["XU"], [], False),
        (["59"], [], False),
        ([], ["RT"], False),  # anatomic modifiers are NCCI-associated too
        ([], ["26"], True),  # 26 is not an NCCI-associated modifier
        ([], ["76"], True),
    ],
)
def test_96413_with_96374_flags_96374_unless_an_ncci_modifier(
    mods_96413: list[str], mods_96374: list[str], fires: bool
) -> None:
    fs = ncci_findings(claim([("96413", mods_96413, 1), ("96374", mods_96374, 1)]))
    ptp = [f for f in fs if f.rule_id.startswith("PTP")]
    assert [(f.rule_id, f.line) for f in ptp] == ([("PTP002", 1)] if fires else [])
    if fires:
        assert "96413/96374" in ptp[0].evidence and "modifier indicator 1" in ptp[0].evidence
        assert "I/OCE edit 40" in ptp[0].evidence


def test_port_placement_codes_raise_no_ptp_finding_in_either_setting() -> None:
    for kind in ("professional", "institutional"):
        fs = ncci_findings(claim([("36561", [], 1), ("76937", [], 1), ("77001", [], 1)], kind=kind))
        assert [f for f in fs if f.rule_id.startswith("PTP")] == []


def test_the_bundled_port_placement_claim_has_no_error_finding() -> None:
    bundle = load_fixture("port-placement-aml.json")
    result = run(bundle, today=TODAY)
    assert [f.rule_id for f in result.findings if f.severity is Severity.ERROR] == []


def test_a_pair_deleted_before_the_date_of_service_does_not_fire() -> None:
    lines: list[Line] = [("0001A", [], 1.0), ("96160", [], 1.0)]
    before = ncci_findings(claim(lines, dos="2023-12-31"))
    after = ncci_findings(claim(lines, dos="2024-01-01"))
    assert ("PTP002", 1) in ids(before)
    assert not [f for f in after if f.rule_id.startswith("PTP")]


def test_modifier_indicator_9_never_fires() -> None:
    # 0143U/80305: indicator 0 through 2023-06-30, then an indicator 9 row (real CMS rows)
    lines: list[Line] = [("0143U", [], 1.0), ("80305", [], 1.0)]
    assert ("PTP001", 1) in ids(ncci_findings(claim(lines, dos="2023-06-30")))
    assert not ptp_only(ncci_findings(claim(lines, dos="2023-07-01")))


def test_outpatient_hospital_uses_the_ioce_spans() -> None:
    lines: list[Line] = [("0007U", [], 1.0), ("0328U", [], 1.0)]
    kind = "institutional"
    assert not ptp_only(ncci_findings(claim(lines, kind=kind, dos="2022-12-15")))
    assert ("PTP001", 1) in ids(ncci_findings(claim(lines, kind=kind, dos="2023-03-01")))
    assert ("PTP002", 1) in ids(ncci_findings(claim(lines, kind=kind, dos="2023-08-01")))


def test_the_rule_pack_names_the_ptp_table() -> None:
    # 36561 + 96523 is a practitioner-only pair: an institutional claim checked with the
    # practitioner pack (tables.ptp: practitioner) gets it, the default OPH pack does not.
    c = claim([("36561", [], 1), ("96523", [], 1)], kind="institutional")
    assert not [f for f in ncci_findings(c) if f.rule_id.startswith("PTP")]
    assert ("PTP001", 1) in ids(ncci_findings(c, profile="cms-practitioner"))


def test_one_finding_per_column2_line_naming_every_column1_code() -> None:
    fs = ncci_findings(claim([("36561", [], 1), ("76937", [], 1), ("77001", [], 1), ("96523", [], 1)]))
    ptp = [f for f in fs if f.rule_id == "PTP001"]
    assert len(ptp) == 1 and ptp[0].line == 3
    assert "36561, 76937, 77001" in ptp[0].message


def test_mue_mai1_is_per_line_and_mai3_sums_lines() -> None:
    fs = ncci_findings(claim([("A6460", [], 2)]))
    (f,) = [f for f in fs if f.rule_id.startswith("MUE")]
    assert (
        f.rule_id == "MUE001" and "2 units" in f.evidence and "MUE 1" in f.evidence and "MAI 1" in f.evidence
    )
    assert f.fix == Fix(kind="set-units", line=0, value=1.0, label="Bill 1 unit")
    fs = ncci_findings(claim([("J0690", [], 10), ("J0690", [], 8)]))
    (f,) = [f for f in fs if f.rule_id.startswith("MUE")]
    assert f.rule_id == "MUE002" and f.line == 0
    assert "18 units (lines 1, 2) > MUE 16" in f.evidence and "MAI 3" in f.evidence
    assert "appeal with the medical record" in f.message


def test_mue_mai2_says_it_is_absolute_policy() -> None:
    fs = ncci_findings(claim([("30110", ["RT"], 1), ("30110", ["LT"], 1)]))
    (f,) = [f for f in fs if f.rule_id.startswith("MUE")]
    assert f.rule_id == "MUE002" and "MAI 2" in f.evidence and "appeal cannot change that" in f.message


def test_addon_type1_without_primary_suggests_the_only_primary() -> None:
    fs = ncci_findings(claim([("96371", [], 1)]))
    (f,) = [f for f in fs if f.rule_id.startswith("ADD")]
    assert f.rule_id == "ADD001" and "96369" in f.message and "I/OCE edit 106" in f.evidence
    assert f.fix is not None and f.fix.kind == "add-line" and f.fix.value == "96369"
    fs = ncci_findings(claim([("99153", [], 1)]))
    (f,) = [f for f in fs if f.rule_id.startswith("ADD")]
    assert "99151, 99152, G0500" in f.message and f.fix is None  # three primaries: no certain fix
    assert not [
        f for f in ncci_findings(claim([("99151", [], 1), ("99153", [], 1)])) if f.rule_id.startswith("ADD")
    ]


def test_addon_primary_on_another_date_does_not_count() -> None:
    c = claim([("96369", [], 1, {"servicedDate": "2026-03-09"}), ("96371", [], 1)])
    assert ("ADD001", 1) in ids(ncci_findings(c))


def test_sole_service_holds_where_the_ptp_table_has_no_pair() -> None:
    fs = ncci_findings(claim([("96523", [], 1), ("80230", [], 1)]))
    assert ids(fs) == [("SOL001", 0)]  # no PTP pair 80230/96523 in the table, still flagged
    assert not ncci_findings(claim([("96523", [], 1), ("80230", [], 1)], kind="institutional"))
    assert not ncci_findings(claim([("96523", [], 1)]))


def test_example_claims_stay_sensible() -> None:
    for name in ("port-flush-visit.json", "prolonged-infusion.json", "bare-claim.json"):
        data = json.loads((ROOT / "fixtures" / name).read_text())
        assert not [f for f in run(data, today=TODAY).findings if f.rule_id.startswith(NCCI)], name


def test_rule_fixtures_are_what_the_generator_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import make_ncci_fixtures as gen

    monkeypatch.setattr(gen, "OUT", tmp_path)
    gen.main()
    for p in tmp_path.glob("*/*.json"):
        shipped = ROOT / "fixtures" / "rules" / p.parent.name / p.name
        assert shipped.read_text() == p.read_text(), f"regenerate fixtures: {shipped}"
