"""The lean request path keeps its contract: documented query, warm start, copies that do not alias."""

from __future__ import annotations

import gc
from typing import Any

from fastapi.testclient import TestClient

from fhir_checker.findings import Fix
from fhir_checker.loader import Limits
from fhir_checker.service import fhir_operation
from fhir_checker.service.app import create_app
from fhir_checker.service.cards import apply_fix, json_copy
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
