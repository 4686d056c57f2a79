"""[invalid-code] / [invalid-diagnosis] Procedure and diagnosis codes that are not valid."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from datetime import date
from functools import lru_cache
from typing import Any

from ..codes import CPT, DIAGNOSIS_SYSTEMS, HCPCS, is_cpt_format, is_hcpcs_level2_format, is_icd10_format
from ..context import ClaimContext
from ..findings import Finding, Fix, Severity
from ..registry import Rule, rule
from ..tables.attributes import Replacement
from ..tables.codesets import Span, ymd_text


@rule(
    id="COD001",
    name="unknown-code-system",
    category="invalid-code",
    severity="error",
    issue_type="code-invalid",
    summary="A line's code is not in CPT or HCPCS (or has no code at all)",
)
def unknown_code_system(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each line's ``productOrService`` has a coding in CPT (``http://www.ama-assn.org/go/cpt``)
    or HCPCS (``https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets`` or
    ``urn:oid:2.16.840.1.113883.6.285``).

    ## Why payers deny it
    Payers adjudicate professional and outpatient lines by CPT/HCPCS only; a local charge
    code or a SNOMED CT code on the line cannot be priced and the line is rejected.

    ## Example
    ``productOrService.coding[0].system = "http://snomed.info/sct"`` with no CPT coding.

    ## How to fix
    Map the charge to its CPT or HCPCS code (the chargemaster usually carries it).
    """
    for ln in ctx.lines:
        if ln.kind is not None:
            continue
        if ln.code is None:
            msg = f"Line {ln.number} has no billing code."
            ev = "productOrService has no coding with a code"
        else:
            msg = f"Line {ln.number} is coded {ln.code} in a system payers do not accept for billing."
            ev = f"system {ln.system or '(none)'}; expected CPT or HCPCS"
        yield r.finding(expression=ln.code_path, line=ln.index, message=msg, evidence=ev)


