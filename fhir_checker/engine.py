"""The engine: input -> claim context -> rules -> findings -> OperationOutcome.

Every door (CLI, Python API, HTTP operation, CDS Hooks, subscription worker, bulk runner)
calls :func:`run` or :func:`check`; none of them knows how a rule works.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from .context import ClaimContext, build_context
from .findings import Finding, Severity
from .loader import BadInput, InputDocument, Limits, load
from .outcome import RULE_SYSTEM, context_extension, fatal, render
from .packs import (
    PACKAGED_PROFILES,
    REPO_PROFILES,
    RulePack,
    claim_payer_keys,
    default_pack_for,
    load_pack,
    payer_map_under,
)
from .references import ReferenceIndex
from .registry import Rule, generation, get_rule, select_rules
from .tables import Tables, get_tables
from .validation import structure_errors

log = logging.getLogger("fhir_checker")

STRUCTURE_RULE_ID = "STR000"


@dataclass
class Result:
    """What one check produced: the outcome, and the values behind it for other doors."""

    outcome: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    context: ClaimContext | None = None
    pack: RulePack | None = None
    fatal: bool = False
    elapsed_ms: float = 0.0
    incomplete: bool = False  # stopped at the time budget: some rules did not run

    # Written out so that mypyc compiles it (a generated __init__ runs interpreted, ~10x slower).
    def __init__(
        self,
        outcome: dict[str, Any],
        findings: list[Finding] | None = None,
        context: ClaimContext | None = None,
        pack: RulePack | None = None,
        fatal: bool = False,
        elapsed_ms: float = 0.0,
        incomplete: bool = False,
    ) -> None:
        self.outcome = outcome
        self.findings = [] if findings is None else findings
        self.context = context
        self.pack = pack
        self.fatal = fatal
        self.elapsed_ms = elapsed_ms
        self.incomplete = incomplete

    @property
    def claim_id(self) -> str | None:
        return self.context.claim_id if self.context else None

    @property
    def has_errors(self) -> bool:
        return (
            self.fatal
            or self.incomplete
            or any(f.severity in (Severity.ERROR, Severity.FATAL) for f in self.findings)
        )


#: Rule selection is the same for every claim of a pack: computed once per (pack,
#: selectors, registry generation) instead of once per claim.
_RULES_CACHE: dict[tuple[Any, ...], list[Rule]] = {}


@dataclass(frozen=True)
class _Plan:
    """What the rule loop runs for a rule list, a claim setting and a pack's severity
    overrides: (check, rule, override) for each rule that applies, decided once, not per
    claim and rule."""

    rules: list[Rule]
    overrides: dict[str, Severity] | None
    has_structure: bool
    steps: list[tuple[Any, Rule, Severity | None]]


_PLANS: dict[tuple[int, str, int], _Plan] = {}


def _plan(rules: list[Rule], setting: str, overrides: dict[str, Severity] | None) -> _Plan:
    key = (id(rules), setting, id(overrides))
    hit = _PLANS.get(key)
    if hit is not None and hit.rules is rules and hit.overrides is overrides:
        return hit
    plan = _Plan(
        rules,
        overrides,
        any(r.id == STRUCTURE_RULE_ID for r in rules),
        [
            (r.check, r, overrides.get(r.id) if overrides else None)
            for r in rules
            if r.id != STRUCTURE_RULE_ID and setting in r.settings
        ],
    )
    if len(_PLANS) > 256:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


def _rules_for(pack: RulePack, select: list[str] | None, ignore: list[str] | None) -> list[Rule]:
    key = (pack.select, pack.ignore, tuple(select or ()), tuple(ignore or ()), generation())
    hit = _RULES_CACHE.get(key)
    if hit is not None:
        return hit
    chosen = select_rules(pack.select, pack.ignore)
    if select or ignore:
        user = {r.id for r in select_rules(select, ignore)}
        chosen = [r for r in chosen if r.id in user]
    if len(_RULES_CACHE) > 256:
        _RULES_CACHE.clear()
    _RULES_CACHE[key] = chosen
    return chosen


#: Default packs by name. Finding a pack by name scans the profile directories (~50 us, more
#: than checking a small claim), so the pack is kept with the modification times of those
#: directories and of its files: a few stat calls tell whether a pack was added, removed or
#: edited, and only then is it looked up again. The stat calls themselves run at most once
#: every PACK_RECHECK_SECONDS per pack (as for the payer map), not on every claim.
PACK_RECHECK_SECONDS = 1.0
_PACK_CACHE: dict[tuple[str, str | None], tuple[tuple[float | None, ...], RulePack, float]] = {}


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


@lru_cache(maxsize=16)
def _profile_dirs(env: str | None) -> tuple[str, ...]:
    return (*(p for p in (env or "").split(os.pathsep) if p), str(REPO_PROFILES), str(PACKAGED_PROFILES))


def _pack_stamp(env: str | None, pack_files: tuple[Path | None, ...]) -> tuple[float | None, ...]:
    return (*[_mtime(d) for d in _profile_dirs(env)], *(_mtime(str(f)) if f else None for f in pack_files))


def _default_pack(claim: dict[str, Any], refs: ReferenceIndex | None = None) -> RulePack:
    env = os.environ.get("FHIR_CHECKER_PROFILES")  # read once: it keys both lookups below
    mapping = payer_map_under(env)
    payers: list[str] = []
    if refs is not None and mapping.routes:  # Coverage.payor / Claim.insurer -> pack (payers.yaml)

        def resolve(ref: str) -> dict[str, Any] | None:
            hit = refs.resolve(ref)
            return hit.resource if hit is not None else None

        payers = claim_payer_keys(claim, resolve)
    name = default_pack_for(claim, payers, mapping)
    key, now = (name, env), time.monotonic()
    hit = _PACK_CACHE.get(key)
    if hit is not None:
        stamp, pack, checked = hit
        if now - checked < PACK_RECHECK_SECONDS:
            return pack
        if _pack_stamp(env, pack.files or (pack.path,)) == stamp:
            _PACK_CACHE[key] = (stamp, pack, now)
            return pack
    pack = load_pack(name)
    _PACK_CACHE[key] = (_pack_stamp(env, pack.files or (pack.path,)), pack, now)
    return pack


_TABLES_EXT: dict[int, tuple[Any, list[tuple[str, str]]]] = {}


def _table_versions(tables: Tables) -> list[tuple[str, str]]:
    """(table, effective date) pairs for the outcome's context, once per manifest."""
    manifest = tables.manifest
    hit = _TABLES_EXT.get(id(tables))
    if hit is not None and hit[0] is manifest:
        return hit[1]
    versions = [(n, str(i.get("effective"))) for n, i in sorted(manifest["tables"].items())]
    _TABLES_EXT[id(tables)] = (manifest, versions)
    return versions


