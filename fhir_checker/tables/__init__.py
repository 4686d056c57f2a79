"""The edit tables, loaded once per process and shared by every rule.

Every table is a data file in ``fhir_checker/data`` listed in ``manifest.json`` with its
source and effective date; ``fhir-checker data info`` prints them.
"""

from __future__ import annotations

import gc
import json
import os
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

from .attributes import (  # I/OCE attribute tables (age, sex, device, modifier edits)
    DevicePairs,
    ModifierTable,
    ProcedureTable,
    Replacement,
    SexSpecific,
    read_ages,
    read_pctc,
    read_replacements,
    read_sex,
)
from .codesets import CodeSpans, Icd10Codes
from .drugs import DrugUnits
from .ncci import AddonTable, MueTable, PtpTable

PACKAGE_DATA = Path(__file__).resolve().parent.parent / "data"


def data_dir() -> Path:
    """Where the packed tables live: ``$FHIR_CHECKER_DATA`` or the package's own copy."""
    env = os.environ.get("FHIR_CHECKER_DATA")
    return Path(env) if env else PACKAGE_DATA


class Tables:
    """Lazy access to every packed table; each loads on first use, then stays."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or data_dir()
        self._lock = threading.Lock()
        self._cites: dict[str, tuple[dict[str, Any], str]] = {}

    @cached_property
    def manifest(self) -> dict[str, Any]:
        path = self.dir / "manifest.json"
        with path.open(encoding="utf-8") as fh:
            data: dict[str, Any] = json.load(fh)
        return data

    def info(self, name: str) -> dict[str, Any]:
        entry: dict[str, Any] = self.manifest["tables"][name]
        return entry

    def cite(self, name: str) -> str:
        """'<title>, effective <date>' for diagnostics (kept per manifest: rules cite a
        table on every claim)."""
        manifest = self.manifest
        hit = self._cites.get(name)
        if hit is not None and hit[0] is manifest:
            return hit[1]
        i = self.info(name)
        text = f"{i['title']} (effective {i['effective']})"
        self._cites[name] = (manifest, text)
        return text

    def path(self, name: str) -> Path:
        return self.dir / str(self.info(name)["file"])

    @cached_property
    def hcpcs_validity(self) -> CodeSpans:
        return CodeSpans.read(self.path("hcpcs_validity"))

    @cached_property
    def icd10cm(self) -> Icd10Codes:
        return Icd10Codes(CodeSpans.read(self.path("icd10cm_validity")))

    # --- clinical-record tables (record checks) ---
    @cached_property
    def drug_units(self) -> DrugUnits:
        return DrugUnits.read(self.path("drug_units"))

    # --- I/OCE attribute tables (age, sex, device, modifier, terminated-code edits) ---
    @cached_property
    def procedure_attributes(self) -> ProcedureTable:
        return ProcedureTable.read(self.path("procedure_attributes"))

    @cached_property
    def device_pairs(self) -> DevicePairs:
        return DevicePairs.read(self.path("device_procedure_pairs"))

    @cached_property
    def modifiers(self) -> ModifierTable:
        return ModifierTable.read(self.path("modifier_attributes"))

    @cached_property
    def pfs_pctc(self) -> dict[str, str]:
        return read_pctc(self.path("pfs_pctc"))

    @cached_property
    def hcpcs_replacements(self) -> dict[str, Replacement]:
        return read_replacements(self.path("hcpcs_replacements"))

    @cached_property
    def icd10cm_age(self) -> dict[str, tuple[int, int]]:
        return read_ages(self.path("icd10cm_age"))

    @cached_property
    def icd10cm_sex(self) -> dict[str, SexSpecific]:
        return read_sex(self.path("icd10cm_sex"))

    # --- end of I/OCE attribute tables ---

    # --- NCCI tables (PTP, MUE, add-on); ptp()/mue() pick the setting's table ---
    @cached_property
    def ptp_practitioner(self) -> PtpTable:
        return PtpTable(self.path("ptp_practitioner"))

    @cached_property
    def ptp_outpatient_hospital(self) -> PtpTable:
        return PtpTable(self.path("ptp_outpatient_hospital"))

    @cached_property
    def mue_practitioner(self) -> MueTable:
        return MueTable(self.path("mue_practitioner"))

    @cached_property
    def mue_outpatient_hospital(self) -> MueTable:
        return MueTable(self.path("mue_outpatient_hospital"))

    @cached_property
    def addons(self) -> AddonTable:
        return AddonTable(self.path("addon_codes"))

    def ptp(self, setting: str) -> PtpTable:
        """The PTP table of a setting: ``practitioner`` or ``outpatient-hospital``."""
        return self.ptp_outpatient_hospital if setting == "outpatient-hospital" else self.ptp_practitioner

    def mue(self, setting: str) -> MueTable:
        return self.mue_outpatient_hospital if setting == "outpatient-hospital" else self.mue_practitioner

    # --- end of NCCI tables ---

    def warm(self) -> None:
        """Load every table now (servers and benchmarks call this at start-up).

        The loaded tables are a few hundred thousand long-lived objects: they are moved out
        of the garbage collector's sight (``gc.freeze``), or every full collection walks them
        all again (~60 ms each: ~30 us a claim over a bulk run).
        """
        for name in dir(type(self)):
            attr = getattr(type(self), name)
            if isinstance(attr, cached_property) and name != "manifest":
                getattr(self, name)
        gc.collect()
        gc.freeze()


_default: Tables | None = None
_default_lock = threading.Lock()


def get_tables() -> Tables:
    """The process-wide tables (loaded once per process, not per call)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Tables()
    return _default
