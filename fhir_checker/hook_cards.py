"""Findings -> CDS Hooks cards; certain fixes (:class:`~fhir_checker.findings.Fix`) -> suggestions.

One card per finding, naming the claim line it belongs to. A suggestion is offered only
where the finding carries a Fix (the rule is certain of the correction); its one action is
a FHIR ``update`` of the whole Claim with the fix applied.

Compiled with mypyc (every hook answer is built here), so it stays out of the web package
and imports no web framework: the compiled build type-checks what it imports, in pip's
isolated build environment, which has none. ``isinstance`` takes one type at a time, not an
``X | Y`` union, which compiled code builds anew on each call.
"""

from __future__ import annotations

import copy
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import orjson

from .findings import Finding, Fix, Severity
from .outcome import CONTEXT_EXTENSION, RULE_SYSTEM
from .values import as_dict, as_list

SUMMARY_MAX = 139  # CDS Hooks: summary under 140 characters
INDICATOR = {
    Severity.FATAL: "critical",
    Severity.ERROR: "critical",
    Severity.WARNING: "warning",
    Severity.INFORMATION: "info",
}
OVERRIDE_SYSTEM = "https://fhir-checker.dev/CodeSystem/override-reason"
OVERRIDE_REASONS = [
    {
        "code": "documentation-supports",
        "system": OVERRIDE_SYSTEM,
        "display": "Documentation supports the claim as billed",
    },
    {"code": "payer-exception", "system": OVERRIDE_SYSTEM, "display": "This payer does not apply this edit"},
    {"code": "rule-wrong", "system": OVERRIDE_SYSTEM, "display": "The finding is wrong for this claim"},
]
FINDING_EXTENSION = "org.fhir-checker.finding"
OUTCOME_EXTENSION = "org.fhir-checker.operation-outcome"


def _items(claim: dict[str, Any]) -> list[Any]:
    items = claim.get("item")
    return items if isinstance(items, list) else []


def line_label(claim: dict[str, Any], line: int | None) -> str | None:
    """``Line 3 (J0690)``: the item's sequence (as billed) and its code."""
    items = _items(claim)
    if line is None or not 0 <= line < len(items) or not isinstance(items[line], dict):
        return None
    item = items[line]
    seq = item.get("sequence") if isinstance(item.get("sequence"), int) else line + 1
    codings = as_list(as_dict(item.get("productOrService")).get("coding"))
    code = next(
        (c["code"] for c in codings if isinstance(c, dict) and isinstance(c.get("code"), str) and c["code"]),
        None,
    )
    return f"Line {seq} ({code})" if code else f"Line {seq}"


_LINE_PREFIX = re.compile(r"^Line \d+(?: \([^)]*\))?(?=[: ])")


def _summary(label: str | None, message: str) -> str:
    if label and _LINE_PREFIX.match(message):
        text = _LINE_PREFIX.sub(label, message, count=1)  # the message names the line: say it once
    else:
        text = f"{label}: {message}" if label else message
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def source_label(outcome: dict[str, Any]) -> str:
    """``fhir-checker cms-practitioner@2026.1, tables as of 2026-04-01``."""
    pack: str | None = None
    tables: list[str] = []
    # Typed as dicts and lists: compiled, that is a dict lookup per read, not a method call.
    for ext in as_list(outcome.get("extension")):
        ext_d = as_dict(ext)
        if ext_d.get("url") != CONTEXT_EXTENSION:
            continue
        for part in as_list(ext_d.get("extension")):
            part_d = as_dict(part)
            url = part_d.get("url")
            if url == "rulePack":
                value = part_d.get("valueString")
                pack = str(value) if value else None
            elif url == "table":
                tables.append(str(part_d.get("valueString", "")))
    key = (pack, tuple(tables))  # one of a few per process (pack x table versions): memoised
    label = _SOURCE_LABELS.get(key)
    if label is None:
        label = _source_label(pack, tables)
        if len(_SOURCE_LABELS) >= 256:
            _SOURCE_LABELS.clear()
        _SOURCE_LABELS[key] = label
    return label


_SOURCE_LABELS: dict[tuple[str | None, tuple[str, ...]], str] = {}


def _source_label(pack: str | None, tables: list[str]) -> str:
    dates = [t.rsplit(" ", 1)[-1] for t in tables]
    label = f"fhir-checker {pack}" if pack else "fhir-checker"
    real = sorted(d for d in dates if d[:4].isdigit())
    return f"{label}, tables as of {real[-1]}" if real else label


