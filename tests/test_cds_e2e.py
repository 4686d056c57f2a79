"""Real claims through the CDS hook: cards, and suggestions whose FHIR update is a valid R4B
Claim with exactly the certain fix applied (and which, checked again, no longer fires)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import load_fixture
from fastapi.testclient import TestClient
from fhir.resources.R4B.claim import Claim
from test_cds_hooks import HOOK, HOOK_URL, check_response

import fhir_checker
from fhir_checker.codes import CPT, HCPCS
from fhir_checker.hook_cards import FINDING_EXTENSION, OUTCOME_EXTENSION
from fhir_checker.service import ServiceConfig, create_app

SERVICE = "http://testserver"  # the TestClient's host: card links must resolve on it

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(ServiceConfig(auth=False, public_url=SERVICE))) as c:
        yield c


def split(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the Claim, a prefetch holding every other resource of the input, fullUrls kept)."""
    if data["resourceType"] == "Claim":
        return data, {}
    claim = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Claim")
    others = [e for e in data["entry"] if e["resource"] is not claim]
    return claim, {"record": {"resourceType": "Bundle", "type": "collection", "entry": others}}


def hook(client: TestClient, claim: dict[str, Any], prefetch: dict[str, Any]) -> dict[str, Any]:
    body = {
        "hook": HOOK,
        "hookInstance": str(uuid.uuid4()),
        "context": {"patientId": "p", "claim": claim},
        "prefetch": prefetch,
    }
    resp = client.post(HOOK_URL, json=body)
    check_response(resp)
    answer: dict[str, Any] = resp.json()
    return answer


def rules_firing(claim: dict[str, Any], prefetch: dict[str, Any]) -> dict[str, str]:
    entries = [{"resource": claim}] + [e for b in prefetch.values() for e in b["entry"]]
    result = fhir_checker.run({"resourceType": "Bundle", "type": "collection", "entry": entries})
    return {f.rule_id: f.severity.value for f in result.findings}


def remove(index: int) -> Edit:
    def edit(claim: dict[str, Any]) -> None:
        del claim["item"][index]  # the other lines keep their sequence numbers

    return edit


def units(index: int, value: float) -> Edit:
    def edit(claim: dict[str, Any]) -> None:
        claim["item"][index]["quantity"]["value"] = value

    return edit


def replace_code(index: int, code: str, value: float) -> Edit:
    def edit(claim: dict[str, Any]) -> None:
        claim["item"][index]["productOrService"] = {"coding": [{"system": HCPCS, "code": code}]}
        claim["item"][index]["quantity"]["value"] = value

    return edit


def add_line(after: int, code: str) -> Edit:
    def edit(claim: dict[str, Any]) -> None:
        source = claim["item"][after]
        line = {
            "sequence": max(i["sequence"] for i in claim["item"]) + 1,
            "productOrService": {"coding": [{"system": CPT, "code": code}]},
            "quantity": {"value": 1},
        }
        for key in (
            "careTeamSequence",
            "diagnosisSequence",
            "revenue",
            "servicedDate",
            "locationCodeableConcept",
        ):
            if key in source:
                line[key] = copy.deepcopy(source[key])
        claim["item"].append(line)

    return edit


CASES = [
    # fixture, the rule whose card carries the fix, the line it names, the fix, what it does
    ("rules/PTP001/fires.json", "PTP001", "Line 2 (96523)", remove(1), "Remove line 2 (96523)"),
    ("rules/ADD001/fires.json", "ADD001", "Line 1 (96371)", add_line(0, "96369"), "Add a line for 96369"),
    ("rules/UNI001/fires.json", "UNI001", "Line 8 (J0690)", units(7, 4), "Set the units of line 8"),
    ("rules/COD003/fires-replaced.json", "COD003", "Line 2 (J2001)", replace_code(1, "J2003", 100), "J2003"),
    ("rules/MOD003/fires.json", "MOD003", "Line 1 (", units(0, 1), "Set the units of line 1"),
]


