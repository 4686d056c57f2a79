"""Every rule's fixture cases (fixtures/rules/<RULE>/<case>.json), ruff-style.

Each case holds the input and the findings of that rule it must produce, exactly.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, assert_expressions_resolve, assert_valid_outcome

from fhir_checker import all_rules, run

CASES = sorted((FIXTURES / "rules").glob("*/*.json"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_rule_fixture(path: Path) -> None:
    case = _load(path)
    rule_id = path.parent.name
    result = run(
        case["input"],
        profile=case.get("profile"),
        today=date.fromisoformat(case.get("today", "2026-11-22")),
    )
    got = sorted((f.rule_id, f.severity.value, f.expression) for f in result.findings if f.rule_id == rule_id)
    want = sorted((e["rule"], e["severity"], e["expression"]) for e in case["expect"])
    assert got == want, f"{path.name}: {case['description']}"
    assert_valid_outcome(result.outcome)
    assert_expressions_resolve(result.outcome, case["input"])


def test_every_rule_has_a_firing_fixture() -> None:
    have = {p.parent.name for p in CASES if _load(p)["expect"]}
    missing = [r.id for r in all_rules() if r.id not in have]
    assert not missing, f"rules without a fixture that fires: {missing}"


def test_every_rule_has_a_doc_with_the_four_sections() -> None:
    for r in all_rules():
        for section in ("## What it checks", "## Why payers deny it", "## Example", "## How to fix"):
            assert section in r.doc, f"{r.id} doc lacks {section!r}"


def test_a_null_quantity_is_not_pointed_at() -> None:
    """Found by the slow property run: ``"quantity": null`` made UNI001 point at
    ``Claim.item[n].quantity``, an element that is not there for FHIRPath (TIM001 and the
    date checks had the same test, ``key in item``, and now share the fix)."""
    rule_id = "UNI001"
    case = _load(FIXTURES / "rules" / rule_id / "fires.json")
    data = case["input"]
    claim = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Claim")
    for item in claim["item"]:
        item["quantity"] = None
    res = run(data, profile=case.get("profile"), today=case.get("today", "2026-11-22"))
    hits = [i for i in res.outcome["issue"] if i["details"]["coding"][0]["code"] == rule_id]
    assert hits, "UNI001 should still fire: no units billed is not the documented dose"
    assert not any(i["expression"][0].endswith(".quantity") for i in hits)
    assert_expressions_resolve(res.outcome, data)