def new_uuid() -> str:
    """A time-ordered UUID (version 7, RFC 9562: 48 bits of Unix milliseconds, 74 random bits),
    as text, at a fifth of the cost of ``str(uuid.uuid4())`` (one per card and suggestion).

    Time-ordered because the shared card table is keyed by it: random keys land all over its
    index, so each write of a batch of cards dirtied a page per card (WAL and checkpoint
    traffic); these land at the index's end."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 / 9562 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ---------------------------------------------------------------------------- fixes


def json_copy(node: Any) -> Any:
    """A deep copy of parsed JSON: an orjson round trip is ~7x faster than ``copy.deepcopy``
    (25 vs 180 us for a 5-line claim, once per suggestion on the hook's hot path)."""
    try:
        return orjson.loads(orjson.dumps(node))
    except TypeError:  # not plain JSON (say an int past 64 bits from a FHIR server): the general copy
        return copy.deepcopy(node)


def apply_fix(claim: dict[str, Any], fix: Fix) -> dict[str, Any] | None:
    """The Claim with ``fix`` applied, or None when it does not fit this claim.

    Neither is changed in place: the fixed Claim is a new dict with a new ``item`` list, and
    the line the fix changes is a new dict whose changed elements are new values. Everything
    the fix does not change is shared with ``claim`` (the answer is serialised at once; a
    deep copy of the whole claim per suggestion was a tenth of a hook call's CPU)."""
    items = _items(claim)
    if not 0 <= fix.line < len(items) or not isinstance(items[fix.line], dict):
        return None
    fixed: dict[str, Any] = dict(claim)
    new_items: list[Any] = list(items)
    fixed["item"] = new_items
    item: dict[str, Any] = dict(items[fix.line])  # each branch below replaces values, never edits one
    new_items[fix.line] = item
    if fix.kind == "remove-line":
        del new_items[fix.line]
        if not new_items:
            return None  # a claim needs at least one line: not a certain fix
    elif fix.kind == "set-units":
        units: Any = fix.value  # Any, not float: compiled code would turn an int 2 into 2.0
        if not (isinstance(units, int) or isinstance(units, float)) or isinstance(units, bool) or units <= 0:
            return None
        quantity: dict[str, Any] = item["quantity"] if isinstance(item.get("quantity"), dict) else {}
        item["quantity"] = {**quantity, "value": units}
        price = (
            (item.get("unitPrice") or {}).get("value") if isinstance(item.get("unitPrice"), dict) else None
        )
        if (isinstance(price, int) or isinstance(price, float)) and isinstance(item.get("net"), dict):
            factor = item.get("factor", 1)
            if not (isinstance(factor, int) or isinstance(factor, float)):
                factor = 1
            item["net"] = {**item["net"], "value": round(price * units * factor, 2)}
    elif fix.kind == "replace-code":
        if not isinstance(fix.value, str) or not fix.value:
            return None
        # The old display (and text) described the old code: they go with it.
        item["productOrService"] = {
            "coding": [{"system": fix.system, "code": fix.value} if fix.system else {"code": fix.value}]
        }
        if fix.units is not None:  # the new code bills another amount per unit (J2001 -> J2003)
            old_units = _quantity(item)
            if old_units is None or fix.units <= 0:
                return None
            item["quantity"] = {**item["quantity"], "value": fix.units}
            # Same drug, same amount, same money: the price per unit follows the unit.
            price = _money(item.get("unitPrice"))
            if price is not None:
                item["unitPrice"] = {**item["unitPrice"], "value": round(price * old_units / fix.units, 4)}
    elif fix.kind == "add-line":
        if not isinstance(fix.value, str) or not fix.value:
            return None
        sequences: list[int] = [
            i["sequence"] for i in new_items if isinstance(i, dict) and isinstance(i.get("sequence"), int)
        ]
        added: dict[str, Any] = {"sequence": max(sequences, default=0) + 1}
        added["productOrService"] = {
            "coding": [{"system": fix.system, "code": fix.value} if fix.system else {"code": fix.value}]
        }
        # Same encounter, date, place, diagnoses and care team as the line it belongs with.
        for key in (
            "careTeamSequence",
            "diagnosisSequence",
            "revenue",
            "servicedDate",
            "servicedPeriod",
            "locationCodeableConcept",
            "encounter",
        ):
            if key in item:
                added[key] = json_copy(item[key])  # the new line's own copy: it may be edited apart
        added["quantity"] = {"value": 1}
        new_items.append(added)
    else:
        return None
    _retotal(claim, fixed)
    return fixed


def _money(value: Any) -> float | None:
    amount = value.get("value") if isinstance(value, dict) else None
    if (isinstance(amount, int) or isinstance(amount, float)) and not isinstance(amount, bool):
        return float(amount)
    return None


def _quantity(item: dict[str, Any]) -> float | None:
    return _money(item.get("quantity"))


def _net_sum(claim: dict[str, Any]) -> float:
    # Start at 0.0, not 0: the compiled and the interpreted module give the same (float) sum.
    return sum((_money(i.get("net")) or 0.0 for i in _items(claim) if isinstance(i, dict)), 0.0)


def _retotal(claim: dict[str, Any], fixed: dict[str, Any]) -> None:
    """Keep ``Claim.total`` the sum of the lines' ``net`` where it was before the fix."""
    total = _money(claim.get("total"))
    if total is None or abs(total - _net_sum(claim)) > 0.005:
        return  # no total, or one that was not the plain sum: not ours to recompute
    fixed["total"] = {**fixed["total"], "value": round(_net_sum(fixed), 2)}


def describe_fix(claim: dict[str, Any], fix: Fix) -> str:
    label = line_label(claim, fix.line) or f"line index {fix.line}"
    label = label[0].lower() + label[1:]  # mid-sentence
    if fix.kind == "remove-line":
        return f"Remove {label} from the claim"
    if fix.kind == "set-units":
        return (
            f"Set the units of {label} to {fix.value:g}"
            if isinstance(fix.value, int) or isinstance(fix.value, float)
            else "Set units"
        )
    if fix.kind == "replace-code":
        units = f" and bill {fix.units:g} units" if fix.units is not None else ""
        return f"Replace the code of {label} with {fix.value}{units}"
    if fix.kind == "add-line":
        return f"Add a line for {fix.value}, same date as {label}"
    return fix.label or fix.kind


def suggestion(claim: dict[str, Any], fix: Fix) -> dict[str, Any] | None:
    fixed = apply_fix(claim, fix)
    if fixed is None:
        return None
    description = describe_fix(claim, fix)
    return {
        "label": (fix.label or description)[:SUMMARY_MAX],
        "uuid": new_uuid(),
        "isRecommended": True,
        "actions": [{"type": "update", "description": description, "resource": fixed}],
    }


# ---------------------------------------------------------------------------- cards


def card(finding: Finding, claim: dict[str, Any], *, source: dict[str, Any], base: str) -> dict[str, Any]:
    label = line_label(claim, finding.line)
    detail = [finding.message]
    if finding.evidence:
        detail.append(f"**Evidence:** {finding.evidence}")
    detail.append(f"**Where:** `{finding.expression}`")
    detail.append(
        f"**Rule:** {finding.rule_id} ({finding.rule_name}"
        + (f", {finding.category})" if finding.category else ")")
    )
    out: dict[str, Any] = {
        "uuid": new_uuid(),
        "summary": _summary(label, finding.message),
        "detail": "\n\n".join(detail),
        "indicator": INDICATOR[finding.severity],
        "source": {
            **source,
            "topic": {"system": RULE_SYSTEM, "code": finding.rule_id, "display": finding.rule_name},
        },
        "links": [
            {
                "label": f"Rule {finding.rule_id}: what it checks and how to fix it",
                "url": f"{base}/rules/{finding.rule_id}",
                "type": "absolute",
            }
        ],
        "overrideReasons": OVERRIDE_REASONS,
        "extension": {
            FINDING_EXTENSION: {
                "ruleId": finding.rule_id,
                "category": finding.category,
                "severity": finding.severity._value_,  # .value is an interpreted property
                "expression": finding.expression,
                "line": finding.line,
                "lineLabel": label,
            }
        },
    }
    if finding.fix is not None:
        sug = suggestion(claim, finding.fix)
        if sug is not None:
            out["suggestions"] = [sug]
            out["selectionBehavior"] = "at-most-one"
    return out


def cards_response(
    findings: Sequence[Finding], outcome: dict[str, Any], claim: dict[str, Any], *, base: str
) -> dict[str, Any]:
    """The hook's answer: one card per finding, and the whole OperationOutcome as an extension."""
    source = {"label": source_label(outcome), "url": f"{base}/rules"}
    ordered = sorted(findings, key=Finding.sort_key)
    return {
        "cards": [card(f, claim, source=source, base=base) for f in ordered],
        "extension": {OUTCOME_EXTENSION: outcome},
    }
