"""The record checks: code kinds, time rules, drug units, the record view of the context."""

from __future__ import annotations

import copy
import gzip
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, load_fixture

from fhir_checker import get_tables, run
from fhir_checker.clinical import documented_minutes, service_kind
from fhir_checker.rules.drug_units import billing_units, convert
from fhir_checker.rules.timing import BY_CODE

TODAY = date(2026, 11, 22)


def _claim(bundle: dict[str, Any]) -> dict[str, Any]:
    claim: dict[str, Any] = bundle["entry"][0]["resource"]
    return claim


def _resource(bundle: dict[str, Any], rid: str) -> dict[str, Any]:
    res: dict[str, Any] = next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == rid)
    return res


def _findings(data: dict[str, Any], prefix: str, profile: str | None = None) -> list[Any]:
    return [f for f in run(data, profile=profile, today=TODAY).findings if f.rule_id.startswith(prefix)]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("36561", "procedure"),
        ("99152", "procedure"),  # moderate sedation is a procedure, not an E/M visit
        ("99213", "visit"),
        ("85027", "lab"),
        ("0001U", "lab"),
        ("90686", "drug"),  # vaccine product
        ("J0690", "drug"),
        ("P9037", "drug"),
        ("C1788", "device"),
        ("C9113", "drug"),
        ("G0008", "procedure"),
        ("A4649", "supply"),
        ("A9579", "drug"),
        ("0042T", "procedure"),
        ("3046F", "other"),
    ],
)
def test_service_kind_by_code_range(code: str, kind: str) -> None:
    assert service_kind(code) == kind


@pytest.mark.parametrize(
    ("code", "minutes", "units"),
    [
        ("99152", 9, 0),
        ("99152", 10, 1),
        ("99153", 22, 0),
        ("99153", 23, 1),
        ("99153", 37, 1),
        ("99153", 38, 2),
        ("99153", 53, 3),
        ("96365", 15, 0),  # 15 minutes or less is a push
        ("96365", 16, 1),
        ("96366", 90, 0),  # an additional hour needs more than 30 minutes beyond the hour
        ("96366", 91, 1),
        ("96366", 150, 1),
        ("96366", 151, 2),
        ("96360", 30, 0),
        ("96360", 31, 1),
        ("96425", 480, 0),  # more than 8 hours
        ("96425", 481, 1),
    ],
)
def test_time_rules(code: str, minutes: float, units: int) -> None:
    fam = BY_CODE[code]
    got = fam.addon_supported(minutes) if code == fam.addon else fam.initial_supported(minutes)
    assert got == units


def test_documented_minutes_sources() -> None:
    period = {"performedPeriod": {"start": "2026-03-10T09:02:00-05:00", "end": "2026-03-10T09:40:00-05:00"}}
    assert documented_minutes(period, "P") == (38.0, "performedPeriod", "P.performedPeriod")
    ext = {"extension": [{"url": "x", "valueDuration": {"value": 1.5, "code": "h"}}]}
    assert documented_minutes(ext, "P") == (90.0, "extension x", "P.extension[0]")
    note = {"note": [{"text": "no time"}, {"text": "Intraservice time: 25 min."}]}
    assert documented_minutes(note, "P") == (25.0, "note", "P.note[1]")
    # end before start, or a date without a time, documents nothing
    bad = {"performedPeriod": {"start": "2026-03-10T10:00:00Z", "end": "2026-03-10T09:00:00Z"}}
    assert documented_minutes(bad, "P") is None
    assert documented_minutes({"performedPeriod": {"start": "2026-03-10", "end": "2026-03-11"}}, "P") is None


def test_ucum_conversion_and_rounding() -> None:
    assert convert(2, "g", "mg") == 2000
    assert convert(100, "ug", "mg") == pytest.approx(0.1)
    assert convert(100, "mcg", "mg") == pytest.approx(0.1)
    assert convert(1, "L", "mL") == 1000
    assert convert(5000, "[iU]", "U") == 5000
    assert convert(1, "mL", "mg") is None  # another dimension
    assert convert(1, "tablet", "mg") is None
    assert billing_units(2000, 500) == 4
    assert billing_units(2100, 500) == 5  # a dose between two units bills the higher
    assert billing_units(0.3, 0.1) == 3  # float noise does not round 3.0000000004 up


def test_drug_units_table_reads_the_hcpcs_descriptions() -> None:
    table = get_tables().drug_units
    cefazolin = table.get("J0690")
    assert cefazolin is not None and (cefazolin.amount, cefazolin.unit) == (500, "mg")
    assert "cefazolin" in cefazolin.description.lower()
    for code, amount, unit in (
        ("J2250", 1, "mg"),
        ("J3010", 0.1, "mg"),
        ("J1644", 1000, "U"),
        ("J7050", 250, "mL"),
    ):
        du = table.get(code)
        assert du is not None and (du.amount, du.unit) == (amount, unit), code
    assert table.get("J2003") is not None  # newer than the 2024 HCPCS file: from the I/OCE


