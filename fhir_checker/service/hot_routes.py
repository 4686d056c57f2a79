"""The two routes every claim goes through, dispatched as plain ASGI ahead of FastAPI's router.

``POST /fhir/Claim/$precheck`` and ``POST /cds-services/<id>`` run the same handler functions
as before; only the dispatch changes. FastAPI's per-request machinery (route matching over
every route, dependency solving, its telemetry contexts and exception middleware) cost about
a fifth of the server's CPU per request, as much as the rest of the HTTP stack. Here: one
dict lookup on (method, path), a Starlette ``Request``, the handler, and the same error
answers :func:`.errors.install_handlers` gives (a ServiceError's OperationOutcome, a logged
500 for anything unexpected). Everything else, other methods on these paths included, falls
through to FastAPI, which also still documents both routes in the OpenAPI.

It sits inside the access log and CORS middleware, so both still apply. One difference from
the FastAPI route: an unexpected exception is logged and answered (500 OperationOutcome)
here, not re-raised to the server, so the 500 carries the CORS headers too. ``scope["route"]``
is a stand-in holding the route's template (what the access log reads), not the APIRoute.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ServiceError, outcome_response

log = logging.getLogger("fhir_checker.service")

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class RouteTemplate:
    path: str


class HotRoutes:
    """ASGI middleware: serve ``routes`` ((method, path) -> handler) directly."""

    def __init__(self, app: ASGIApp, routes: dict[tuple[str, str], Handler], owner: Any) -> None:
        self.app = app
        self.routes = routes
        self.owner = owner  # the FastAPI app: handlers read request.app.state
        # What the access log reads from scope["route"]: the route's template (no parameters here).
        self._templates = {path: RouteTemplate(path) for _, path in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        handler = self.routes.get((scope["method"], path))
        if handler is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.owner
        scope["route"] = self._templates[path]
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except ServiceError as exc:
            response = outcome_response(exc)
        except StarletteHTTPException as exc:  # as errors.install_handlers maps them
            response = outcome_response(
                ServiceError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
            )
        except Exception:
            # As errors.install_handlers: the traceback to the log (code locations, no bodies).
            log.exception("unexpected error on %s %s", scope["method"], path)
            response = outcome_response(
                ServiceError(500, "internal error: the request could not be processed", code="exception")
            )
        await response(scope, receive, send)