@pytest.mark.parametrize(("name", "rule_id", "line", "edit", "says"), CASES, ids=[c[1] for c in CASES])
def test_certain_fix_is_an_update_of_exactly_that_change(
    client: TestClient, name: str, rule_id: str, line: str, edit: Edit, says: str
) -> None:
    claim, prefetch = split(load_fixture(name)["input"])
    answer = hook(client, claim, prefetch)
    [card] = [c for c in answer["cards"] if c["source"]["topic"]["code"] == rule_id]
    assert card["summary"].startswith(line) and len(card["summary"]) < 140
    assert card["indicator"] == "critical"  # an error finding
    [suggestion] = card["suggestions"]
    [action] = suggestion["actions"]
    assert action["type"] == "update" and says in action["description"]
    fixed = action["resource"]
    Claim.model_validate(fixed)  # a valid R4B Claim

    expected = copy.deepcopy(claim)
    edit(expected)
    assert fixed == expected  # exactly the fix: nothing else moved, nothing renumbered

    before = rules_firing(claim, prefetch)
    after = rules_firing(fixed, prefetch)
    assert rule_id in before and rule_id not in after  # the fix fixes it
    assert {r for r, s in after.items() if s == "error"} <= set(before)  # and breaks nothing new


def test_cards_carry_source_indicator_link_and_line(client: TestClient) -> None:
    bundle = load_fixture("port-placement-aml.json")
    claim, prefetch = split(bundle)
    bad = copy.deepcopy(claim)
    j0690 = next(
        i for i, it in enumerate(bad["item"]) if it["productOrService"]["coding"][0]["code"] == "J0690"
    )
    bad["item"][j0690]["quantity"]["value"] = 2  # 2 g cefazolin given: 4 units of 500 mg
    bad["item"][0]["modifier"] = [{"coding": [{"code": "11"}]}]  # no such modifier: MOD001
    answer = hook(client, bad, prefetch)
    cards = answer["cards"]
    outcome = answer["extension"][OUTCOME_EXTENSION]
    assert len(cards) == len(outcome["issue"]) >= 2
    seq = bad["item"][j0690]["sequence"]
    by_rule = {c["source"]["topic"]["code"]: c for c in cards}
    assert by_rule["UNI001"]["summary"].startswith(f"Line {seq} (J0690) bills J0690 x 2")
    assert by_rule["MOD001"]["summary"].startswith("Line 1 (36561): ")
    for card in cards:
        finding = card["extension"][FINDING_EXTENSION]
        want = {"error": "critical", "warning": "warning", "information": "info"}[finding["severity"]]
        assert card["indicator"] == want
        assert len(card["summary"]) < 140
        if finding["line"] is not None:
            item = bad["item"][finding["line"]]
            assert card["summary"].startswith(f"Line {item['sequence']} (")
        # source: the rule pack (with its version) and the tables' date
        assert card["source"]["label"].startswith("fhir-checker cms-outpatient-hospital@")
        assert "tables as of 20" in card["source"]["label"]
        [link] = card["links"]
        assert link["type"] == "absolute" and link["url"] == f"{SERVICE}/rules/{finding['ruleId']}"
        page = client.get(link["url"])  # resolves on this service
        assert page.status_code == 200 and finding["ruleId"] in page.text and "How to fix" in page.text
    assert "suggestions" not in by_rule["MOD001"]  # no certain fix for an invalid modifier
    fixed = by_rule["UNI001"]["suggestions"][0]["actions"][0]["resource"]
    Claim.model_validate(fixed)
    assert fixed["item"][j0690]["quantity"]["value"] == 4


@pytest.mark.parametrize(
    "name", ["port-placement-aml.json", "port-flush-visit.json", "prolonged-infusion.json", "bare-claim.json"]
)
def test_clean_claims_get_no_cards(client: TestClient, name: str) -> None:
    claim, prefetch = split(load_fixture(name))
    answer = hook(client, claim, prefetch)
    assert answer["cards"] == []
    outcome = answer["extension"][OUTCOME_EXTENSION]
    assert [i["severity"] for i in outcome["issue"]] == ["information"]  # "no findings", stored as such
