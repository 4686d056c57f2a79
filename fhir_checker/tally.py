"""Counts over the claims of a bulk run (:class:`Tally`): gathered in each worker, merged in
the parent, read by the summary report (:mod:`.report`).

Compiled with mypyc (setup.py): ``add_claim`` runs once per claim of a bulk run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr

from .findings import Finding, Severity

#: How many unreadable line numbers the report lists (the count is always exact).
BAD_LINE_SAMPLE = 50


# A Python class with compiled methods: it is pickled between processes as a plain object.
@mypyc_attr(native_class=False)
@dataclass
class Tally:
    """Counts over the claims of a bulk run; chunks' tallies merge into the run's."""

    lines: int = 0
    claims: int = 0  # lines that held a readable claim
    bad_lines: int = 0  # blank, not JSON, not a claim, over the limits
    internal_errors: int = 0  # lines the engine failed on (counted in bad_lines too)
    bad_line_numbers: list[int] = field(default_factory=list)
    without_findings: int = 0
    error_claims: int = 0
    warning_claims: int = 0  # warnings, no errors
    severities: Counter[str] = field(default_factory=Counter)
    rule_findings: Counter[str] = field(default_factory=Counter)
    rule_claims: Counter[str] = field(default_factory=Counter)
    rule_meta: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # name, category, severity
    category_findings: Counter[str] = field(default_factory=Counter)
    category_claims: Counter[str] = field(default_factory=Counter)
    code_findings: Counter[str] = field(default_factory=Counter)
    code_claims: Counter[str] = field(default_factory=Counter)
    code_rules: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add_bad(self, line: int, *, internal: bool = False) -> None:
        self.lines += 1
        self.bad_lines += 1
        self.internal_errors += internal
        if len(self.bad_line_numbers) < BAD_LINE_SAMPLE:
            self.bad_line_numbers.append(line)

    def add_claim(
        self, findings: Sequence[Finding], code_of: Callable[[str, int | None], str | None], line: int
    ) -> None:
        """One checked claim; ``code_of(expression, line)`` names the code a finding involves."""
        self.lines += 1
        self.claims += 1
        if not findings:
            self.without_findings += 1
            return
        worst = min(f.severity.rank for f in findings)
        if worst <= Severity.ERROR.rank:
            self.error_claims += 1
        elif worst == Severity.WARNING.rank:
            self.warning_claims += 1
        rules: set[str] = set()
        cats: set[str] = set()
        codes: set[str] = set()
        for f in findings:
            self.severities[f.severity.value] += 1
            self.rule_findings[f.rule_id] += 1
            rules.add(f.rule_id)
            if f.rule_id not in self.rule_meta:
                self.rule_meta[f.rule_id] = (f.rule_name, f.category or "", f.severity.value)
            cat = f.category or "other"
            self.category_findings[cat] += 1
            cats.add(cat)
            code = code_of(f.expression, f.line)
            if code:
                self.code_findings[code] += 1
                self.code_rules[(code, f.rule_id)] += 1
                codes.add(code)
        self.rule_claims.update(rules)
        self.category_claims.update(cats)
        self.code_claims.update(codes)

    def merge(self, other: Tally) -> None:
        self.lines += other.lines
        self.claims += other.claims
        self.bad_lines += other.bad_lines
        self.internal_errors += other.internal_errors
        room = BAD_LINE_SAMPLE - len(self.bad_line_numbers)
        if room > 0:
            self.bad_line_numbers.extend(other.bad_line_numbers[:room])
        self.without_findings += other.without_findings
        self.error_claims += other.error_claims
        self.warning_claims += other.warning_claims
        for mine, theirs in (
            (self.severities, other.severities),
            (self.rule_findings, other.rule_findings),
            (self.rule_claims, other.rule_claims),
            (self.category_findings, other.category_findings),
            (self.category_claims, other.category_claims),
            (self.code_findings, other.code_findings),
            (self.code_claims, other.code_claims),
        ):
            mine.update(theirs)
        self.code_rules.update(other.code_rules)
        for k, v in other.rule_meta.items():
            self.rule_meta.setdefault(k, v)
