"""The two routes every claim goes through, dispatched as plain ASGI ahead of FastAPI's router.

``POST /fhir/Claim/$precheck`` and ``POST /cds-services/<id>`` run the same handler functions
as before; only the dispatch changes. FastAPI's per-request machinery (route matching over
every route, dependency solving, its telemetry contexts and exception middleware) cost about
a fifth of the server's CPU per request, as much as the rest of the HTTP stack. Here: one
dict lookup on (method, path), a Starlette ``Request``, the handler, and the same error
answers :func:`.errors.install_handlers` gives (a ServiceError's OperationOutcome, a logged
500 for anything unexpected). Everything else, other methods on these paths included, falls
through to FastAPI, which also still documents both routes in the OpenAPI.

It sits inside the access log and CORS middleware, so both still apply, and outside FastAPI
itself (:class:`.app.CheckerApp`): a claim never enters FastAPI's own middleware. One difference from
the FastAPI route: an unexpected exception is logged and answered (500 OperationOutcome)
here, not re-raised to the server, so the 500 carries the CORS headers too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ServiceError, outcome_response

log = logging.getLogger("fhir_checker.service")

Handler = Callable[[Request], Awaitable[Response]]


def routes_of(routers: Iterable[APIRouter], endpoints: Iterable[Handler]) -> dict[tuple[str, str], APIRoute]:
    """(method, path) -> route for each of ``endpoints``, as their routers declare them: the
    path and method are written once, in the route decorator."""
    wanted = set(endpoints)
    found = {
        (method, route.path): route
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint in wanted
        for method in route.methods or ()
    }
    if {r.endpoint for r in found.values()} != wanted:
        raise ValueError("a hot route's endpoint is not on any of the routers given")
    return found


class HotRoutes:
    """ASGI middleware: serve ``routes`` ((method, path) -> the route's endpoint) directly."""

    def __init__(self, app: ASGIApp, routes: dict[tuple[str, str], APIRoute], owner: Any) -> None:
        self.app = app
        self.routes = routes
        self.owner = owner  # the FastAPI app: handlers read request.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        route = self.routes.get((scope["method"], path))
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.owner
        scope["route"] = route  # as FastAPI's router sets it (the access log reads its template)
        request = Request(scope, receive)
        try:
            response = await route.endpoint(request)
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
