"""Code validity by date of service: HCPCS/CPT and ICD-10-CM spans from the I/OCE tables."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

OPEN_END = 99991231


def tsv_rows(path: Path) -> Iterator[list[str]]:
    """The data rows of a packed ``*.tsv.gz`` table (plain tab-separated, no quoting; the
    header row skipped)."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            yield line.rstrip("\n").split("\t")


def ymd(d: date) -> int:
    return d.year * 10000 + d.month * 100 + d.day


def ymd_text(v: int) -> str:
    s = str(v)
    return "open" if v == OPEN_END else f"{s[:4]}-{s[4:6]}-{s[6:]}"


@dataclass(frozen=True, slots=True)
class Span:
    valid_from: int  # YYYYMMDD, first day valid
    valid_to: int  # YYYYMMDD, last day valid (99991231 = still valid)
    truncated: bool = False  # valid_from means "on or before"

    def covers(self, d: int) -> bool:
        return self.valid_from <= d <= self.valid_to


@dataclass(frozen=True, slots=True)
class Validity:
    status: str  # "valid", "unknown", "not-yet-valid", "ended"
    spans: tuple[Span, ...] = ()

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(self, status: str, spans: tuple[Span, ...] = ()) -> None:
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "spans", spans)


class CodeSpans:
    """Validity spans per code; lookups are dict hits."""

    def __init__(self, spans: dict[str, tuple[Span, ...]], *, first_day: int) -> None:
        self._spans = spans
        self.first_day = first_day  # the data's first covered date of service
        # (code, date) -> Validity: the same codes and dates come back claim after claim
        self._memo: dict[tuple[str, date], Validity] = {}

    @classmethod
    def read(cls, path: Path) -> CodeSpans:
        spans: dict[str, list[Span]] = {}
        first = OPEN_END
        for code, vf, vt, tr in tsv_rows(path):  # code, valid_from, valid_to, truncated
            s = Span(int(vf), int(vt), tr == "1")
            first = min(first, s.valid_from)
            spans.setdefault(code, []).append(s)
        return cls({k: tuple(v) for k, v in spans.items()}, first_day=first)

    def __contains__(self, code: str) -> bool:
        return code in self._spans

    def __len__(self) -> int:
        return len(self._spans)

    def codes(self) -> list[str]:
        return list(self._spans)

    MEMO_LIMIT = 100_000

    def validity(self, code: str, on: date) -> Validity:
        key = (code, on)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        v = self._validity(code, on)
        if len(code) > 16:  # not a code: answer, keep nothing
            return v
        if len(self._memo) >= self.MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = v
        return v

    def _validity(self, code: str, on: date) -> Validity:
        spans = self._spans.get(code)
        if not spans:
            return Validity("unknown")
        d = ymd(on)
        if any(s.covers(d) or (s.truncated and d < s.valid_from) for s in spans):
            return Validity("valid", spans)
        if d < min(s.valid_from for s in spans):
            return Validity("not-yet-valid", spans)
        return Validity("ended", spans)


class Icd10Codes:
    """ICD-10-CM billable codes by date, and the header (category) codes above them."""

    def __init__(self, billable: CodeSpans) -> None:
        self.billable = billable
        headers: set[str] = set()
        for code in billable.codes():
            flat = code.replace(".", "")
            for n in range(3, len(flat)):
                headers.add(flat[:3] if n == 3 else f"{flat[:3]}.{flat[3:n]}")
        self.headers = frozenset(headers - set(billable.codes()))

    def is_header(self, dotted: str) -> bool:
        return dotted in self.headers
