"""HCPCS drug billing units: how much of a drug one billed unit is (J0690 = 500 mg).

Packed by ``scripts/build_drug_units.py`` from the public HCPCS Level II descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .codesets import tsv_rows


@dataclass(frozen=True, slots=True)
class DrugUnit:
    code: str
    amount: float | None  # amount of drug per billed unit; None when the code has no measure
    unit: str | None  # UCUM unit of ``amount`` (mg, ug, g, mL, U, [iU] ...)
    description: str  # the public HCPCS Level II description the unit was read from

    @property
    def label(self) -> str:
        if self.amount is None or self.unit is None:
            return "no measurable unit"
        return f"{self.amount:g} {self.unit} per unit"


class DrugUnits:
    """Drug codes -> their billing unit; lookups are dict hits."""

    def __init__(self, units: dict[str, DrugUnit]) -> None:
        self._units = units

    @classmethod
    def read(cls, path: Path) -> DrugUnits:
        units: dict[str, DrugUnit] = {}
        for code, amount, unit, desc in tsv_rows(path):  # code, amount, unit, description
            units[code] = DrugUnit(code, float(amount) if amount else None, unit or None, desc)
        return cls(units)

    def get(self, code: str) -> DrugUnit | None:
        return self._units.get(code)

    def __contains__(self, code: str) -> bool:
        return code in self._units

    def __len__(self) -> int:
        return len(self._units)
