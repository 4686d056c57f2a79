"""Request limits: body size, JSON nesting, lines per claim, and the per-request time budget.

Each limit is exercised through the engine and over HTTP (``$precheck`` and the CDS hook):
the answer is always one OperationOutcome that names the limit, with a clear HTTP status.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from conftest import assert_valid_outcome, claim_of, load_fixture
from fastapi.testclient import TestClient
from test_gather import server_copy

import fhir_checker
from fhir_checker import engine
from fhir_checker.loader import MAX_DEPTH, MAX_LINES, Limits
from fhir_checker.service import ServiceConfig, create_app

PRECHECK = "/fhir/Claim/$precheck"
HOOK_URL = "/cds-services/claim-precheck"
HOOK = "org.fhir-checker.claim-create"
BASE = "https://fhir.example.org/r4"
FHIR = {"content-type": "application/fhir+json"}


def issue_codes(outcome: dict[str, Any]) -> list[str]:
    return [i["details"]["coding"][0]["code"] for i in outcome["issue"] if i.get("details", {}).get("coding")]


def with_lines(n: int) -> dict[str, Any]:
    """The port-placement bundle with its Claim's lines repeated to ``n`` lines."""
    bundle = load_fixture("port-placement-aml.json")
    claim = claim_of(bundle)
    lines = claim["item"]
    claim["item"] = [
        dict(copy.deepcopy(line), sequence=i + 1) for i, line in zip(range(n), itertools.cycle(lines))
    ]
    return bundle


