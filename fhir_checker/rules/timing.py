"""[time] Time-based codes against the duration documented in the record."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from ..context import ClaimContext, ClaimLine
from ..findings import Finding, Fix
from ..registry import Rule, rule


@dataclass(frozen=True, slots=True)
class TimedFamily:
    """An initial code and its add-on, with the time thresholds of the CPT time rules."""

    initial: tuple[str, ...]
    addon: str | None
    initial_minutes: float  # the initial code needs this much time ...
    initial_strict: bool  # ... strictly more than it (True) or at least it (False)
    addon_after: float  # the first add-on unit needs time beyond this ...
    addon_strict: bool
    addon_step: float  # ... and each further unit another step
    label: str

    def initial_supported(self, minutes: float) -> int:
        ok = minutes > self.initial_minutes if self.initial_strict else minutes >= self.initial_minutes
        return 1 if ok else 0

    def addon_supported(self, minutes: float) -> int:
        if self.initial_supported(minutes) == 0:
            return 0
        if self.addon_strict:
            return (
                0
                if minutes <= self.addon_after
                else math.ceil((minutes - self.addon_after) / self.addon_step)
            )
        return 0 if minutes < self.addon_after else int((minutes - self.addon_after) // self.addon_step) + 1

    def rule_text(self, code: str) -> str:
        if code == self.addon:
            op = "more than" if self.addon_strict else "at least"
            return (
                f"{code} needs {op} {self.addon_after:g} min for its first unit and another "
                f"{self.addon_step:g} min for each further unit"
            )
        op = "more than" if self.initial_strict else "at least"
        return f"{code} needs {op} {_hm(self.initial_minutes)}"


#: The time rules applied (CPT time conventions as CMS publishes them):
#: - moderate sedation: the initial 15 minutes needs at least 10 minutes of intraservice
#:   time and covers 10-22 minutes; the add-on's first unit starts at 23 minutes (15 + 8,
#:   past the midpoint of the next 15), each further unit another 15 minutes;
#: - infusion and hydration (the CMS/CPT midpoint rule): the initial hour needs more than
#:   15 minutes of infusion (31 for hydration; less is a push or not reported), and each
#:   additional hour needs more than 30 minutes beyond the previous hour (91, 151 ...);
#: - prolonged pump infusion: more than 8 hours.
FAMILIES: tuple[TimedFamily, ...] = (
    TimedFamily(("99151", "99152"), "99153", 10, False, 23, False, 15, "moderate sedation (same physician)"),
    TimedFamily(("99155", "99156"), "99157", 10, False, 23, False, 15, "moderate sedation (other physician)"),
    TimedFamily(("96365",), "96366", 15, True, 90, True, 60, "IV infusion, therapy"),
    TimedFamily(("96413",), "96415", 15, True, 90, True, 60, "IV infusion, chemotherapy"),
    TimedFamily(("96360",), "96361", 30, True, 90, True, 60, "IV infusion, hydration"),
    TimedFamily(("96369",), "96370", 15, True, 90, True, 60, "subcutaneous infusion"),
    TimedFamily(("96416",), None, 480, True, 0, True, 1, "prolonged chemotherapy infusion by pump"),
    TimedFamily(
        ("96425",), None, 480, True, 0, True, 1, "prolonged intra-arterial chemotherapy infusion by pump"
    ),
)
BY_CODE: dict[str, TimedFamily] = {
    code: fam for fam in FAMILIES for code in (*fam.initial, *((fam.addon,) if fam.addon else ()))
}


def _hm(minutes: float) -> str:
    if minutes < 60:
        return f"{minutes:g} min"
    h, m = divmod(round(minutes), 60)
    return f"{h} h {m} min" if m else f"{h} h"


def _documented(ctx: ClaimContext, ln: ClaimLine) -> tuple[float, str] | None:
    """(minutes, evidence) from the line's Procedure, else its linked administration."""
    for p in ctx.procedures_for(ln):
        if p.minutes is not None:
            return p.minutes, f"{p.label} {p.minutes_source} ({p.minutes_path}): {_hm(p.minutes)}"
    from ..clinical import documented_minutes

    for a in ctx.linked_administrations(ln):
        found = documented_minutes(a.entry.resource, a.path)
        if found is not None:
            return found[0], f"{a.label} {found[1]} ({found[2]}): {_hm(found[0])}"
    return None


def _timed_lines(ctx: ClaimContext) -> Iterator[tuple[ClaimLine, TimedFamily]]:
    for ln in ctx.lines:
        if ln.code and ln.kind == "cpt" and (fam := BY_CODE.get(ln.code)) is not None:
            yield ln, fam


