"""[ptp] NCCI procedure-to-procedure edits: column-2 codes billed with their column-1 code."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import ClaimContext, ClaimLine
from ..findings import Finding, Fix
from ..registry import Rule, rule
from ..tables.ncci import INDICATOR_TEXT, NO_START, OPEN_END, PtpEdit, ymd_text
from .ncci_common import NCCI_MODIFIERS, same_day_groups

_TABLE_NAME = {"practitioner": "ptp_practitioner", "outpatient-hospital": "ptp_outpatient_hospital"}


def _table_setting(ctx: ClaimContext) -> str:
    """The PTP table the rule pack names (``tables: ptp: ...``), else the claim's setting."""
    named = ctx.pack.tables.get("ptp") if ctx.pack.tables else None
    return named if named in _TABLE_NAME else ctx.setting


def _hits(ctx: ClaimContext) -> list[tuple[PtpEdit, list[ClaimLine], list[ClaimLine]]]:
    """Every pair in force among a day's lines: (edit, column-1 lines, column-2 lines).

    Computed once per claim for both PTP rules.
    """
    cached = ctx.extra.get("ptp.hits")
    if cached is not None:
        hits: list[tuple[PtpEdit, list[ClaimLine], list[ClaimLine]]] = cached
        return hits
    table = ctx.tables.ptp(_table_setting(ctx))
    hits = []
    for (day, _provider), lines in same_day_groups(ctx).items():
        codes = [ln.code for ln in lines if ln.code]
        if len(set(codes)) < 2:
            continue
        for edit in table.edits_among(codes, day):
            hits.append(
                (
                    edit,
                    [ln for ln in lines if ln.code == edit.column1],
                    [ln for ln in lines if ln.code == edit.column2],
                )
            )
    ctx.extra["ptp.hits"] = hits
    return hits


def _span(e: PtpEdit) -> str:
    # NO_START: in force before the table's data begins (the practitioner extract has no
    # effective dates; I/OCE spans begin with its 2019-07-01 version).
    start = (
        "in force since before the table's data"
        if e.effective == NO_START
        else f"effective {ymd_text(e.effective)}"
    )
    end = "not deleted" if e.deletion == OPEN_END else f"in force through {ymd_text(e.deletion)}"
    return f"{start}, {end}"


def _evidence(ctx: ClaimContext, edits: list[PtpEdit]) -> str:
    name = _TABLE_NAME[_table_setting(ctx)]
    pairs = "; ".join(
        f"pair {e.column1}/{e.column2}: modifier indicator {e.indicator} ({INDICATOR_TEXT[e.indicator]}), "
        f"rationale: {e.rationale}, {_span(e)}"
        for e in edits
    )
    return f"{pairs}; {ctx.tables.cite(name)}"


def _findings(ctx: ClaimContext, r: Rule, indicator: int) -> Iterator[Finding]:
    by_line: dict[int, tuple[ClaimLine, list[PtpEdit]]] = {}
    for edit, col1_lines, col2_lines in _hits(ctx):
        if edit.indicator != indicator:
            continue
        for ln in col2_lines:
            if indicator == 1 and (
                ln.modifier_codes & NCCI_MODIFIERS
                or any(c.modifier_codes & NCCI_MODIFIERS for c in col1_lines)
            ):
                continue  # bypassed: an NCCI-associated modifier on either line
            by_line.setdefault(ln.index, (ln, []))[1].append(edit)
    for _, (ln, edits) in sorted(by_line.items()):
        col1 = ", ".join(sorted({e.column1 for e in edits}))
        n = ln.number
        if indicator == 0:
            msg = (
                f"Line {n}: {ln.code} is not paid with {col1} on the same day, and no modifier "
                f"allows it (NCCI PTP edit); remove line {n}."
            )
        else:
            msg = (
                f"Line {n}: {ln.code} is bundled into {col1} on the same day (NCCI PTP edit) unless "
                f"an NCCI-associated modifier such as 59 or XU shows a distinct service."
            )
        yield r.finding(
            expression=ln.code_path,
            line=ln.index,
            message=msg,
            evidence=_evidence(ctx, edits) + f"; I/OCE edit {r.ioce_edit}",
            fix=Fix(kind="remove-line", line=ln.index, label=f"Remove line {n} ({ln.code})"),
            pairs=[(e.column1, e.column2) for e in edits],
        )


@rule(
    id="PTP001",
    name="ptp-pair-not-bypassable",
    category="ptp",
    severity="error",
    issue_type="business-rule",
    summary="A column-2 code billed with its NCCI column-1 code on the same day; no modifier allows it",
    ioce_edit="20",
)
def ptp_not_bypassable(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    For each date of service (and, on professional claims, each rendering provider), every
    ordered pair of billed codes (column 1, column 2) against the NCCI procedure-to-procedure
    table of the claim's setting (practitioner or outpatient hospital; the rule pack's
    ``tables.ptp`` names which) in force on that date: an edit deleted before the date of
    service does not apply, nor one that starts after it. This rule reports the pairs with
    **modifier indicator 0**, on the column-2 line. Modifier indicator 9 ("not applicable")
    never applies. Mutually exclusive pairs (36560 vs 36561) are in the same table.

    ## Why payers deny it
    Medicare's NCCI edits pay the column-1 code and deny the column-2 code when both are
    reported for one patient by one provider on one day. With indicator 0 CMS allows no
    modifier to bypass the edit: 59, XU or anatomic modifiers change nothing (I/OCE edit 20).

    ## Example
    36561 (tunneled central venous port) and 96523 (port irrigation) on the same day by the
    same practitioner: 96523 is denied, even with modifier 59.

    ## How to fix
    Remove the column-2 line; its work is part of the column-1 service. If the column-2 code
    was billed in error for another code, correct it.
    """
    return _findings(ctx, r, 0)


@rule(
    id="PTP002",
    name="ptp-pair-without-modifier",
    category="ptp",
    severity="error",
    issue_type="business-rule",
    summary="A column-2 code billed with its NCCI column-1 code on the same day, without an NCCI modifier",
    ioce_edit="40",
)
def ptp_without_modifier(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    The same NCCI procedure-to-procedure pairs as PTP001, for pairs with **modifier
    indicator 1**: the column-2 line is reported unless either line of the pair carries an
    NCCI-associated modifier (24, 25, 27, 57, 58, 59, 78, 79, 91, XE, XP, XS, XU, E1-E4, FA,
    F1-F9, TA, T1-T9, LT, RT, LC, LD, LM, RC, RI).

    ## Why payers deny it
    With indicator 1 CMS bundles the column-2 service into the column-1 service unless the
    claim shows it was distinct (another session, site, organ or encounter); without such a
    modifier the column-2 line is denied (I/OCE edit 40).

    ## Example
    96413 (chemotherapy infusion, first hour) and 96374 (IV push) on the same day: 96374 is
    denied unless 59 or XU (or another NCCI modifier) is on one of the lines and the record
    supports a separate service.

    ## How to fix
    If the column-2 service was distinct and the record shows it, add the modifier that says
    why (XU unusual non-overlapping service, XS separate structure, XE separate encounter,
    XP separate practitioner, or 59). Otherwise remove the column-2 line.
    """
    return _findings(ctx, r, 1)
