"""[structure] What the FHIR models do not check about a claim's inner wiring."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import ClaimContext
from ..findings import Finding
from ..registry import Rule, rule


@rule(
    id="STR000",
    name="fhir-structure",
    category="structure",
    severity="error",
    issue_type="structure",
    summary="The input is not valid FHIR R4 (element missing, wrong type, unknown element)",
)
def fhir_structure(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each resource of the input against the FHIR R4 model (fhir.resources, R4B package):
    required elements (a Claim needs status, type, use, patient, created, provider, priority
    and insurance), data types (a sequence is an integer, a date is a date) and unknown
    elements. The engine runs this rule itself: a fast shape check first, the full model
    whenever the shape check finds anything off (or always with ``validation="full"``).

    ## Why payers deny it
    A claim that is not valid FHIR cannot be mapped to an 837 or read by the payer's
    adjudication system; it is rejected before any coding edit runs.

    ## Example
    ``Claim.item[0].sequence`` sent as ``"one"``; ``Claim.insurance`` missing.

    ## How to fix
    Correct the element named in the expression; the EHR's claim builder usually
    needs a mapping fix.
    """
    return iter(())  # run by the engine (validation.py), listed here for docs and selection


@rule(
    id="STR001",
    name="duplicate-item-sequence",
    category="structure",
    severity="error",
    issue_type="structure",
    summary="Two claim lines share one item sequence number",
)
def duplicate_item_sequence(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    ``Claim.item.sequence`` is unique across the claim's lines.

    ## Why payers deny it
    Line sequence numbers identify lines in the remittance (835) and in adjustments; two
    lines with one number cannot be adjudicated or appealed separately.

    ## Example
    Two items both with ``sequence: 2``.

    ## How to fix
    Number the lines 1, 2, 3 ... in order.
    """
    seen: dict[int, int] = {}
    for ln in ctx.lines:
        if ln.sequence is None:
            continue
        if ln.sequence in seen:
            yield r.finding(
                expression=f"{ln.path}.sequence",
                line=ln.index,
                message=f"Line sequence {ln.sequence} is used twice; each claim line needs its own number.",
                evidence=f"Claim.item[{seen[ln.sequence]}] and Claim.item[{ln.index}] both have sequence {ln.sequence}",
            )
        else:
            seen[ln.sequence] = ln.index


def _dangling(
    ctx: ClaimContext,
    r: Rule,
    attr: str,
    element: str,
    known: set[int] | frozenset[int],
    target: str,
) -> Iterator[Finding]:
    for ln in ctx.lines:
        for pos, seq in enumerate(getattr(ln, attr)):
            if seq not in known:
                yield r.finding(
                    expression=f"{ln.path}.{element}[{pos}]",
                    line=ln.index,
                    message=f"Line {ln.number} points at {target} {seq}, which the claim does not have.",
                    evidence=f"{element} {seq}; the claim's {target} sequences: "
                    + (", ".join(str(s) for s in sorted(known)) or "none"),
                )


@rule(
    id="STR002",
    name="dangling-diagnosis-sequence",
    category="structure",
    severity="error",
    issue_type="structure",
    summary="A line's diagnosisSequence points at no Claim.diagnosis",
)
def dangling_diagnosis_sequence(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Every ``Claim.item.diagnosisSequence`` names the ``sequence`` of a ``Claim.diagnosis``.

    ## Why payers deny it
    The diagnosis pointer (837 SV107 / box 24E) tells the payer why the service was done;
    a pointer to nothing leaves the line without a diagnosis, and the line is denied.

    ## Example
    A line with ``diagnosisSequence: [3]`` on a claim with two diagnoses.

    ## How to fix
    Point the line at the diagnosis that supports it, or add the missing diagnosis.
    """
    yield from _dangling(
        ctx,
        r,
        "diagnosis_sequences",
        "diagnosisSequence",
        {d.sequence for d in ctx.diagnoses if d.sequence is not None},
        "diagnosis",
    )


@rule(
    id="STR003",
    name="dangling-procedure-sequence",
    category="structure",
    severity="error",
    issue_type="structure",
    summary="A line's procedureSequence points at no Claim.procedure",
)
def dangling_procedure_sequence(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Every ``Claim.item.procedureSequence`` names the ``sequence`` of a ``Claim.procedure``.

    ## Why payers deny it
    The link is how the claim says which documented procedure a line bills; a broken link
    is a claim the payer (and this checker) cannot tie to the record.

    ## Example
    ``procedureSequence: [2]`` on a claim with one ``Claim.procedure``.

    ## How to fix
    Link the line to the right ``Claim.procedure`` entry, or add the entry.
    """
    yield from _dangling(
        ctx,
        r,
        "procedure_sequences",
        "procedureSequence",
        {p.sequence for p in ctx.procedures if p.sequence is not None},
        "procedure",
    )


@rule(
    id="STR004",
    name="dangling-care-team-sequence",
    category="structure",
    severity="error",
    issue_type="structure",
    summary="A line's careTeamSequence points at no Claim.careTeam",
)
def dangling_care_team_sequence(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Every ``Claim.item.careTeamSequence`` names the ``sequence`` of a ``Claim.careTeam``.

    ## Why payers deny it
    The care-team link carries the rendering provider of the line; without it the payer
    cannot tell who performed the service and rejects the line.

    ## Example
    ``careTeamSequence: [2]`` on a claim whose care team has only sequence 1.

    ## How to fix
    Add the provider to ``Claim.careTeam`` or correct the line's pointer.
    """
    yield from _dangling(
        ctx, r, "care_team_sequences", "careTeamSequence", ctx.care_team_sequences, "care team member"
    )


@rule(
    id="STR005",
    name="dangling-information-sequence",
    category="structure",
    severity="error",
    issue_type="structure",
    summary="A line's informationSequence points at no Claim.supportingInfo",
)
def dangling_information_sequence(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Every ``Claim.item.informationSequence`` names the ``sequence`` of a
    ``Claim.supportingInfo``.

    ## Why payers deny it
    Supporting information (a drug administration, an attachment) that the line claims to
    rely on but does not carry leaves the line unsupported.

    ## Example
    A J-code line with ``informationSequence: [4]`` and no supportingInfo 4.

    ## How to fix
    Add the supporting information or correct the pointer.
    """
    yield from _dangling(
        ctx,
        r,
        "information_sequences",
        "informationSequence",
        ctx.supporting_info_sequences,
        "supporting information",
    )


@rule(
    id="STR006",
    name="missing-date-of-service",
    category="structure",
    severity="error",
    issue_type="required",
    summary="A line has no date of service (no item date and no claim billablePeriod)",
    ioce_edit="23",
)
def missing_date_of_service(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each line has a date of service: ``Claim.item.servicedDate`` or ``servicedPeriod``, or
    else the claim's ``billablePeriod``.

    ## Why payers deny it
    Every edit and every fee is keyed by the date of service; a line without one is
    returned unprocessable (I/OCE edit 23, invalid date, stops processing of the claim).

    ## Example
    An item with neither ``servicedDate`` nor ``servicedPeriod`` on a claim without
    ``billablePeriod``.

    ## How to fix
    Add ``servicedDate`` to the line (the date the service was performed).
    """
    for ln in ctx.lines:
        if ln.service_date is None:
            yield r.finding(
                expression=ln.path,
                line=ln.index,
                message=f"Line {ln.number} has no date of service.",
                evidence="neither item.servicedDate, item.servicedPeriod nor Claim.billablePeriod.start is set",
            )


@rule(
    id="STR007",
    name="quantity-not-positive",
    category="structure",
    severity="error",
    issue_type="required",
    summary="A line's quantity (units) is missing, zero or negative",
)
def quantity_not_positive(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each line carries ``quantity.value`` greater than zero: the units of service billed.

    ## Why payers deny it
    Units drive payment and the medically unlikely edits; a line with no or zero units is
    returned as incomplete (837 SV104 is required).

    ## Example
    An item with no ``quantity``, or ``quantity: {"value": 0}``.

    ## How to fix
    Bill the number of units performed (1 for most procedures; the dose in billing units
    for drugs).
    """
    for ln in ctx.lines:
        if ln.units is None or ln.units <= 0:
            has_qty = isinstance(ln.raw.get("quantity"), dict)
            yield r.finding(
                expression=f"{ln.path}.quantity" if has_qty else ln.path,
                line=ln.index,
                message=f"Line {ln.number} has "
                + (
                    "no units billed."
                    if ln.units is None
                    else f"{ln.units:g} units; units must be above zero."
                ),
                evidence="item.quantity.value " + ("missing" if ln.units is None else f"= {ln.units:g}"),
            )
