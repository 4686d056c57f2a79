"""[documentation] / [unbilled-procedure] / [date] The bill against the Procedures behind it."""

from __future__ import annotations

from collections.abc import Iterator

from ..clinical import NOT_COMPLETED, NOT_PERFORMED, RecordProcedure, service_kind
from ..context import ClaimContext, ClaimLine
from ..findings import Finding
from ..registry import Rule, rule
from ..values import is_present


def _status_of(procs: list[RecordProcedure]) -> str:
    return "; ".join(f"{p.label} status {p.status or '(none)'} ({p.path}.status)" for p in procs)


def _candidates(ctx: ClaimContext, ln: ClaimLine) -> tuple[list[RecordProcedure], bool]:
    """The Procedures behind a procedure line, and whether one of them is completed."""
    linked = ctx.linked_procedures(ln)
    matching = [p for p in ctx.matching_procedures(ln) if p not in linked]
    allp = linked + matching
    return (linked or matching), any(p.status == "completed" for p in allp)


def _procedure_lines(ctx: ClaimContext) -> list[ClaimLine]:
    """Procedure lines, once per claim for the three documentation rules."""
    if not ctx.has_record:
        return []  # nothing to compare with: the input carries no clinical record
    cached: list[ClaimLine] | None = ctx.extra.get("record.procedure_lines")
    if cached is None:
        cached = [ln for ln in ctx.lines if ln.code and ln.kind and service_kind(ln.code) == "procedure"]
        ctx.extra["record.procedure_lines"] = cached
    return cached


@rule(
    id="DOC001",
    name="procedure-not-documented",
    category="documentation",
    severity="warning",
    issue_type="business-rule",
    summary="A procedure line has no Procedure behind it in the record",
)
def procedure_not_documented(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each procedure line (CPT/HCPCS procedures; not drugs, devices, supplies, labs or E/M
    visits, told apart by code range) has a ``Procedure`` behind it: one linked through
    ``item.procedureSequence`` -> ``Claim.procedure.procedureReference``, or one in the
    input carrying the line's code (any of its codings: one sedation Procedure may carry
    99152 and 99153) and performed on the line's date. Runs only when the input carries a
    clinical record (at least one Procedure or MedicationAdministration).

    ## Why payers deny it
    A billed procedure must be supported by documentation of its performance; in a
    records request or audit an undocumented line is denied or recouped.

    ## Example
    Line 3 bills 77001 (fluoroscopic guidance) but the record holds no Procedure coded
    77001 on 2026-03-10 and the line links none.

    ## How to fix
    Link the line to its Procedure (``procedureSequence``), or add the missing
    documentation; if the procedure was not performed, remove the line.
    """
    for ln in _procedure_lines(ctx):
        procs, _ = _candidates(ctx, ln)
        if procs:
            continue
        linked = f"links procedureSequence {list(ln.procedure_sequences)}; " if ln.procedure_sequences else ""
        yield r.finding(
            expression=ln.code_path,
            line=ln.index,
            message=f"Line {ln.number} bills {ln.code}, but no Procedure in the record documents it on "
            f"{ln.service_date or 'the date of service'}.",
            evidence=f"{linked}no Procedure with code {ln.code} performed {ln.service_date} among "
            f"{len(ctx.record_procedures)} Procedure(s) in the input",
        )


@rule(
    id="DOC002",
    name="procedure-not-performed",
    category="documentation",
    severity="error",
    issue_type="business-rule",
    summary="A procedure line's Procedure is not-done, stopped or entered in error",
)
def procedure_not_performed(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    The Procedure behind a procedure line (linked, or same code and date) has status
    ``not-done``, ``entered-in-error`` or ``stopped``, and no completed Procedure
    documents the line.

    ## Why payers deny it
    A service that was not performed, was abandoned, or whose record was voided cannot be
    billed as performed; billing it is an overpayment (and, knowingly, a false claim).
    A stopped procedure is billed with modifier 52/53/73/74 only when the record says so.

    ## Example
    Line 1 bills 36561; its Procedure has ``status: not-done`` (port placement cancelled).

    ## How to fix
    Remove the line, or, for a procedure discontinued after it started, bill it with the
    reduced/discontinued-service modifier the record supports.
    """
    for ln in _procedure_lines(ctx):
        procs, completed = _candidates(ctx, ln)
        bad = [p for p in procs if p.status in NOT_PERFORMED]
        if completed or not bad:
            continue
        yield r.finding(
            expression=ln.code_path,
            line=ln.index,
            message=f"Line {ln.number} bills {ln.code}, but the record says it was {bad[0].status}.",
            evidence=_status_of(procs),
        )