def nested_claim(depth: int) -> bytes:
    """A Claim whose extension nests ``depth`` levels below the root object."""
    node: Any = {"url": "http://example.org/x", "valueString": "bottom"}
    for _ in range(depth // 2):
        node = {"url": "http://example.org/x", "extension": [node]}
    return json.dumps({"resourceType": "Claim", "id": "deep", "extension": [node]}).encode()


class FakeClock:
    """Each reading is one second later: rule n starts n seconds into the check."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(engine, "_clock", clock)
    return clock


# ============================================================================ engine


def test_no_budget_changes_nothing() -> None:
    bundle = load_fixture("port-placement-aml.json")
    plain = fhir_checker.run(bundle)
    generous = fhir_checker.run(bundle, limits=Limits(time_budget_seconds=60.0))
    assert not plain.incomplete and not generous.incomplete
    assert [i["details"] for i in generous.outcome["issue"]] == [i["details"] for i in plain.outcome["issue"]]


def test_budget_stops_between_rules_and_says_incomplete(fake_clock: FakeClock) -> None:
    """A clean claim checked past its budget must not come back 'clean'."""
    result = fhir_checker.run(load_fixture("port-placement-aml.json"), limits=Limits(time_budget_seconds=5))
    assert result.incomplete and result.has_errors and not result.fatal
    assert_valid_outcome(result.outcome)
    codes = issue_codes(result.outcome)
    assert "CLEAN" not in codes and codes[-1] == engine.INCOMPLETE_CODE
    last = result.outcome["issue"][-1]
    assert last["severity"] == "error" and last["code"] == "incomplete"
    assert "time budget of 5 s" in last["details"]["text"]
    assert "stopped before rule" in last["diagnostics"]
    # Some rules ran (the clock allows a few), most did not.
    found = re.search(r": (\d+) of (\d+) rules did not run", last["details"]["text"])
    assert found, last["details"]["text"]
    skipped, total = int(found[1]), int(found[2])
    assert 0 < skipped < total


def test_findings_found_before_the_budget_are_kept(fake_clock: FakeClock) -> None:
    data = load_fixture("port-placement-miscoded.json")
    full = {f.rule_id for f in fhir_checker.run(data).findings}
    fake_clock.now = 0.0
    partial = fhir_checker.run(data, limits=Limits(time_budget_seconds=1000))
    assert not partial.incomplete and {f.rule_id for f in partial.findings} == full  # enough budget
    fake_clock.now = 0.0
    cut = fhir_checker.run(data, limits=Limits(time_budget_seconds=3))
    assert cut.incomplete
    assert {f.rule_id for f in cut.findings} < full  # a strict subset: the rest did not run
    assert len(cut.outcome["issue"]) == len(cut.findings) + 1


def test_lines_limit_is_the_ioce_limit() -> None:
    assert MAX_LINES == 450
    assert not fhir_checker.run(with_lines(450)).fatal
    over = fhir_checker.run(with_lines(451)).outcome
    assert over["issue"][0]["code"] == "too-costly" and over["issue"][0]["expression"] == ["Claim.item"]


# ============================================================================ HTTP: $precheck


@pytest.fixture(scope="module")
def service() -> Iterator[TestClient]:
    cfg = ServiceConfig(auth=False, max_body_bytes=512 * 1024)
    with TestClient(create_app(cfg), raise_server_exceptions=False) as client:
        yield client


def assert_limit_outcome(resp: httpx.Response, status: int, code: str, needle: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = resp.json()
    assert_valid_outcome(body)
    issue = body["issue"][-1]
    assert issue["code"] == code, issue
    assert needle in json.dumps(issue), issue
    return body


def test_precheck_body_over_the_limit_is_413(service: TestClient) -> None:
    body = json.dumps({"resourceType": "Claim", "text": {"div": "x" * 600_000}}).encode()
    assert_limit_outcome(service.post(PRECHECK, content=body, headers=FHIR), 413, "too-costly", "524,288")


def test_precheck_nesting_past_the_limit_is_422(service: TestClient) -> None:
    ok = service.post(PRECHECK, content=nested_claim(MAX_DEPTH - 4), headers=FHIR)
    assert ok.status_code == 200, ok.text[:300]
    resp = service.post(PRECHECK, content=nested_claim(MAX_DEPTH + 2), headers=FHIR)
    assert_limit_outcome(resp, 422, "too-costly", f"nested deeper than {MAX_DEPTH} levels")


def test_precheck_nesting_far_past_the_parser_limit_is_400(service: TestClient) -> None:
    resp = service.post(PRECHECK, content=b"[" * 5000 + b"]" * 5000, headers=FHIR)
    assert_limit_outcome(resp, 400, "too-costly", "nested deeper")


def test_precheck_lines_per_claim(service: TestClient) -> None:
    ok = service.post(PRECHECK, content=json.dumps(with_lines(MAX_LINES)), headers=FHIR)
    assert ok.status_code == 200, ok.text[:300]
    resp = service.post(PRECHECK, content=json.dumps(with_lines(MAX_LINES + 1)), headers=FHIR)
    assert_limit_outcome(resp, 422, "too-costly", "451 lines, over the limit of 450")


def test_precheck_over_the_time_budget_is_503_incomplete(service: TestClient, fake_clock: FakeClock) -> None:
    # The service's budget is 15 s; the fake clock makes each rule take a second.
    resp = service.post(PRECHECK, content=json.dumps(load_fixture("port-placement-aml.json")), headers=FHIR)
    body = assert_limit_outcome(resp, 503, "incomplete", "time budget of")
    assert "CLEAN" not in issue_codes(body)


def test_precheck_within_the_time_budget_is_200(service: TestClient) -> None:
    resp = service.post(PRECHECK, content=json.dumps(load_fixture("port-placement-aml.json")), headers=FHIR)
    assert resp.status_code == 200 and "INCOMPLETE" not in issue_codes(resp.json())


def test_time_budget_from_the_environment() -> None:
    from fhir_checker.service.config import load_config

    assert load_config(env={"FHIR_CHECKER_TIME_BUDGET": "2.5"}).time_budget_seconds == 2.5


# ============================================================================ HTTP: CDS hook


def hook_body(claim: Any, prefetch: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": HOOK,
        "hookInstance": "5c9c7b4c-7c52-4d07-b3a3-9d5f8d0c2f11",
        "context": {"patientId": "pat-1", "claim": claim},
        "prefetch": prefetch or {},
        **extra,
    }
    return body


def test_hook_limits(service: TestClient) -> None:
    bundle = load_fixture("port-placement-aml.json")
    huge = hook_body(
        claim_of(bundle), {"everything": bundle, "junk": {"resourceType": "Basic", "id": "x" * 600_000}}
    )
    assert_limit_outcome(service.post(HOOK_URL, json=huge), 413, "too-costly", "524,288")
    many = with_lines(MAX_LINES + 1)
    resp = service.post(HOOK_URL, json=hook_body(claim_of(many), {"everything": many}))
    assert_limit_outcome(resp, 400, "too-costly", "451 lines, over the limit of 450")
    deep_claim = json.loads(nested_claim(MAX_DEPTH + 2))
    deep_claim["patient"] = {"reference": "Patient/pat-1"}
    resp = service.post(HOOK_URL, json=hook_body(deep_claim, {"everything": bundle}))
    assert_limit_outcome(resp, 400, "too-costly", f"nested deeper than {MAX_DEPTH} levels")


def test_hook_check_over_the_time_budget_is_503(service: TestClient, fake_clock: FakeClock) -> None:
    bundle = load_fixture("port-placement-aml.json")
    resp = service.post(HOOK_URL, json=hook_body(claim_of(bundle), {"everything": bundle}))
    body = assert_limit_outcome(resp, 503, "incomplete", "time budget of")
    assert "cards" not in body  # no empty card list that would read as "nothing found"


def test_hook_reads_over_the_time_budget_are_503() -> None:
    """A slow FHIR server eats the budget while the claim's data is read: 503, not a hang."""
    claim, resources = server_copy()

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)
        return httpx.Response(200, json=resources.get(request.url.path.removeprefix("/r4/"), {}))

    cfg = ServiceConfig(
        auth=False, fhir_servers=(BASE,), fhir_timeout=5.0, fhir_deadline=10.0, time_budget_seconds=0.5
    )
    with TestClient(create_app(cfg), raise_server_exceptions=False) as client, respx.mock as mock:
        mock.post(BASE).respond(405)
        mock.get(url__startswith=BASE).mock(side_effect=slow)
        resp = client.post(
            HOOK_URL,
            json=hook_body(
                f"Claim/{claim['id']}",
                fhirServer=BASE,
                fhirAuthorization={"access_token": "t", "token_type": "Bearer"},
            ),
        )
    assert_limit_outcome(resp, 503, "incomplete", "time budget of 0.5 s ran out while reading")
