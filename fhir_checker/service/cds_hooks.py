"""The CDS Hooks door (2.0; errors as OperationOutcome, as in the 3.0 ballot).

Hook ``org.fhir-checker.claim-create`` (no standard hook covers claims). Context:

| field | | |
|---|---|---|
| ``patientId`` | REQUIRED | the patient of the claim |
| ``claim`` | REQUIRED | the Claim resource (a draft), or a reference to it (``"Claim/123"`` or ``{"reference": ...}``) |
| ``claimId`` | OPTIONAL | the Claim's id, for the ``claim`` prefetch template |
| ``encounterId`` | OPTIONAL | the encounter being billed |

The claim's references are taken from the prefetch; whatever is missing (or came as an
OperationOutcome) is read from ``fhirServer`` with the ``fhirAuthorization`` token, only
when ``fhirServer`` is on the configured allowlist. Still missing: 412.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..engine import run as run_engine
from ..fhirclient import FhirClient, FhirError
from ..gather import Gathered, gather_claim
from ..hook_cards import cards_response
from ..hook_request import HOOK, HookCallError, local_gather, parse_call, required_missing
from ..loader import BadInput, Limits, load
from .body import read_json
from .errors import ServiceError, error_outcome, fhir_response

log = logging.getLogger("fhir_checker.service.cds")

SERVICE_ID = "claim-precheck"

router = APIRouter(prefix="/cds-services", tags=["CDS Hooks"])

PREFETCH = {
    "claim": "Claim/{{context.claimId}}",
    "patient": "Patient/{{context.patientId}}",
    "procedures": "Procedure?patient={{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "coverage": "Coverage?patient={{context.patientId}}&status=active",
    "medications": "MedicationAdministration?patient={{context.patientId}}",
    "devices": "Device?patient={{context.patientId}}",
}


def discovery() -> dict[str, Any]:
    return {
        "services": [
            {
                "id": SERVICE_ID,
                "hook": HOOK,
                "title": "Claim pre-check",
                "description": (
                    "Checks a claim before it is submitted against payer coding edits (CMS NCCI, MUE, "
                    "add-on, I/OCE-style edits) and returns one card per finding, with FHIR update "
                    "suggestions where the fix is certain. Context: patientId, claim (resource or "
                    "reference), claimId and encounterId optional."
                ),
                "prefetch": PREFETCH,
                "usageRequirements": (
                    "Send context.claim (the draft Claim or its reference) and context.patientId. "
                    "Prefetch what you can; the rest is read from fhirServer if it is on this "
                    "service's allowlist. The response's extension "
                    "'org.fhir-checker.operation-outcome' holds the whole OperationOutcome."
                ),
            }
        ]
    }


async def _from_server(
    server: str,
    token: str | None,
    claim: dict[str, Any] | None,
    claim_ref: str | None,
    have: dict[str, dict[str, Any]],
    timeout: float,
    deadline: float,
) -> Gathered:
    async def go() -> Gathered:
        async with FhirClient(server, token=token, timeout=timeout) as client:
            the_claim = claim
            if the_claim is None:
                assert claim_ref is not None
                try:
                    the_claim = await client.read_reference(claim_ref)
                except FhirError as exc:
                    raise ServiceError(
                        412,
                        f"the Claim could not be read from the FHIR server ({exc.reason})",
                        code="not-found",
                        diagnostics=str(exc),
                    ) from None
                if the_claim.get("resourceType") != "Claim":
                    raise ServiceError(412, "context.claim does not point at a Claim", code="not-found")
            return await gather_claim(client, the_claim, have=have)

    try:
        return await asyncio.wait_for(go(), timeout=deadline)
    except TimeoutError:
        raise ServiceError(
            412, f"the FHIR server did not provide the claim's data within {deadline:g} s", code="timeout"
        ) from None


async def _within_budget(gather: Any, cfg: Any, started: float, *args: Any) -> Gathered:
    """Reads bounded by ``fhir_deadline`` and by what is left of the request's time budget."""
    left = cfg.time_budget_seconds - (time.monotonic() - started)
    if left >= cfg.fhir_deadline:
        return await gather(*args, cfg.fhir_timeout, cfg.fhir_deadline)  # type: ignore[no-any-return]
    try:
        return await gather(*args, cfg.fhir_timeout, max(left, 0.0))  # type: ignore[no-any-return]
    except ServiceError as exc:
        if exc.code != "timeout":
            raise
        raise ServiceError(
            503,
            f"the request's time budget of {cfg.time_budget_seconds:g} s ran out while reading the "
            "claim's data from the FHIR server: the check is incomplete",
            code="incomplete",
        ) from None


