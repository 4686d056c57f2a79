"""``GET /healthz`` (liveness) and ``GET /readyz`` (readiness), both without authentication.

- ``/healthz``: the process answers. Nothing else is checked: a failing liveness probe
  restarts the container, which would not fix a missing table.
- ``/readyz``: the app finished starting, the CMS tables loaded (and their files are still
  there), the default rule packs load, and, with the subscription receiver on, its worker
  runs and the queue database takes a write. 503 with an OperationOutcome (one issue per
  problem) when not.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from ..packs import DEFAULT_PACK, DEFAULT_PACK_FOR_SETTING, PackError, available_packs, load_pack
from ..tables import get_tables
from .errors import FHIR_JSON, fhir_response

log = logging.getLogger("fhir_checker.service")

router = APIRouter(tags=["operations"])

_PROBE_KEY = "readyz.probe"


@dataclass
class Readiness:
    """What start-up found; ``/readyz`` adds the checks that can change while running."""

    started: bool = False
    problems: list[str] = field(default_factory=list)


def warm_up(app: FastAPI, load: Callable[[], None]) -> None:
    """Run the start-up ``load`` (tables, caches); record a failure instead of raising (the
    process stays live and answers ``/readyz`` with 503 and the reason)."""
    state: Readiness = app.state.readiness
    try:
        load()
    except Exception as exc:
        state.problems.append(f"the CMS tables did not load ({type(exc).__name__})")
        log.error("tables did not load", extra={"error": type(exc).__name__})
    state.started = True


def _table_problems() -> list[str]:
    try:
        tables = get_tables()
        entries = tables.manifest["tables"]
    except Exception as exc:
        return [f"the table manifest cannot be read ({type(exc).__name__})"]
    if not entries:
        return ["the table manifest lists no tables"]
    return [
        f"table {name}: file {tables.path(name).name} is missing"
        for name in entries
        if not tables.path(name).is_file()
    ]


def _pack_problems(app: FastAPI) -> list[str]:
    names = {DEFAULT_PACK, *DEFAULT_PACK_FOR_SETTING.values()}
    configured = getattr(app.state.config, "default_profile", None)
    if configured:
        names.add(configured)
    if not available_packs():
        return ["no rule packs found"]
    out = []
    for name in sorted(names):
        try:
            load_pack(name)
        except PackError as exc:
            out.append(f"rule pack {name} does not load: {exc}")
    return out


def _queue_problems(app: FastAPI) -> list[str]:
    hub: Any = getattr(app.state, "hapi", None)
    if hub is None:
        return []
    if hub.worker is None:
        return ["the subscription worker is not running"]
    try:
        hub.queue.put(_PROBE_KEY, str(time.time()))
    except sqlite3.Error as exc:
        return [f"the subscription queue database is not writable ({type(exc).__name__})"]
    return []


def readiness_problems(app: FastAPI) -> list[str]:
    state: Readiness | None = getattr(app.state, "readiness", None)
    if state is None or not state.started:
        return ["starting: the tables are not loaded yet"]
    return [*state.problems, *_table_problems(), *_pack_problems(app), *_queue_problems(app)]


def _outcome(severity: str, code: str, texts: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "details": {"text": t}} for t in texts],
    }


_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "OperationOutcome (information)", "content": {FHIR_JSON: {}}},
    503: {"description": "Not ready: an OperationOutcome, one issue per problem", "content": {FHIR_JSON: {}}},
}


@router.get("/healthz", summary="Liveness: the process answers", response_class=Response, responses=_DOC)
async def healthz() -> Response:
    return fhir_response(_outcome("information", "informational", ["alive"]))


@router.get(
    "/readyz",
    summary="Readiness: tables and rule packs loaded, subscription queue writable",
    response_class=Response,
    responses=_DOC,
)
async def readyz(request: Request) -> Response:
    problems = readiness_problems(request.app)
    if problems:
        log.warning("not ready", extra={"problems": len(problems)})
        return fhir_response(_outcome("error", "transient", problems), 503, {"Retry-After": "5"})
    return fhir_response(_outcome("information", "informational", ["ready"]))
