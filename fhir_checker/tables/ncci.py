"""NCCI tables: procedure-to-procedure (PTP) edits, MUEs and add-on code edits.

PTP tables are big (2.5M and 1.6M rows), so they are packed into one memory-mapped file
each (the ``FCPTP1`` layout below) and never parsed at load: opening one costs a few
milliseconds and pages are read only when a lookup touches them.

Layout of a packed PTP file (all integers little-endian)::

    b"FCPTP1\\n\\0"  uint32 header length  JSON header  padding  arrays (64-byte aligned)

- ``codes``  int32[K]: every code of the table, base-36 encoded (lossless, order-preserving
  for the five-character CPT/HCPCS codes), sorted; a code's *index* is its position here.
- ``start``  int32[K+1]: CSR offsets; the rows whose column 1 is code ``i`` are
  ``start[i]:start[i+1]``.
- ``col2``   uint16/uint32[N]: column-2 code index per row, sorted within a column-1 group.
- ``attr``   uint16/uint32[N]: index into ``attrs`` per row.
- ``attrs``  int32[M, 4]: the distinct (effective, deletion, modifier indicator, rationale)
  tuples. Dates are YYYYMMDD; effective 0 = in force since before the data begin;
  deletion 99991231 = not deleted. A row is in force on ``effective <= date <= deletion``.

The header names the rationales (a small enum) and the source and effective date.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import mmap
import struct
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..files import atomic_write

OPEN_END = 99991231
NO_START = 0
MAGIC = b"FCPTP1\n\0"
ALIGN = 64
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGIT = {c: i for i, c in enumerate(_ALPHABET)}
CODE_LENGTH = 5

#: Modifier indicator meanings (CMS NCCI).
INDICATOR_TEXT = {0: "not allowed", 1: "allowed", 9: "not applicable"}


def ymd(d: date) -> int:
    return d.year * 10000 + d.month * 100 + d.day


def ymd_text(v: int) -> str:
    if v == OPEN_END:
        return "none"
    if v == NO_START:
        return "before the data begin"
    s = str(v)
    return f"{s[:4]}-{s[4:6]}-{s[6:]}"


def is_packable_code(code: str) -> bool:
    return len(code) == CODE_LENGTH and all(c in _DIGIT for c in code)


def encode_code(code: str) -> int:
    """Five characters 0-9/A-Z -> int (base 36); raises ValueError otherwise."""
    if not is_packable_code(code):
        raise ValueError(f"not a five-character CPT/HCPCS code: {code!r}")
    v = 0
    for c in code:
        v = v * 36 + _DIGIT[c]
    return v


def decode_codes(values: npt.NDArray[np.int32]) -> list[str]:
    """Vectorised inverse of :func:`encode_code`."""
    v = values.astype(np.int64)
    digits = np.empty((len(v), CODE_LENGTH), dtype=np.uint8)
    for k in range(CODE_LENGTH - 1, -1, -1):
        digits[:, k] = v % 36
        v //= 36
    table = np.frombuffer(_ALPHABET.encode(), dtype=np.uint8)
    chars = table[digits]
    return [b.decode() for b in chars.view(f"S{CODE_LENGTH}").ravel()]


# --------------------------------------------------------------------------- PTP


@dataclass(frozen=True, slots=True)
class PtpRow:
    """One PTP edit row as read from a source file."""

    column1: str
    column2: str
    effective: int  # YYYYMMDD, 0 = in force since before the data begin
    deletion: int  # YYYYMMDD last day in force, 99991231 = not deleted
    indicator: int  # 0, 1 or 9
    rationale: str


@dataclass(frozen=True, slots=True)
class PtpEdit:
    """A pair in force on a date of service."""

    column1: str
    column2: str
    indicator: int
    rationale: str
    effective: int
    deletion: int

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(
        self,
        column1: str,
        column2: str,
        indicator: int,
        rationale: str,
        effective: int,
        deletion: int,
    ) -> None:
        object.__setattr__(self, "column1", column1)
        object.__setattr__(self, "column2", column2)
        object.__setattr__(self, "indicator", indicator)
        object.__setattr__(self, "rationale", rationale)
        object.__setattr__(self, "effective", effective)
        object.__setattr__(self, "deletion", deletion)


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class PtpColumns:
    """PTP rows gathered column-wise (compact: millions of rows as machine integers)."""

    def __init__(self) -> None:
        self.c1 = array("i")
        self.c2 = array("i")
        self.eff = array("i")
        self.dele = array("i")
        self.ind = array("i")
        self.rat = array("i")
        self.rationales: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.c1)

    def add(
        self, column1: str, column2: str, effective: int, deletion: int, indicator: int, rationale: str
    ) -> None:
        """Add one row; raises ValueError for a code that cannot be packed."""
        self.c1.append(encode_code(column1))
        self.c2.append(encode_code(column2))
        self.eff.append(effective)
        self.dele.append(deletion)
        self.ind.append(indicator)
        r = self.rationales.get(rationale)
        if r is None:
            r = self.rationales[rationale] = len(self.rationales)
        self.rat.append(r)

    def add_row(self, row: PtpRow) -> None:
        self.add(row.column1, row.column2, row.effective, row.deletion, row.indicator, row.rationale)


def write_ptp(rows: PtpColumns | Iterable[PtpRow], path: Path, meta: dict[str, Any]) -> int:
    """Pack PTP rows into ``path`` (written to a temporary file, then renamed). Returns rows."""
    if not isinstance(rows, PtpColumns):
        cols = PtpColumns()
        for r in rows:
            cols.add_row(r)
        rows = cols
    a1 = np.frombuffer(rows.c1, dtype=np.int32) if len(rows) else np.zeros(0, np.int32)
    a2 = np.frombuffer(rows.c2, dtype=np.int32) if len(rows) else np.zeros(0, np.int32)
    codes = np.unique(np.concatenate([a1, a2]))
    i1 = np.searchsorted(codes, a1).astype(np.int64)
    i2 = np.searchsorted(codes, a2).astype(np.int64)
    tuples = np.zeros((len(a1), 4), dtype=np.int32)
    for k, col in enumerate((rows.eff, rows.dele, rows.ind, rows.rat)):
        if len(col):
            tuples[:, k] = np.frombuffer(col, dtype=np.int32)
    attrs, attr_of_row = np.unique(tuples, axis=0, return_inverse=True)
    attr_of_row = attr_of_row.ravel()
    order = np.lexsort((tuples[:, 0], i2, i1))
    i1, i2, attr_of_row = i1[order], i2[order], attr_of_row[order]
    start = np.searchsorted(i1, np.arange(len(codes) + 1)).astype(np.int32)
    idx_dtype = np.uint16 if len(codes) <= 0xFFFF else np.uint32
    attr_dtype = np.uint16 if len(attrs) <= 0xFFFF else np.uint32
    arrays: dict[str, npt.NDArray[Any]] = {
        "codes": codes.astype(np.int32),
        "start": start,
        "col2": i2.astype(idx_dtype),
        "attr": attr_of_row.astype(attr_dtype),
        "attrs": attrs.astype(np.int32).reshape(-1, 4),
    }
    header: dict[str, Any] = {
        "meta": meta,
        "rows": len(i1),
        "rationales": sorted(rows.rationales, key=rows.rationales.__getitem__),
        "arrays": {},
    }
    # Offsets depend on the header size, which depends on the offsets: lay out twice.
    for _ in range(2):
        hbytes = json.dumps(header, sort_keys=True).encode()
        pos = _aligned(len(MAGIC) + 4 + len(hbytes) + ALIGN)
        for name, arr in arrays.items():
            header["arrays"][name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": pos}
            pos = _aligned(pos + arr.nbytes)
    hbytes = json.dumps(header, sort_keys=True).encode()
    atomic_write(path, lambda fh: _write_ptp_body(fh, hbytes, header, arrays))
    return len(i1)


def _write_ptp_body(fh: Any, hbytes: bytes, header: dict[str, Any], arrays: dict[str, Any]) -> None:
    fh.write(MAGIC + struct.pack("<I", len(hbytes)) + hbytes)
    for name, arr in arrays.items():
        off = header["arrays"][name]["offset"]
        fh.write(b"\0" * (off - fh.tell()))
        fh.write(np.ascontiguousarray(arr).tobytes())


class PtpTable:
    """A packed PTP table, memory-mapped; lookups by code pair and date of service."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as fh:
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        if self._mm[: len(MAGIC)] != MAGIC:
            raise ValueError(f"{path}: not a packed PTP table")
        (hlen,) = struct.unpack_from("<I", self._mm, len(MAGIC))
        start = len(MAGIC) + 4
        self.header: dict[str, Any] = json.loads(self._mm[start : start + hlen])
        arr: dict[str, npt.NDArray[Any]] = {}
        for name, spec in self.header["arrays"].items():
            dt = np.dtype(spec["dtype"])
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            arr[name] = np.frombuffer(self._mm, dtype=dt, count=count, offset=spec["offset"]).reshape(
                spec["shape"]
            )
        self._codes = arr["codes"]
        self._start = arr["start"]
        self._col2 = arr["col2"]
        self._attr = arr["attr"]
        names: list[str] = self.header["rationales"]
        self.rationales = names
        # attrs is small (a few thousand tuples): plain Python tuples are faster to read.
        self._attrs: list[tuple[int, int, int, str]] = [
            (int(e), int(d), int(i), names[int(r)]) for e, d, i, r in arr["attrs"].tolist()
        ]
        self._code_list = decode_codes(self._codes)
        self._index = {c: i for i, c in enumerate(self._code_list)}
        self.meta: dict[str, Any] = self.header.get("meta", {})
        # column-1 index -> {column-2 index: its attribute rows, in table order}: built on a
        # code's first use from the mapped arrays (dict hits instead of a numpy search per
        # code and claim); bounded, so memory stays flat whatever codes come by.
        self._rows_cache: dict[int, dict[int, list[tuple[int, int, int, str]]]] = {}
        self._rows_cached = 0

    def __len__(self) -> int:
        return int(self.header["rows"])

    def code_index(self, code: str) -> int | None:
        return self._index.get(code)

    def rows_for(self, column1: str, column2: str) -> list[PtpEdit]:
        """Every row of the pair, whatever its dates (for tests and explanations)."""
        return [e for e, _ in self._pair_rows(column1, column2)]

    def _pair_rows(self, column1: str, column2: str) -> Iterator[tuple[PtpEdit, int]]:
        i, j = self._index.get(column1), self._index.get(column2)
        if i is None or j is None:
            return
        lo, hi = int(self._start[i]), int(self._start[i + 1])
        if lo == hi:
            return
        group = self._col2[lo:hi]
        k = lo + int(np.searchsorted(group, j))
        while k < hi and int(self._col2[k]) == j:
            e, d, ind, rat = self._attrs[int(self._attr[k])]
            yield PtpEdit(column1, column2, ind, rat, e, d), k
            k += 1

    def edit(self, column1: str, column2: str, on: date) -> PtpEdit | None:
        """The pair's row in force on ``on`` (indicator 9 rows included), or None."""
        d = ymd(on)
        for e, _ in self._pair_rows(column1, column2):
            if e.effective <= d <= e.deletion:
                return e
        return None

    #: Rows kept in the column-1 cache before it starts over (~100 bytes a row).
    ROWS_CACHE_LIMIT = 200_000

    def _rows_of(self, i: int) -> dict[int, list[tuple[int, int, int, str]]]:
        hit = self._rows_cache.get(i)
        if hit is not None:
            return hit
        lo, hi = int(self._start[i]), int(self._start[i + 1])
        rows: dict[int, list[tuple[int, int, int, str]]] = {}
        attrs = self._attrs
        for j, a in zip(self._col2[lo:hi].tolist(), self._attr[lo:hi].tolist(), strict=True):
            got = rows.get(j)
            if got is None:
                rows[j] = [attrs[a]]
            else:
                got.append(attrs[a])
        if self._rows_cached + (hi - lo) > self.ROWS_CACHE_LIMIT:
            self._rows_cache.clear()
            self._rows_cached = 0
        self._rows_cache[i] = rows
        self._rows_cached += hi - lo
        return rows

    def edits_among(self, codes: Sequence[str], on: date) -> list[PtpEdit]:
        """Every pair (column 1, column 2) of distinct ``codes`` in force on ``on``,
        modifier indicator 9 (not applicable) left out."""
        d = ymd(on)
        index = self._index
        # codes in first-billed order (not a set's: that order changes with the process's
        # hash seed, and the findings list pairs in this order)
        present = {c: i for c in dict.fromkeys(codes) if (i := index.get(c)) is not None}
        if len(present) < 2:
            return []
        found: list[PtpEdit] = []
        by_index = {i: c for c, i in present.items()}
        order = sorted(by_index)
        for c1, i in present.items():
            rows = self._rows_of(i)
            if not rows:
                continue
            for j in order:
                pair = rows.get(j)
                if pair is None:
                    continue
                for e, dl, ind, rat in pair:
                    if e <= d <= dl and ind != 9:
                        found.append(PtpEdit(c1, by_index[j], ind, rat, e, dl))
                        break
        return found


