"""Defensive readers of raw FHIR JSON values, shared by the claim context and the chart view.

A malformed value reads as ``None`` (or empty), never an exception: the structure rules
report it, the other rules just see nothing there.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any


def parse_date(value: Any) -> date | None:
    """FHIR date or dateTime -> the local date as written (None when absent or malformed)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def parse_datetime(value: Any) -> datetime | None:
    """FHIR dateTime with a time part -> datetime (None when absent, date-only or malformed)."""
    if not isinstance(value, str) or len(value) < 16:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def is_present(value: Any) -> bool:
    """Whether an element is there for FHIRPath, so an ``expression`` may point at it:
    ``null``, ``[]`` and an object holding nothing but ``extension`` read as absent."""
    if value is None or value == []:
        return False
    return not (isinstance(value, dict) and value.keys() <= {"extension"})


def memoised_match(
    memo: dict[str, bool], pattern: re.Pattern[str], text: str, longest: int, limit: int
) -> bool:
    """``bool(pattern.match(text))``, remembered in ``memo`` by the text alone: the same codes
    and dates come back claim after claim, and a dict hit costs a fraction of a regex match.
    Texts longer than ``longest`` are answered but not kept (not worth their memory); the
    memo is cleared when it holds ``limit`` answers."""
    if len(text) > longest:
        return bool(pattern.match(text))
    hit = memo.get(text)
    if hit is None:
        hit = bool(pattern.match(text))
        if len(memo) >= limit:
            memo.clear()
        memo[text] = hit
    return hit
