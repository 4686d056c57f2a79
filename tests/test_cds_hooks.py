"""The CDS Hooks service: discovery, hook calls with prefetch / FHIR server reads (respx), feedback."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from conftest import assert_valid_outcome, load_fixture
from fastapi.testclient import TestClient
from test_gather import server_copy

from fhir_checker.hook_cards import OUTCOME_EXTENSION
from fhir_checker.service import ServiceConfig, create_app

BASE = "https://fhir.example.org/r4"
HOOK_URL = "/cds-services/claim-precheck"
HOOK = "org.fhir-checker.claim-create"
TOKEN = "ehr-access-token"

# ------------------------------------------------------------- CDS Hooks 2.0 shapes


def check_discovery(doc: Any) -> None:
    assert isinstance(doc, dict) and isinstance(doc["services"], list) and doc["services"]
    for svc in doc["services"]:
        for key in ("hook", "description", "id"):
            assert isinstance(svc[key], str) and svc[key], key
        assert set(svc) <= {
            "hook",
            "title",
            "description",
            "id",
            "prefetch",
            "usageRequirements",
            "extension",
        }
        for name, template in (svc.get("prefetch") or {}).items():
            assert isinstance(name, str) and isinstance(template, str)
            assert "{{context." in template


def check_card(card: Any) -> None:
    assert set(card) <= {
        "uuid",
        "summary",
        "detail",
        "indicator",
        "source",
        "suggestions",
        "selectionBehavior",
        "overrideReasons",
        "links",
        "extension",
    }
    uuid.UUID(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert isinstance(card["source"]["label"], str) and card["source"]["label"]
    if "suggestions" in card:
        assert card["selectionBehavior"] in ("at-most-one", "any")
        for sug in card["suggestions"]:
            assert isinstance(sug["label"], str)
            uuid.UUID(sug["uuid"])
            for action in sug["actions"]:
                assert action["type"] in ("create", "update", "delete")
                assert isinstance(action["description"], str)
                if action["type"] == "update":
                    assert action["resource"]["resourceType"] == "Claim"
    for link in card.get("links", []):
        assert {"label", "url", "type"} <= set(link) and link["type"] in ("absolute", "smart")
    for reason in card.get("overrideReasons", []):
        assert {"code", "system", "display"} <= set(reason)


def check_response(resp: Any) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) <= {"cards", "systemActions", "extension"}
    for card in body["cards"]:
        check_card(card)
    assert_valid_outcome(body["extension"][OUTCOME_EXTENSION])
    cards: list[dict[str, Any]] = body["cards"]
    return cards


# ------------------------------------------------------------- helpers


@pytest.fixture
def client() -> Iterator[TestClient]:
    cfg = ServiceConfig(auth=False, fhir_servers=(BASE,), fhir_timeout=0.5, fhir_deadline=2.0)
    with TestClient(create_app(cfg), raise_server_exceptions=False) as c:
        yield c


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }


def of_type(resources: dict[str, dict[str, Any]], rtype: str) -> list[dict[str, Any]]:
    return [r for k, r in resources.items() if k.startswith(rtype + "/")]


def full_prefetch(claim: dict[str, Any], resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "claim": claim,
        "patient": of_type(resources, "Patient")[0],
        "procedures": searchset(of_type(resources, "Procedure")),
        "conditions": searchset(of_type(resources, "Condition")),
        "coverage": searchset(of_type(resources, "Coverage")),
        "others": searchset(of_type(resources, "MedicationAdministration") + of_type(resources, "Device")),
    }


def hook_request(context_claim: Any, prefetch: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": HOOK,
        "hookInstance": str(uuid.uuid4()),
        "context": {"patientId": "pat-1", "claim": context_claim},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def with_server(**extra: Any) -> dict[str, Any]:
    return {
        "fhirServer": BASE,
        "fhirAuthorization": {
            "access_token": TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "x",
        },
        **extra,
    }


def serve_all(
    mock: respx.MockRouter, resources: dict[str, dict[str, Any]], status: dict[str, int] | None = None
) -> None:
    mock.post(BASE).respond(405)  # no batch: one read per resource
    for key, res in resources.items():
        code = (status or {}).get(key, 200)
        if code == 200:
            mock.get(f"{BASE}/{key}").respond(json=res)
        else:
            mock.get(f"{BASE}/{key}").respond(
                code,
                json={
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "processing"}],
                },
            )


def reads(mock: respx.MockRouter) -> list[str]:
    return [c.request.url.path.removeprefix("/r4/") for c in mock.calls if c.request.method == "GET"]


# ------------------------------------------------------------- discovery


def test_discovery_shape(client: TestClient) -> None:
    doc = client.get("/cds-services").json()
    check_discovery(doc)
    svc = doc["services"][0]
    assert svc["id"] == "claim-precheck" and svc["hook"] == HOOK
    assert {"claim", "patient", "procedures", "conditions"} <= set(svc["prefetch"])
    assert svc["prefetch"]["procedures"] == "Procedure?patient={{context.patientId}}"


# ------------------------------------------------------------- prefetch only


def test_complete_prefetch_clean_claim_has_no_cards(client: TestClient) -> None:
    claim, resources = server_copy()
    with respx.mock(assert_all_called=False) as mock:
        cards = check_response(
            client.post(HOOK_URL, json=hook_request(claim, full_prefetch(claim, resources), **with_server()))
        )
        assert not mock.calls  # nothing read: the prefetch had it all
    assert cards == []


def test_fixture_bundle_as_prefetch_urn_references(client: TestClient) -> None:
    bundle = load_fixture("port-placement-aml.json")
    claim = bundle["entry"][0]["resource"]
    assert check_response(client.post(HOOK_URL, json=hook_request(claim, {"everything": bundle}))) == []


def test_findings_become_cards_naming_lines(client: TestClient) -> None:
    claim, resources = server_copy()
    bad = copy.deepcopy(claim)
    bad["item"][1]["quantity"]["value"] = 40  # 76937 over its MUE
    bad["item"][0]["productOrService"]["coding"][0]["code"] = "J2001"  # terminated code
    resp = client.post(HOOK_URL, json=hook_request(bad, full_prefetch(bad, resources)))
    cards = check_response(resp)
    assert cards
    outcome = resp.json()["extension"][OUTCOME_EXTENSION]
    assert len(cards) == len(outcome["issue"])  # one card per finding
    line_cards = [c for c in cards if c["extension"]["org.fhir-checker.finding"]["line"] is not None]
    assert any(c["summary"].startswith("Line 2 (76937)") for c in line_cards)
    assert any(c["summary"].startswith("Line 1 (J2001)") for c in line_cards)
    assert {c["indicator"] for c in cards} <= {"critical", "warning", "info"}
    card = line_cards[0]
    rule_id = card["source"]["topic"]["code"]
    assert card["links"][0]["url"].endswith(f"/rules/{rule_id}")
    assert client.get(f"/rules/{rule_id}").status_code == 200
    assert "cms-outpatient-hospital@" in card["source"]["label"] and "tables as of" in card["source"]["label"]


def test_missing_data_without_a_server_is_412(client: TestClient) -> None:
    claim, resources = server_copy()
    prefetch = full_prefetch(claim, resources)
    del prefetch["procedures"]
    resp = client.post(HOOK_URL, json=hook_request(claim, prefetch))
    assert resp.status_code == 412
    body = resp.json()
    assert_valid_outcome(body)
    assert "Procedure/" in body["issue"][0]["details"]["text"]


# ------------------------------------------------------------- reads from fhirServer


def test_missing_prefetch_everything_read_from_the_server_with_the_token(client: TestClient) -> None:
    claim, resources = server_copy()
    with respx.mock as mock:
        serve_all(mock, resources)
        cards = check_response(
            client.post(HOOK_URL, json=hook_request(f"Claim/{claim['id']}", **with_server()))
        )
        assert cards == []
        assert f"Claim/{claim['id']}" in reads(mock) and any(r.startswith("Procedure/") for r in reads(mock))
        assert all(c.request.headers["authorization"] == f"Bearer {TOKEN}" for c in mock.calls)


def test_partial_prefetch_reads_only_what_is_missing(client: TestClient) -> None:
    claim, resources = server_copy()
    prefetch = full_prefetch(claim, resources)
    del prefetch["procedures"]
    with respx.mock as mock:
        serve_all(mock, resources)
        check_response(client.post(HOOK_URL, json=hook_request(claim, prefetch, **with_server())))
        done = reads(mock)
    # Only the procedures (and the payor Organization, which no prefetch template covers).
    assert done and all(r.startswith(("Procedure/", "Organization/")) for r in done)
    assert any(r.startswith("Procedure/") for r in done)


def test_operation_outcome_in_place_of_a_prefetch_is_read_instead(client: TestClient) -> None:
    claim, resources = server_copy()
    prefetch = full_prefetch(claim, resources)
    prefetch["conditions"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    with respx.mock as mock:
        serve_all(mock, resources)
        assert (
            check_response(client.post(HOOK_URL, json=hook_request(claim, prefetch, **with_server()))) == []
        )
        assert sorted(r.split("/")[0] for r in reads(mock)) == ["Condition", "Condition", "Organization"]


@pytest.mark.parametrize("status", [401, 404, 410, 500])
def test_server_errors_give_412_naming_what_is_missing(client: TestClient, status: int) -> None:
    claim, resources = server_copy()
    prefetch = full_prefetch(claim, resources)
    del prefetch["conditions"]
    cond = of_type(resources, "Condition")[0]
    with respx.mock as mock:
        serve_all(mock, resources, {f"Condition/{cond['id']}": status})
        resp = client.post(HOOK_URL, json=hook_request(claim, prefetch, **with_server()))
    assert resp.status_code == 412, resp.text
    text = resp.json()["issue"][0]["details"]["text"]
    assert f"Condition/{cond['id']} ({status})" in text
    assert TOKEN not in resp.text


def test_claim_itself_unreadable_is_412(client: TestClient) -> None:
    with respx.mock as mock:
        mock.get(f"{BASE}/Claim/gone").respond(410)
        resp = client.post(HOOK_URL, json=hook_request({"reference": "Claim/gone"}, **with_server()))
    assert resp.status_code == 412 and "410" in resp.json()["issue"][0]["details"]["text"]


def test_server_timeout_is_412(client: TestClient) -> None:
    claim, resources = server_copy()
    prefetch = full_prefetch(claim, resources)
    del prefetch["patient"]
    with respx.mock as mock:
        serve_all(mock, resources)
        patient = of_type(resources, "Patient")[0]
        mock.get(f"{BASE}/Patient/{patient['id']}").mock(side_effect=httpx.ReadTimeout("slow"))
        resp = client.post(HOOK_URL, json=hook_request(claim, prefetch, **with_server()))
    assert resp.status_code == 412 and "(timeout)" in resp.json()["issue"][0]["details"]["text"]


def test_slow_server_hits_the_deadline() -> None:
    """A server that answers, but too slowly: the hook gives up at fhir_deadline."""
    import asyncio

    claim, resources = server_copy()

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)
        return httpx.Response(200, json=resources.get(request.url.path.removeprefix("/r4/"), {}))

    cfg = ServiceConfig(auth=False, fhir_servers=(BASE,), fhir_timeout=5.0, fhir_deadline=0.5)
    with TestClient(create_app(cfg)) as c, respx.mock as mock:
        mock.post(BASE).respond(405)
        mock.get(url__startswith=BASE).mock(side_effect=slow)
        started = time.monotonic()
        resp = c.post(HOOK_URL, json=hook_request(f"Claim/{claim['id']}", **with_server()))
        elapsed = time.monotonic() - started
    assert resp.status_code == 412 and resp.json()["issue"][0]["code"] == "timeout"
    assert elapsed < 3.0


def test_fhir_server_off_the_allowlist_is_never_called(client: TestClient) -> None:
    claim, _ = server_copy()
    with respx.mock(assert_all_called=False) as mock:
        evil = mock.get(url__startswith="https://internal.example.net").respond(json={})
        resp = client.post(
            HOOK_URL,
            json=hook_request(
                f"Claim/{claim['id']}",
                fhirServer="https://internal.example.net/fhir",
                fhirAuthorization={"access_token": TOKEN, "token_type": "Bearer"},
            ),
        )
        assert resp.status_code == 403 and resp.json()["issue"][0]["code"] == "forbidden"
        assert not evil.called


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"hook": "order-sign"}, "not 'order-sign'"),
        ({"hook": None}, "hook is required"),
        ({"context": {"claim": "Claim/1"}}, "patientId"),
        ({"context": {"patientId": "p"}}, "context.claim"),
        ({"context": {"patientId": "p", "claim": {"resourceType": "Patient"}}}, "context.claim"),
        ({"prefetch": {"x": [1]}}, "prefetch.x"),
        ({"fhirAuthorization": {"access_token": "t"}}, "without fhirServer"),
        ({"hookInstance": None}, "hookInstance"),
    ],
)
def test_malformed_hook_requests(client: TestClient, change: dict[str, Any], needle: str) -> None:
    body = hook_request("Claim/1")
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    resp = client.post(HOOK_URL, json=body)
    assert resp.status_code == 400
    assert needle in resp.json()["issue"][0]["details"]["text"]


# ------------------------------------------------------------- feedback


def test_feedback_counted_per_rule(client: TestClient) -> None:
    claim, resources = server_copy()
    bad = copy.deepcopy(claim)
    bad["item"][1]["quantity"]["value"] = 40
    cards = check_response(client.post(HOOK_URL, json=hook_request(bad, full_prefetch(bad, resources))))
    first, rule = cards[0]["uuid"], cards[0]["source"]["topic"]["code"]
    now = "2026-03-11T10:00:00Z"
    resp = client.post(
        f"{HOOK_URL}/feedback",
        json={
            "feedback": [
                {"card": first, "outcome": "accepted", "acceptedSuggestions": [], "outcomeTimestamp": now},
                {
                    "card": first,
                    "outcome": "overridden",
                    "outcomeTimestamp": now,
                    "overrideReason": {
                        "reason": {"code": "payer-exception", "system": "x"},
                        "userComment": "Mr Doe's payer",
                    },
                },
                {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": now},
            ]
        },
    )
    assert resp.status_code == 200 and resp.json()["received"] == 3
    stats = client.get(f"{HOOK_URL}/feedback/stats").json()
    assert stats["rules"][rule]["accepted"] == 1 and stats["rules"][rule]["overridden"] == 1
    assert stats["rules"][rule]["overrideReasons"] == {"payer-exception": 1}
    assert stats["rules"]["(unknown card)"]["overridden"] == 1
    assert "Doe" not in str(stats)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"feedback": []},
        {"feedback": [{"card": "x", "outcome": "maybe"}]},
        {"feedback": [{"outcome": "accepted"}]},
    ],
)
def test_bad_feedback(client: TestClient, body: dict[str, Any]) -> None:
    resp = client.post(f"{HOOK_URL}/feedback", json=body)
    assert resp.status_code == 400 and resp.json()["resourceType"] == "OperationOutcome"


def test_a_dangling_local_reference_is_a_finding_not_missing_data(client: TestClient) -> None:
    """A ``#id`` reference is never read from the prefetch or a server: one that does not
    resolve (a typo, or a contained resource with no id, once counted as ``#None``) is the
    claim's defect, a REF001 card, as on the fhirServer path; it used to be a 412."""
    claim, resources = server_copy()
    claim = copy.deepcopy(claim)
    claim["contained"] = [{"resourceType": "Patient"}, {"resourceType": "Patient", "id": 5}]
    for ref in ("#None", "#5", "#pat-typo"):
        claim["patient"] = {"reference": ref}
        resp = client.post(HOOK_URL, json=hook_request(claim, full_prefetch(claim, resources)))
        cards = check_response(resp)
        dangling = [c for c in cards if c["source"]["topic"]["code"] == "REF001"]
        assert dangling, [c["source"]["topic"]["code"] for c in cards]
        assert dangling[0]["extension"]["org.fhir-checker.finding"]["expression"] == "Claim.patient"
