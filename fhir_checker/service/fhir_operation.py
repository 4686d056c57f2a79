"""The FHIR door: ``POST /fhir/Claim/$precheck``, ``GET /fhir/metadata``, the OperationDefinition."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import replace
from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..engine import Result
from ..engine import run as run_engine
from ..loader import BadInput, Limits, load, parse_json
from ..packs import PackError, RulePack, available_packs, load_pack
from ..tables import get_tables
from .body import read_json_bytes
from .capability import OPERATION_ID, capability_statement, operation_definition
from .errors import FHIR_JSON, ServiceError, error_outcome, fhir_response

log = logging.getLogger("fhir_checker.service")

router = APIRouter(prefix="/fhir", tags=["FHIR"])

#: Bodies past this are checked in a worker thread, so one big claim does not stall the loop;
#: small ones inline (a thread hop costs more than checking them).
INLINE_BYTES = 256 * 1024

_BODY_DOC = {
    # The hot route reads its query itself (a FastAPI Query dependency costs ~30 us a request):
    # the parameter is documented here instead.
    "parameters": [
        {
            "name": "profile",
            "in": "query",
            "required": False,
            "description": "rule pack name (default: by Claim.type)",
            "schema": {"type": "string"},
        }
    ],
    "requestBody": {
        "required": True,
        "description": "A Claim, a Bundle holding one Claim and its resources, or a Parameters "
        "with a 'resource' part (and an optional 'profile' part).",
        "content": {
            FHIR_JSON: {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
        },
    },
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
    503: {
        "description": "The check stopped at the time budget: findings so far + an 'incomplete' issue",
        "content": {FHIR_JSON: {}},
    },
}


#: A check stopped at the request's time budget (``time_budget_seconds``).
INCOMPLETE_STATUS = 503


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


def check_document(
    parsed: Any, pack: RulePack | None, limits: Limits, *, parsed_json: bool = False
) -> Result:
    """Load and check; :class:`ServiceError` for input that cannot be checked at all.
    ``parsed_json``: ``parsed`` came from :func:`.loader.parse_json` (see :func:`.loader.load`)."""
    try:
        doc = load(parsed, limits, parsed_json=parsed_json)
    except BadInput as exc:
        raise ServiceError(bad_input_status(exc), exc.message, code=exc.code) from None
    return run_engine(doc, profile=pack, limits=limits)


@router.post(
    "/Claim/$precheck",
    summary="Pre-check a claim",
    response_class=Response,
    responses=_OUTCOME_DOC,
    openapi_extra=_BODY_DOC,
)
async def precheck(request: Request) -> Response:
    cfg = request.app.state.config
    started = time.monotonic()
    profile = request.query_params.get("profile") if request.scope["query_string"] else None
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
    limits = replace(limits, time_budget_seconds=cfg.time_budget_seconds - (time.monotonic() - started))
    if len(raw) <= INLINE_BYTES:
        result = check_document(parsed, pack, limits, parsed_json=True)
    else:
        result = await anyio.to_thread.run_sync(
            partial(check_document, parsed, pack, limits, parsed_json=True)
        )
    if result.incomplete:  # over the time budget: the partial outcome, never a 200 that reads clean
        return fhir_response(result.outcome, INCOMPLETE_STATUS)
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


# A small claim of each type, checked once at start-up: every table and lazily built cache
# loads before the first request, not during it (the first check in a fresh process takes
# ~0.4 s).
_WARM_UP_CLAIMS: tuple[dict[str, Any], ...] = tuple(
    {
        "resourceType": "Claim",
        "id": f"warm-up-{kind}",
        "contained": [{"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1970-01-01"}],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": kind}]},
        "use": "claim",
        "patient": {"reference": "#p"},
        "created": "2026-01-02",
        "provider": {"reference": "Organization/warm-up"},
        "priority": {"coding": [{"code": "normal"}]},
        "diagnosis": [
            {
                "sequence": 1,
                "diagnosisCodeableConcept": {
                    "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]
                },
            }
        ],
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "warm-up"}}],
        "item": [
            {
                "sequence": n,
                "diagnosisSequence": [1],
                "productOrService": {"coding": [{"system": system, "code": code}]},
                "servicedDate": "2026-01-02",
                "quantity": {"value": 1},
            }
            for n, (system, code) in enumerate(
                (
                    ("http://www.ama-assn.org/go/cpt", "99213"),
                    ("http://www.ama-assn.org/go/cpt", "36415"),
                    ("https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "J3010"),
                ),
                start=1,
            )
        ],
    }
    for kind in ("professional", "institutional")
)


_warm = False


def warm_up() -> None:
    """Load every table and check one claim of each type, then freeze what that allocated.

    ``gc.freeze()`` moves the ~250,000 long-lived objects (tables, rule caches) out of the
    collector's view: a full collection over them pauses a worker ~40 ms, which under load
    was the p99 latency. Once per process (tests build many apps in one).
    """
    global _warm
    if _warm:
        return
    _warm = True
    get_tables().warm()
    for claim in _WARM_UP_CLAIMS:
        try:
            check_document(claim, None, Limits())
        except ServiceError:  # a rule pack that refuses the warm-up claim: still warm enough
            log.debug("warm-up claim %s not checkable", claim["id"])
    gc.collect()
    gc.freeze()
