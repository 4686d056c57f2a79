"""fhir-checker: a FHIR-native claim pre-checker.

    >>> import fhir_checker
    >>> outcome = fhir_checker.check(claim_json)          # OperationOutcome as a dict

The flow: input -> :mod:`loader` -> :mod:`context` (ClaimContext) -> :mod:`rules`
(via :mod:`registry`) -> :mod:`findings` -> :mod:`outcome` (OperationOutcome).
"""

from __future__ import annotations

from .engine import Result, check, run
from .findings import CATEGORIES, Finding, Fix, Severity
from .loader import BadInput, Limits
from .packs import PackError, RulePack, load_pack
from .registry import Rule, all_rules, get_rule, select_rules
from .tables import Tables, get_tables

__version__ = "0.1.0"

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
    "get_rule",
    "get_tables",
    "load_pack",
    "run",
    "select_rules",
]