def test_drug_units_manifest_entry_matches_file() -> None:
    import hashlib

    data = ROOT / "fhir_checker" / "data"
    entry = json.loads((data / "manifest.json").read_text())["tables"]["drug_units"]
    path = data / entry["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    with gzip.open(path, "rt") as fh:
        rows = fh.read().splitlines()[1:]
    assert len(rows) == entry["rows"]
    assert not any(r.split("\t")[0][:1].isdigit() for r in rows)  # no CPT codes, no CPT text


def test_build_script_parses_units() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_drug_units", Path(ROOT / "scripts/build_drug_units.py")
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    parse = mod.parse_unit
    assert parse("Injection, cefazolin sodium, 500 mg") == (500, "mg")
    assert parse("Injection, heparin sodium, per 1000 units") == (1000, "U")
    assert parse("Injection, cefotaxime sodium, per gm") == (1, "g")
    assert parse(
        "Injection, hyaluronidase, ovine, preservative free, per 1 usp unit (up to 999 usp units)"
    ) == (1, "[USP'U]")
    assert parse("5% dextrose/normal saline (500 ml = 1 unit)") == (500, "mL")
    assert parse("Inj atezolizumb 5mg hya-tqjs") == (5, "mg")
    assert parse("Injection, digoxin immune fab (ovine), per vial") is None


def test_two_grams_of_cefazolin_is_j0690_times_four() -> None:
    bundle = load_fixture("port-placement-aml.json")
    assert not _findings(bundle, "UNI")
    for billed in (2, 1, 2000):
        b = copy.deepcopy(bundle)
        _claim(b)["item"][7]["quantity"]["value"] = billed
        (f,) = _findings(b, "UNI001")
        assert f.fix is not None and (f.fix.kind, f.fix.line, f.fix.value) == ("set-units", 7, 4)
        assert "500 mg" in f.evidence and "expected 4" in f.evidence


def test_doses_of_one_drug_on_one_day_add_up() -> None:
    b = load_fixture("port-placement-aml.json")
    for ln in _claim(b)["item"]:
        ln.pop("informationSequence", None)
    second = copy.deepcopy(_resource(b, "medadmin-1"))
    second["id"] = "medadmin-1b"
    second["dosage"]["dose"] = {
        "value": 1000,
        "unit": "mg",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }
    b["entry"].append({"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000999", "resource": second})
    (f,) = _findings(b, "UNI001")  # 2 g + 1 g = 6 units of 500 mg; 4 billed
    assert f.extra["expected_units"] == 6


def test_wastage_line_is_not_compared() -> None:
    b = load_fixture("port-placement-aml.json")
    waste = copy.deepcopy(_claim(b)["item"][7])
    waste["sequence"] = 14
    waste["modifier"] = [
        {"coding": [{"system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "JW"}]}
    ]
    waste["quantity"] = {"value": 1}
    _claim(b)["item"].append(waste)
    assert not _findings(b, "UNI")


def test_record_checks_need_a_record() -> None:
    """A bare claim carries no chart: the record checks say nothing rather than guess."""
    bare = load_fixture("bare-claim.json")
    bare["item"][0]["productOrService"]["coding"][0]["code"] = "36561"
    bare["item"].append(
        {
            "sequence": 2,
            "productOrService": {
                "coding": [
                    {"system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "J0690"}
                ]
            },
            "servicedDate": "2026-02-03",
            "quantity": {"value": 4},
        }
    )
    found = run(bare, today=TODAY).findings
    assert not [f for f in found if f.category in ("documentation", "units", "time", "unbilled-procedure")]


def test_unbilled_procedure_of_another_day_is_not_this_claims() -> None:
    b = load_fixture("port-placement-aml.json")
    proc = copy.deepcopy(_resource(b, "proc-3"))
    proc["id"] = "proc-other-day"
    proc["performedDateTime"] = "2026-02-01T09:00:00-05:00"
    proc["code"]["coding"][0]["code"] = "76000"
    b["entry"].append({"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000998", "resource": proc})
    assert not _findings(b, "UNB")
    proc["performedDateTime"] = "2026-03-10T11:00:00-05:00"  # same day: a missed charge
    (f,) = _findings(b, "UNB001")
    assert f.expression == f"Bundle.entry[{len(b['entry']) - 1}].resource.code.coding[0]"


def test_contained_procedure_in_a_bare_claim() -> None:
    bare = load_fixture("bare-claim.json")
    bare["contained"].append(
        {
            "resourceType": "Procedure",
            "id": "pr",
            "status": "completed",
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "96523"}]},
            "subject": {"reference": "#p"},
            "performedDateTime": "2026-02-03T10:00:00-05:00",
        }
    )
    (f,) = _findings(bare, "UNB001")
    assert f.expression == "Claim.contained[2].code.coding[0]"


def test_time_units_summed_over_lines_of_one_sedation() -> None:
    b = load_fixture("port-placement-aml.json")
    extra = copy.deepcopy(_claim(b)["item"][6])  # a second 99153 line, same Procedure
    extra["sequence"] = 14
    extra["quantity"]["value"] = 2
    _claim(b)["item"].append(extra)
    (f,) = _findings(b, "TIM001")  # 38 minutes support 2 units; 1 + 2 billed
    assert f.line == 13 and f.fix is not None and (f.fix.kind, f.fix.value) == ("set-units", 1)


def test_port_placement_is_clean_with_every_pack() -> None:
    bundle = load_fixture("port-placement-aml.json")
    for profile in (None, "cms-outpatient-hospital", "port-and-infusion"):
        result = run(bundle, profile=profile, today=TODAY)
        errors = [
            (f.rule_id, f.expression) for f in result.findings if f.severity.value in ("error", "fatal")
        ]
        assert not errors, (profile, errors)
