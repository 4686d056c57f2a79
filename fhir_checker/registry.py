"""The rule registry: every rule has a stable id, a category, a default severity and a doc.

Modelled on ruff: rules are small units registered with a decorator; users select or
ignore them by id or id prefix (``--select PTP --ignore PTP002``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .findings import CATEGORIES, Finding, Fix, Severity

if TYPE_CHECKING:
    from .context import ClaimContext

CheckFn = Callable[["ClaimContext", "Rule"], Iterable[Finding]]

SETTINGS = ("practitioner", "outpatient-hospital")


@dataclass(frozen=True)
class Rule:
    id: str  # stable code, e.g. "PTP001"; never reused for another check
    name: str  # kebab-case slug, e.g. "ptp-column2"
    category: str | None
    severity: Severity  # default severity; a rule pack may override it
    issue_type: str  # FHIR IssueType code
    summary: str  # one line, for listings
    doc: str  # what it checks / why payers deny it / example / how to fix
    check: CheckFn
    settings: tuple[str, ...] = SETTINGS  # claim settings the rule runs on
    ioce_edit: str | None = None  # the I/OCE edit number(s), where one exists

    def finding(
        self,
        *,
        expression: str,
        message: str,
        evidence: str = "",
        line: int | None = None,
        severity: Severity | None = None,
        issue_type: str | None = None,
        fix: Fix | None = None,
        **extra: Any,
    ) -> Finding:
        # Table titles say "(I/OCE)" too, so look for the edit citation itself.
        if self.ioce_edit and "I/OCE edit" not in evidence:
            cite = f"I/OCE edit {self.ioce_edit}"
            evidence = f"{evidence}; {cite}" if evidence else cite
        return Finding(
            rule_id=self.id,
            rule_name=self.name,
            category=self.category,
            severity=severity or self.severity,
            issue_type=issue_type or self.issue_type,
            message=message,
            expression=expression,
            evidence=evidence,
            line=line,
            fix=fix,
            extra=dict(extra),
        )


@lru_cache(maxsize=64)
def _source_docstrings(module: str) -> dict[str, str]:
    """Function docstrings read from a module's ``.py`` file (which ships beside it)."""
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec is not None else None
    if not origin:
        return {}
    source = Path(origin).with_name(module.rpartition(".")[2] + ".py")
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except OSError:
        return {}
    return {
        node.name: doc
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and (doc := ast.get_docstring(node, clean=False))
    }


def _docstring(fn: CheckFn) -> str:
    # A rule module compiled with mypyc (setup.py) keeps no docstrings on its functions.
    doc = fn.__doc__
    if not doc:
        doc = _source_docstrings(getattr(fn, "__module__", "") or "").get(getattr(fn, "__name__", ""), "")
    return inspect.cleandoc(doc)


_RULES: dict[str, Rule] = {}
_loaded = False
_generation = 0


def rule(
    *,
    id: str,
    name: str,
    category: str | None,
    severity: Severity | str,
    issue_type: str,
    summary: str,
    settings: Sequence[str] = SETTINGS,
    ioce_edit: str | None = None,
) -> Callable[[CheckFn], CheckFn]:
    """Register a check function as a rule; its docstring is the rule's doc."""

    def register(fn: CheckFn) -> CheckFn:
        global _generation
        if id in _RULES:
            raise ValueError(f"duplicate rule id {id}")
        if category is not None and category not in CATEGORIES:
            raise ValueError(f"rule {id}: unknown category {category!r}")
        doc = _docstring(fn)
        if not doc:
            raise ValueError(f"rule {id} has no doc")
        _RULES[id] = Rule(
            id=id,
            name=name,
            category=category,
            severity=Severity(severity),
            issue_type=issue_type,
            summary=summary,
            doc=doc,
            check=fn,
            settings=tuple(settings),
            ioce_edit=ioce_edit,
        )
        _generation += 1
        return fn

    return register


def _load_rule_modules() -> None:
    """Import every module of ``fhir_checker.rules`` so their rules register."""
    global _loaded
    if _loaded:
        return
    from . import rules as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")
    _loaded = True


def all_rules() -> list[Rule]:
    _load_rule_modules()
    return sorted(_RULES.values(), key=lambda r: r.id)


def generation() -> int:
    """Bumped whenever the registry changes: the cache key of anything derived from it."""
    _load_rule_modules()
    return _generation


def get_rule(rule_id: str) -> Rule:
    _load_rule_modules()
    key = rule_id.upper()
    for r in _RULES.values():
        if r.id == key or r.name == rule_id:
            return r
    raise KeyError(rule_id)


def _matches(r: Rule, selector: str) -> bool:
    s = selector.strip()
    return s.upper() == "ALL" or r.id.startswith(s.upper()) or r.name == s or r.category == s


def select_rules(select: Iterable[str] | None = None, ignore: Iterable[str] | None = None) -> list[Rule]:
    """Rules picked by id, id prefix, name or category (``ALL`` selects every rule)."""
    sel = list(select or ["ALL"])
    ign = list(ignore or [])
    unknown = [s for s in [*sel, *ign] if not any(_matches(r, s) for r in all_rules())]
    if unknown:
        raise KeyError(f"no rule matches {', '.join(unknown)}")
    return [
        r for r in all_rules() if any(_matches(r, s) for s in sel) and not any(_matches(r, s) for s in ign)
    ]


def with_severity(finding: Finding, severity: Severity) -> Finding:
    return replace(finding, severity=severity)
