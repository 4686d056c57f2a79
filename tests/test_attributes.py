"""The I/OCE attribute tables and the age, sex, device, modifier and terminated-code rules."""

from __future__ import annotations

import copy
import gzip
import hashlib
from datetime import date
from typing import Any

import pytest
from conftest import assert_expressions_resolve, claim_of

from fhir_checker import get_tables, run
from fhir_checker.findings import Finding
from fhir_checker.rules.age_sex import age_range_text, dx_age_category

MY_TABLES = (
    "procedure_attributes",
    "device_procedure_pairs",
    "modifier_attributes",
    "pfs_pctc",
    "hcpcs_replacements",
    "icd10cm_age",
    "icd10cm_sex",
)
MY_PREFIXES = ("AGE", "SEX", "DEV", "MOD")
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
CPT = "http://www.ama-assn.org/go/cpt"
TODAY = date(2026, 11, 22)


def findings(data: dict[str, Any], rule_id: str) -> list[Finding]:
    return [f for f in run(data, today=TODAY).findings if f.rule_id == rule_id]


def set_birth_date(bundle: dict[str, Any], birth: str) -> None:
    for e in bundle["entry"]:
        if e["resource"]["resourceType"] == "Patient":
            e["resource"]["birthDate"] = birth


def claim_with(
    lines: list[tuple[str, list[str], float, str]], *, institutional: bool = False
) -> dict[str, Any]:
    """A bare claim of (code, modifiers, units, date) lines for a 57-year-old woman."""
    items = []
    for i, (code, mods, units, day) in enumerate(lines, 1):
        it: dict[str, Any] = {
            "sequence": i,
            "productOrService": {"coding": [{"system": CPT if code[0].isdigit() else HCPCS, "code": code}]},
            "servicedDate": day,
            "quantity": {"value": units},
        }
        if mods:
            it["modifier"] = [{"coding": [{"code": m}]} for m in mods]
        items.append(it)
    return {
        "resourceType": "Claim",
        "id": "c1",
        "contained": [{"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1968-05-14"}],
        "status": "active",
        "type": {"coding": [{"code": "institutional" if institutional else "professional"}]},
        "use": "claim",
        "patient": {"reference": "#p"},
        "created": "2026-03-10",
        "provider": {"reference": "Organization/o"},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare"}}],
        "item": items,
    }


# --- tables -------------------------------------------------------------------------------


def test_manifest_lists_each_packed_file_with_source_date_and_checksum() -> None:
    t = get_tables()
    for name in MY_TABLES:
        info = t.info(name)
        assert info["source"] and info["effective"] and info["title"]
        body = t.path(name).read_bytes()
        assert hashlib.sha256(body).hexdigest() == info["sha256"], name
        with gzip.open(t.path(name), "rt") as fh:
            assert sum(1 for _ in fh) - 1 == info["rows"], name


def test_procedure_ages_and_device_flags_are_the_ioce_values() -> None:
    p = get_tables().procedure_attributes
    assert (p.get("36561").lo_age, p.get("36561").hi_age) == (5, 124)
    assert (p.get("36560").lo_age, p.get("36560").hi_age) == (0, 4)
    assert (p.get("99151").lo_age, p.get("99151").hi_age, p.get("99151").age_from_descriptor) == (0, 4, False)
    assert (p.get("99152").lo_age, p.get("99152").age_from_descriptor) == (5, True)
    assert p.get("33208").device_intensive and not p.get("36561").device_intensive
    assert p.get("C1788").device and p.get("C1739").passthrough
    assert p.get("99213") == p.get("NOCODE")  # the default: no limits, no flags


def test_device_pairs() -> None:
    pairs = get_tables().device_pairs
    assert pairs.dependent == {"0308T": ("C1840",), "66683": ("C1839",)}
    assert "19081" in {p.procedure for p in pairs.passthrough["C1739"]}


def test_modifier_list() -> None:
    mods = get_tables().modifiers
    assert "11" not in mods and "#1" not in mods  # no modifier 11; I/OCE placeholders are not modifiers
    for m in ("25", "59", "XU", "RT", "LT", "50", "26", "TC", "KX", "CG", "JZ"):
        assert m in mods, m
    jz = mods.get("JZ")
    assert jz is not None and jz.valid_from == 20230101 and jz.description.startswith("Zero drug amount")
    for m in ("52", "73", "74"):
        info = mods.get(m)
        assert info is not None and info.device_exclusion
    assert all(
        info.description == "" for m in ("25", "59") if (info := mods.get(m)) is not None
    )  # no CPT text


