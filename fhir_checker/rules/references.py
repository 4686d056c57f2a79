"""[reference] References in the claim that do not resolve inside the input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..context import ClaimContext
from ..findings import Finding
from ..references import ReferenceIndex, Resolved, is_local_only
from ..registry import Rule, rule

#: Claim elements whose targets the checks read, and the resource types they may point at.
NEEDED: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("patient", ("Patient",), "age and sex edits"),
    ("diagnosis[*].diagnosisReference", ("Condition",), "diagnosis edits"),
    ("procedure[*].procedureReference", ("Procedure",), "documentation checks"),
    ("insurance[*].coverage", ("Coverage",), "payer rule-pack mapping"),
    ("supportingInfo[*].valueReference", (), "drug-unit and documentation checks"),
    ("item[*].udi[*]", ("Device",), "device checks"),
    ("item[*].encounter[*]", ("Encounter",), "documentation checks"),
)


def _parse(spec: str) -> tuple[tuple[str, bool], ...]:
    return tuple((part[:-3], True) if part.endswith("[*]") else (part, False) for part in spec.split("."))


_PARSED: dict[str, tuple[tuple[str, bool], ...]] = {spec: _parse(spec) for spec, _, _ in NEEDED}


def _walk(claim: dict[str, Any], spec: str) -> Iterator[tuple[str, Any]]:
    """Yield (FHIRPath, value) for a spec like ``item[*].udi[*]``."""
    return iter(_walk_list(claim, _PARSED.get(spec) or _parse(spec)))


def _walk_list(claim: dict[str, Any], steps: tuple[tuple[str, bool], ...]) -> list[tuple[str, Any]]:
    # Plain loops, and no frontier at all for a first step the claim does not have (most
    # specs on most claims): this runs for every spec on every claim.
    name, many = steps[0]
    if name not in claim:
        return []
    val = claim[name]
    frontier: list[tuple[str, Any]]
    if many:
        if not isinstance(val, list):
            return []
        frontier = [(f"Claim.{name}[{i}]", v) for i, v in enumerate(val)]
    else:
        frontier = [(f"Claim.{name}", val)]
    for name, many in steps[1:]:
        if not frontier:
            break
        nxt: list[tuple[str, Any]] = []
        for path, node in frontier:
            if not isinstance(node, dict) or name not in node:
                continue
            val = node[name]
            if many:
                if isinstance(val, list):
                    for i, v in enumerate(val):
                        nxt.append((f"{path}.{name}[{i}]", v))
            else:
                nxt.append((f"{path}.{name}", val))
        frontier = nxt
    return frontier


def _needed_references(ctx: ClaimContext) -> list[tuple[tuple[str, ...], str, str, str, Resolved | None]]:
    """(types, checks, path, reference, resolved) for every NEEDED reference; once per claim
    (REF002 and REF003 both read it)."""
    cached = ctx.extra.get("_needed_references")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    out: list[tuple[tuple[str, ...], str, str, str, Resolved | None]] = []
    claim, resolve = ctx.claim, ctx.refs.resolve
    for spec, types, checks in NEEDED:
        for path, node in _walk_list(claim, _PARSED[spec]):
            ref = node.get("reference") if isinstance(node, dict) else None
            if isinstance(ref, str):
                out.append((types, checks, path, ref, resolve(ref, "Claim")))
    ctx.extra["_needed_references"] = out
    return out


def _all_references(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every ``reference`` string under a node, iteratively (input may be deep)."""
    stack: list[tuple[str, Any]] = [(path, node)]
    while stack:
        p, n = stack.pop()
        if isinstance(n, dict):
            ref = n.get("reference")
            if isinstance(ref, str):
                yield p, ref
            for k, v in n.items():
                if k != "contained" and (isinstance(v, dict) or isinstance(v, list)):
                    stack.append((f"{p}.{k}", v))
        elif isinstance(n, list):
            stack.extend(
                (f"{p}[{i}]", v) for i, v in enumerate(n) if isinstance(v, dict) or isinstance(v, list)
            )


