"""The edit tables, loaded once per process and shared by every rule.

Every table is a data file in ``fhir_checker/data`` listed in ``manifest.json`` with its
source and effective date; ``fhir-checker data info`` prints them.
"""

from __future__ import annotations

import json
import os
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

from .codesets import CodeSpans, Icd10Codes

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
        """'<title>, effective <date>' for diagnostics."""
        i = self.info(name)
        return f"{i['title']} (effective {i['effective']})"

    def path(self, name: str) -> Path:
        return self.dir / str(self.info(name)["file"])

    @cached_property
    def hcpcs_validity(self) -> CodeSpans:
        return CodeSpans.read(self.path("hcpcs_validity"))

    @cached_property
    def icd10cm(self) -> Icd10Codes:
        return Icd10Codes(CodeSpans.read(self.path("icd10cm_validity")))

    def warm(self) -> None:
        """Load every table now (servers and benchmarks call this at start-up)."""
        for name in dir(type(self)):
            attr = getattr(type(self), name)
            if isinstance(attr, cached_property) and name != "manifest":
                getattr(self, name)


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
