"""The engine: input -> claim context -> rules -> findings -> OperationOutcome.

Every door (CLI, Python API, HTTP operation, CDS Hooks, subscription worker, bulk runner)
calls :func:`run` or :func:`check`; none of them knows how a rule works.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from .context import ClaimContext, build_context
from .findings import Finding, Severity
from .loader import BadInput, InputDocument, Limits, load
from .outcome import context_extension, fatal, render
from .packs import RulePack, default_pack_for, load_pack
from .registry import Rule, select_rules
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

    @property
    def claim_id(self) -> str | None:
        return self.context.claim_id if self.context else None

    @property
    def has_errors(self) -> bool:
        return self.fatal or any(f.severity in (Severity.ERROR, Severity.FATAL) for f in self.findings)


def _rules_for(pack: RulePack, select: list[str] | None, ignore: list[str] | None) -> list[Rule]:
    chosen = select_rules(pack.select, pack.ignore)
    if select or ignore:
        user = {r.id for r in select_rules(select, ignore)}
        chosen = [r for r in chosen if r.id in user]
    return chosen


def _structure_findings(doc: InputDocument, full: bool) -> list[Finding]:
    from .registry import get_rule

    rule = get_rule(STRUCTURE_RULE_ID)
    return [
        rule.finding(
            expression=e.expression,
            message=e.message[0].upper() + e.message[1:] + ".",
            evidence=f"FHIR R4 (fhir.resources R4B model) {e.kind} error",
            issue_type="required" if e.kind == "missing" else "structure",
        )
        for e in structure_errors(doc, full)
    ]


def run(
    data: str | bytes | dict[str, Any] | InputDocument,
    *,
    profile: str | RulePack | None = None,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    today: date | None = None,
    tables: Tables | None = None,
    limits: Limits | None = None,
    validation: str = "auto",
) -> Result:
    """Check one claim. Never raises for bad input: that becomes a ``fatal`` outcome.

    ``validation``: ``auto`` (fast shape check, the FHIR models only when it finds
    something off) or ``full`` (always validate with the models).
    """
    started = time.perf_counter()
    tables = tables or get_tables()
    try:
        doc = data if isinstance(data, InputDocument) else load(data, limits)
    except BadInput as exc:
        return Result(fatal(exc.message, code=exc.code, expression=exc.expression), fatal=True)
    pack = profile if isinstance(profile, RulePack) else load_pack(profile or default_pack_for(doc.claim))
    ctx = build_context(doc, tables, pack, today or date.today())
    findings: list[Finding] = []
    rules = _rules_for(pack, select, ignore)
    if any(r.id == STRUCTURE_RULE_ID for r in rules):
        findings.extend(_structure_findings(doc, validation == "full"))
    for rule in rules:
        if rule.id == STRUCTURE_RULE_ID or ctx.setting not in rule.settings:
            continue
        found = list(rule.check(ctx, rule))
        override = pack.severity.get(rule.id)
        if override is not None:
            found = [replace(f, severity=override) for f in found]
        findings.extend(found)
    outcome = render(
        findings,
        context=context_extension(
            claim_ref=f"Claim/{doc.claim_id}" if doc.claim_id else None,
            pack=pack.label(),
            setting=ctx.setting,
            tables=[(n, str(i.get("effective"))) for n, i in sorted(tables.manifest["tables"].items())],
        ),
    )
    elapsed = (time.perf_counter() - started) * 1000
    log.info(
        "checked claim",
        extra={
            "claim_id": doc.claim_id,
            "rule_ids": sorted({f.rule_id for f in findings}),
            "elapsed_ms": round(elapsed, 2),
        },
    )
    return Result(outcome, findings, ctx, pack, False, elapsed)


def check(
    data: str | bytes | dict[str, Any],
    *,
    profile: str | RulePack | None = None,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    today: date | None = None,
    validation: str = "auto",
) -> dict[str, Any]:
    """Check one claim; the OperationOutcome as a JSON-ready dict."""
    return run(
        data, profile=profile, select=select, ignore=ignore, today=today, validation=validation
    ).outcome
