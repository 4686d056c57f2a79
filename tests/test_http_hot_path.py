"""The lean request path keeps its contract: documented query, warm start, copies that do not alias."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from conftest import FIXTURES
from fastapi.testclient import TestClient

from fhir_checker.findings import Fix
from fhir_checker.hook_cards import apply_fix, json_copy
from fhir_checker.loader import Limits
from fhir_checker.service import fhir_operation
from fhir_checker.service.app import create_app
from fhir_checker.service.config import ServiceConfig


def test_precheck_still_documents_its_query_and_body() -> None:
    op = create_app(ServiceConfig(auth=False)).openapi()["paths"]["/fhir/Claim/$precheck"]["post"]
    assert [p["name"] for p in op["parameters"]] == ["profile"]
    assert op["parameters"][0]["in"] == "query"
    assert "application/fhir+json" in op["requestBody"]["content"]


def test_start_up_checks_both_claim_types_and_freezes_the_long_lived_objects() -> None:
    for claim in fhir_operation._WARM_UP_CLAIMS:  # clean claims: a warm-up that errors warms less
        outcome = fhir_operation.check_document(claim, None, Limits()).outcome
        assert [i["severity"] for i in outcome["issue"]] == ["information"], outcome
    with TestClient(create_app(ServiceConfig(auth=False))):
        assert fhir_operation._warm
        assert gc.get_freeze_count() > 10_000  # tables and caches are out of the collector's view


def test_json_copy_is_deep_and_falls_back_for_what_orjson_cannot_write() -> None:
    claim: dict[str, Any] = {"item": [{"quantity": {"value": 2}}], "total": {"value": 1.5}}
    copied = json_copy(claim)
    assert copied == claim and copied["item"][0] is not claim["item"][0]
    huge: dict[str, Any] = {"n": 2**70, "list": [1]}
    again = json_copy(huge)
    assert again == huge and again["list"] is not huge["list"]


def test_a_fix_never_touches_the_claim_it_was_made_from() -> None:
    claim: dict[str, Any] = {
        "resourceType": "Claim",
        "item": [
            {"sequence": 1, "quantity": {"value": 4}, "servicedDate": "2026-03-10"},
            {"sequence": 2, "quantity": {"value": 1}},
        ],
    }
    before = json_copy(claim)
    units = apply_fix(claim, Fix(kind="set-units", line=0, value=2))
    added = apply_fix(claim, Fix(kind="add-line", line=0, value="G0463"))
    assert units is not None and units["item"][0]["quantity"]["value"] == 2
    assert added is not None and added["item"][-1]["servicedDate"] == "2026-03-10"
    assert claim == before


def test_connections_get_tcp_nodelay_even_from_a_proto_0_listening_socket() -> None:
    """uvicorn --workers binds ``socket.socket(family)``: asyncio then leaves Nagle on (44 ms
    a request, head and body waiting on the client's delayed ACK)."""
    import socket

    from fhir_checker.service.protocol import _no_delay, protocol_for

    class Transport:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def get_extra_info(self, name: str) -> socket.socket | None:
            return self.sock if name == "socket" else None

    with socket.socket(socket.AF_INET) as listener:  # proto 0, as uvicorn makes it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
                _no_delay(Transport(accepted))  # type: ignore[arg-type]
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert protocol_for("h11").endswith(":NoDelayH11Protocol")
    assert protocol_for("httptools").endswith(":NoDelayHttpToolsProtocol")


PORT_BYTES = (FIXTURES / "port-placement-miscoded.json").read_bytes()
FHIR = {"Content-Type": "application/fhir+json"}


def test_the_hot_routes_do_not_go_through_fastapis_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """$precheck and the hook are served by HotRoutes: with FastAPI's endpoint dispatch broken
    they still answer; a route FastAPI serves does not."""
    import fastapi.routing

    async def broken(**kwargs: Any) -> Any:
        raise AssertionError("FastAPI dispatch used")

    with TestClient(create_app(ServiceConfig(auth=False)), raise_server_exceptions=False) as http:
        monkeypatch.setattr(fastapi.routing, "run_endpoint_function", broken)
        r = http.post("/fhir/Claim/$precheck", content=PORT_BYTES, headers=FHIR)
        assert r.status_code == 200 and r.json()["resourceType"] == "OperationOutcome"
        assert {i["details"]["coding"][0]["code"] for i in r.json()["issue"]} >= {"MOD001"}
        assert http.get("/fhir/metadata").status_code == 500  # served by FastAPI: broken here


def test_hot_routes_answer_errors_as_the_rest_of_the_service_does(monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(ServiceConfig(auth=False)), raise_server_exceptions=False) as http:
        bad = http.post("/fhir/Claim/$precheck", content=b"{", headers=FHIR)
        assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/fhir+json")
        assert bad.json()["issue"][0]["code"] == "invalid"
        # other methods on a hot path still get FastAPI's answer, as an OperationOutcome
        wrong = http.get("/fhir/Claim/$precheck")
        assert wrong.status_code == 405 and wrong.json()["resourceType"] == "OperationOutcome"

        def explode(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret claim detail")

        monkeypatch.setattr(fhir_operation, "run_engine", explode)
        boom = http.post("/fhir/Claim/$precheck", content=PORT_BYTES, headers=FHIR)
        assert boom.status_code == 500
        assert boom.json()["issue"][0]["code"] == "exception"
        assert "secret" not in boom.text  # no exception text or traceback reaches the client


def test_the_claim_routes_never_enter_fastapis_own_middleware() -> None:
    """CheckerApp.front serves the claim routes ahead of FastAPI's middleware stack; every
    other route still goes through it."""
    app = create_app(ServiceConfig(auth=False))
    with TestClient(app, raise_server_exceptions=True) as http:

        async def broken(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError("FastAPI's middleware stack used")

        app.middleware_stack = broken
        r = http.post("/fhir/Claim/$precheck", content=PORT_BYTES, headers=FHIR)
        assert r.status_code == 200 and r.json()["resourceType"] == "OperationOutcome"
        with pytest.raises(AssertionError, match="middleware stack used"):
            http.get("/fhir/metadata")


def test_cors_and_the_access_log_still_wrap_the_other_routes(caplog: pytest.LogCaptureFixture) -> None:
    cfg = ServiceConfig(auth=False, cors_origins=("https://ehr.example.org",))
    with TestClient(create_app(cfg)) as http, caplog.at_level("INFO", logger="fhir_checker.service.access"):
        r = http.get("/fhir/metadata", headers={"Origin": "https://ehr.example.org"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://ehr.example.org"
    logged = [rec for rec in caplog.records if rec.name == "fhir_checker.service.access"]
    assert [(getattr(rec, "route", None), getattr(rec, "status", None)) for rec in logged] == [
        ("/fhir/metadata", 200)
    ]


def test_cors_still_applies_to_the_hot_routes() -> None:
    cfg = ServiceConfig(auth=False, cors_origins=("https://ehr.example.org",))
    with TestClient(create_app(cfg)) as http:
        r = http.post(
            "/fhir/Claim/$precheck",
            content=PORT_BYTES,
            headers={**FHIR, "Origin": "https://ehr.example.org"},
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://ehr.example.org"


def test_hot_routes_are_read_from_the_route_decorators() -> None:
    from fhir_checker.service import cds_hooks
    from fhir_checker.service.hot_routes import routes_of

    found = routes_of(
        (fhir_operation.router, cds_hooks.router), (fhir_operation.precheck, cds_hooks.call_hook)
    )
    assert sorted(found) == [
        ("POST", f"/cds-services/{cds_hooks.SERVICE_ID}"),
        ("POST", "/fhir/Claim/$precheck"),
    ]
    with pytest.raises(ValueError):  # an endpoint no router declares: refused at start-up
        routes_of((fhir_operation.router,), (cds_hooks.call_hook,))


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"\\ud800x"])
def test_a_lone_surrogate_escape_in_the_body_is_a_400_at_both_doors(escape: bytes) -> None:
    """Both doors hand the engine what orjson parsed and skip the re-encoding check a dict
    from a Python caller gets (loader.load(parsed_json=True)). That holds only while orjson
    refuses a lone surrogate escape, which JSON text can spell: pinned here."""
    from fhir_checker.service import cds_hooks

    body = PORT_BYTES.replace(b'"resourceType"', b'"note": "a' + escape + b'b", "resourceType"', 1)
    assert body != PORT_BYTES
    with TestClient(create_app(ServiceConfig(auth=False)), raise_server_exceptions=False) as http:
        r = http.post("/fhir/Claim/$precheck", content=body, headers=FHIR)
        assert r.status_code == 400 and r.json()["issue"][0]["code"] == "invalid"
        hook = b'{"hook": "claim-precheck", "hookInstance": "' + escape + b'", "context": {}}'
        h = http.post(
            f"/cds-services/{cds_hooks.SERVICE_ID}",
            content=hook,
            headers={"Content-Type": "application/json"},
        )
        assert h.status_code == 400 and h.json()["resourceType"] == "OperationOutcome"
        assert "not valid JSON" in h.text
