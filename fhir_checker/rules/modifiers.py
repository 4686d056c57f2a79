"""[modifier] Modifiers that are unknown, not yet valid, contradictory or not allowed on the code."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import PRACTITIONER, ClaimContext, ClaimLine, Modifier
from ..findings import Finding, Fix
from ..registry import Rule, rule
from ..tables.codesets import ymd, ymd_text

#: Ambulance lines (revenue code 0540) carry origin/destination modifiers (RH, HR ...),
#: which are not on the modifier list: the I/OCE skips edit 22 for them.
AMBULANCE_REVENUE = frozenset({"0540", "540"})

#: The four modifiers CMS created in 2015 as more specific subsets of 59.
X_MODIFIERS = {
    "XE": "separate encounter",
    "XS": "separate structure (organ or site)",
    "XP": "separate practitioner",
    "XU": "unusual non-overlapping service",
}

#: PFS PC/TC indicators for which modifier 26 / TC is payable (CMS RVU file key):
#: 1 diagnostic test with PC and TC; 6 lab physician interpretation (26 only);
#: 8 physician interpretation (26 only). 0, 2, 3, 4, 5, 7, 9: neither.
PCTC_ALLOWS = {"26": frozenset({"1", "6", "8"}), "TC": frozenset({"1"})}
PCTC_MEANING = {
    "0": "physician service, PC/TC split does not apply",
    "1": "diagnostic test with professional and technical components",
    "2": "professional component only code",
    "3": "technical component only code",
    "4": "global test only code",
    "5": "incident-to code",
    "6": "laboratory physician interpretation code",
    "7": "physical therapy service",
    "8": "physician interpretation code",
    "9": "PC/TC concept does not apply",
}


@rule(
    id="MOD001",
    name="unknown-modifier",
    category="modifier",
    severity="error",
    issue_type="code-invalid",
    summary="A modifier that is not a valid CPT or HCPCS modifier",
    ioce_edit="22",
)
def unknown_modifier(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Every ``item.modifier`` against the valid modifiers: the I/OCE 27.1.0 modifier list
    and the CMS HCPCS modifier file (CPT level 1 and HCPCS level 2). A modifier on neither
    list is unknown; there is, for example, no modifier 11. Ambulance lines (revenue code
    0540) are not checked, as in the I/OCE: they carry origin/destination modifiers.

    ## Why payers deny it
    An unknown modifier cannot be priced or edited; the I/OCE returns the claim (edit 22,
    invalid modifier) and professional claims are rejected at the front end.

    ## Example
    99213 with modifier 11 (a typo for 25, or a place-of-service code typed as a modifier).

    ## How to fix
    Correct or remove the modifier (place of service goes in ``item.locationCodeableConcept``).
    """
    mods = ctx.tables.modifiers
    for ln in ctx.lines:
        if ln.revenue in AMBULANCE_REVENUE:
            continue
        for m in ln.modifiers:
            if m.code in mods:
                continue
            yield r.finding(
                expression=m.path,
                line=ln.index,
                message=f"Line {ln.number}: {m.code[:10]} is not a valid modifier.",
                evidence=f"modifier {m.code[:10]!r} is on neither the I/OCE modifier list nor the CMS HCPCS "
                f"modifier file; {ctx.tables.cite('modifier_attributes')}; I/OCE edit 22",
            )