@rule(
    id="TIM001",
    name="units-exceed-documented-time",
    category="time",
    severity="error",
    issue_type="business-rule",
    summary="A time-based code bills more units than the documented time supports",
)
def units_exceed_documented_time(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Time-based codes against the duration in the record: the Procedure behind the line
    (``performedPeriod`` start to end, else an extension carrying a Duration in minutes or
    hours, else a note such as "intraservice time 38 minutes"; for infusions also a linked
    MedicationAdministration's ``effectivePeriod``). The time rules applied:

    - moderate sedation 99151/99152/99155/99156: at least 10 minutes, covering 10-22
      minutes; add-on 99153/99157: the first unit at 23 minutes, each further unit at
      another 15 (38, 53 ...);
    - infusion 96365/96413/96369: more than 15 minutes; hydration 96360: more than 30;
      each additional hour (96366/96415/96370/96361) more than 30 minutes beyond the
      previous hour (the midpoint rule: 91 minutes for the first, 151 for the second);
    - prolonged pump infusion 96416/96425: more than 8 hours.

    Billed units of each code above what the documented time supports are an error.

    ## Why payers deny it
    Time-based units are paid by the documented time; units beyond it are unsupported in
    review and recouped. MUEs do not catch this: they cap units, not time.

    ## Example
    Sedation documented 09:02-09:30 (28 minutes) supports 99152 + one 99153; billing
    two units of 99153 is one unit too many.

    ## How to fix
    Bill the units the time supports (the finding proposes the number), or document the
    actual start and stop times.
    """
    # Lines of one code documented by the same record share its time (two 99153 lines of
    # one unit each are two units of that sedation).
    groups: dict[tuple[str, str], tuple[TimedFamily, float, list[ClaimLine]]] = {}
    for ln, fam in _timed_lines(ctx):
        found = _documented(ctx, ln)
        if found is None or ln.units is None:
            continue
        groups.setdefault((ln.code or "", found[1]), (fam, found[0], []))[2].append(ln)
    for (code, evidence), (fam, minutes, lines) in groups.items():
        billed = sum(ln.units or 0 for ln in lines)
        supported = fam.addon_supported(minutes) if code == fam.addon else fam.initial_supported(minutes)
        if billed <= supported:
            continue
        ln = lines[-1]
        keep = int(supported - (billed - (ln.units or 0)))
        fix = (
            Fix(
                kind="set-units",
                line=ln.index,
                value=keep,
                label=f"Bill {keep} {'unit' if keep == 1 else 'units'} of {code}",
            )
            if keep > 0
            else Fix(kind="remove-line", line=ln.index, label=f"Remove {code}: the time does not support it")
        )
        yield r.finding(
            expression=ln.quantity_path,
            line=ln.index,
            message=f"Line {ln.number} bills {billed:g} {'unit' if billed == 1 else 'units'} of {code}, but the "
            f"documented {_hm(minutes)} "
            + (f"supports {supported:g}." if supported else "does not support it at all."),
            evidence=f"{fam.rule_text(code)}; {evidence}; billed {billed:g}"
            + (f" on {len(lines)} lines" if len(lines) > 1 else "")
            + f", supported {supported}",
            fix=fix,
        )


@rule(
    id="TIM002",
    name="time-not-documented",
    category="time",
    severity="warning",
    issue_type="business-rule",
    summary="A time-based code has no documented time in the record",
)
def time_not_documented(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    A time-based line (sedation, infusion, hydration, prolonged pump infusion: the codes
    of TIM001) whose Procedure documents no duration: no ``performedPeriod`` with start
    and end times, no duration extension, no note with minutes. Runs only when the input
    carries a clinical record.

    ## Why payers deny it
    Without start and stop times a time-based code cannot be supported in review: the
    whole line, not just extra units, is at risk.

    ## Example
    99152 billed; the sedation Procedure has only ``performedDateTime``.

    ## How to fix
    Record the intraservice start and stop times (``performedPeriod``) or the minutes.
    """
    if not ctx.has_record:
        return
    for ln, fam in _timed_lines(ctx):
        if _documented(ctx, ln) is not None:
            continue
        procs = ctx.procedures_for(ln)
        where = ", ".join(p.label for p in procs) if procs else "no Procedure behind the line"
        yield r.finding(
            expression=ln.code_path,
            line=ln.index,
            message=f"Line {ln.number} bills {ln.code}, a time-based code, but the record documents no time.",
            evidence=f"{fam.rule_text(ln.code or '')}; {where}: no performedPeriod, duration extension or minutes note",
        )
