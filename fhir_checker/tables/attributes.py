"""I/OCE attribute tables: procedure and diagnosis ages, derived diagnosis sex, device
flags and pairs, valid modifiers, PFS PC/TC indicators and replacement codes.

Each loads from one small gzipped TSV written by ``scripts/build_attributes.py``; lookups
are dict hits. Codes not in a table have the default (no age limit, no flag).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .codesets import tsv_rows

FULL_AGE = (0, 124)


@dataclass(frozen=True, slots=True)
class ProcedureAttributes:
    lo_age: int
    hi_age: int
    age_from_descriptor: bool  # the age is the CPT descriptor's, not an I/OCE range
    device_intensive: bool  # edit 92: needs a device code the same day
    device: bool  # a device code that satisfies edit 92
    e92_cg_bypass: bool  # edit 92 is bypassed by modifier CG on the line
    passthrough: bool  # pass-through device (edits 98, 105)


_NO_ATTRIBUTES = ProcedureAttributes(0, 124, False, False, False, False, False)


class ProcedureTable:
    def __init__(self, rows: dict[str, ProcedureAttributes]) -> None:
        self._rows = rows

    @classmethod
    def read(cls, path: Path) -> ProcedureTable:
        rows = {
            code: ProcedureAttributes(
                int(lo), int(hi), src == "c", di == "1", dev == "1", cg == "1", pt == "1"
            )
            for code, lo, hi, src, di, dev, cg, pt in tsv_rows(path)
        }
        return cls(rows)

    def get(self, code: str) -> ProcedureAttributes:
        return self._rows.get(code, _NO_ATTRIBUTES)

    def __len__(self) -> int:
        return len(self._rows)


@dataclass(frozen=True, slots=True)
class DevicePair:
    procedure: str
    device: str
    date_activated: int  # YYYYMMDD, 0 = none


class DevicePairs:
    """Device-dependent procedures (edit 135) and pass-through device pairs (edits 98, 105)."""

    def __init__(self, dependent: dict[str, tuple[str, ...]], passthrough: dict[str, tuple[DevicePair, ...]]):
        self.dependent = dependent  # procedure -> the device codes it needs
        self.passthrough = passthrough  # device -> the procedures it may be billed with

    @classmethod
    def read(cls, path: Path) -> DevicePairs:
        dep: dict[str, list[str]] = {}
        pt: dict[str, list[DevicePair]] = {}
        for relation, proc, device, activated in tsv_rows(path):
            if relation == "dependent":
                dep.setdefault(proc, []).append(device)
            else:
                pt.setdefault(device, []).append(DevicePair(proc, device, int(activated)))
        return cls({k: tuple(v) for k, v in dep.items()}, {k: tuple(v) for k, v in pt.items()})


@dataclass(frozen=True, slots=True)
class ModifierInfo:
    code: str
    in_ioce: bool  # on the I/OCE valid list
    level: int  # 1 CPT, 2 HCPCS Level II, 0 only on the I/OCE list
    valid_from: int  # YYYYMMDD first day it may be reported, 0 = no known start
    device_exclusion: bool  # discontinued/reduced procedure: 52, 73, 74 (no device edits)
    description: str  # CMS public text (Level II only; never CPT text)


class ModifierTable:
    def __init__(self, rows: dict[str, ModifierInfo]) -> None:
        self._rows = rows

    @classmethod
    def read(cls, path: Path) -> ModifierTable:
        rows = {
            m: ModifierInfo(m, ioce == "1", int(level), int(vf), dx == "1", desc)
            for m, ioce, level, vf, dx, desc in tsv_rows(path)
        }
        return cls(rows)

    def get(self, code: str) -> ModifierInfo | None:
        return self._rows.get(code)

    def __contains__(self, code: str) -> bool:
        return code in self._rows

    def __len__(self) -> int:
        return len(self._rows)


@dataclass(frozen=True, slots=True)
class Replacement:
    code: str  # the terminated code
    replacement: str
    last_day: int  # YYYYMMDD, last day the old code was valid
    curated: bool  # from the curated list (else the HCPCS file's xref column)
    note: str  # what else changes (units), for the coder; may be empty


@dataclass(frozen=True, slots=True)
class SexSpecific:
    sex: str  # "female" or "male"
    block: str  # the ICD-10-CM block the code belongs to


def read_replacements(path: Path) -> dict[str, Replacement]:
    return {c: Replacement(c, new, int(last), src == "c", note) for c, new, last, src, note in tsv_rows(path)}


def read_pctc(path: Path) -> dict[str, str]:
    return {code: ind for code, ind in tsv_rows(path)}


def read_ages(path: Path) -> dict[str, tuple[int, int]]:
    return {code: (int(lo), int(hi)) for code, lo, hi in tsv_rows(path)}


def read_sex(path: Path) -> dict[str, SexSpecific]:
    names = {"F": "female", "M": "male"}
    return {code: SexSpecific(names[sex], block) for code, sex, block in tsv_rows(path)}
