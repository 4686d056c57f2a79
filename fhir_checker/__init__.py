"""fhir-checker: a FHIR-native claim pre-checker.

    >>> import fhir_checker
    >>> outcome = fhir_checker.check(claim_json)          # OperationOutcome as a dict

The flow: input -> :mod:`loader` -> :mod:`context` (ClaimContext) -> :mod:`rules`
(via :mod:`registry`) -> :mod:`findings` -> :mod:`outcome` (OperationOutcome).
"""

from __future__ import annotations

import os

# The tables use numpy for packing and lookups, never its BLAS: without this, OpenBLAS starts
# a thread per core at import that competes with the checks (and with --jobs workers).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .engine import Result, check, run
from .findings import CATEGORIES, Finding, Fix, Severity
from .loader import BadInput, Limits
from .packs import PackError, RulePack, load_pack
from .registry import Rule, all_rules, get_rule, select_rules
from .tables import Tables, get_tables

__version__ = "0.1.0"


def compiled() -> bool:
    """True when the hot path runs as mypyc-compiled C extensions (see setup.py)."""
    from . import context

    return not (context.__file__ or "").endswith(".py")


def _warn_if_stale() -> None:
    """In a source checkout (an editable install compiles in place), say when a ``.py`` is
    newer than its compiled module: Python loads the compiled one, so the edit does nothing."""
    import warnings
    from pathlib import Path

    package = Path(__file__).resolve().parent
    if not (package.parent / "setup.py").is_file():
        return  # an installed wheel: nothing is edited there
    stale = []
    for ext in package.rglob("*.so"):
        source = ext.with_name(ext.name.split(".", 1)[0] + ".py")
        if source.is_file() and source.stat().st_mtime > ext.stat().st_mtime + 1:
            stale.append(str(source.relative_to(package.parent)))
    if stale:
        warnings.warn(
            f"{', '.join(sorted(stale)[:3])}{' ...' if len(stale) > 3 else ''} changed after it was "
            "compiled, and the compiled module is what runs: rebuild with `pip install -e .`, or "
            "install with FHIR_CHECKER_PURE_PYTHON=1 to run the sources (setup.py)",
            RuntimeWarning,
            stacklevel=2,
        )


if compiled():
    _warn_if_stale()


__all__ = [
    "CATEGORIES",
    "BadInput",
    "Finding",
    "Fix",
    "Limits",
    "PackError",
    "Result",
    "Rule",
    "RulePack",
    "Severity",
    "Tables",
    "__version__",
    "all_rules",
    "check",
    "compiled",
    "get_rule",
    "get_tables",
    "load_pack",
    "run",
    "select_rules",
]
