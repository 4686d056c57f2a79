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
from ..gather import Gathered, claim_references, gather_claim, second_round_references
from ..loader import BadInput, Limits, load
from .body import read_json
from .cards import cards_response
from .errors import ServiceError, error_outcome, fhir_response

log = logging.getLogger("fhir_checker.service.cds")

SERVICE_ID = "claim-precheck"
HOOK = "org.fhir-checker.claim-create"

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


# ---------------------------------------------------------------------------- request


def _key(resource: dict[str, Any]) -> str | None:
    rtype, rid = resource.get("resourceType"), resource.get("id")
    return f"{rtype}/{rid}" if isinstance(rtype, str) and isinstance(rid, str) else None


def prefetched(prefetch: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Resources by ``Type/id`` (and by fullUrl); the prefetch keys that came as OperationOutcome."""
    have: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    if prefetch is None:
        return have, failed
    if not isinstance(prefetch, dict):
        raise ServiceError(400, "prefetch must be an object")
    for name, value in prefetch.items():
        if value is None:
            continue
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise ServiceError(400, f"prefetch.{str(name)[:40]} is not a FHIR resource")
        if value["resourceType"] == "OperationOutcome":
            failed.append(str(name)[:40])  # the client could not prefetch it: we read it ourselves
            continue
        if value["resourceType"] == "Bundle":
            entries = value.get("entry")
            if entries is not None and not isinstance(entries, list):
                raise ServiceError(400, f"prefetch.{str(name)[:40]} is a Bundle whose entry is not an array")
            for entry in entries or []:
                res = entry.get("resource") if isinstance(entry, dict) else None
                if not isinstance(res, dict) or res.get("resourceType") == "OperationOutcome":
                    continue
                key = _key(res)
                if key:
                    have.setdefault(key, res)
                if isinstance(entry.get("fullUrl"), str):
                    have.setdefault(entry["fullUrl"], res)
            continue
        key = _key(value)
        if key:
            have.setdefault(key, value)
    return have, failed


def _reference(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return str(value["reference"]).strip() or None
    return None


def _claim_ref(context: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the Claim resource, or None) and the reference to read it by."""
    claim = context.get("claim")
    if isinstance(claim, dict) and claim.get("resourceType") == "Claim":
        return claim, None
    if isinstance(claim, dict) and claim.get("resourceType") is not None:
        raise ServiceError(400, "context.claim must be a Claim or a reference to one")
    ref = _reference(claim)
    if ref is None and isinstance(context.get("claimId"), str):
        ref = f"Claim/{context['claimId']}"
    if ref is None:
        raise ServiceError(400, "context.claim is required: the Claim resource or a reference to it")
    return None, ref


def _fhir_auth(body: dict[str, Any]) -> tuple[str | None, str | None]:
    server = body.get("fhirServer")
    if server is not None and not isinstance(server, str):
        raise ServiceError(400, "fhirServer must be a URL")
    auth = body.get("fhirAuthorization")
    if auth is None:
        return server, None
    if not isinstance(auth, dict) or not isinstance(auth.get("access_token"), str):
        raise ServiceError(400, "fhirAuthorization must be an object with access_token")
    if str(auth.get("token_type", "Bearer")).lower() != "bearer":
        raise ServiceError(400, "fhirAuthorization.token_type must be Bearer")
    if server is None:
        raise ServiceError(400, "fhirAuthorization was given without fhirServer")
    return server, auth["access_token"]


def local_gather(claim: dict[str, Any], have: dict[str, dict[str, Any]]) -> Gathered:
    """What we can assemble without a FHIR server: the Claim, the prefetch, what is missing."""
    raw_contained = claim.get("contained")
    contained = {
        f"#{c.get('id')}"
        for c in (raw_contained if isinstance(raw_contained, list) else [])
        if isinstance(c, dict)
    }
    entries: list[dict[str, Any]] = [{"resource": claim}]
    urls: dict[int, str | None] = {}  # resource -> a fullUrl (urn: or absolute) it was given as
    resources: dict[int, dict[str, Any]] = {}
    for key, res in have.items():
        resources[id(res)] = res
        if ":" in key and urls.get(id(res)) is None:
            urls[id(res)] = key
        else:
            urls.setdefault(id(res), None)
    for rid, res in resources.items():
        url = urls[rid]
        entries.append({"fullUrl": url, "resource": res} if url else {"resource": res})

    def known(ref: str) -> bool:
        if ref in contained or ref in have:
            return True
        parts = ref.rstrip("/").split("/")
        return len(parts) >= 2 and f"{parts[-2]}/{parts[-1]}" in have

    refs = claim_references(claim)
    refs += [r for e in entries[1:] for r in second_round_references(e["resource"])]
    missing = [
        f"{r} (not in the prefetch; no fhirServer to read it from)"
        for r in dict.fromkeys(refs)
        if not known(r)
    ]
    return Gathered({"resourceType": "Bundle", "type": "collection", "entry": entries}, missing)


def required_missing(missing: list[str]) -> list[str]:
    """Missing data the check cannot do without. A Coverage's payor Organization is not needed."""
    return [m for m in missing if not m.startswith("Organization/")]


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
    body = await read_json(request, cfg.max_body_bytes)
    if not isinstance(body, dict):
        raise ServiceError(400, "a CDS Hooks request is a JSON object")
    if body.get("hook") != HOOK:
        raise ServiceError(400, f"this service answers the hook {HOOK!r}, not {str(body.get('hook'))[:80]!r}")
    if not isinstance(body.get("hookInstance"), str):
        raise ServiceError(400, "hookInstance is required")
    context = body.get("context")
    if not isinstance(context, dict):
        raise ServiceError(400, "context is required")
    if not isinstance(context.get("patientId"), str):
        raise ServiceError(400, "context.patientId is required")
    server, token = _fhir_auth(body)
    if server is not None and not cfg.fhir_server_allowed(server):
        # Never call it: otherwise this service is a proxy into any network it can reach.
        raise ServiceError(403, "fhirServer is not on this service's allowlist", code="forbidden")
    have, failed = prefetched(body.get("prefetch"))
    claim, claim_ref = _claim_ref(context)
    if claim is None and claim_ref is not None:
        claim = have.get(claim_ref) or have.get("/".join(claim_ref.rstrip("/").split("/")[-2:]))
    # One claim per check: the prefetch's Claim is the claim itself, or not ours to check.
    have = {k: v for k, v in have.items() if v.get("resourceType") != "Claim"}
    if claim is not None:
        gathered = local_gather(claim, have)
        if required_missing(gathered.missing) and server is not None:
            gathered = await _within_budget(_from_server, cfg, started, server, token, claim, None, have)
    elif server is not None:
        gathered = await _within_budget(_from_server, cfg, started, server, token, None, claim_ref, have)
    else:
        raise ServiceError(412, f"the Claim ({claim_ref}) is not in the prefetch and there is no fhirServer")
    lacking = required_missing(gathered.missing)
    if lacking:
        shown = "; ".join(lacking[:20]) + (f"; and {len(lacking) - 20} more" if len(lacking) > 20 else "")
        failed_note = f" (prefetch given as OperationOutcome: {', '.join(failed)})" if failed else ""
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
        doc = load(gathered.bundle, limits)
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
            "hook_instance": str(body["hookInstance"])[:64],
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
    count = request.app.state.feedback.record(body)
    return _json({"received": count})


@router.get(f"/{SERVICE_ID}/feedback/stats", summary="Feedback counted per rule", response_class=Response)
async def feedback_stats(request: Request) -> Response:
    return _json(request.app.state.feedback.stats())
