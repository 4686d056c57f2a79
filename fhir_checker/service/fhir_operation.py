"""The FHIR door: ``POST /fhir/Claim/$precheck``, ``GET /fhir/metadata``, the OperationDefinition."""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from ..engine import Result
from ..engine import run as run_engine
from ..loader import BadInput, Limits, load, parse_json
from ..packs import PackError, RulePack, available_packs, load_pack
from .capability import OPERATION_ID, capability_statement, operation_definition
from .errors import FHIR_JSON, ServiceError, error_outcome, fhir_response

log = logging.getLogger("fhir_checker.service")

router = APIRouter(prefix="/fhir", tags=["FHIR"])

#: Bodies past this are checked in a worker thread, so one big claim does not stall the loop;
#: small ones inline (a thread hop costs more than checking them).
INLINE_BYTES = 256 * 1024

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "A Claim, a Bundle holding one Claim and its resources, or a Parameters "
        "with a 'resource' part (and an optional 'profile' part).",
        "content": {
            FHIR_JSON: {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}
_OUTCOME_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "The OperationOutcome: one issue per finding", "content": {FHIR_JSON: {}}},
    400: {"description": "Not FHIR JSON (OperationOutcome)", "content": {FHIR_JSON: {}}},
    413: {"description": "Over the size limit (OperationOutcome)", "content": {FHIR_JSON: {}}},
    415: {"description": "Not application/fhir+json or application/json", "content": {FHIR_JSON: {}}},
    422: {
        "description": "FHIR, but no claim that can be checked (OperationOutcome)",
        "content": {FHIR_JSON: {}},
    },
}


def bad_input_status(exc: BadInput) -> int:
    """400: not FHIR JSON; 422: FHIR, but not a single checkable Claim (or past a limit)."""
    return 400 if exc.code == "invalid" else 422


def pack_named(name: str | None) -> RulePack | None:
    if not name:
        return None
    try:
        return load_pack(name)
    except PackError as exc:
        raise ServiceError(400, f"unknown rule pack: {exc}", code="not-supported") from None


def _profile_part(parsed: dict[str, Any]) -> str | None:
    if parsed.get("resourceType") != "Parameters":
        return None
    parts = parsed.get("parameter")
    for part in parts if isinstance(parts, list) else []:
        if isinstance(part, dict) and part.get("name") == "profile":
            for key in ("valueString", "valueCode", "valueCanonical"):
                if isinstance(part.get(key), str):
                    return str(part[key])
    return None


def check_document(parsed: Any, pack: RulePack | None, limits: Limits) -> Result:
    """Load and check; :class:`ServiceError` for input that cannot be checked at all."""
    try:
        doc = load(parsed, limits)
    except BadInput as exc:
        raise ServiceError(bad_input_status(exc), exc.message, code=exc.code) from None
    return run_engine(doc, profile=pack)


@router.post(
    "/Claim/$precheck",
    summary="Pre-check a claim",
    response_class=Response,
    responses=_OUTCOME_DOC,
    openapi_extra=_BODY_DOC,
)
async def precheck(
    request: Request,
    profile: str | None = Query(None, description="rule pack name (default: by Claim.type)"),
) -> Response:
    cfg = request.app.state.config
    from .body import read_json_bytes

    raw = await read_json_bytes(request, cfg.max_body_bytes)
    limits = Limits(max_bytes=cfg.max_body_bytes)
    try:
        parsed = parse_json(raw, limits)
    except BadInput as exc:
        raise ServiceError(
            400, exc.message, code="invalid" if exc.code != "too-costly" else exc.code
        ) from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("resourceType"), str):
        raise ServiceError(400, "the body is JSON but not a FHIR resource (no resourceType)")
    requested = profile or _profile_part(parsed)
    if requested and requested not in available_packs():
        # A client names a pack; it never points the service at a file on its disk.
        known = ", ".join(sorted(available_packs())) or "none"
        raise ServiceError(
            400, f"unknown rule pack {requested[:80]!r} (available: {known})", code="not-supported"
        )
    pack = pack_named(requested or cfg.default_profile)
    if len(raw) <= INLINE_BYTES:
        result = check_document(parsed, pack, limits)
    else:
        result = await anyio.to_thread.run_sync(check_document, parsed, pack, limits)
    return fhir_response(result.outcome)


@router.get("/metadata", summary="CapabilityStatement", response_class=Response)
async def metadata(request: Request) -> Response:
    return fhir_response(capability_statement(request.app.state.config.base))


@router.get(
    "/OperationDefinition/{op_id}", summary="The $precheck OperationDefinition", response_class=Response
)
async def get_operation_definition(request: Request, op_id: str) -> Response:
    if op_id != OPERATION_ID:
        return fhir_response(
            error_outcome(f"OperationDefinition/{op_id[:64]} is not known here", code="not-found"), 404
        )
    return fhir_response(operation_definition(request.app.state.config.base))
