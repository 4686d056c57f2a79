"""``/healthz`` (liveness) and ``/readyz`` (readiness): answers, failures, OpenAPI, no auth."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
from conftest import assert_valid_outcome
from fastapi.testclient import TestClient
from hapi_fake import BASE, FakeFhir

from fhir_checker.hapi.receiver import install
from fhir_checker.packs import PackError
from fhir_checker.service import ServiceConfig, create_app, fhir_operation, health
from fhir_checker.tables import Tables, get_tables

FHIR_JSON = "application/fhir+json"


def texts(body: dict[str, Any]) -> list[str]:
    return [i["details"]["text"] for i in body["issue"]]


def assert_ready(resp: Any) -> None:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith(FHIR_JSON)
    assert_valid_outcome(resp.json())
    assert texts(resp.json()) == ["ready"]


def assert_not_ready(resp: Any, *words: str) -> list[str]:
    assert resp.status_code == 503, resp.text
    assert resp.headers["retry-after"]
    body = resp.json()
    assert_valid_outcome(body)
    assert {i["severity"] for i in body["issue"]} == {"error"}
    said = " | ".join(texts(body))
    for w in words:
        assert w in said, said
    return texts(body)


@pytest.fixture
def app_auth_on() -> Any:
    # JWT auth on and no trusted issuers: every hook call is refused, the probes are not.
    return create_app(ServiceConfig(auth=True))


def test_healthz_and_readyz_answer_without_auth(app_auth_on: Any) -> None:
    with TestClient(app_auth_on) as http:
        live = http.get("/healthz")
        assert live.status_code == 200 and texts(live.json()) == ["alive"]
        assert_valid_outcome(live.json())
        assert_ready(http.get("/readyz"))
        assert http.post("/cds-services/claim-precheck", json={}).status_code == 401  # auth is on


def test_readyz_is_503_before_start_up_finished() -> None:
    http = TestClient(create_app(ServiceConfig(auth=False)))  # no `with`: the lifespan never ran
    assert http.get("/healthz").status_code == 200  # live all the same
    assert_not_ready(http.get("/readyz"), "starting")


def test_readyz_is_503_when_the_tables_did_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(fhir_operation, "warm_up", broken)
    with TestClient(create_app(ServiceConfig(auth=False))) as http:  # starts all the same
        assert http.get("/healthz").status_code == 200
        assert_not_ready(http.get("/readyz"), "CMS tables did not load (OSError)")


def test_readyz_is_503_when_a_table_file_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(get_tables().dir, data)
    manifest = json.loads((data / "manifest.json").read_text())
    gone = manifest["tables"]["mue_practitioner"]["file"]
    (data / gone).unlink()
    monkeypatch.setattr(health, "get_tables", lambda: Tables(data))
    with TestClient(create_app(ServiceConfig(auth=False))) as http:
        [problem] = assert_not_ready(http.get("/readyz"), "mue_practitioner", gone)
        assert "missing" in problem


def test_readyz_is_503_when_a_default_pack_does_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_pack(name: str) -> None:
        if name == "cms-outpatient-hospital":
            raise PackError("profiles/cms-outpatient-hospital.yaml:3: select: unknown rule XYZ999")
        return None

    with TestClient(create_app(ServiceConfig(auth=False))) as http:
        assert_ready(http.get("/readyz"))
        monkeypatch.setattr(health, "load_pack", load_pack)
        [problem] = assert_not_ready(http.get("/readyz"), "cms-outpatient-hospital", "XYZ999")
        assert "does not load" in problem


@pytest.fixture
def fake() -> Iterator[FakeFhir]:
    f = FakeFhir()
    with respx.mock(assert_all_called=False) as router:
        f.mount(router)
        router.route(host="testserver").pass_through()
        yield f


def test_readyz_checks_the_subscription_queue(
    fake: FakeFhir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(ServiceConfig(auth=False))
    hub = install(app, fhir_base=BASE, queue_path=str(tmp_path / "q.sqlite"), secret="s3cret")
    with TestClient(app) as http:
        # The probes need no shared secret; the receiver's routes do.
        assert http.post("/subscription").status_code == 401
        assert_ready(http.get("/readyz"))
        assert hub.queue.get(health._PROBE_KEY)  # it really wrote to the queue database

        def readonly(key: str, value: str) -> None:
            raise sqlite3.OperationalError("attempt to write a readonly database")

        monkeypatch.setattr(hub.queue, "put", readonly)
        assert_not_ready(http.get("/readyz"), "queue database is not writable (OperationalError)")
        monkeypatch.undo()
        assert_ready(http.get("/readyz"))


def test_readyz_says_when_the_subscription_worker_is_not_running(fake: FakeFhir, tmp_path: Path) -> None:
    app = create_app(ServiceConfig(auth=False))
    hub = install(app, fhir_base=BASE, queue_path=str(tmp_path / "q.sqlite"))
    with TestClient(app) as http:
        worker, hub.worker = hub.worker, None
        try:
            assert_not_ready(http.get("/readyz"), "subscription worker is not running")
        finally:
            hub.worker = worker


def test_probes_are_in_the_openapi_without_security() -> None:
    with TestClient(create_app(ServiceConfig(auth=False))) as http:
        spec = http.get("/openapi.json").json()
    for path in ("/healthz", "/readyz"):
        op = spec["paths"][path]["get"]
        assert "security" not in op
        assert set(op["responses"]) >= {"200"}
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]