@rule(
    id="DOC003",
    name="procedure-not-completed",
    category="documentation",
    severity="warning",
    issue_type="business-rule",
    summary="A procedure line's Procedure is still in progress (not completed)",
)
def procedure_not_completed(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    The Procedure behind a procedure line has status ``in-progress``, ``preparation``,
    ``on-hold`` or ``unknown`` (or none), and no completed Procedure documents the line.

    ## Why payers deny it
    The claim is built before the documentation is final; the bill may not match what is
    finally documented (a different code, fewer units, a discontinued service).

    ## Example
    Line 6 bills 99152; the sedation Procedure is still ``in-progress``.

    ## How to fix
    Hold the claim until the procedure note is signed and the Procedure is completed.
    """
    for ln in _procedure_lines(ctx):
        procs, completed = _candidates(ctx, ln)
        if completed or not procs or any(p.status in NOT_PERFORMED for p in procs):
            continue  # DOC002 reports not-performed ones
        if all(p.status in NOT_COMPLETED or p.status is None for p in procs):
            yield r.finding(
                expression=ln.code_path,
                line=ln.index,
                message=f"Line {ln.number} bills {ln.code}, but its Procedure is not completed "
                f"({procs[0].status or 'no status'}).",
                evidence=_status_of(procs),
            )


@rule(
    id="UNB001",
    name="procedure-not-billed",
    category="unbilled-procedure",
    severity="warning",
    issue_type="business-rule",
    summary="A completed Procedure in the record has no claim line (a missed charge)",
)
def procedure_not_billed(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Every completed Procedure in the input that carries a CPT/HCPCS code, was performed
    within the claim's dates of service (or is referenced from ``Claim.procedure``), and
    none of whose codes is billed on any line.

    ## Why payers deny it
    Payers do not deny what is not billed: this is revenue lost. Documented, separately
    payable services left off the claim (imaging guidance, a second procedure) are the
    most common charge-capture gap.

    ## Example
    The record documents 77001 (fluoroscopic guidance) for the port placement; the claim
    bills 36561 and 76937 but not 77001.

    ## How to fix
    Add the line if the service is separately billable (check NCCI bundling first), or
    record why it is not billed.
    """
    for p in ctx.record_procedures:
        if p.status != "completed" or not p.codes or p.code_set & ctx.billed_codes:
            continue
        if not ctx.on_claim(p):
            continue  # another encounter's procedure
        codes = ", ".join(sorted(p.code_set))
        yield r.finding(
            expression=p.codes[0].path,
            message=f"{codes} is documented as performed on {p.performed_date or 'the claim dates'} "
            "but not billed on any line.",
            evidence=f"{p.label} ({p.path}) status completed, code {codes}; billed codes: "
            f"{', '.join(sorted(ctx.billed_codes)) or 'none'}",
        )


def _date_path(ln: ClaimLine) -> str:
    if is_present(ln.raw.get("servicedDate")):
        return f"{ln.path}.servicedDate"
    if is_present(ln.raw.get("servicedPeriod")):
        return f"{ln.path}.servicedPeriod"
    return "Claim.billablePeriod"


@rule(
    id="DAT003",
    name="service-date-not-performed-date",
    category="date",
    severity="error",
    issue_type="business-rule",
    summary="A line's date of service differs from the date its Procedure was performed",
)
def service_date_not_performed_date(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    For each line linked to a Procedure (``procedureSequence``), the line's date of service
    (or its period) covers the Procedure's ``performedDateTime`` / ``performedPeriod``
    date, read as the local date written in the record.

    ## Why payers deny it
    The date of service must be the date the service was performed. A wrong date shifts
    the service into another claim's window, makes duplicates, or breaks frequency and
    global-period edits; in an audit the line is unsupported.

    ## Example
    Line 1 (36561) dated 2026-03-11; its Procedure was performed 2026-03-10.

    ## How to fix
    Correct the line's ``servicedDate`` to the performed date (or correct the record).
    """
    for ln in ctx.lines:
        if ln.service_date is None:
            continue
        end = ln.service_end or ln.service_date
        for p in ctx.linked_procedures(ln):
            if p.performed_date is None:
                continue
            p_end = p.performed_end or p.performed_date
            if p.performed_date <= end and ln.service_date <= p_end:
                continue  # the dates overlap
            performed = (
                str(p.performed_date) if p_end == p.performed_date else f"{p.performed_date} to {p_end}"
            )
            billed = str(ln.service_date) if end == ln.service_date else f"{ln.service_date} to {end}"
            yield r.finding(
                expression=_date_path(ln),
                line=ln.index,
                message=f"Line {ln.number} ({ln.code}) is dated {billed}, but its Procedure was "
                f"performed on {performed}.",
                evidence=f"line date {billed}; {p.label} {p.performed_path} {performed}",
            )
