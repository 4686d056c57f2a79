"""Findings -> the OperationOutcome of the output contract (DEVELOPERS.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .findings import Finding

RULE_SYSTEM = "https://fhir-checker.dev/CodeSystem/rule"
CATEGORY_SYSTEM = "https://fhir-checker.dev/CodeSystem/category"
CONTEXT_EXTENSION = "https://fhir-checker.dev/StructureDefinition/precheck-context"


def issue(f: Finding) -> dict[str, Any]:
    coding: list[dict[str, str]] = [{"system": RULE_SYSTEM, "code": f.rule_id, "display": f.rule_name}]
    if f.category:
        coding.append({"system": CATEGORY_SYSTEM, "code": f.category})
    out: dict[str, Any] = {
        # _value_, not .value: the same str, without enum's property (interpreted Python) per issue
        "severity": f.severity._value_,
        "code": f.issue_type,
        "details": {"coding": coding, "text": f.message},
    }
    if f.evidence:
        out["diagnostics"] = f.evidence
    out["expression"] = [f.expression]
    return out


def context_extension(
    *, claim_ref: str | None, pack: str | None, tables: Sequence[tuple[str, str]], setting: str | None
) -> dict[str, Any]:
    """Which claim, rule pack, setting and table versions produced this outcome."""
    ext: list[dict[str, Any]] = []
    if claim_ref:
        ext.append({"url": "claim", "valueReference": {"reference": claim_ref}})
    if pack:
        ext.append({"url": "rulePack", "valueString": pack})
    if setting:
        ext.append({"url": "setting", "valueCode": setting})
    for name, effective in tables:
        ext.append({"url": "table", "valueString": f"{name} {effective}"})
    return {"url": CONTEXT_EXTENSION, "extension": ext}


def render(findings: Sequence[Finding], *, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """One OperationOutcome; a clean claim gets one ``information`` issue saying so."""
    ordered = sorted(findings, key=Finding.sort_key)
    issues = [issue(f) for f in ordered]
    if not issues:
        issues = [
            {
                "severity": "information",
                "code": "informational",
                "details": {
                    "coding": [{"system": RULE_SYSTEM, "code": "CLEAN", "display": "clean-claim"}],
                    "text": "No problems found: the claim passed every selected pre-check.",
                },
                "expression": ["Claim"],
            }
        ]
    out: dict[str, Any] = {"resourceType": "OperationOutcome"}
    if context:
        out["extension"] = [context]
    out["issue"] = issues
    return out


def fatal(message: str, *, code: str = "invalid", expression: str | None = None) -> dict[str, Any]:
    """The outcome for input that cannot be checked at all."""
    iss: dict[str, Any] = {
        "severity": "fatal",
        "code": code,
        "details": {
            "coding": [{"system": RULE_SYSTEM, "code": "INPUT", "display": "unreadable-input"}],
            "text": message,
        },
    }
    if expression:
        iss["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [iss]}


def worst_severity(outcome: dict[str, Any]) -> str:
    ranks = {"fatal": 0, "error": 1, "warning": 2, "information": 3}
    sev = [i.get("severity", "information") for i in outcome.get("issue", [])]
    return min(sev, key=lambda s: ranks.get(s, 3)) if sev else "information"
