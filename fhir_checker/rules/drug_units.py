"""[units] Drug lines against the dose documented in the MedicationAdministrations."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

from ..clinical import RecordAdministration
from ..context import ClaimContext, ClaimLine
from ..findings import Finding, Fix
from ..registry import Rule, rule
from ..tables.drugs import DrugUnit

#: UCUM (and common non-UCUM spellings) -> (dimension, factor to the dimension's base).
#: Units, IU and USP units are one dimension: which one a drug is measured in is fixed by
#: the drug, and the HCPCS description says "units" loosely.
UNITS: dict[str, tuple[str, float]] = {
    "ng": ("mass", 1e-3),
    "ug": ("mass", 1.0),
    "mcg": ("mass", 1.0),
    "mg": ("mass", 1e3),
    "g": ("mass", 1e6),
    "gm": ("mass", 1e6),
    "kg": ("mass", 1e9),
    "ul": ("volume", 1e-3),
    "ml": ("volume", 1.0),
    "cc": ("volume", 1.0),
    "dl": ("volume", 100.0),
    "l": ("volume", 1e3),
    "u": ("unit", 1.0),
    "[u]": ("unit", 1.0),
    "[iu]": ("unit", 1.0),
    "iu": ("unit", 1.0),
    "[usp'u]": ("unit", 1.0),
    "unit": ("unit", 1.0),
    "units": ("unit", 1.0),
    "ku": ("unit", 1e3),
    "k[iu]": ("unit", 1e3),
    "[ku]": ("unit", 1e3),
    "meq": ("meq", 1.0),
    "meq/l": ("meq-conc", 1.0),
    "mmol": ("mmol", 1.0),
}

#: JW bills the discarded amount of a single-dose vial: not an administered dose.
WASTAGE_MODIFIER = "JW"
NOT_GIVEN = frozenset({"not-done", "entered-in-error", "stopped"})


def convert(value: float, unit: str, to_unit: str) -> float | None:
    """``value unit`` in ``to_unit``; None across dimensions or for an unknown unit."""
    a, b = UNITS.get(unit.strip().lower()), UNITS.get(to_unit.strip().lower())
    if a is None or b is None or a[0] != b[0]:
        return None
    return value * a[1] / b[1]


def billing_units(dose: float, per_unit: float) -> int:
    """Units for a dose: rounded up to the next whole unit (CMS: a dose between two
    billing units is billed as the higher), with float noise ignored."""
    return max(1, math.ceil(dose / per_unit - 1e-9))


def _drug_lines(ctx: ClaimContext) -> Iterator[ClaimLine]:
    table = ctx.tables.drug_units
    for ln in ctx.lines:
        if ln.code and ln.kind == "hcpcs" and ln.code in table and WASTAGE_MODIFIER not in ln.modifier_codes:
            yield ln


def _given(adms: list[RecordAdministration]) -> list[RecordAdministration]:
    return [a for a in adms if a.status not in NOT_GIVEN]


class DoseGroup(NamedTuple):
    """Drug lines and the administrations given for them, with the code's billing unit."""

    lines: list[ClaimLine]
    given: list[RecordAdministration]
    unit: DrugUnit
    per_unit: float  # amount of drug per billed unit (500 for J0690)
    unit_code: str  # its UCUM unit (mg)


def _dose_groups(ctx: ClaimContext) -> Iterator[DoseGroup]:
    """Each linked drug line alone, unlinked lines of one code and day together (they
    share the doses); only codes with a measurable unit and lines with an administration
    that was given."""
    table = ctx.tables.drug_units
    groups: list[tuple[list[ClaimLine], list[RecordAdministration]]] = []
    by_code_date: dict[tuple[str, str], list[ClaimLine]] = {}
    for ln in _drug_lines(ctx):
        linked = ctx.linked_administrations(ln)
        if linked:
            groups.append(([ln], _given(linked)))
        else:
            by_code_date.setdefault((ln.code or "", str(ln.service_date)), []).append(ln)
    for lines in by_code_date.values():
        groups.append((lines, _given(ctx.administrations_for(lines[0]))))
    for lines, adms in groups:
        unit = table.get(lines[-1].code or "")
        if unit is not None and unit.amount is not None and unit.unit is not None and adms:
            yield DoseGroup(lines, adms, unit, unit.amount, unit.unit)


