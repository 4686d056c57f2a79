"""The rest-hook receiver mounted on a FastAPI app, with the worker running in its lifespan."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import respx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hapi_fake import BASE, FakeFhir, clinical_claim

from fhir_checker.hapi.queue import ClaimQueue
from fhir_checker.hapi.receiver import install
from fhir_checker.hapi.writeback import STATUS_SYSTEM, has_result


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def fake() -> Iterator[FakeFhir]:
    f = FakeFhir()
    with respx.mock(assert_all_called=False) as router:
        f.mount(router)
        router.route(host="testserver").pass_through()
        yield f


def app_for(queue: Path, sweep_interval: float | None = None) -> FastAPI:
    app = FastAPI()
    install(app, fhir_base=BASE, queue_path=str(queue), sweep_interval=sweep_interval)
    return app


def status_tag(fake: FakeFhir, claim_id: str) -> str | None:
    tags = fake.get("Claim", claim_id)["meta"].get("tag", [])
    return next((t["code"] for t in tags if t["system"] == STATUS_SYSTEM), None)


def test_put_is_answered_with_an_outcome_and_checked_in_background(fake: FakeFhir, tmp_path: Path) -> None:
    claim = clinical_claim(fake, bad_code=True)
    with TestClient(app_for(tmp_path / "q.sqlite")) as http:
        r = http.put("/subscription/Claim/c1", json=claim, headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/fhir+json")
        assert r.json()["resourceType"] == "OperationOutcome"  # HAPI parses the answer as FHIR
        wait_for(lambda: status_tag(fake, "c1") == "findings")
        # Redelivery of the same version: no second check, no second Task.
        r2 = http.put("/subscription/Claim/c1", json=claim)
        assert "already" in r2.json()["issue"][0]["diagnostics"]
        assert http.get("/subscription/status").json()["queue"]["done"] == 1
    assert len(fake.of_type("Task")) == 1


def test_bad_notifications_are_refused_other_types_accepted(fake: FakeFhir, tmp_path: Path) -> None:
    claim = clinical_claim(fake)
    with TestClient(app_for(tmp_path / "q.sqlite")) as http:
        assert http.put("/subscription/Claim/c1", content=b"{not json").status_code == 400
        assert http.put("/subscription/Claim/other", json=claim).status_code == 400  # id mismatch
        assert http.put("/subscription/Claim/c1", json={"resourceType": "Patient"}).status_code == 400
        assert http.put("/subscription/Patient/pat1", json={"resourceType": "Patient"}).status_code == 200
        assert http.delete("/subscription/Claim/c1").status_code == 200
        assert http.get("/subscription/status").json()["queue"]["pending"] == 0


def test_empty_post_sweeps_for_changed_claims(fake: FakeFhir, tmp_path: Path) -> None:
    clinical_claim(fake, claim_id="c1")
    clinical_claim(fake, claim_id="c2", bad_code=True)
    clinical_claim(fake, claim_id="c3")  # three claims, page size 2: the sweep follows next links
    with TestClient(app_for(tmp_path / "q.sqlite")) as http:
        r = http.post("/subscription", content=b"")
        assert r.status_code == 200
        wait_for(lambda: all(has_result(fake.get("Claim", c)) for c in ("c1", "c2", "c3")))
    assert status_tag(fake, "c2") == "findings" and status_tag(fake, "c3") == "passed"


def test_queued_before_a_crash_is_checked_after_restart(fake: FakeFhir, tmp_path: Path) -> None:
    clinical_claim(fake)
    # Accepted (committed) by a receiver that then died before its worker got to it.
    ClaimQueue(tmp_path / "q.sqlite").enqueue_claim("c1", "1")
    with TestClient(app_for(tmp_path / "q.sqlite")):
        wait_for(lambda: status_tag(fake, "c1") == "passed")


def test_scheduled_sweep_runs_at_start(fake: FakeFhir, tmp_path: Path) -> None:
    clinical_claim(fake, bad_code=True)  # created while the checker was down
    with TestClient(app_for(tmp_path / "q.sqlite", sweep_interval=3600)) as http:
        wait_for(lambda: status_tag(fake, "c1") == "findings")
        assert http.get("/subscription/status").json()["queue"]["done"] >= 1


def test_transient_server_error_is_retried(fake: FakeFhir, tmp_path: Path) -> None:
    claim = clinical_claim(fake)
    fake.fail[("GET", "Claim/c1")] = 503
    with TestClient(app_for(tmp_path / "q.sqlite")) as http:
        http.put("/subscription/Claim/c1", json=claim)
        wait_for(lambda: status_tag(fake, "c1") == "passed", timeout=15)  # after a 2 s back-off
    assert fake.count("GET", "Claim/c1") >= 2


def test_shared_secret_guards_every_subscription_route(fake: FakeFhir, tmp_path: Path) -> None:
    claim = clinical_claim(fake, bad_code=True)
    app = FastAPI()
    install(app, fhir_base=BASE, queue_path=str(tmp_path / "q.sqlite"), secret="s3cret")
    good = {"Authorization": "Bearer s3cret"}
    with TestClient(app) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            r = http.put("/subscription/Claim/c1", json=claim, headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["content-type"].startswith("application/fhir+json")
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.json()["resourceType"] == "OperationOutcome"
            assert r.json()["issue"][0]["code"] == "login"
        assert http.post("/subscription", content=b"").status_code == 401
        assert http.get("/subscription/status").status_code == 401
        assert http.get("/subscription/status", headers=good).json()["queue"]["pending"] == 0
        assert http.put("/subscription/Claim/c1", json=claim, headers=good).status_code == 200
        wait_for(lambda: status_tag(fake, "c1") == "findings")
    assert len(fake.of_type("Task")) == 1


def test_receiver_routes_have_unique_openapi_operation_ids(tmp_path: Path) -> None:
    import warnings

    app = FastAPI()
    install(app, fhir_base=BASE, queue_path=str(tmp_path / "q.sqlite"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI warns "Duplicate Operation ID"
        schema = app.openapi()
    ops = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert len(ops) == len(set(ops)) >= 8
    assert set(schema["paths"]["/subscription/Claim/{claim_id}"]) == {"put", "post", "delete"}
