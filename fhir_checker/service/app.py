"""The app factory: one FastAPI app serving the engine as a FHIR operation and a CDS service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from . import cds_hooks, fhir_operation, health, rule_docs
from .access_log import AccessLog
from .auth import JwtVerifier
from .config import ServiceConfig
from .errors import install_handlers
from .feedback import FeedbackStore
from .hot_routes import HotRoutes, routes_of

log = logging.getLogger("fhir_checker.service")

AUTH_OFF_WARNING = (
    "CDS client authentication is OFF: any caller can use the CDS service. "
    "Use this for local development only."
)

__all__ = ["ServiceConfig", "create_app"]


class CheckerApp(FastAPI):
    """FastAPI, entered through ``front`` (the access log, CORS and the claim routes).

    FastAPI's own per-request layers (its telemetry check, then error, exception-telemetry
    and body-limit middleware, each wrapping ``send``) were 2.7 % of a CDS hook request's
    instructions (callgrind, a uvicorn worker under load: 1.848M -> 1.799M). The claim
    routes answer every error themselves (:mod:`.hot_routes`) and limit their bodies
    themselves (:mod:`.body`), so they skip those layers; every other request, and the
    lifespan, goes through all of them as before, inside the same access log and CORS.
    """

    front: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.front(scope, receive, send)

    async def _fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    cfg = config or ServiceConfig()
    feedback = FeedbackStore()
    verifier = JwtVerifier(cfg)
    if cfg.state_dir:  # several worker processes: replay cache and feedback shared on disk
        from .shared_state import shared_stores

        verifier.replay, feedback = shared_stores(cfg.state_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Tables and caches load before the first request, not in it; /readyz says if they did.
        health.warm_up(app, fhir_operation.warm_up)
        try:
            yield
        finally:
            await verifier.aclose()
            if cfg.state_dir:
                from .shared_state import stop_writers

                stop_writers()

    app = CheckerApp(
        title="fhir-checker",
        version=__version__,
        description="FHIR claim pre-check: `POST /fhir/Claim/$precheck` (FHIR operation) and a CDS "
        "Hooks service (`/cds-services`). Every error is an OperationOutcome.",
        lifespan=lifespan,
    )
    app.state.config = cfg
    app.state.verifier = verifier
    app.state.feedback = feedback
    app.state.readiness = health.Readiness()
    if not cfg.auth:
        log.warning(AUTH_OFF_WARNING)
    elif not cfg.issuers:
        log.warning("no trusted CDS client issuers are configured: every hook call will get 401")
    # The front of every request: the access log, CORS, then the two claim routes, ahead of
    # FastAPI's own per-request layers (see CheckerApp); every other request falls through to
    # FastAPI, inside the same access log and CORS.
    front: ASGIApp = HotRoutes(
        app._fastapi,
        routes=routes_of(
            (fhir_operation.router, cds_hooks.router), (fhir_operation.precheck, cds_hooks.call_hook)
        ),
        owner=app,
    )
    if cfg.cors_origins:
        front = CORSMiddleware(
            front,
            allow_origins=list(cfg.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Accept"],
            max_age=600,
        )
    app.front = AccessLog(front)  # outermost: it sees the final status and the whole time
    install_handlers(app)
    app.include_router(fhir_operation.router)
    app.include_router(cds_hooks.router)
    app.include_router(rule_docs.router)
    app.include_router(health.router)
    return app
