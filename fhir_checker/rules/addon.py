"""[add-on] NCCI add-on code edits: an add-on code billed without its primary procedure."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import ClaimContext, ClaimLine
from ..findings import Finding, Fix, Severity
from ..registry import Rule, rule
from ..tables.ncci import AddonEdit
from .ncci_common import code_system, same_day_groups

TABLE = "addon_codes"


AddonLine = tuple[ClaimLine, AddonEdit, set[str]]


def _addon_lines(ctx: ClaimContext, edit_type: int) -> Iterator[AddonLine]:
    """(add-on line, its edit of that type, codes billed the same day by the same provider).

    The claim is scanned once for the three add-on rules (kept in ``ctx.extra``)."""
    found: list[AddonLine] | None = ctx.extra.get("addon.lines")
    if found is None:
        found = ctx.extra["addon.lines"] = list(_scan(ctx))
    return (hit for hit in found if hit[1].edit_type == edit_type)


def _scan(ctx: ClaimContext) -> Iterator[AddonLine]:
    table = ctx.tables.addons
    for (day, _provider), lines in same_day_groups(ctx).items():
        day_codes = {ln.code for ln in lines if ln.code}
        for ln in lines:
            if ln.code is None or ln.code not in table:
                continue
            edit = table.edit(ln.code, day)
            if edit is not None:
                yield ln, edit, day_codes


def _shown(codes: tuple[str, ...], limit: int = 12) -> str:
    return ", ".join(codes[:limit]) + (f" and {len(codes) - limit} more" if len(codes) > limit else "")


def _ioce_note(ctx: ClaimContext, r: Rule) -> str:
    """Where the I/OCE's add-on edit applies: not to OPPS hospital claims."""
    if ctx.is_institutional:
        return (
            f"outpatient hospital (OPPS) claim: I/OCE edit {r.ioce_edit} is raised on non-OPPS "
            "institutional claims only (add-on codes are packaged under OPPS), so not an error here"
        )
    return f"I/OCE edit {r.ioce_edit} (the same check on non-OPPS institutional claims)"


def _missing_primary(ctx: ClaimContext, r: Rule, edit_type: int) -> Iterator[Finding]:
    # Medicare's OPPS editor does not deny an add-on without its primary (I/OCE edits
    # 106-108 run on non-OPPS claims only), but on a hospital claim it still means a
    # missing charge or a miscoded line: a warning there, unless a pack says otherwise.
    opps = ctx.is_institutional
    severity = Severity.WARNING if opps and r.severity is Severity.ERROR else None
    for ln, edit, day_codes in _addon_lines(ctx, edit_type):
        if not edit.primaries or not day_codes.isdisjoint(edit.primaries):  # no set built per line
            continue
        n = ln.number
        fix = None
        if len(edit.primaries) == 1:
            p = edit.primaries[0]
            fix = Fix(
                kind="add-line",
                line=ln.index,
                value=p,
                system=code_system(p),
                label=f"Add the primary procedure {p} on {ln.service_date}",
            )
        if edit_type == 1:
            needs = f"its primary procedure ({_shown(edit.primaries)})"
        else:  # Type 3: CMS lists some primaries, each contractor may accept others
            needs = (
                f"any of its {len(edit.primaries)} listed primary procedures ({_shown(edit.primaries, 5)}) "
                "or another your contractor accepts"
            )
        tail = (
            " (Medicare's OPPS editor does not deny it, but the primary is likely unbilled)" if opps else ""
        )
        yield r.finding(
            expression=ln.code_path,
            line=ln.index,
            severity=severity,
            message=f"Line {n}: add-on code {ln.code} is billed on {ln.service_date} without {needs}{tail}.",
            evidence=(
                f"add-on {ln.code}: AOC edit type {edit_type}; listed primaries {_shown(edit.primaries)}; "
                f"none billed on {ln.service_date}; {ctx.tables.cite(TABLE)}; {_ioce_note(ctx, r)}"
            ),
            fix=fix,
        )