def test_diagnosis_ages_and_sex() -> None:
    t = get_tables()
    assert t.icd10cm_age["Z38.00"] == (0, 0)
    assert t.icd10cm_age["O80"] == (9, 64)
    assert "E11.9" not in t.icd10cm_age
    sex = t.icd10cm_sex
    assert sex["O80"].sex == "female" and sex["N40.0"].sex == "male" and sex["Z3A.01"].sex == "female"
    assert sex["C50.911"].sex == "female" and sex["C50.921"].sex == "male"
    assert sex["D07.5"].sex == "male" and sex["D07.1"].sex == "female"
    assert sex["C50.919"].sex == "female" and sex["C50.929"].sex == "male"  # unspecified side, sex given
    for neutral in ("N39.0", "N99.89", "C92.00", "N60.01", "Z30.2"):
        assert neutral not in sex, neutral


def test_pctc_and_replacements() -> None:
    t = get_tables()
    assert t.pfs_pctc["76937"] == "1" and t.pfs_pctc["99213"] == "0" and t.pfs_pctc["85060"] == "8"
    r = t.hcpcs_replacements["J2001"]
    assert (r.replacement, r.last_day, r.curated) == ("J2003", 20240930, True)
    assert "per 1 mg" in r.note


def test_range_wording() -> None:
    assert age_range_text(5, 124) == "patients aged 5 and over"
    assert age_range_text(0, 4) == "patients under 5"
    assert age_range_text(0, 0) == "newborns (age 0)"
    assert age_range_text(18, 39) == "patients aged 18 to 39"
    assert [dx_age_category(*r) for r in ((0, 0), (0, 17), (9, 64), (15, 124), (40, 64))] == [
        "newborn",
        "pediatric",
        "maternity",
        "adult",
        "age 40-64",
    ]


# --- the bundled example and the cases -----------------------------------------------


def test_port_placement_example_has_no_finding_from_these_rules(port_bundle: dict[str, Any]) -> None:
    result = run(port_bundle, today=TODAY)
    mine = [f for f in result.findings if f.rule_id.startswith(MY_PREFIXES) or f.rule_id == "COD003"]
    assert mine == []


def test_three_year_old_with_36561_raises_an_age_error(port_bundle: dict[str, Any]) -> None:
    set_birth_date(port_bundle, "2022-11-02")
    got = findings(port_bundle, "AGE001")
    items = claim_of(port_bundle)["item"]
    by_code = {items[f.line]["productOrService"]["coding"][0]["code"]: f for f in got if f.line is not None}
    assert set(by_code) == {"36561", "99152"}  # 36561 (I/OCE edit 7) and 99152 (CPT descriptor age)
    f = by_code["36561"]
    assert f.severity.value == "error" and "I/OCE edit 7" in f.evidence
    assert f.expression == "Claim.item[0].productOrService.coding[0]"
    assert "aged 5 and over" in f.message and "was 3" in f.message
    assert "CPT descriptor" in by_code["99152"].evidence
    assert_expressions_resolve(run(port_bundle, today=TODAY).outcome, port_bundle)


def test_age_boundary_is_the_birthday(port_bundle: dict[str, Any]) -> None:
    set_birth_date(port_bundle, "2021-03-10")  # turns 5 on the date of service 2026-03-10
    assert findings(port_bundle, "AGE001") == []
    set_birth_date(port_bundle, "2021-03-11")  # still 4
    assert len(findings(port_bundle, "AGE001")) == 2


def test_device_edit_92_only_for_device_intensive_codes_and_outpatient_hospital(
    port_bundle: dict[str, Any],
) -> None:
    claim = claim_of(port_bundle)
    claim["item"] = [
        it for it in claim["item"] if it["productOrService"]["coding"][0]["code"] not in ("C1788", "C1894")
    ]
    assert findings(port_bundle, "DEV001") == []  # 36561 is not device-intensive in 2026
    claim["item"][0]["productOrService"]["coding"][0]["code"] = "33208"
    got = findings(port_bundle, "DEV001")
    assert [f.expression for f in got] == ["Claim.item[0].productOrService.coding[0]"]
    assert "I/OCE edit 92" in got[0].evidence
    prof = copy.deepcopy(port_bundle)
    claim_of(prof)["type"]["coding"][0]["code"] = "professional"
    assert findings(prof, "DEV001") == []


def test_device_edit_135_and_98_diagnostics_name_the_edit() -> None:
    got = findings(claim_with([("66683", [], 1, "2026-03-10")], institutional=True), "DEV002")
    assert len(got) == 1 and "C1839" in got[0].message and "I/OCE edit 135" in got[0].evidence
    got = findings(claim_with([("C1739", [], 1, "2026-03-10")], institutional=True), "DEV003")
    assert len(got) == 1 and "I/OCE edit 98" in got[0].evidence and "19081" in got[0].evidence
    paired = claim_with([("C1739", [], 1, "2026-03-10"), ("19281", [], 1, "2026-03-11")], institutional=True)
    assert findings(paired, "DEV003") == []  # the pair is claim-wide


