"""Upstream faults: the FHIR server down, slow, timing out, 5xx, 401, 404 / 410, malformed JSON.

- The CDS hook (when it must read the claim's data): 412 with an OperationOutcome that names
  each reference it could not read and why (``Condition/c1 (503)``, ``(timeout)``,
  ``(malformed JSON)``), never a 500, never the token.
- The subscription worker: a transient fault (down, timeout, 5xx, 401, bad JSON) writes no
  result and retries the job with backoff; a deleted resource (404 / 410) is a finding, checked
  now; a 403 fails the job at once. After the fault passes: exactly one result Task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from conftest import assert_valid_outcome
from fastapi.testclient import TestClient
from hapi_fake import BASE as FAKE_BASE
from hapi_fake import FakeFhir, clinical_claim
from test_cds_hooks import BASE, HOOK_URL, TOKEN, full_prefetch, hook_request, of_type, serve_all, with_server
from test_gather import server_copy

from fhir_checker.fhirclient import FhirClient
from fhir_checker.hapi.queue import DONE, FAILED, PENDING, ClaimQueue
from fhir_checker.hapi.worker import Checker, Worker
from fhir_checker.hapi.writeback import STATUS_SYSTEM, has_result
from fhir_checker.service import ServiceConfig, create_app

OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing"}]}


def fault_response(kind: str, request: httpx.Request) -> httpx.Response:
    """One upstream fault, as the FHIR server (or the network) would produce it."""
    if kind == "down":
        raise httpx.ConnectError("connection refused", request=request)
    if kind == "timeout":
        raise httpx.ReadTimeout("read timed out", request=request)
    if kind == "malformed-json":
        return httpx.Response(
            200,
            content=b'{"resourceType": "Condition", "id": ',
            headers={"content-type": "application/fhir+json"},
        )
    if kind == "not-a-resource":
        return httpx.Response(200, json=[{"id": "x"}])
    return httpx.Response(int(kind), json=OUTCOME)


#: fault -> the reason the answer gives for the unreadable reference
REASONS = {
    "down": "server unreachable",
    "timeout": "timeout",
    "500": "500",
    "502": "502",
    "503": "503",
    "401": "401",
    "403": "403",
    "404": "404",
    "410": "410",
    "malformed-json": "malformed JSON",
    "not-a-resource": "not a FHIR resource",
}


# ============================================================================ CDS hook


@pytest.fixture
def client() -> Iterator[TestClient]:
    cfg = ServiceConfig(auth=False, fhir_servers=(BASE,), fhir_timeout=0.5, fhir_deadline=2.0)
    with TestClient(create_app(cfg), raise_server_exceptions=False) as c:
        yield c


def assert_412_naming(resp: httpx.Response, *needles: str) -> str:
    assert resp.status_code == 412, (resp.status_code, resp.text[:400])
    assert resp.headers["content-type"].startswith("application/fhir+json")
    body = resp.json()
    assert_valid_outcome(body)
    text: str = body["issue"][0]["details"]["text"]
    for needle in needles:
        assert needle in text, text
    assert TOKEN not in resp.text
    return text


@pytest.mark.parametrize("fault", sorted(REASONS))
def test_hook_names_the_reference_it_could_not_read(client: TestClient, fault: str) -> None:
    claim, resources = server_copy()
    prefetch = full_prefetch(claim, resources)
    del prefetch["conditions"]  # the hook must read the Conditions itself
    cond = of_type(resources, "Condition")[0]
    with respx.mock as mock:
        mock.get(f"{BASE}/Condition/{cond['id']}").mock(side_effect=lambda r: fault_response(fault, r))
        serve_all(mock, {k: v for k, v in resources.items() if k != f"Condition/{cond['id']}"})
        resp = client.post(HOOK_URL, json=hook_request(claim, prefetch, **with_server()))
    assert_412_naming(resp, f"Condition/{cond['id']} ({REASONS[fault]})")


@pytest.mark.parametrize("fault", sorted(REASONS))
def test_hook_claim_itself_unreadable(client: TestClient, fault: str) -> None:
    with respx.mock as mock:
        mock.get(f"{BASE}/Claim/c9").mock(side_effect=lambda r: fault_response(fault, r))
        resp = client.post(HOOK_URL, json=hook_request({"reference": "Claim/c9"}, **with_server()))
    assert_412_naming(resp, "the Claim could not be read", f"({REASONS[fault]})")


def test_hook_batch_read_failing_names_every_reference(client: TestClient) -> None:
    """A server that does batch, and whose batch answers 503: each reference is named."""
    claim, resources = server_copy()
    prefetch = full_prefetch(claim, resources)
    del prefetch["conditions"]
    conds = of_type(resources, "Condition")
    with respx.mock as mock:
        mock.post(BASE).respond(503, json=OUTCOME)
        mock.get(url__startswith=BASE).respond(503, json=OUTCOME)  # single reads fail the same way
        resp = client.post(HOOK_URL, json=hook_request(claim, prefetch, **with_server()))
    assert_412_naming(resp, *(f"Condition/{c['id']} (503)" for c in conds))


def test_hook_slow_server_everything_times_out_within_the_deadline() -> None:
    claim, _ = server_copy()

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=OUTCOME)

    cfg = ServiceConfig(auth=False, fhir_servers=(BASE,), fhir_timeout=5.0, fhir_deadline=0.3)
    with TestClient(create_app(cfg), raise_server_exceptions=False) as c, respx.mock as mock:
        mock.route(url__startswith=BASE).mock(side_effect=slow)
        started = time.monotonic()
        resp = c.post(HOOK_URL, json=hook_request(f"Claim/{claim['id']}", **with_server()))
    assert time.monotonic() - started < 3
    assert resp.status_code == 412 and resp.json()["issue"][0]["code"] == "timeout"
    assert_valid_outcome(resp.json())


# ============================================================================ subscription worker


class Fault:
    """A respx side effect: ``kind`` while ``active``, the fake server's answer after."""

    def __init__(self, fake: FakeFhir, kind: str) -> None:
        self.fake, self.kind, self.active, self.hits = fake, kind, True, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.active:
            self.hits += 1
            return fault_response(self.kind, request)
        return self.fake.handle(request)