def _structure_findings(doc: InputDocument, full: bool) -> list[Finding]:
    errors = list(structure_errors(doc, full))
    if not errors:
        return []
    rule = get_rule(STRUCTURE_RULE_ID)
    return [
        rule.finding(
            expression=e.expression,
            message=e.message[0].upper() + e.message[1:] + ".",
            evidence=f"FHIR R4 (fhir.resources R4B model) {e.kind} error",
            issue_type="required" if e.kind == "missing" else "structure",
        )
        for e in errors
    ]


#: The clock of the time budget (a module attribute so tests can drive it).
_clock = time.perf_counter

INCOMPLETE_CODE = "INCOMPLETE"


def _mark_incomplete(
    outcome: dict[str, Any], steps: list[tuple[Any, Rule, Severity | None]], stopped_at: int, budget: float
) -> None:
    """Say the check stopped at the budget: a partial answer must never read as clean."""
    left, total = len(steps) - stopped_at, len(steps)
    rule_id = steps[stopped_at][1].id
    outcome["issue"] = [i for i in outcome["issue"] if i["details"]["coding"][0]["code"] != "CLEAN"] + [
        {
            "severity": "error",
            "code": "incomplete",
            "details": {
                "coding": [{"system": RULE_SYSTEM, "code": INCOMPLETE_CODE, "display": "check-incomplete"}],
                "text": f"The check stopped at its time budget of {budget:g} s: {left} of {total} "
                "rules did not run, so the claim may have problems not listed here.",
            },
            "diagnostics": f"time budget {budget:g} s; stopped before rule {rule_id}",
        }
    ]


