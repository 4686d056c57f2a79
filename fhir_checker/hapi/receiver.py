"""Rest-hook receiver for HAPI Subscriptions, mounted on the service under ``/subscription``.

HAPI delivers a Subscription with a payload as ``PUT {endpoint}/Claim/{id}`` (the resource
in the body), one without a payload as an empty ``POST {endpoint}``. HAPI reads the answer
as a FHIR resource, so every answer is an OperationOutcome. The receiver only enqueues
(one SQLite commit, about a millisecond) and answers 200 at once: HAPI retries for about a
minute and then gives up, so checking before answering would lose claims under load.

An empty POST names no claim: it queues a sweep (``_lastUpdated`` since the last sweep),
which finds whatever changed.

With a shared ``secret`` every ``/subscription`` request must carry
``Authorization: Bearer <secret>``: HAPI sends it when the Subscription lists it in
``channel.header`` (``fhir-checker subscribe --subscription-secret`` puts it there). Without
one, anyone who can reach the port can queue checks (and write-backs) of any Claim id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import fastapi
import httpx
import orjson
from fastapi import Request, Response

from ..fhirclient import FhirClient
from ..loader import MAX_DEPTH, BadInput, check_depth
from .queue import ClaimQueue
from .sweep import parse_since, sweep
from .worker import Checker, Worker
from .writeback import content_hash

log = logging.getLogger("fhir_checker.hapi")

FHIR_JSON = "application/fhir+json"
MAX_BODY = 10 * 1024 * 1024  # the engine's input limit
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: First sweep without a watermark looks back this far.
SWEEP_LOOKBACK = "24h"
#: Each sweep starts this long before the previous one began: covers clock skew between
#: the checker and the FHIR server, and writes committed while a sweep was paging.
SWEEP_OVERLAP_S = 600.0
_WATERMARK = "sweep.since"


def _outcome(text: str, severity: str = "information", code: str = "informational") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": text}],
    }


def _answer(status: int, text: str, **kw: str) -> Response:
    if status >= 400:
        kw.setdefault("severity", "error")
        kw.setdefault("code", "invalid")
    return Response(orjson.dumps(_outcome(text, **kw)), status_code=status, media_type=FHIR_JSON)


class _Unauthorized(Exception):
    """A notification without the shared secret: answered 401 before any work."""


def bearer_matches(header: str | None, secret: str) -> bool:
    """``Authorization: Bearer <secret>``, compared in constant time."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), secret.encode())


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Integration:
    """What ``install`` mounts: the queue, the FHIR client, the worker and the sweep timer."""

    def __init__(
        self,
        *,
        fhir_base: str,
        queue_path: str,
        token: str | None,
        sweep_interval: float | None,
        transport: httpx.AsyncBaseTransport | None = None,
        concurrency: int = 2,
    ) -> None:
        self.fhir_base = fhir_base
        self.token = token
        self.sweep_interval = sweep_interval
        self.transport = transport
        self.concurrency = concurrency
        self.queue = ClaimQueue(queue_path)
        self.client: FhirClient | None = None
        self.worker: Worker | None = None
        self._timer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.client = FhirClient(self.fhir_base, token=self.token, transport=self.transport)
        self.worker = Worker(
            self.queue, Checker(self.client), concurrency=self.concurrency, sweep=self.run_sweep
        )
        self.queue.prune()
        self.worker.start()
        if self.sweep_interval:
            self._timer = asyncio.create_task(
                self._sweep_timer(self.sweep_interval), name="precheck-sweep-timer"
            )
        log.info("subscription receiver up; queue %s", self.queue.counts())

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        if self.worker is not None:
            await self.worker.stop()
        if self.client is not None:
            await self.client.aclose()
        self.queue.close()

    async def _sweep_timer(self, interval: float) -> None:
        # The first sweep runs at start: it catches claims created while the checker was down.
        while True:
            self.request_sweep()
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ producers

    def wake(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    def enqueue(self, claim_id: str, version: str | None) -> bool:
        fresh = self.queue.enqueue_claim(claim_id, version)
        outcome = "queued" if fresh else "duplicate"
        log.info(
            "Claim/%s v%s: %s",
            claim_id,
            version or "?",
            outcome,
            extra={"claim_id": claim_id, "version": version, "outcome": outcome},
        )
        self.wake()
        return fresh

    def request_sweep(self) -> None:
        self.queue.enqueue_sweep()
        self.wake()

    async def run_sweep(self) -> str:
        """A 'sweep' job: queue every claim changed since the watermark that has no result."""
        assert self.client is not None
        started = time.time()
        since = self.queue.get(_WATERMARK) or parse_since(SWEEP_LOOKBACK)
        queued = 0

        async def handle(claim: dict[str, Any]) -> str:
            nonlocal queued
            fresh = self.queue.enqueue_claim(claim["id"], version_of(claim))
            queued += fresh
            return "queued" if fresh else "duplicate"

        report = await sweep(self.client, since, handle)
        self.queue.put(_WATERMARK, _iso(started - SWEEP_OVERLAP_S))
        self.wake()
        return f"swept {report.seen} claim(s) since {since}, queued {queued}"


def version_of(claim: dict[str, Any]) -> str:
    """The dedupe key's version: ``meta.versionId``, else the content hash."""
    meta = claim.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return str(version) if isinstance(version, str | int) and str(version) else "h" + content_hash(claim)


def _parse(raw: bytes) -> tuple[Any, str | None]:
    """(body or None, error)."""
    if not raw.strip():
        return None, None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, "the notification body is not JSON"
    if body is None:  # JSON null is not an empty notification: it names no claim to read
        return None, "the notification body is JSON null, not a Claim"
    try:
        # Deeper than the engine takes: refuse now (hashing it for the queue would fail).
        check_depth(body, MAX_DEPTH)
    except BadInput as exc:
        return None, f"the notification body is not a checkable Claim: {exc.message}"
    return body, None


def _claims_in(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return []
    if body.get("resourceType") == "Claim":
        return [body]
    if body.get("resourceType") == "Bundle":
        entries = body.get("entry")
        return [
            e["resource"]
            for e in (entries if isinstance(entries, list) else [])
            if isinstance(e, dict)
            and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") == "Claim"
        ]
    return []


def install(
    app: fastapi.FastAPI,
    *,
    fhir_base: str,
    queue_path: str,
    token: str | None = None,
    sweep_interval: float | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    secret: str | None = None,
) -> Integration:
    """Add the ``/subscription`` rest-hook routes and run the worker with the app's lifespan.

    ``secret``: when set, every ``/subscription`` request needs ``Authorization: Bearer <secret>``.
    """
    hub = Integration(
        fhir_base=fhir_base,
        queue_path=queue_path,
        token=token,
        sweep_interval=sweep_interval,
        transport=transport,
    )
    app.state.hapi = hub

    async def authorised(request: Request) -> None:
        if secret and not bearer_matches(request.headers.get("authorization"), secret):
            raise _Unauthorized()

    async def unauthorised(request: Request, exc: Exception) -> Response:
        log.warning("subscription notification refused: no valid shared secret (%s)", request.url.path)
        answer = _answer(401, "this receiver needs its shared secret (Authorization: Bearer)", code="login")
        answer.headers["WWW-Authenticate"] = 'Bearer realm="fhir-checker subscription"'
        return answer

    app.add_exception_handler(_Unauthorized, unauthorised)
    if not secret:
        log.warning(
            "the subscription receiver has no shared secret: anyone who can reach it can queue "
            "checks; set --subscription-secret (and the same on the Subscription)"
        )
    router = fastapi.APIRouter(
        prefix="/subscription", tags=["subscription"], dependencies=[fastapi.Depends(authorised)]
    )

    async def body_of(request: Request) -> tuple[Any, Response | None]:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY:
            return None, _answer(413, "notification body over 10 MiB", code="too-costly")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return None, _answer(413, "notification body over 10 MiB", code="too-costly")
        body, error = _parse(raw)
        return body, (_answer(400, error) if error else None)

    async def claim_notification(claim_id: str, request: Request) -> Response:
        if not _ID.match(claim_id):
            return _answer(400, "not a FHIR id")
        body, error = await body_of(request)
        if error is not None:
            return error
        if body is None:  # id-only notification: the worker reads the Claim
            hub.enqueue(claim_id, None)
            return _answer(200, f"Claim/{claim_id} queued for pre-check")
        if not isinstance(body, dict) or body.get("resourceType") != "Claim":
            return _answer(400, "the notification body is not a Claim")
        if body.get("id") not in (None, claim_id):
            return _answer(400, "the Claim's id does not match the URL")
        fresh = hub.enqueue(claim_id, version_of(dict(body, id=claim_id)))
        return _answer(
            200, f"Claim/{claim_id} {'queued for pre-check' if fresh else 'already queued or checked'}"
        )

    async def claim_deleted(claim_id: str) -> Response:
        # HAPI can notify deletes; nothing to check, and the Task stays for the record.
        return _answer(200, "deletion noted; nothing to check")

    async def status() -> Response:
        return Response(orjson.dumps({"queue": hub.queue.counts()}), media_type="application/json")

    async def ping(request: Request) -> Response:
        body, error = await body_of(request)
        if error is not None:
            return error
        claims = _claims_in(body)
        for claim in claims:
            if isinstance(claim.get("id"), str) and _ID.match(claim["id"]):
                hub.enqueue(claim["id"], version_of(claim))
        if not claims:
            hub.request_sweep()  # an empty notification names nothing: look for what changed
            return _answer(200, "notification received; sweeping for changed claims")
        return _answer(200, f"{len(claims)} claim(s) queued for pre-check")

    async def other_type(resource_type: str, resource_id: str) -> Response:
        # A subscription on another type pointed here: accept it (HAPI would retry and
        # then set the subscription to error), but there is nothing to check.
        return _answer(200, f"{resource_type[:64]} notifications are not checked; ignored")

    # One route per method, each with its own operation id: a route serving several
    # methods gives them all the same id, which OpenAPI forbids (FastAPI warns).
    def route(path: str, endpoint: Any, methods: tuple[str, ...], name: str, *, doc: bool = True) -> None:
        for method in methods:
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                operation_id=f"subscription_{name}_{method.lower()}" + ("" if doc else "_slash"),
                include_in_schema=doc,
                summary=f"{method} {router.prefix}{path}",
            )

    route("/Claim/{claim_id}", claim_notification, ("PUT", "POST"), "claim_notification")
    route("/Claim/{claim_id}", claim_deleted, ("DELETE",), "claim_deleted")
    route("/status", status, ("GET",), "status")
    route("", ping, ("POST", "PUT"), "ping")
    route("/", ping, ("POST", "PUT"), "ping", doc=False)  # the same, with a trailing slash
    route("/{resource_type}/{resource_id}", other_type, ("PUT", "POST", "DELETE"), "other_type")

    app.include_router(router)

    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with previous(a) as state:
            await hub.start()
            try:
                yield state
            finally:
                await hub.stop()

    app.router.lifespan_context = lifespan
    return hub