@router.get("", summary="CDS Hooks discovery", response_class=Response)
async def get_discovery() -> Response:
    return _json(discovery())


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _audiences(request: Request, path: str) -> set[str]:
    base = request.app.state.config.base
    return {base, f"{base}/cds-services", f"{base}{path}"}


async def _authenticate(request: Request, path: str) -> None:
    cfg = request.app.state.config
    if not cfg.auth:
        return
    await request.app.state.verifier.verify(request.headers.get("authorization"), _audiences(request, path))


@router.post(f"/{SERVICE_ID}", summary="Call the claim pre-check hook", response_class=Response)
async def call_hook(request: Request) -> Response:
    cfg = request.app.state.config
    started = time.monotonic()
    await _authenticate(request, f"/cds-services/{SERVICE_ID}")
    try:
        call = parse_call(await read_json(request, cfg.max_body_bytes), cfg.fhir_server_allowed)
    except HookCallError as exc:
        raise ServiceError(exc.status, exc.text, code=exc.code) from None
    claim, have, server = call.claim, call.have, call.server
    if claim is not None:
        gathered = Gathered(*local_gather(claim, have))
        if required_missing(gathered.missing) and server is not None:
            gathered = await _within_budget(_from_server, cfg, started, server, call.token, claim, None, have)
    elif server is not None:
        gathered = await _within_budget(
            _from_server, cfg, started, server, call.token, None, call.claim_ref, have
        )
    else:
        raise ServiceError(
            412, f"the Claim ({call.claim_ref}) is not in the prefetch and there is no fhirServer"
        )
    lacking = required_missing(gathered.missing)
    if lacking:
        shown = "; ".join(lacking[:20]) + (f"; and {len(lacking) - 20} more" if len(lacking) > 20 else "")
        failed_note = (
            f" (prefetch given as OperationOutcome: {', '.join(call.failed)})" if call.failed else ""
        )
        return fhir_response(
            error_outcome(
                f"required data could not be had: {shown}",
                code="not-found",
                diagnostics=failed_note.strip() or None,
            ),
            412,
        )
    limits = Limits(
        max_bytes=cfg.max_body_bytes,
        time_budget_seconds=cfg.time_budget_seconds - (time.monotonic() - started),
    )
    try:
        # Every resource in it came from orjson (the body, or the FHIR server's answers).
        doc = load(gathered.bundle, limits, parsed_json=True)
    except BadInput as exc:
        raise ServiceError(400, f"context.claim cannot be checked: {exc.message}", code=exc.code) from None
    result = run_engine(doc, profile=cfg.default_profile, limits=limits)
    if result.incomplete:  # over the time budget: no cards that would read as "nothing found"
        return fhir_response(result.outcome, 503)
    answer = cards_response(result.findings, result.outcome, doc.claim, base=cfg.base)
    request.app.state.feedback.remember(answer["cards"])
    log.info(
        "hook answered",
        extra={
            "hook_instance": call.hook_instance[:64],
            "claim_id": doc.claim_id,
            "cards": len(answer["cards"]),
        },
    )
    return _json(answer)


@router.post(
    f"/{SERVICE_ID}/feedback", summary="Card feedback (accepted / overridden)", response_class=Response
)
async def post_feedback(request: Request) -> Response:
    cfg = request.app.state.config
    await _authenticate(request, f"/cds-services/{SERVICE_ID}/feedback")
    body = await read_json(request, min(cfg.max_body_bytes, 1024 * 1024))
    store = request.app.state.feedback
    entries = store.parse(body)
    if store.settle_delay and not all(store.knows(card_id) for card_id, _, _ in entries):
        # Another worker's card may be written a moment after its hook answered: wait once.
        await asyncio.sleep(store.settle_delay)
    return _json({"received": store.add(entries)})


@router.get(f"/{SERVICE_ID}/feedback/stats", summary="Feedback counted per rule", response_class=Response)
async def feedback_stats(request: Request) -> Response:
    return _json(request.app.state.feedback.stats())
