"""[mue] Medically Unlikely Edits: more units of a code than CMS allows."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import ClaimContext, ClaimLine
from ..findings import Finding, Fix
from ..registry import Rule, rule
from ..tables.ncci import MAI_TEXT, Mue, MueTable
from .ncci_common import same_day_groups, units_of, units_path

_TABLE_NAME = {"practitioner": "mue_practitioner", "outpatient-hospital": "mue_outpatient_hospital"}


def _table(ctx: ClaimContext) -> tuple[MueTable, str]:
    named = ctx.pack.tables.get("mue") if ctx.pack.tables else None
    setting = named if named in _TABLE_NAME else ctx.setting
    return ctx.tables.mue(setting), ctx.tables.cite(_TABLE_NAME[setting])


def _fmt(units: float) -> str:
    return str(int(units)) if float(units).is_integer() else f"{units:g}"


def _bill(value: int) -> str:
    return f"Bill {value} unit{'' if value == 1 else 's'}"


def _mai_words(m: Mue) -> str:
    return f"MAI {m.mai} ({MAI_TEXT.get(m.mai, 'unknown')})"


@rule(
    id="MUE001",
    name="mue-line-units",
    category="mue",
    severity="error",
    issue_type="business-rule",
    summary="A line bills more units than the code's MUE (adjudication indicator 1: per line)",
)
def mue_line_units(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    For codes whose MUE adjudication indicator (MAI) is **1** (line edit), each line's units
    against the MUE value of the claim setting's table (practitioner or outpatient
    hospital). A line without a quantity counts as one unit.

    ## Why payers deny it
    An MUE is the most units of a service one provider reports for one patient on one date
    in almost every case. With MAI 1 the edit is applied to each line: a line over the value
    is denied in full (not cut back to the MUE), though separate lines with CPT modifiers
    such as 76, 77, 91 or anatomic modifiers are counted separately.

    ## Example
    A code with MUE 1 (MAI 1) billed with quantity 2 on one line.

    ## How to fix
    Bill the units the record supports, at most the MUE on one line; if more were truly
    given (another site or session), report them on separate lines with the modifier that
    says why.
    """
    table, source = _table(ctx)
    for ln in ctx.coded_lines():
        assert ln.code is not None
        m = table.get(ln.code)
        if m is None or m.mai != 1:
            continue
        units = units_of(ln)
        if units <= m.value:
            continue
        n = ln.number
        yield r.finding(
            expression=units_path(ln),
            line=ln.index,
            message=(
                f"Line {n}: {_fmt(units)} units of {ln.code} exceed its medically unlikely edit "
                f"of {m.value} per line; the line is denied in full."
            ),
            evidence=(
                f"{ln.code}: {_fmt(units)} units on line {n} > MUE {m.value}; {_mai_words(m)}: applied per "
                f"line; MUE rationale: {m.rationale or 'not stated'}; {source}"
            ),
            fix=Fix(kind="set-units", line=ln.index, value=float(m.value), label=_bill(m.value)),
        )


@rule(
    id="MUE002",
    name="mue-date-of-service-units",
    category="mue",
    severity="error",
    issue_type="business-rule",
    summary="A code's units on one date of service exceed its MUE (adjudication indicator 2 or 3)",
)
def mue_date_units(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    For codes whose MUE adjudication indicator (MAI) is **2** (date of service, policy) or
    **3** (date of service, clinical), the units of the code summed over every line of one
    date of service (and, on professional claims, one rendering provider) against the MUE
    value. The finding goes on the first line of the code that day and lists the lines
    summed.

    ## Why payers deny it
    MAI 2 and 3 edits count all units of the code on the date, whatever the lines or
    modifiers. **MAI 2 is absolute policy** (CMS policy, a code descriptor, anatomy): units
    above it are never paid, and an appeal cannot change that. **MAI 3 is a clinical
    benchmark**: the units over it are denied, but they can be paid on appeal when the
    medical record documents that they were given and needed.

    ## Example
    J0690 (cefazolin, 500 mg) has an MUE of 16 units (MAI 3): 10 units on one line and 8 on
    another on the same day are 18 units, 2 over.

    ## How to fix
    Check the units against the record (drug units are per HCPCS dose, e.g. 500 mg). With
    MAI 2, bill at most the MUE. With MAI 3, bill what the record supports; units above the
    MUE will be denied and need an appeal with the records.
    """
    table, source = _table(ctx)
    for (_day, _provider), lines in same_day_groups(ctx).items():
        by_code: dict[str, list[ClaimLine]] = {}
        for ln in lines:
            assert ln.code is not None
            by_code.setdefault(ln.code, []).append(ln)
        for code, code_lines in by_code.items():
            m = table.get(code)
            if m is None or m.mai not in (2, 3):
                continue
            total = sum(units_of(ln) for ln in code_lines)
            if total <= m.value:
                continue
            first = code_lines[0]
            nums = ", ".join(str(ln.number) for ln in code_lines)
            appeal = (
                "units above it are not paid, and an appeal cannot change that (policy)"
                if m.mai == 2
                else "units above it are denied but can be paid on appeal with the medical record"
            )
            yield r.finding(
                expression=units_path(first),
                line=first.index,
                message=(
                    f"Line {first.number}: {_fmt(total)} units of {code} on "
                    f"{first.service_date} exceed its medically unlikely edit of {m.value} per day; "
                    f"{appeal}."
                ),
                evidence=(
                    f"{code}: {_fmt(total)} units (line{'s' if len(code_lines) > 1 else ''} {nums}) > MUE "
                    f"{m.value}; {_mai_words(m)}: units summed per date of service; MUE rationale: "
                    f"{m.rationale or 'not stated'}; {source}"
                ),
                fix=Fix(kind="set-units", line=first.index, value=float(m.value), label=_bill(m.value))
                if len(code_lines) == 1
                else None,
            )