def run(
    data: str | bytes | dict[str, Any] | InputDocument,
    *,
    profile: str | RulePack | None = None,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    today: date | str | None = None,
    tables: Tables | None = None,
    limits: Limits | None = None,
    validation: str = "auto",
) -> Result:
    """Check one claim. Never raises for bad input: that becomes a ``fatal`` outcome.

    ``validation``: ``auto`` (fast shape check, the FHIR models only when it finds
    something off) or ``full`` (always validate with the models).
    """
    started = _clock()
    if isinstance(today, str):
        # The Python API takes the CLI's YYYY-MM-DD too; a bad date is the caller's bug.
        text = today
        try:
            today = date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"today must be a date or YYYY-MM-DD, not {text[:40]!r}") from None
    tables = tables or get_tables()
    try:
        doc = data if isinstance(data, InputDocument) else load(data, limits)
    except BadInput as exc:
        # The code only: the message may quote the input.
        log.info("input not checkable", extra={"code": exc.code})
        return Result(fatal(exc.message, code=exc.code, expression=exc.expression), fatal=True)
    refs: ReferenceIndex | None = None
    if isinstance(profile, RulePack):
        pack = profile
    elif profile:
        pack = load_pack(profile)
    else:
        refs = ReferenceIndex(doc)
        pack = _default_pack(doc.claim, refs)
    ctx = build_context(doc, tables, pack, today or date.today(), refs=refs)
    findings: list[Finding] = []
    rules = _rules_for(pack, select, ignore)
    overrides = pack.severity
    plan = _plan(rules, ctx.setting, overrides)
    if plan.has_structure:
        findings.extend(_structure_findings(doc, validation == "full"))
    budget = limits.time_budget_seconds if limits is not None else None
    deadline = started + budget if budget is not None else None
    stopped_at: int | None = None  # index into plan.steps of the first rule not run
    for n, (check_fn, rule, override) in enumerate(plan.steps):
        if deadline is not None and _clock() > deadline:
            stopped_at = n  # between rules only: a rule is never cut off half way
            break
        if override is None:
            findings.extend(check_fn(ctx, rule))
        else:
            findings.extend(replace(f, severity=override) for f in check_fn(ctx, rule))
    outcome = render(
        findings,
        context=context_extension(
            claim_ref=f"Claim/{doc.claim_id}" if doc.claim_id else None,
            pack=pack.label(),
            setting=ctx.setting,
            tables=_table_versions(tables),
        ),
    )
    if stopped_at is not None:
        assert budget is not None
        _mark_incomplete(outcome, plan.steps, stopped_at, budget)
    elapsed = (_clock() - started) * 1000
    if log.isEnabledFor(logging.INFO):
        log.info(
            "checked claim",
            extra={
                "claim_id": doc.claim_id,
                "rule_ids": sorted({f.rule_id for f in findings}),
                "findings": len(findings),
                "errors": sum(f.severity in (Severity.ERROR, Severity.FATAL) for f in findings),
                "rules_run": len(plan.steps) if stopped_at is None else stopped_at,
                "pack": pack.id,
                "elapsed_ms": round(elapsed, 2),
            },
        )
    return Result(outcome, findings, ctx, pack, False, elapsed, incomplete=stopped_at is not None)


def check(
    data: str | bytes | dict[str, Any],
    *,
    profile: str | RulePack | None = None,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    today: date | str | None = None,
    validation: str = "auto",
) -> dict[str, Any]:
    """Check one claim; the OperationOutcome as a JSON-ready dict."""
    return run(
        data, profile=profile, select=select, ignore=ignore, today=today, validation=validation
    ).outcome