def _local_references_resolve(node: object, refs: ReferenceIndex) -> bool:
    """True when every local reference :func:`_all_references` would find under ``node``
    resolves: the same walk, compiled and recursive, with no paths built (the loader has
    bounded the depth). Only when it is False does REF001 walk again, for the paths."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and is_local_only(ref) and refs.resolve(ref, "Claim") is None:
            return False
        for k, v in node.items():
            nested = isinstance(v, dict) or isinstance(v, list)
            if nested and k != "contained" and not _local_references_resolve(v, refs):
                return False
    elif isinstance(node, list):
        for v in node:
            if (isinstance(v, dict) or isinstance(v, list)) and not _local_references_resolve(v, refs):
                return False
    return True


@rule(
    id="REF001",
    name="dangling-local-reference",
    category="reference",
    severity="error",
    issue_type="not-found",
    summary="A '#id' or 'urn:uuid:' reference points at nothing in the input",
)
def dangling_local_reference(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    References that can only ever resolve inside what was sent: contained (``#id``) and
    ``urn:uuid:`` references to Bundle entries. If the target is not in the input, it does
    not exist anywhere.

    ## Why payers deny it
    The claim points at a patient, diagnosis or procedure that is not there: the claim is
    incomplete, and a FHIR server would reject the transaction outright.

    ## Example
    ``"patient": {"reference": "urn:uuid:6f1c..."}`` with no entry of that fullUrl.

    ## How to fix
    Include the referenced resource in the Bundle (or ``contained``), or correct the
    reference.
    """
    if _local_references_resolve(ctx.claim, ctx.refs):
        return  # fast path: nothing dangles, no need to walk the claim for paths
    for path, ref in _all_references(ctx.claim, "Claim"):
        if is_local_only(ref) and ctx.refs.resolve(ref, "Claim") is None:
            yield r.finding(
                expression=path,
                message=f"The reference {ref[:80]} points at a resource that is not in the claim or its bundle.",
                evidence=f"{path}.reference = {ref[:200]}; no matching fullUrl or contained id",
            )


@rule(
    id="REF002",
    name="unresolved-reference",
    category="reference",
    severity="warning",
    issue_type="not-found",
    summary="A resource the checks need (patient, diagnosis, procedure ...) is not in the input",
)
def unresolved_reference(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    References from the Claim to the resources the checks read (Patient, Condition,
    Procedure, Coverage, supporting MedicationAdministrations, Devices, Encounters) that
    are not in the input. The HTTP and subscription doors fetch them from the FHIR server
    first; what is still missing is reported here.

    ## Why payers deny it
    The payer may have the data, but this pre-check cannot see it: the age, sex and
    documentation checks that depend on it were skipped, so the claim is not fully checked.

    ## Example
    A bare Claim with ``patient: {"reference": "Patient/123"}`` and no Patient.

    ## How to fix
    Send the Claim in a Bundle with the resources it references, or use the HTTP
    operation with a FHIR server to fetch them.
    """
    for types, checks, path, ref, hit in _needed_references(ctx):
        if is_local_only(ref):
            continue  # REF001 handles local references
        if hit is None:
            yield r.finding(
                expression=path,
                message=f"{ref[:80]} is not in the input, so the {checks} could not run on it.",
                evidence=f"{path}.reference = {ref[:200]}; expected type "
                + ("/".join(types) if types else "any"),
            )


@rule(
    id="REF003",
    name="reference-wrong-type",
    category="reference",
    severity="error",
    issue_type="structure",
    summary="A reference resolves to a resource of the wrong type",
)
def reference_wrong_type(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    ``Claim.patient`` resolves to a Patient, ``diagnosisReference`` to a Condition,
    ``procedureReference`` to a Procedure, ``insurance.coverage`` to a Coverage.

    ## Why payers deny it
    A diagnosis pointer that lands on an Observation carries no ICD-10-CM code the payer
    can read; the mapping to the claim form breaks.

    ## Example
    ``diagnosisReference: {"reference": "Observation/5"}``.

    ## How to fix
    Point the element at a resource of the right type.
    """
    for types, _, path, ref, hit in _needed_references(ctx):
        if types and hit is not None and hit.resource_type not in types:
            yield r.finding(
                expression=path,
                message=f"{path.rsplit('.', 1)[-1]} must point at a {' or '.join(types)}, "
                f"but {ref[:80]} is a {hit.resource_type}.",
                evidence=f"{path}.reference = {ref[:200]} resolves to {hit.entry.path} ({hit.resource_type})",
            )