@rule(
    id="UNI001",
    name="drug-units-not-dose",
    category="units",
    severity="error",
    issue_type="business-rule",
    summary="A drug line's units do not match the documented dose",
)
def drug_units_not_dose(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each drug line (a HCPCS code with a billing unit in its public description: J0690
    "Injection, cefazolin sodium, 500 mg" is 500 mg per unit) against the dose given: the
    ``dosage.dose`` of the MedicationAdministrations linked through
    ``item.informationSequence`` -> ``Claim.supportingInfo.valueReference``, else of those
    coded with the line's HCPCS code on the line's date. Doses are converted between UCUM
    units of one dimension (g, mg, ug; L, mL; U, [iU]); the expected units are the total
    dose divided by the unit, rounded up. Lines with modifier JW (discarded drug) are not
    compared. Administrations ``not-done``, ``stopped`` or ``entered-in-error`` do not
    count.

    ## Why payers deny it
    Drugs are paid per billing unit; 2 g of cefazolin billed as J0690 x 2 is underpaid by
    half, as J0690 x 2000 (milligrams keyed as units) it is an overpayment the payer
    recoups, and MUE edits reject many such lines outright.

    ## Example
    2 g cefazolin documented, J0690 billed x 2: it must be J0690 x 4 (4 x 500 mg).

    ## How to fix
    Bill the units the finding names (the fix sets them), or correct the documented dose.
    """
    for lines, adms, unit, per_unit, unit_code in _dose_groups(ctx):
        ln = lines[-1]
        doses = [
            (a, convert(a.dose_value, a.dose_unit, unit_code))
            for a in adms
            if a.dose_value is not None and a.dose_unit
        ]
        if not doses or any(d is None for _, d in doses) or len(doses) != len(adms):
            continue  # a dose in another dimension (mL vs mg) or none: UNI003 reports it
        total = sum(d for _, d in doses if d is not None)
        if total <= 0:
            continue
        expected = billing_units(total, per_unit)
        billed = sum(x.units or 0 for x in lines)
        if billed == expected:
            continue
        given = " + ".join(f"{a.dose_value:g} {a.dose_unit}" for a, _ in doses)
        fix = (
            Fix(kind="set-units", line=ln.index, value=expected, label=f"Bill {ln.code} x {expected}")
            if len(lines) == 1
            else None
        )
        yield r.finding(
            expression=ln.quantity_path,
            line=ln.index,
            message=f"Line {ln.number} bills {ln.code} x {billed:g}, but the documented dose "
            f"({given}) is {expected} {'unit' if expected == 1 else 'units'} of {per_unit:g} {unit_code}.",
            evidence=f"{ln.code} = {unit.label} ({unit.description!r}, {ctx.tables.cite('drug_units')}); administered "
            f"{given} = {total:g} {unit_code} in {', '.join(a.label for a, _ in doses)}; "
            f"expected {expected}, billed {billed:g}",
            fix=fix,
            expected_units=expected,
        )


@rule(
    id="UNI002",
    name="drug-not-administered",
    category="units",
    severity="warning",
    issue_type="business-rule",
    summary="A drug line has no MedicationAdministration on record",
)
def drug_not_administered(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each drug line (HCPCS drug codes: J codes, and injections coded in C, Q, A or S) has a
    MedicationAdministration behind it that was given: linked through
    ``item.informationSequence``, or coded with the line's HCPCS code on its date. Runs
    only when the input carries a clinical record; JW (discarded drug) lines are skipped.

    ## Why payers deny it
    A drug billed without an administration record is unsupported: in review the line is
    denied, and it is the first thing drug audits look for.

    ## Example
    J2250 x 2 billed; the record holds no midazolam administration on that day.

    ## How to fix
    Link the line to the administration (``informationSequence``), make sure the
    administration carries the HCPCS code, or remove the line.
    """
    if not ctx.has_record:
        return
    for ln in _drug_lines(ctx):
        adms = ctx.administrations_for(ln)
        if _given(adms):
            continue
        why = (
            f"administration(s) {', '.join(f'{a.label} status {a.status}' for a in adms)}"
            if adms
            else f"no MedicationAdministration linked (informationSequence {list(ln.information_sequences)}) "
            f"or coded {ln.code} on {ln.service_date}"
        )
        yield r.finding(
            expression=ln.code_path,
            line=ln.index,
            message=f"Line {ln.number} bills the drug {ln.code}, but no administration of it is on record.",
            evidence=why,
        )


@rule(
    id="UNI003",
    name="dose-not-comparable",
    category="units",
    severity="warning",
    issue_type="business-rule",
    summary="A drug line's documented dose is in a unit that cannot be compared with the code's unit",
)
def dose_not_comparable(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    The administrations behind each drug line (found as for UNI001) whose dose cannot be
    turned into the code's billing unit: a dose in another dimension (10 mL documented for
    J0690, which is billed per 500 mg), a unit that is not UCUM or a common spelling of one,
    or no ``dosage.dose`` at all. UNI001 cannot check the units of such a line, so this
    says so instead of passing it silently.

    ## Why payers deny it
    Drug units are audited against the documented dose in the code's measure. A volume
    without the concentration, or no dose at all, leaves the billed units unsupported in a
    review, and the line is denied or recouped.

    ## Example
    J0690 (cefazolin, 500 mg per unit) billed x 4; the MedicationAdministration records a
    dose of 20 mL.

    ## How to fix
    Record the dose in the code's measure (2 g, or 2000 mg, of cefazolin) in
    ``MedicationAdministration.dosage.dose`` with a UCUM unit, then bill the units it gives.
    """
    for group in _dose_groups(ctx):
        ln = group.lines[-1]
        for a in group.given:
            if a.dose_value is not None and a.dose_unit:
                if convert(a.dose_value, a.dose_unit, group.unit_code) is not None:
                    continue
                dose = f"{a.dose_value:g} {a.dose_unit}"
                known = UNITS.get(a.dose_unit.strip().lower())
                why = (
                    f"a {known[0]}, not a {UNITS[group.unit_code.lower()][0]}"
                    if known and group.unit_code.lower() in UNITS
                    else "a unit that is not UCUM"
                )
                message = (
                    f"Line {ln.number} bills {ln.code} ({group.per_unit:g} {group.unit_code} per unit), but the "
                    f"documented dose ({dose}) is {why}, so the billed units cannot be checked."
                )
            else:
                dose = "a value without a unit, or a unit without a value" if a.dose_path else "none"
                what = "a dose without its value or unit" if a.dose_path else "no dose"
                message = (
                    f"Line {ln.number} bills {ln.code}, but its administration records {what}, so the "
                    f"billed units cannot be checked."
                )
            yield r.finding(
                expression=a.dose_path or a.path,
                line=ln.index,
                message=message,
                evidence=f"{ln.code} = {group.unit.label} ({group.unit.description!r}, "
                f"{ctx.tables.cite('drug_units')}); {a.label} dosage.dose: {dose}; billed "
                f"{sum(x.units or 0 for x in group.lines):g}",
            )
