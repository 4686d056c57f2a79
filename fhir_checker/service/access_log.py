"""One structured log line per HTTP request: method, route template, status, duration.

A pure ASGI middleware (no per-request task or body buffering). It logs the matched
route's template (``/subscription/Claim/{claim_id}``), never the raw path or the query
string: those are caller-controlled and may carry identifiers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("fhir_checker.service.access")

UNMATCHED = "(no route)"
#: Probes arrive every few seconds: logged at debug when they pass, not at info.
PROBES = frozenset({"/healthz", "/readyz"})


def route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_of(scope)
            log.log(
                logging.DEBUG if route in PROBES and status < 400 else logging.INFO,
                "request",
                extra={
                    "method": scope.get("method"),
                    "route": route,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
