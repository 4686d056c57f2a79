"""[medical-necessity] Lines whose diagnoses the pack's payer policy does not accept."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import ClaimContext, Diagnosis
from ..findings import Finding
from ..policies import MedicalNecessity
from ..registry import Rule, rule


@rule(
    id="MNC001",
    name="diagnosis-does-not-support-procedure",
    category="medical-necessity",
    severity="warning",
    issue_type="business-rule",
    summary="No diagnosis on a line is one the payer's policy accepts for the procedure",
)
def diagnosis_does_not_support_procedure(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    For each line whose code has a medical-necessity policy in the rule pack
    (``policies.medical_necessity``: per procedure code, the ICD-10-CM codes or ranges
    that support it), whether any of the line's diagnoses falls in the accepted list. The
    line's diagnoses are those it points at (``item.diagnosisSequence``), or every claim
    diagnosis when the line points at none (institutional claims often do not). The
    ``port-and-infusion`` pack has policies for 36561, 96523, 96425, 96369 and 96371.

    ## Why payers deny it
    Payers pay a procedure only for the conditions their coverage policy (an LCD, a
    billing and coding article, a commercial medical policy) lists; a line with none of
    them is denied as not medically necessary.

    ## Example
    36561 (port placement) linked only to D69.59 (thrombocytopenia): the policy accepts
    an active malignancy (C00-D49), chemotherapy (Z51.11) or another need for long-term
    venous access, so the line is denied.

    ## How to fix
    Link the line to the diagnosis in the record that supports it (the finding lists what
    the policy accepts); if none applies, obtain an ABN (Medicare) or prior
    authorization, or do not bill the payer.
    """
    policy = ctx.pack.policies.get("medical_necessity")
    if not isinstance(policy, MedicalNecessity):
        return
    for ln in ctx.lines:
        if not ln.code or (p := policy.get(ln.code)) is None:
            continue
        if ln.diagnosis_sequences:
            found = [ctx.diagnosis_by_sequence(s) for s in ln.diagnosis_sequences]
            dxs: list[Diagnosis] = [d for d in found if d is not None]
        else:
            dxs = list(ctx.diagnoses)
        codes = [d.code for d in dxs if d.code]
        if any(p.supports(c) for c in codes):
            continue
        n = ln.number
        why = f" ({p.label})" if p.label else ""
        yield r.finding(
            expression=f"{ln.path}.diagnosisSequence" if ln.diagnosis_sequences else ln.code_path,
            line=ln.index,
            message=f"Line {n} ({ln.code}): none of its diagnoses ({', '.join(codes) or 'none'}) "
            f"supports it under the payer's policy, which accepts {p.accepted_text}{why}.",
            evidence=f"rule pack {ctx.pack.label()} policies.medical_necessity.{ln.code}: accepts "
            f"{p.accepted_text}; line diagnoses: {', '.join(codes) or 'none'}"
            + (f"; source: {p.source}" if p.source else ""),
            accepted=[a.text for a in p.accept],
        )