@rule(
    id="ADD001",
    name="addon-without-primary",
    category="add-on",
    severity="error",
    issue_type="business-rule",
    summary="A Type 1 add-on code without any of its listed primary procedures on the same date",
    ioce_edit="106",
)
def addon_without_primary(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each line whose code is a **Type 1** add-on code in the NCCI add-on code file in force
    on its date of service: at least one of the primary procedure codes the file lists for
    it must be billed on the claim for the same date (on professional claims, by the same
    rendering provider). An error on professional claims; a **warning** on outpatient
    hospital claims, where Medicare's OPPS does not run this edit (see below).

    ## Why payers deny it
    An add-on code describes work done in addition to a primary service ("each additional
    hour", "list separately in addition to"); it is never paid alone. For Type 1 add-ons
    CMS lists every acceptable primary, and contractors deny the add-on when none of them is
    paid to the same practitioner for the same patient and date. The I/OCE runs the same
    check (edit 106, line item denial) on non-OPPS institutional claims (critical access
    hospitals, Maryland ...), but not on OPPS hospital claims (bill type 13x), where add-on
    codes are packaged into their primary: there a missing primary is most often a charge
    left off the claim, hence a warning. A pack for non-OPPS hospitals can set
    ``ADD001: error``.

    ## Example
    96371 (an add-on to 96369) without 96369; 99153 (added sedation time) without 99151,
    99152 or G0500.

    ## How to fix
    Bill the primary procedure that was performed (when the file lists exactly one, the
    suggested fix adds it), or remove the add-on if the primary was not done.
    """
    return _missing_primary(ctx, r, 1)


@rule(
    id="ADD002",
    name="addon-without-listed-primary",
    category="add-on",
    severity="warning",
    issue_type="business-rule",
    summary="A Type 3 add-on code without any of its listed primary procedures on the same date",
    ioce_edit="108",
)
def addon_without_listed_primary(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each line whose code is a **Type 3** add-on code in the NCCI add-on code file: whether
    one of the primary codes CMS lists for it is billed for the same date.

    ## Why payers deny it
    For Type 3 add-ons CMS lists some primaries and lets each contractor accept others, so
    a missing listed primary is likely, not certain, to be denied (I/OCE edit 108, on
    non-OPPS institutional claims only: OPPS hospital claims get no add-on edit).

    ## Example
    96161 (caregiver health risk assessment) billed without any of the listed primaries.

    ## How to fix
    Bill the primary service that was performed with it, or check that your contractor
    accepts the primary you billed.
    """
    return _missing_primary(ctx, r, 3)


@rule(
    id="ADD003",
    name="addon-alone",
    category="add-on",
    severity="information",
    issue_type="informational",
    summary="A Type 2 add-on code (contractor-defined primaries) is the only service on its date",
    ioce_edit="107",
)
def addon_alone(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each line whose code is a **Type 2** add-on code in the NCCI add-on code file (CMS lists
    no primaries: each contractor defines them): whether any other, non-add-on service is
    billed for the same date that could be its primary.

    ## Why payers deny it
    A Type 2 add-on is paid only with a primary procedure the contractor accepts; billed
    alone it has none (I/OCE edit 107, on non-OPPS institutional claims only). Which
    primaries are accepted is the contractor's list, so this is information to check, not
    an error.

    ## Example
    0054T (computer-assisted navigation, add-on) as the only line of the day.

    ## How to fix
    Bill the primary procedure it was performed with, per your contractor's list.
    """
    table = ctx.tables.addons
    for ln, _edit, day_codes in _addon_lines(ctx, 2):
        others = {c for c in day_codes if c != ln.code and c not in table}
        if others:
            continue
        n = ln.number
        yield r.finding(
            expression=ln.code_path,
            line=ln.index,
            severity=Severity.INFORMATION,
            message=(
                f"Line {n}: add-on code {ln.code} is the only service on {ln.service_date}; it is paid "
                f"only with a primary procedure your contractor accepts."
            ),
            evidence=f"add-on {ln.code}: AOC edit type 2 (contractor-defined primaries); no other service on "
            f"{ln.service_date}; {ctx.tables.cite(TABLE)}; {_ioce_note(ctx, r)}",
        )