@rule(
    id="COD002",
    name="malformed-procedure-code",
    category="invalid-code",
    severity="error",
    issue_type="code-invalid",
    summary="A CPT or HCPCS code does not have the shape of one",
)
def malformed_procedure_code(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    CPT codes are five characters: five digits (Category I) or four digits followed by F
    (Category II), T (Category III) or U (proprietary lab analyses). HCPCS Level II codes
    are a letter A-V and four digits.

    ## Why payers deny it
    A malformed code is rejected by the clearinghouse before the payer sees it.

    ## Example
    ``3656`` (four digits), ``36561-59`` (modifier typed into the code), ``J690``.

    ## How to fix
    Bill the five-character code; put modifiers in ``item.modifier``.
    """
    for ln in ctx.lines:
        if ln.code is None or ln.kind is None:
            continue
        ok = (
            is_cpt_format(ln.code)
            if ln.kind == "cpt"
            else (is_hcpcs_level2_format(ln.code) or is_cpt_format(ln.code))
        )
        if not ok:
            shape = (
                "five digits, or four digits and F, T, U, A or M"
                if ln.kind == "cpt"
                else "a letter A-V and four digits"
            )
            yield r.finding(
                expression=ln.code_path,
                line=ln.index,
                message=f"Line {ln.number}: {ln.code[:20]} is not a valid {ln.kind.upper()} code.",
                evidence=f"code {ln.code[:40]!r}; expected {shape}",
            )


@rule(
    id="COD003",
    name="code-not-valid-on-date",
    category="invalid-code",
    severity="error",
    issue_type="code-invalid",
    summary="A HCPCS/CPT code is unknown, not yet valid or terminated on the date of service",
    ioce_edit="6",
)
def code_not_valid_on_date(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    The billed code against the CMS code list in force on the line's date of service
    (the I/OCE HCPCS table, quarterly spans since 2019-07-01, with mid-quarter approval and
    termination dates). A HCPCS Level II code that is not in the list at all is an error;
    so is any code used before it was added or after it was terminated. A well-formed CPT
    code the CMS list does not know is a warning (new codes can precede the list).

    ## Why payers deny it
    Payers price a line with the code set of its date of service; a terminated code
    (J2001 ended 2024-09-30) or a code not yet effective is returned as invalid.

    ## Example
    J2001 (lidocaine) billed for 2025-01-15: terminated, replaced by J2003.

    ## How to fix
    Use the code valid on the date of service. The diagnostics name the span; where CMS
    named a replacement that is valid on the date of service, the finding names it and
    carries a ``replace-code`` fix. Replacements come from the CMS HCPCS file's xref column
    for terminated codes, and from a short curated list checked against the I/OCE spans
    (the old code's last day is the day before the new code's first: J2001 -> J2003,
    2024-10-01, with the unit change: J2003 is per 1 mg where J2001 was per 10 mg).
    """
    table = ctx.tables.hcpcs_validity
    for ln in ctx.lines:
        if ln.code is None or ln.kind is None or ln.service_date is None:
            continue
        if not (is_cpt_format(ln.code) or is_hcpcs_level2_format(ln.code)):
            continue  # COD002
        v = table.validity(ln.code, ln.service_date)
        if v.status == "valid":
            continue
        n = ln.number
        repl = _replacement(ctx, ln.code, ln.service_date) if v.status != "not-yet-valid" else None
        replacement = repl.replacement if repl else None
        hint = f"; {replacement} replaces it{f' ({repl.note})' if repl and repl.note else ''}" if repl else ""
        certain, new_units = _units_under(ctx, ln.code, repl.replacement, ln.units) if repl else (False, None)
        fix = (
            Fix(
                kind="replace-code",
                line=ln.index,
                value=repl.replacement,
                system=HCPCS if is_hcpcs_level2_format(repl.replacement) else CPT,
                label=f"Replace {ln.code} with {repl.replacement}"
                + (f" x {new_units:g}" if new_units is not None else ""),
                units=new_units,
            )
            if repl and certain
            else None
        )
        named = (
            f"; replaced by {repl.replacement} after {ymd_text(repl.last_day)} "
            f"({ctx.tables.cite('hcpcs_replacements')})"
            if repl
            else ""
        )
        if v.status == "unknown":
            level2 = is_hcpcs_level2_format(ln.code)
            yield r.finding(
                expression=ln.code_path,
                line=ln.index,
                severity=None if level2 else Severity.WARNING,
                message=f"Line {n}: {ln.code} is not a known {'HCPCS Level II' if level2 else 'CPT'} code{hint}.",
                evidence=f"{ln.code} not found in {ctx.tables.cite('hcpcs_validity')}{named}; I/OCE edit 6",
                fix=fix,
            )
            continue
        spans = "; ".join(f"{ymd_text(s.valid_from)} to {ymd_text(s.valid_to)}" for s in v.spans)
        when = "was terminated before" if v.status == "ended" else "was not yet valid on"
        yield r.finding(
            expression=ln.code_path,
            line=ln.index,
            message=f"Line {n}: {ln.code} {when} the date of service {ln.service_date.isoformat()}{hint}.",
            evidence=f"{ln.code} valid {spans}; date of service {ln.service_date.isoformat()}; {ctx.tables.cite('hcpcs_validity')}{named}"
            "; I/OCE edit 6",
            fix=fix,
            replacement=replacement,
        )


def _replacement(ctx: ClaimContext, code: str, on: date) -> Replacement | None:
    """The code CMS put in place of a terminated one, when it is itself valid on the date."""
    repl = ctx.tables.hcpcs_replacements.get(code)
    if repl is None or ctx.tables.hcpcs_validity.validity(repl.replacement, on).status != "valid":
        return None
    return repl


def _units_under(ctx: ClaimContext, old: str, new: str, units: float | None) -> tuple[bool, float | None]:
    """(is the swap certain, the units to bill under ``new``: None = as billed).

    A drug code's replacement can bill another amount per unit (J2001 10 mg, J2003 1 mg: 3
    units become 30); the swap is certain only when that conversion is exact.
    """
    drugs = ctx.tables.drug_units
    was, now = drugs.get(old), drugs.get(new)
    if was is None and now is None:
        return True, None  # not drugs: the units stay
    if was is None or now is None or was.amount is None or now.amount is None or was.unit != now.unit:
        return False, None
    if was.amount == now.amount:
        return True, None
    if units is None:
        return False, None
    converted = units * was.amount / now.amount
    if abs(converted - round(converted)) > 1e-9:
        return False, None
    return True, float(round(converted))


def _claim_dx_date(ctx: ClaimContext) -> date | None:
    dates = [ln.service_date for ln in ctx.lines if ln.service_date is not None]
    return min(dates) if dates else ctx.created


@rule(
    id="DX001",
    name="diagnosis-not-icd10cm",
    category="invalid-diagnosis",
    severity="error",
    issue_type="code-invalid",
    summary="A diagnosis is not coded in ICD-10-CM",
)
def diagnosis_not_icd10cm(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each ``Claim.diagnosis`` (or the Condition it references) has an ICD-10-CM coding
    (``http://hl7.org/fhir/sid/icd-10-cm``).

    ## Why payers deny it
    US payers accept diagnoses only in ICD-10-CM; SNOMED CT or WHO ICD-10 codes cannot be
    put on an 837 and the claim is rejected.

    ## Example
    A Condition coded only in SNOMED CT (91861009 acute myeloid leukemia).

    ## How to fix
    Add the ICD-10-CM coding (C92.00 for AML not in remission).
    """
    for d in ctx.diagnoses:
        if d.system in DIAGNOSIS_SYSTEMS:
            continue
        n = d.number
        yield r.finding(
            expression=d.code_path,
            message=(
                f"Diagnosis {n} is not coded in ICD-10-CM: {d.code[:20]} ({d.system or 'no system'})."
                if d.code
                else f"Diagnosis {n} has no ICD-10-CM code."
            ),
            evidence=f"expected system {sorted(DIAGNOSIS_SYSTEMS)[0]}",
        )


@lru_cache(maxsize=4)
def _sorted_billable(icd: Any) -> tuple[str, ...]:
    return tuple(sorted(icd.billable.codes()))


def _billable_below(icd: Any, header: str) -> list[str]:
    """The billable codes under a header: a range of the sorted codes (a scan of all 74,000
    per header made a claim with thousands of header diagnoses take seconds)."""
    codes = _sorted_billable(icd)
    out: list[str] = []
    for i in range(bisect_left(codes, header), len(codes)):
        if not codes[i].startswith(header):
            break
        if codes[i] != header:
            out.append(codes[i])
    return out


@rule(
    id="DX002",
    name="invalid-diagnosis-code",
    category="invalid-diagnosis",
    severity="error",
    issue_type="code-invalid",
    summary="An ICD-10-CM code does not exist, is a non-billable header, or is not valid on the date",
    ioce_edit="1",
)
def invalid_diagnosis_code(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each ICD-10-CM code against the code set in force on the claim's date of service:
    it must exist, and it must be billable, i.e. coded to the highest specificity. A
    category or subcategory that has codes below it (C92.0) is a header and cannot be
    billed; the billable codes below it (C92.00, C92.01, C92.02) are named.

    ## Why payers deny it
    Medicare and other payers return claims whose diagnoses are not valid, billable
    ICD-10-CM codes on the date of service (I/OCE edit 1; the same edit in the MAC front
    end for professional claims).

    ## Example
    C92.0 (acute myeloid leukemia, header) instead of C92.00 (not having achieved remission).

    ## How to fix
    Code to the full specificity the record supports; the diagnostics list the candidates.
    """
    icd = ctx.tables.icd10cm
    on = _claim_dx_date(ctx)
    for d in ctx.diagnoses:
        if d.system not in DIAGNOSIS_SYSTEMS or not d.code:
            continue
        n = d.number
        code = d.code
        if not is_icd10_format(code):
            yield r.finding(
                expression=d.code_path,
                message=f"Diagnosis {n}: {code[:20]} is not an ICD-10-CM code.",
                evidence=f"{code[:40]!r} does not have the ICD-10-CM shape (letter, digit, character, up to 4 more)",
            )
            continue
        if icd.is_header(code):
            children = _billable_below(icd, code)
            shown = ", ".join(children[:6]) + (" ..." if len(children) > 6 else "")
            yield r.finding(
                expression=d.code_path,
                message=f"Diagnosis {n}: {code} is a header code, not billable; code it to full specificity.",
                evidence=f"{code} has {len(children)} billable codes below it: {shown}; {ctx.tables.cite('icd10cm_validity')}",
            )
            continue
        spans: tuple[Span, ...] = ()
        if on is None:
            v_status = "valid" if code in icd.billable else "unknown"
        else:
            v = icd.billable.validity(code, on)
            v_status, spans = v.status, v.spans
        if v_status == "valid":
            continue
        if v_status == "unknown":
            yield r.finding(
                expression=d.code_path,
                message=f"Diagnosis {n}: {code} is not an ICD-10-CM code.",
                evidence=f"{code} not found in {ctx.tables.cite('icd10cm_validity')}",
            )
        else:
            span = "; ".join(f"{ymd_text(s.valid_from)} to {ymd_text(s.valid_to)}" for s in spans)
            yield r.finding(
                expression=d.code_path,
                message=f"Diagnosis {n}: {code} is not valid on the date of service {on}.",
                evidence=f"{code} valid {span}; date of service {on}; {ctx.tables.cite('icd10cm_validity')}",
            )