def tasks(fake: FakeFhir) -> list[dict[str, Any]]:
    return fake.of_type("Task")


def status_tag(fake: FakeFhir, claim_id: str = "c1") -> str | None:
    tags = fake.get("Claim", claim_id)["meta"].get("tag") or []
    return next((t["code"] for t in tags if t["system"] == STATUS_SYSTEM), None)


def with_worker(
    fake: FakeFhir, queue: ClaimQueue, path: str, fault: Fault, body: Callable[[Worker], Any]
) -> Any:
    async def go() -> Any:
        with respx.mock(assert_all_called=False) as router:
            router.post(FAKE_BASE).respond(405)  # no batch: each reference is its own read
            router.route(url__startswith=f"{FAKE_BASE}/{path}").mock(side_effect=fault)
            fake.mount(router)
            async with FhirClient(FAKE_BASE, timeout=1.0) as client:
                return await body(Worker(queue, Checker(client)))

    return asyncio.run(go())


def run_once(fake: FakeFhir, queue: ClaimQueue, path: str, fault: Fault, now: float | None = None) -> Any:
    async def body(worker: Worker) -> Any:
        job = queue.lease(now=now)
        assert job is not None, "no job ready"
        return await worker.run_job(job)

    return with_worker(fake, queue, path, fault, body)


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[ClaimQueue]:
    q = ClaimQueue(tmp_path / "queue.sqlite")
    try:
        yield q
    finally:
        q.close()


TRANSIENT = ["down", "timeout", "500", "502", "503", "401", "malformed-json", "not-a-resource"]


