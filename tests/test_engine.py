"""The engine end to end: inputs in every accepted shape, bad input, the output contract."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from conftest import FIXTURES, assert_expressions_resolve, assert_valid_outcome, load_fixture

import fhir_checker
from fhir_checker import check, run
from fhir_checker.outcome import CATEGORY_SYSTEM, RULE_SYSTEM

TODAY = date(2026, 11, 22)
EXAMPLES = sorted(p.name for p in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_check_and_resolve(name: str) -> None:
    data = load_fixture(name)
    res = run(data, today=TODAY)
    assert not res.fatal
    assert_valid_outcome(res.outcome)
    assert_expressions_resolve(res.outcome, data)


def test_clean_claim_gives_one_information_issue() -> None:
    out = check(load_fixture("bare-claim.json"), today=TODAY)
    assert [i["severity"] for i in out["issue"]] == ["information"]
    assert "No problems" in out["issue"][0]["details"]["text"]


def test_json_text_bytes_and_dict_give_the_same_outcome() -> None:
    data = load_fixture("port-flush-visit.json")
    text = json.dumps(data)
    a = check(data, today=TODAY)
    assert check(text, today=TODAY) == a
    assert check(text.encode(), today=TODAY) == a


def test_parameters_wrapping_a_bundle() -> None:
    bundle = load_fixture("port-flush-visit.json")
    params = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": bundle}]}
    assert check(params, today=TODAY)["issue"] == check(bundle, today=TODAY)["issue"]


def test_searchset_bundle_is_accepted() -> None:
    bundle = load_fixture("port-flush-visit.json")
    bundle["type"] = "searchset"
    assert not run(bundle, today=TODAY).fatal


def test_outcome_contract_fields() -> None:
    data = load_fixture("bare-claim.json")
    data["item"][0]["productOrService"]["coding"][0]["code"] = "3656"
    out = check(data, today=TODAY)
    (iss,) = [i for i in out["issue"] if i["severity"] == "error"]
    systems = {c["system"]: c["code"] for c in iss["details"]["coding"]}
    assert systems[RULE_SYSTEM] == "COD002"
    assert systems[CATEGORY_SYSTEM] == "invalid-code"
    assert iss["code"] == "code-invalid"
    assert iss["expression"] == ["Claim.item[0].productOrService.coding[0]"]
    assert iss["details"]["text"] and iss["diagnostics"]
    ctx = out["extension"][0]
    assert {e["url"] for e in ctx["extension"]} >= {"claim", "rulePack", "table"}


def _fatal(data: Any) -> dict[str, Any]:
    out = check(data, today=TODAY)
    assert_valid_outcome(out)
    assert [i["severity"] for i in out["issue"]] == ["fatal"], out
    text: str = out["issue"][0]["details"]["text"]
    return {"text": text, "code": out["issue"][0]["code"]}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("", "empty"),
        ("[1, 2]", "array"),
        ('"Claim"', "string"),
        ('{"resourceType": "Patient"}', "Patient"),
        ('{"status": "active"}', "no resourceType"),
        ('{"resourceType": "Bundle", "type": "collection", "entry": []}', "no Claim"),
        ('{"resourceType": "Parameters", "parameter": []}', "Parameters"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
    ],
)
def test_bad_input_is_one_fatal_issue(data: Any, needle: str) -> None:
    assert needle in _fatal(data)["text"]


def test_fifty_megabyte_body() -> None:
    body = b'{"resourceType": "Claim", "text": "' + b"x" * (50 * 1024 * 1024) + b'"}'
    got = _fatal(body)
    assert got["code"] == "too-costly" and "limit" in got["text"]


def test_ten_thousand_deep_nesting() -> None:
    deep = '{"resourceType": "Claim", "x": ' + "[" * 10_000 + "]" * 10_000 + "}"
    got = _fatal(deep)
    assert got["code"] == "too-costly" and "nested" in got["text"]


def test_nesting_under_orjson_limit_but_over_ours() -> None:
    inner: Any = {}
    for _ in range(200):
        inner = {"a": inner}
    got = _fatal({"resourceType": "Claim", "extension": [inner]})
    assert "nested" in got["text"]


def test_too_many_lines() -> None:
    data = load_fixture("bare-claim.json")
    data["item"] = [dict(data["item"][0], sequence=i + 1) for i in range(451)]
    got = _fatal(data)
    assert "451 lines" in got["text"]


def test_missing_required_elements_are_findings_not_exceptions() -> None:
    out = check({"resourceType": "Claim"}, today=TODAY)
    assert_valid_outcome(out)
    texts = " ".join(i["details"]["text"] for i in out["issue"])
    for element in ("status", "type", "use", "patient", "created", "provider", "priority", "insurance"):
        assert f"Claim.{element} is required" in texts


def test_full_validation_mode_reports_unknown_elements() -> None:
    data = load_fixture("bare-claim.json")
    data["item"][0]["bogusElement"] = 1
    assert check(data, today=TODAY)["issue"][0]["severity"] == "information"  # fast path
    full = check(data, today=TODAY, validation="full")
    assert any("bogusElement" in i["details"]["text"] for i in full["issue"])


def test_select_and_ignore() -> None:
    data = load_fixture("bare-claim.json")
    data["item"][0]["productOrService"]["coding"][0]["code"] = "3656"
    data["item"][0]["quantity"] = {"value": 0}

    def ids(out: dict[str, Any]) -> set[str]:
        return {c["code"] for i in out["issue"] for c in i["details"]["coding"] if c["system"] == RULE_SYSTEM}

    assert ids(check(data, today=TODAY)) == {"COD002", "STR007"}
    assert ids(check(data, today=TODAY, select=["COD"])) == {"COD002"}
    assert ids(check(data, today=TODAY, ignore=["structure"])) == {"COD002"}


def test_unknown_selector_is_reported() -> None:
    with pytest.raises(KeyError):
        fhir_checker.select_rules(["NOPE123"])


def test_age_is_computed_per_date_of_service() -> None:
    res = run(load_fixture("port-placement-aml.json"), today=TODAY)
    assert res.context is not None
    line = res.context.lines[0]
    assert res.context.patient.age_on(line.service_date) == 57
    assert res.context.setting == "outpatient-hospital"
    assert line.code == "36561" and line.units == 1 and line.procedure_sequences == (1,)


def test_line_with_null_product_or_service_points_at_the_line() -> None:
    """Found by the slow property run: ``productOrService: null`` gave an expression that
    does not resolve (FHIRPath does not see a null element)."""
    from conftest import assert_expressions_resolve

    from fhir_checker import run

    claim = {
        "resourceType": "Claim",
        "id": "c1",
        "status": "active",
        "type": {"coding": [{"code": "professional"}]},
        "use": "claim",
        "patient": {"reference": "Patient/p"},
        "created": "2026-03-10",
        "provider": {"reference": "Organization/o"},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "x"}}],
        "item": [
            {"sequence": 1, "productOrService": None, "servicedDate": "2026-03-10", "quantity": {"value": 1}},
            {
                "sequence": 2,
                "productOrService": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
                "servicedDate": "2026-03-10",
                "quantity": {"value": 1},
            },
        ],
    }
    result = run(claim)
    cod001 = sorted(f.expression for f in result.findings if f.rule_id == "COD001")
    assert cod001 == ["Claim.item[0]", "Claim.item[1]"]
    assert_expressions_resolve(result.outcome, claim)


def test_today_as_iso_string_is_the_same_as_a_date() -> None:
    claim = load_fixture("port-placement-miscoded.json")
    assert check(claim, today="2026-03-20") == check(claim, today=date(2026, 3, 20))
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        check(claim, today="20 March")
