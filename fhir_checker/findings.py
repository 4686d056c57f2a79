"""Findings: the plain values every rule produces and every output is rendered from."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Severity(str, Enum):
    """OperationOutcome.issue.severity, ordered from worst to mildest."""

    FATAL = "fatal"
    ERROR = "error"
    WARNING = "warning"
    INFORMATION = "information"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.FATAL: 0, Severity.ERROR: 1, Severity.WARNING: 2, Severity.INFORMATION: 3}

#: The categories of the output contract (DEVELOPERS.md). Other systems parse these.
CATEGORIES: frozenset[str] = frozenset(
    {
        "ptp",
        "mue",
        "add-on",
        "sole-service",
        "age",
        "sex",
        "invalid-code",
        "invalid-diagnosis",
        "modifier",
        "device",
        "medical-necessity",
        "documentation",
        "unbilled-procedure",
        "time",
        "units",
        "date",
        "structure",
        "reference",
    }
)


@dataclass(frozen=True, slots=True)
class Fix:
    """A certain correction of the claim, rendered as a CDS Hooks suggestion.

    ``kind`` is one of: ``remove-line`` (drop ``line``), ``set-units`` (``value`` = units),
    ``replace-code`` (``value`` = the new code, ``system`` its system; ``units`` = the line's
    units in the new code's billing unit, when that differs), ``add-line``
    (``value`` = code, ``system``, ``units`` and the date of ``line``).
    """

    kind: str
    line: int
    value: str | float | None = None
    system: str | None = None
    label: str = ""
    units: float | None = None

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(
        self,
        kind: str,
        line: int,
        value: str | float | None = None,
        system: str | None = None,
        label: str = "",
        units: float | None = None,
    ) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "system", system)
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "units", units)


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found on a claim: one ``OperationOutcome.issue``."""

    rule_id: str
    rule_name: str
    category: str | None
    severity: Severity
    issue_type: str  # FHIR IssueType code: business-rule, code-invalid, required, ...
    message: str  # details.text: one sentence a coder understands
    expression: str  # 0-based FHIRPath into the input
    evidence: str = ""  # diagnostics: the pair, the table and its date, the numbers compared
    line: int | None = None  # 0-based Claim.item index the finding belongs to, if any
    fix: Fix | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(
        self,
        rule_id: str,
        rule_name: str,
        category: str | None,
        severity: Severity,
        issue_type: str,
        message: str,
        expression: str,
        evidence: str = "",
        line: int | None = None,
        fix: Fix | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        object.__setattr__(self, "rule_id", rule_id)
        object.__setattr__(self, "rule_name", rule_name)
        object.__setattr__(self, "category", category)
        object.__setattr__(self, "severity", severity)
        object.__setattr__(self, "issue_type", issue_type)
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "evidence", evidence)
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "fix", fix)
        object.__setattr__(self, "extra", {} if extra is None else extra)

    def sort_key(self) -> tuple[int, int, str, str]:
        return (
            self.severity.rank,
            self.line if self.line is not None else -1,
            self.rule_id,
            self.expression,
        )