@pytest.mark.parametrize("fault_kind", TRANSIENT)
@pytest.mark.parametrize("where", ["Condition/cond1", "Claim/c1"])
def test_worker_retries_a_transient_fault_then_writes_one_result(
    queue: ClaimQueue, fault_kind: str, where: str
) -> None:
    fake = FakeFhir()
    clinical_claim(fake, bad_code=True)
    queue.enqueue_claim("c1", "1")
    fault = Fault(fake, fault_kind)
    started = time.time()

    assert run_once(fake, queue, where, fault) is None  # not done: retried later
    assert fault.hits >= 1
    assert queue.state_of("c1", "1") == PENDING
    assert tasks(fake) == [] and status_tag(fake) is None  # nothing written from a gap
    assert queue.lease(now=started + 1) is None  # backing off: 2 s after the first attempt
    # Still failing on the second attempt: the backoff doubles.
    assert run_once(fake, queue, where, fault, now=time.time() + 2.5) is None
    assert queue.lease(now=time.time() + 3) is None
    fault.active = False
    assert run_once(fake, queue, where, fault, now=time.time() + 5) == "findings"
    assert queue.state_of("c1", "1") == DONE
    assert len(tasks(fake)) == 1 and status_tag(fake) == "findings"


@pytest.mark.parametrize("fault_kind", ["404", "410"])
def test_worker_deleted_reference_is_checked_now_as_a_finding(queue: ClaimQueue, fault_kind: str) -> None:
    fake = FakeFhir()
    clinical_claim(fake)
    queue.enqueue_claim("c1", "1")
    assert run_once(fake, queue, "Condition/cond1", Fault(fake, fault_kind)) == "findings"
    [task] = tasks(fake)
    outcome = task["contained"][0]
    assert any(
        "Condition/cond1" in str(i.get("diagnostics", "")) + str(i["details"]) for i in outcome["issue"]
    )
    assert queue.state_of("c1", "1") == DONE


@pytest.mark.parametrize("fault_kind", ["404", "410"])
def test_worker_deleted_claim_is_done_without_a_result(queue: ClaimQueue, fault_kind: str) -> None:
    fake = FakeFhir()
    clinical_claim(fake)
    queue.enqueue_claim("c1", "1")
    assert run_once(fake, queue, "Claim/c1", Fault(fake, fault_kind)) == "gone"
    assert queue.state_of("c1", "1") == DONE and tasks(fake) == []


def test_worker_forbidden_fails_at_once(queue: ClaimQueue) -> None:
    fake = FakeFhir()
    clinical_claim(fake)
    queue.enqueue_claim("c1", "1")
    assert run_once(fake, queue, "Condition/cond1", Fault(fake, "403")) is None
    assert queue.state_of("c1", "1") == FAILED and tasks(fake) == []
    # A redelivery of the same version gives it a new chance.
    assert queue.enqueue_claim("c1", "1") and queue.state_of("c1", "1") == PENDING


def test_worker_backoff_doubles_up_to_the_cap_then_fails(tmp_path: Path) -> None:
    q = ClaimQueue(tmp_path / "q.sqlite", max_attempts=4)
    fake = FakeFhir()
    clinical_claim(fake)
    q.enqueue_claim("c1", "1")
    fault = Fault(fake, "503")
    now = time.time()
    delays = []
    for _ in range(3):
        assert run_once(fake, q, "Condition/cond1", fault, now=now + 1000) is None
        ready_in = q.next_ready_in()
        assert ready_in is not None
        delays.append(round(ready_in))
        now = time.time() + ready_in
    assert delays == [2, 4, 8]
    assert run_once(fake, q, "Condition/cond1", fault, now=now + 1000) is None
    assert q.state_of("c1", "1") == FAILED and tasks(fake) == []
    q.close()


def test_worker_crash_between_task_and_tags_makes_no_second_task(queue: ClaimQueue) -> None:
    """The tag write fails after the Task was written: the retry updates that Task."""
    fake = FakeFhir(meta_ops=True)
    clinical_claim(fake, bad_code=True)
    queue.enqueue_claim("c1", "1")
    fake.fail[("POST", "Claim/c1/$meta-add")] = 500
    fault = Fault(fake, "503")
    fault.active = False
    assert run_once(fake, queue, "Condition/cond1", fault) is None
    assert len(tasks(fake)) == 1 and not has_result(fake.get("Claim", "c1"))
    assert run_once(fake, queue, "Condition/cond1", fault, now=time.time() + 5) == "findings"
    assert len(tasks(fake)) == 1 and has_result(fake.get("Claim", "c1"))
