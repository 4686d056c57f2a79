"""Findings -> cards; certain fixes -> suggestions with a FHIR update of the Claim."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from conftest import claim_of, load_fixture
from test_cds_hooks import check_card

from fhir_checker import hook_cards
from fhir_checker.findings import Finding, Fix, Severity
from fhir_checker.hook_cards import apply_fix, card, cards_response, line_label, new_uuid, source_label
from fhir_checker.outcome import CONTEXT_EXTENSION

HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
SOURCE = {"label": "fhir-checker test@1", "url": "https://x.example/rules"}


def claim() -> dict[str, Any]:
    return claim_of(load_fixture("port-placement-aml.json"))


def finding(line: int | None, fix: Fix | None = None, severity: Severity = Severity.ERROR) -> Finding:
    return Finding(
        rule_id="TST001",
        rule_name="test-rule",
        category="units",
        severity=severity,
        issue_type="business-rule",
        message=f"Line {line}: something is wrong " + "x" * 200,
        expression=f"Claim.item[{line}]" if line is not None else "Claim",
        evidence="table T 2026-01-01",
        line=line,
        fix=fix,
    )


def test_card_names_its_line_and_stays_short() -> None:
    c = claim()
    out = card(finding(9), c, source=SOURCE, base="https://svc.example")
    check_card(out)
    assert out["summary"].startswith("Line 10 (J3010): something is wrong")
    assert len(out["summary"]) < 140 and out["summary"].endswith("…")
    assert out["indicator"] == "critical" and "suggestions" not in out
    assert out["links"][0]["url"] == "https://svc.example/rules/TST001"
    assert (
        card(finding(None, severity=Severity.WARNING), c, source=SOURCE, base="b")["indicator"] == "warning"
    )
    assert (
        card(finding(None, severity=Severity.INFORMATION), c, source=SOURCE, base="b")["indicator"] == "info"
    )


def test_set_units_suggestion_updates_the_claim() -> None:
    c = claim()
    out = card(finding(9, Fix("set-units", 9, 2.0)), c, source=SOURCE, base="b")
    check_card(out)
    (sug,) = out["suggestions"]
    (action,) = sug["actions"]
    assert action["type"] == "update" and action["resource"]["id"] == c["id"]
    assert action["resource"]["item"][9]["quantity"]["value"] == 2.0
    assert c["item"][9]["quantity"]["value"] != 2.0  # the input is not modified
    assert "line 10 (J3010)" in action["description"]


def test_remove_line() -> None:
    c = claim()
    fixed = apply_fix(c, Fix("remove-line", 1))
    assert fixed is not None and len(fixed["item"]) == len(c["item"]) - 1
    assert [i["sequence"] for i in fixed["item"]][:2] == [1, 3]
    single = {**c, "item": [c["item"][0]]}
    assert apply_fix(single, Fix("remove-line", 0)) is None  # a claim keeps at least one line


def test_replace_code_drops_the_old_display() -> None:
    c = claim()
    c["item"][9]["productOrService"]["coding"][0]["display"] = "old"
    fixed = apply_fix(c, Fix("replace-code", 9, "J2003", HCPCS))
    assert fixed is not None
    assert fixed["item"][9]["productOrService"] == {"coding": [{"system": HCPCS, "code": "J2003"}]}


def test_add_line_copies_date_and_sequences() -> None:
    c = claim()
    fixed = apply_fix(c, Fix("add-line", 4, "99152", "http://www.ama-assn.org/go/cpt"))
    assert fixed is not None
    added = fixed["item"][-1]
    assert added["sequence"] == max(i["sequence"] for i in c["item"]) + 1
    assert added["servicedDate"] == c["item"][4]["servicedDate"]
    assert added["quantity"] == {"value": 1}
    assert added["productOrService"]["coding"][0]["code"] == "99152"


def test_fixes_that_do_not_fit_give_no_suggestion() -> None:
    c = claim()
    assert apply_fix(c, Fix("set-units", 99, 2)) is None
    assert apply_fix(c, Fix("set-units", 1, -1)) is None
    assert apply_fix(c, Fix("teleport", 1)) is None
    out = card(finding(1, Fix("set-units", 99, 2)), c, source=SOURCE, base="b")
    assert "suggestions" not in out


def test_response_carries_the_outcome_and_sorts_cards() -> None:
    c = claim()
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational"}],
    }
    resp = cards_response([finding(3, severity=Severity.WARNING), finding(1)], outcome, c, base="b")
    assert resp["extension"]["org.fhir-checker.operation-outcome"] is outcome
    assert [x["indicator"] for x in resp["cards"]] == ["critical", "warning"]
    assert line_label(c, 400) is None


def priced() -> dict[str, Any]:
    c = claim()
    c["item"] = [dict(i) for i in c["item"][:3]]
    for item, (price, qty) in zip(c["item"], [(100.0, 1), (20.0, 3), (12.5, 2)], strict=True):
        item.update(quantity={"value": qty}, unitPrice={"value": price, "currency": "USD"})
        item["net"] = {"value": price * qty, "currency": "USD"}
    c["total"] = {"value": 185.0, "currency": "USD"}
    return c


def test_fixes_keep_net_and_total_consistent() -> None:
    c = priced()
    removed = apply_fix(c, Fix("remove-line", 1))
    assert removed is not None and removed["total"] == {"value": 125.0, "currency": "USD"}
    units = apply_fix(c, Fix("set-units", 2, 4))
    assert units is not None and units["item"][2]["net"]["value"] == 50.0
    assert units["total"]["value"] == 210.0
    # A replacement billed per another amount: 3 units of 10 mg are 30 of 1 mg, same money.
    swapped = apply_fix(c, Fix("replace-code", 1, "J2003", HCPCS, units=30))
    assert swapped is not None
    assert swapped["item"][1]["quantity"]["value"] == 30 and swapped["item"][1]["unitPrice"]["value"] == 2.0
    assert swapped["item"][1]["net"]["value"] == 60.0 and swapped["total"]["value"] == 185.0
    # A total that was not the sum of the lines is left alone.
    odd = {**c, "total": {"value": 999.0, "currency": "USD"}}
    fixed = apply_fix(odd, Fix("remove-line", 1))
    assert fixed is not None and fixed["total"]["value"] == 999.0


def test_summary_names_the_line_once() -> None:
    from fhir_checker.hook_cards import _summary

    assert _summary("Line 6 (J0690)", "Line 6 bills J0690 x 2, but the dose is 4 units.") == (
        "Line 6 (J0690) bills J0690 x 2, but the dose is 4 units."
    )
    assert _summary("Line 2 (76937)", "Line 2: 11 is not a valid modifier.") == (
        "Line 2 (76937): 11 is not a valid modifier."
    )
    assert (
        _summary("Line 3 (J2001)", "J2001 ended on 2024-09-30.")
        == "Line 3 (J2001): J2001 ended on 2024-09-30."
    )
    assert _summary(None, "77001 is documented but not billed.") == "77001 is documented but not billed."


@pytest.mark.parametrize(
    "product",
    [{"coding": 5}, {"coding": [{"code": 7}]}, {"coding": "36561"}, None, [], {"coding": [5, {"code": ""}]}],
)
def test_line_label_survives_a_malformed_product_or_service(product: Any) -> None:
    # Found by the slow hook property run: {"coding": <int>} made the hook answer 500.
    c = {"resourceType": "Claim", "item": [{"sequence": 1, "productOrService": product}]}
    assert line_label(c, 0) == "Line 1"


def test_card_uuids_are_unique_time_ordered_version_7_uuids() -> None:
    before = time.time_ns() // 1_000_000
    made = [new_uuid() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(made)) == len(made)
    for text in made[:200]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical form: lower-case hex, 8-4-4-4-12
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after  # its first 48 bits: the Unix milliseconds
    ints = [uuid.UUID(t).int for t in made]
    assert [i >> 80 for i in ints] == sorted(i >> 80 for i in ints)  # in time order
    # Every one of the 74 random bits varies (none is stuck at 0 or 1).
    random_bits = ((1 << 80) - 1) & ~((0xF << 76) | (0x3 << 62))
    varying = 0
    for value in ints:
        varying |= (value ^ ints[0]) & random_bits
    assert varying == random_bits


def _context(pack: Any, *tables: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "claim", "valueReference": {"reference": "Claim/1"}}]
    if pack is not None:
        parts.append({"url": "rulePack", "valueString": pack})
    parts += [{"url": "table", "valueString": t} for t in tables]
    return {"resourceType": "OperationOutcome", "extension": [{"url": CONTEXT_EXTENSION, "extension": parts}]}


def test_source_label_names_the_pack_and_the_newest_table_and_is_memoised_per_version() -> None:
    a = _context(
        "cms-practitioner@2026.1", "ptp_practitioner 2024-07-01", "icd10cm_validity 2026-04-01", "x y"
    )
    assert source_label(a) == "fhir-checker cms-practitioner@2026.1, tables as of 2026-04-01"
    assert source_label(a) == source_label(a)  # the memo gives the same answer twice
    # another table version or pack is another key, not the memoised label of the first
    newer = _context("cms-practitioner@2026.1", "ptp_practitioner 2026-10-01")
    assert source_label(newer) == "fhir-checker cms-practitioner@2026.1, tables as of 2026-10-01"
    assert source_label(_context("other@1")) == "fhir-checker other@1"
    assert source_label(_context(None, "pfs_pctc 2024")) == "fhir-checker, tables as of 2024"
    assert source_label({"extension": "not a list"}) == "fhir-checker"
    for n in range(600):  # bounded: the memo never holds more than a few hundred labels
        source_label(_context(f"pack-{n}@1", "t 2026-01-01"))
    assert 0 < len(hook_cards._SOURCE_LABELS) <= 256
    assert source_label(a) == "fhir-checker cms-practitioner@2026.1, tables as of 2026-04-01"