# --- modifiers -------------------------------------------------------------------------------


def test_modifier_expression_is_the_modifier_path() -> None:
    data = claim_with([("99213", [], 1, "2026-03-10"), ("96374", ["25", "11"], 1, "2026-03-10")])
    got = findings(data, "MOD001")
    assert [f.expression for f in got] == ["Claim.item[1].modifier[1]"]
    assert "I/OCE edit 22" in got[0].evidence


@pytest.mark.parametrize(("day", "fires"), [("2022-12-31", True), ("2023-01-01", False)])
def test_modifier_activation_date_boundary(day: str, fires: bool) -> None:
    got = findings(claim_with([("J9035", ["JZ"], 40, day)]), "MOD002")
    assert bool(got) is fires
    if fires:
        assert "2023-01-01" in got[0].message and "I/OCE edit 103" in got[0].evidence


def test_bilateral_units_and_sides() -> None:
    got = findings(claim_with([("64483", ["50"], 2, "2026-03-10")]), "MOD003")
    assert (
        len(got) == 1 and got[0].fix is not None and got[0].fix.kind == "set-units" and got[0].fix.value == 1
    )
    assert findings(claim_with([("73630", ["LT", "RT"], 1, "2026-03-10")]), "MOD004")[0].expression == (
        "Claim.item[0].modifier[1]"
    )
    assert findings(claim_with([("73630", ["RT"], 1, "2026-03-10")]), "MOD004") == []


def test_59_advice_is_information_and_x_modifiers_silence_it() -> None:
    got = findings(claim_with([("96413", [], 1, "2026-03-10"), ("96374", ["59"], 1, "2026-03-10")]), "MOD005")
    assert [f.severity.value for f in got] == ["information"]
    for x in ("XE", "XS", "XP", "XU"):
        assert findings(claim_with([("96374", ["59", x], 1, "2026-03-10")]), "MOD005") == []


@pytest.mark.parametrize(
    ("code", "mod", "fires"),
    [("76937", "26", False), ("76937", "TC", False), ("99213", "26", True), ("93000", "TC", True),
     ("85060", "26", False), ("85060", "TC", True), ("J0690", "26", True), ("0001U", "26", False)],
)  # fmt: skip
def test_pctc_indicator(code: str, mod: str, fires: bool) -> None:
    assert bool(findings(claim_with([(code, [mod], 1, "2026-03-10")]), "MOD006")) is fires


# --- sex -----------------------------------------------------------------------------------


def test_sex_unknown_patient_is_not_checked(port_bundle: dict[str, Any]) -> None:
    for e in port_bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Patient":
            r["gender"] = "unknown"
        if r["resourceType"] == "Condition":
            r["code"]["coding"][0]["code"] = "N40.0"
    assert findings(port_bundle, "SEX001") == []
    for e in port_bundle["entry"]:
        if e["resource"]["resourceType"] == "Patient":
            e["resource"]["gender"] = "female"
    got = findings(port_bundle, "SEX001")
    assert got and all(f.expression.startswith("Bundle.entry[") for f in got)  # on the Condition's code
    assert_expressions_resolve(run(port_bundle, today=TODAY).outcome, port_bundle)


# --- COD003: terminated code, its replacement -----------------------------------------------------


def test_terminated_j2001_names_j2003_with_a_fix() -> None:
    got = findings(claim_with([("J2001", [], 10, "2025-01-15")]), "COD003")
    assert len(got) == 1
    f = got[0]
    assert "J2003 replaces it" in f.message and "multiply the units by 10" in f.message
    assert "2024-09-30" in f.evidence and "I/OCE edit 6" in f.evidence
    assert f.fix is not None
    assert (f.fix.kind, f.fix.line, f.fix.value, f.fix.system) == ("replace-code", 0, "J2003", HCPCS)
    outcome = run(claim_with([("J2001", [], 10, "2025-01-15")]), today=TODAY).outcome
    assert any("J2003" in i["details"]["text"] for i in outcome["issue"])


def test_no_replacement_named_when_it_is_not_valid_on_the_date() -> None:
    # J2001 on 2019-08-01 is valid; an xref'd code ended before 2019 points at a code valid now.
    assert findings(claim_with([("J2001", [], 10, "2019-08-01")]), "COD003") == []
    got = findings(claim_with([("C9014", [], 1, "2026-03-10")]), "COD003")  # ended 2018, xref J0567
    assert got and got[0].fix is not None and got[0].fix.value == "J0567"