@rule(
    id="MOD002",
    name="modifier-not-yet-valid",
    category="modifier",
    severity="error",
    issue_type="code-invalid",
    summary="A modifier used before the date it may first be reported",
    ioce_edit="103",
)
def modifier_not_yet_valid(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    A modifier used on a date of service before its first valid day. The first day is the
    I/OCE modifier ``date_activated`` where set (none is set in 27.1.0), else the effective
    date of the first I/OCE version whose modifier list carries the modifier, where that is
    after 2019-07-01 (the data's first version) and the row has no flags (a flag change
    would also start a new row, so flagged rows are not dated). Dated this way, for example:
    JZ 2023-01-01, JK and JL 2023-04-01, LU 2024-01-01, 93 and FQ-FT 2022-01-01, TB
    2025-01-01 (the I/OCE accepts TB from the date all 340B hospitals had to report it).

    ## Why payers deny it
    A modifier used before it exists is invalid on that date of service; the I/OCE rejects
    it (edit 103, modifier reported prior to its activation date; edit 22 in older
    versions) and payers return the line.

    ## Example
    J9035 with JZ (zero drug wasted) on 2022-11-15: JZ could be reported only from
    2023-01-01.

    ## How to fix
    Remove the modifier for dates of service before its first valid day (or check the date
    of service).
    """
    mods = ctx.tables.modifiers
    for ln in ctx.lines:
        if ln.service_date is None:
            continue
        day = ymd(ln.service_date)
        for m in ln.modifiers:
            info = mods.get(m.code)
            if info is None or not info.valid_from or day >= info.valid_from:
                continue
            yield r.finding(
                expression=m.path,
                line=ln.index,
                message=(
                    f"Line {ln.number}: modifier {m.code} could not be reported before {ymd_text(info.valid_from)}; "
                    f"the date of service is {ln.service_date.isoformat()}."
                ),
                evidence=f"modifier {m.code} valid from {ymd_text(info.valid_from)}; date of service "
                f"{ln.service_date.isoformat()}; {ctx.tables.cite('modifier_attributes')}; I/OCE edit 103",
            )


@rule(
    id="MOD003",
    name="bilateral-modifier-units",
    category="modifier",
    severity="error",
    issue_type="business-rule",
    summary="Modifier 50 (bilateral) on a line with more than one unit",
    ioce_edit="74",
)
def bilateral_modifier_units(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    A line with modifier 50 (bilateral procedure) has at most 1 unit.

    ## Why payers deny it
    Medicare pays a bilateral procedure billed with 50 at 150 % of one side on a single
    line with 1 unit; 2 units with 50 asks for both sides twice. The I/OCE returns the
    claim (edit 74, units greater than one for bilateral procedure billed with modifier 50)
    and practitioner claims are denied or cut to 1 unit.

    ## Example
    64483-50 with quantity 2.

    ## How to fix
    Bill 1 unit with modifier 50 (or, where the payer asks for it, two lines with RT and LT).
    """
    for ln in ctx.lines:
        if "50" not in ln.modifier_codes or ln.units is None or ln.units <= 1:
            continue
        m = next(m for m in ln.modifiers if m.code == "50")
        yield r.finding(
            expression=m.path,
            line=ln.index,
            message=f"Line {ln.number}: {ln.code or 'the line'} with modifier 50 must be billed with 1 unit, not {ln.units:g}.",
            evidence=f"modifier 50; {ln.path}.quantity.value = {ln.units:g} > 1",
            fix=Fix(kind="set-units", line=ln.index, value=1, label="Bill 1 unit with modifier 50"),
        )


@rule(
    id="MOD004",
    name="left-and-right-on-one-line",
    category="modifier",
    severity="error",
    issue_type="business-rule",
    summary="RT and LT on the same line",
    ioce_edit="102",
)
def left_and_right_on_one_line(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    A line that carries both RT (right side) and LT (left side).

    ## Why payers deny it
    One line describes one service on one side. Both sides on one line is contradictory;
    payers deny it (or pay one side); the I/OCE returns the claim (edit 102, modifier pairing
    not allowed on the same line). A bilateral procedure is billed with 50 (1 unit), or as
    two lines, one RT and one LT, as the payer requires.

    ## Example
    73630 (foot X-ray) with modifiers RT and LT on one line.

    ## How to fix
    Bill one line with 50 for a bilateral procedure, or split the line into an RT line and
    an LT line.
    """
    for ln in ctx.lines:
        codes = [m.code for m in ln.modifiers]
        if "RT" not in codes or "LT" not in codes:
            continue
        second = max((m for m in ln.modifiers if m.code in ("RT", "LT")), key=lambda m: m.path)
        yield r.finding(
            expression=second.path,
            line=ln.index,
            message=f"Line {ln.number}: RT and LT are both on one line; use 50 or bill each side on its own line.",
            evidence=f"modifiers {', '.join(codes)} on {ln.path}",
        )


@rule(
    id="MOD005",
    name="modifier-59-not-specific",
    category="modifier",
    severity="information",
    issue_type="informational",
    summary="Modifier 59 where an X{EPSU} modifier says more",
)
def modifier_59_not_specific(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    A line with modifier 59 (distinct procedural service) and none of XE, XS, XP, XU.

    ## Why payers deny it
    CMS created the X{EPSU} modifiers (2015) as more specific forms of 59 and prefers them;
    some payers accept only an X modifier to bypass certain NCCI pairs, and 59 draws
    reviews. Both are NCCI-associated modifiers: either bypasses a pair with modifier
    indicator 1. This is advice, not an error.

    ## Example
    96374-59 given in a separate session on the day of 96413: XE (separate encounter) says
    exactly why the pair does not apply.

    ## How to fix
    Use XE (separate encounter), XS (separate structure), XP (separate practitioner) or XU
    (unusual non-overlapping service) where one fits; keep 59 only when none does. Do not
    report 59 and an X modifier together.
    """
    options = ", ".join(f"{k} ({v})" for k, v in X_MODIFIERS.items())
    for ln in ctx.lines:
        codes = ln.modifier_codes
        if "59" not in codes or codes.intersection(X_MODIFIERS):
            continue
        m = next(m for m in ln.modifiers if m.code == "59")
        yield r.finding(
            expression=m.path,
            line=ln.index,
            message=f"Line {ln.number}: consider XE, XS, XP or XU instead of 59; they say why the service is distinct.",
            evidence=f"modifier 59 on {ln.code or ln.path}; more specific: {options}",
        )


def _pctc_modifiers(ln: ClaimLine) -> Iterator[Modifier]:
    return (m for m in ln.modifiers if m.code in PCTC_ALLOWS)


@rule(
    id="MOD006",
    name="pc-tc-modifier-not-allowed",
    category="modifier",
    severity="error",
    issue_type="business-rule",
    summary="Modifier 26 or TC on a code whose PFS PC/TC indicator does not allow it",
    settings=(PRACTITIONER,),
)
def pctc_modifier_not_allowed(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    On professional claims, modifier 26 (professional component) or TC (technical
    component) only on codes whose Medicare Physician Fee Schedule PC/TC indicator allows
    it: 26 with indicator 1 (diagnostic test with both components), 6 (lab physician
    interpretation) or 8 (physician interpretation); TC with indicator 1 only. Indicators
    0 (physician service), 2 (professional-only code), 3 (technical-only code), 4 (global
    test only), 5 (incident-to), 7 (physical therapy) and 9 (not applicable) allow neither.
    Codes not in the PFS file are not checked.

    ## Why payers deny it
    The fee schedule has no 26/TC value for such codes: the line cannot be priced and is
    denied (e.g. 99213-26, or 93000-26 where 93010 is the interpretation-only code).

    ## Example
    99213 (office visit) with 26: indicator 0, the PC/TC split does not apply.

    ## How to fix
    Remove the modifier, or bill the component code (93010 for the ECG interpretation,
    93005 for the tracing).
    """
    pctc = ctx.tables.pfs_pctc
    for ln in ctx.lines:
        if ln.code is None:
            continue
        for m in _pctc_modifiers(ln):
            ind = pctc.get(ln.code)
            if ind is None or ind in PCTC_ALLOWS[m.code]:
                continue
            what = "professional component" if m.code == "26" else "technical component"
            yield r.finding(
                expression=m.path,
                line=ln.index,
                message=f"Line {ln.number}: {ln.code} cannot be billed with {m.code} ({what}); its PC/TC indicator is {ind}.",
                evidence=f"{ln.code} PC/TC indicator {ind} ({PCTC_MEANING.get(ind, 'unknown')}); "
                f"{m.code} allowed with indicator {', '.join(sorted(PCTC_ALLOWS[m.code]))}; {ctx.tables.cite('pfs_pctc')}",
            )