# --------------------------------------------------------------------------- MUE

MAI_TEXT = {
    1: "Line Edit",
    2: "Date of Service Edit: Policy",
    3: "Date of Service Edit: Clinical",
}


@dataclass(frozen=True, slots=True)
class Mue:
    code: str
    value: int
    mai: int  # 1 line, 2 date of service (policy), 3 date of service (clinical)
    rationale: str


def _write_tsv_gz(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(header)
    n = 0
    for r in rows:
        w.writerow(r)
        n += 1
    data = buf.getvalue().encode()

    def write(fh: Any) -> None:
        with gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:  # mtime=0: same bytes each build
            gz.write(data)

    atomic_write(path, write)
    return n


def write_mue(rows: Iterable[Mue], path: Path) -> int:
    return _write_tsv_gz(
        path,
        ("code", "mue_value", "mai", "rationale"),
        ((m.code, m.value, m.mai, m.rationale) for m in sorted(rows, key=lambda m: m.code)),
    )


def _read_tsv_gz(path: Path) -> Iterator[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        yield from reader


class MueTable:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_code = {r[0]: Mue(r[0], int(r[1]), int(r[2]), r[3]) for r in _read_tsv_gz(path)}

    def __len__(self) -> int:
        return len(self._by_code)

    def get(self, code: str) -> Mue | None:
        return self._by_code.get(code)


# --------------------------------------------------------------------------- add-on

NO_PRIMARY = "CCCCC"  # CMS's marker: no primary code listed (type 2)


@dataclass(frozen=True, slots=True)
class AddonRow:
    addon: str
    primary: str | None  # None: no primary listed (type 2)
    edit_type: int  # 1, 2 or 3
    effective: int = NO_START
    deletion: int = OPEN_END


@dataclass(frozen=True, slots=True)
class AddonEdit:
    """An add-on code's edit on a date: its type and the primaries listed for it."""

    addon: str
    edit_type: int
    primaries: tuple[str, ...]

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(self, addon: str, edit_type: int, primaries: tuple[str, ...]) -> None:
        object.__setattr__(self, "addon", addon)
        object.__setattr__(self, "edit_type", edit_type)
        object.__setattr__(self, "primaries", primaries)


def write_addons(rows: Iterable[AddonRow], path: Path) -> int:
    return _write_tsv_gz(
        path,
        ("addon_code", "primary_code", "aoc_edit_type", "effective", "deletion"),
        (
            (r.addon, r.primary or NO_PRIMARY, r.edit_type, r.effective, r.deletion)
            for r in sorted(rows, key=lambda r: (r.addon, r.primary or "", r.effective))
        ),
    )


_TYPE_RANK = {1: 0, 3: 1, 2: 2}  # type 1 (listed primaries required) is the strictest


class AddonTable:
    def __init__(self, path: Path) -> None:
        self.path = path
        by: dict[str, list[AddonRow]] = {}
        for r in _read_tsv_gz(path):
            row = AddonRow(r[0], None if r[1] == NO_PRIMARY else r[1], int(r[2]), int(r[3]), int(r[4]))
            by.setdefault(row.addon, []).append(row)
        self._by_code = by
        # (code, day) -> edit: the same few add-on codes recur on every claim of a day's run.
        self._memo: dict[tuple[str, int], AddonEdit | None] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_code.values())

    def __contains__(self, code: str) -> bool:
        return code in self._by_code

    def edit(self, addon: str, on: date) -> AddonEdit | None:
        rows = self._by_code.get(addon)
        if not rows:
            return None
        key = (addon, ymd(on))
        if key in self._memo:
            return self._memo[key]
        found = self._edit(rows, key[1])
        if len(self._memo) > 65536:
            self._memo.clear()
        self._memo[key] = found
        return found

    @staticmethod
    def _edit(rows: list[AddonRow], d: int) -> AddonEdit | None:
        live = [r for r in rows if r.effective <= d <= r.deletion]
        if not live:
            return None
        # One code has one type at a time; the most restrictive wins if a file mixes them.
        edit_type = min((r.edit_type for r in live), key=_TYPE_RANK.__getitem__)
        primaries = tuple(sorted({r.primary for r in live if r.primary and r.edit_type == edit_type}))
        return AddonEdit(live[0].addon, edit_type, primaries)
