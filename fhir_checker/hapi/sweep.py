"""Catch up: find Claims changed since a time that have no result for their content yet.

A rest-hook notification can be lost (the checker was down longer than HAPI retries, or
the subscription was off). The sweep searches ``Claim?_lastUpdated=ge<since>`` page by
page (``Bundle.link`` next) and hands every Claim without a result for its current
content (see :func:`~fhir_checker.hapi.writeback.has_result`) to ``handle``.

Paging is sorted by ``_id``: an id never changes, so claims being tagged while the sweep
pages (which moves them in ``_lastUpdated`` order) do not shift later pages on servers
that page by offset.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..fhirclient import FhirClient, FhirError
from .writeback import has_result

log = logging.getLogger("fhir_checker.hapi")

_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, *, now: datetime | None = None) -> str:
    """``2026-03-01``, ``2026-03-01T08:00:00Z`` or a duration back from now (``90m``, ``24h``,
    ``7d``) -> a FHIR ``instant`` for ``_lastUpdated=ge``."""
    now = now or datetime.now(UTC)
    text = text.strip()
    m = _RELATIVE.match(text)
    if m:
        moment = now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not a time: {text!r} (use 2026-03-01, 2026-03-01T08:00:00Z or 24h)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class SweepReport:
    since: str
    seen: int = 0
    unchanged: int = 0
    results: dict[str, int] = field(default_factory=dict)  # handle() answer -> count
    failed: list[str] = field(default_factory=list)  # Claim ids

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "seen": self.seen,
            "unchanged": self.unchanged,
            "results": dict(sorted(self.results.items())),
            "failed": self.failed,
        }


async def sweep(
    client: FhirClient,
    since: str,
    handle: Callable[[dict[str, Any]], Awaitable[str]],
    *,
    status: str | None = "active",
    page_size: int = 100,
) -> SweepReport:
    """Hand every Claim updated since ``since`` that lacks its result to ``handle``.

    A failing ``handle`` is counted and the sweep goes on; a failing search raises.
    """
    report = SweepReport(since=since)
    params = {"_lastUpdated": f"ge{since}", "_count": str(page_size), "_sort": "_id"}
    if status:
        params["status"] = status
    async for claim in client.search("Claim", params):
        if claim.get("resourceType") != "Claim" or not isinstance(claim.get("id"), str):
            continue
        report.seen += 1
        if has_result(claim):
            report.unchanged += 1
            continue
        try:
            answer = await handle(claim)
        except FhirError as exc:
            log.warning("sweep: Claim/%s: %s", claim["id"], exc)
            report.failed.append(claim["id"])
            continue
        report.results[answer] = report.results.get(answer, 0) + 1
    return report
