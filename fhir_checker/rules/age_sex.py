"""[age] / [sex] Procedures and diagnoses that conflict with the patient's age or sex."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from ..codes import DIAGNOSIS_SYSTEMS
from ..context import ClaimContext, Diagnosis, codings
from ..findings import Finding
from ..registry import Rule, rule
from ..values import as_list

#: NUBC condition code 45: ambiguous gender category (bypasses the sex edits, I/OCE edit 3/8).
AMBIGUOUS_GENDER = "45"


def age_range_text(lo: int, hi: int) -> str:
    if (lo, hi) == (0, 0):
        return "newborns (age 0)"
    if lo == 0:
        return f"patients under {hi + 1}"
    if hi >= 124:
        return f"patients aged {lo} and over"
    return f"patients aged {lo} to {hi}"


def dx_age_category(lo: int, hi: int) -> str:
    """The I/OCE's name for a diagnosis age range (edit 2)."""
    return {
        (0, 0): "newborn",
        (0, 17): "pediatric",
        (9, 64): "maternity",
        (12, 55): "maternity",
        (15, 124): "adult",
    }.get((lo, hi), f"age {lo}-{hi}")


@rule(
    id="AGE001",
    name="procedure-age-conflict",
    category="age",
    severity="error",
    issue_type="business-rule",
    summary="A procedure is billed for a patient outside the code's age range",
    ioce_edit="7",
)
def procedure_age_conflict(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    The patient's age on each line's date of service against the age range of the billed
    code in the I/OCE HCPCS table (``lo_age``/``hi_age``, version 27.1.0): 36560 (tunneled
    central venous access device with port) is for patients under 5, 36561 for 5 and over.
    Where the CPT descriptor itself states an age and the I/OCE table carries none (99152,
    99156: moderate sedation, age 5 or older; 99155: under 5), that limit is used and the
    diagnostics say so. Lines with no date, or patients without a birth date, are skipped.

    ## Why payers deny it
    The I/OCE rejects the line (edit 7, procedure and age conflict, line item rejection);
    practitioner claims are denied the same way by MAC front-end edits. A code for the wrong
    age group is usually the sibling code miskeyed (36560 for 36561).

    ## Example
    A 3-year-old billed 36561 on 2026-03-10: the code is for patients aged 5 and over;
    36560 is the code for a child under 5.

    ## How to fix
    Bill the code for the patient's age group, or correct the birth date if it is wrong.
    """
    table = ctx.tables.procedure_attributes
    for ln in ctx.coded_lines():
        assert ln.code is not None
        a = table.get(ln.code)
        if a.lo_age == 0 and a.hi_age >= 124:
            continue
        age = ctx.patient.age_on(ln.service_date)
        if age is None or a.lo_age <= age <= a.hi_age:
            continue
        assert ln.service_date is not None
        n = ln.number
        where = (
            f"age limit stated in the CPT descriptor of {ln.code} (not in the I/OCE table, so I/OCE edit 7 "
            "does not raise it)"
            if a.age_from_descriptor
            else f"{ctx.tables.cite('procedure_attributes')}; I/OCE edit 7"
        )
        yield r.finding(
            expression=ln.code_path,
            line=ln.index,
            message=(
                f"Line {n}: {ln.code} is for {age_range_text(a.lo_age, a.hi_age)}; "
                f"the patient was {age} on {ln.service_date.isoformat()}."
            ),
            evidence=f"{ln.code} age range {a.lo_age}-{a.hi_age}; patient age {age} on "
            f"{ln.service_date.isoformat()}; {where}",
        )


def _dx_dates(ctx: ClaimContext, d: Diagnosis) -> list[date]:
    """The dates of service of the lines pointing at the diagnosis, else the claim's first."""
    own = sorted(
        {
            ln.service_date
            for ln in ctx.lines
            if ln.service_date is not None and d.sequence is not None and d.sequence in ln.diagnosis_sequences
        }
    )
    if own:
        return own
    every = [ln.service_date for ln in ctx.lines if ln.service_date is not None]
    return [min(every)] if every else ([ctx.created] if ctx.created else [])


@rule(
    id="AGE002",
    name="diagnosis-age-conflict",
    category="age",
    severity="error",
    issue_type="business-rule",
    summary="A newborn, pediatric, maternity or adult diagnosis for a patient of another age",
    ioce_edit="2",
)
def diagnosis_age_conflict(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    The patient's age against the age range of each ICD-10-CM diagnosis in the I/OCE
    diagnosis table (version 27.1.0): newborn codes 0-0 (Z38 liveborn infants, Z05
    observation of newborn, A33 tetanus neonatorum ...), pediatric 0-17 (Z00.12x well-child
    examination ...),
    maternity 9-64 (pregnancy, childbirth and the puerperium), adult 15-124. The age is
    taken on the date of service of the lines that point at the diagnosis
    (``item.diagnosisSequence``), else on the claim's first date of service.

    ## Why payers deny it
    The I/OCE returns the claim to the provider (edit 2, diagnosis and age conflict): a
    newborn code on an adult's claim, or a maternity code for a 70-year-old, is almost
    always the wrong code or the wrong patient.

    ## Example
    Z38.00 (single liveborn infant, delivered vaginally) on the claim of a 40-year-old;
    O80 (encounter for full-term uncomplicated delivery) for a patient aged 70.

    ## How to fix
    Code the condition with the code for the patient's age group (the mother's claim uses
    O codes, the newborn's claim Z38 and P codes), or correct the birth date.
    """
    ages = ctx.tables.icd10cm_age
    if ctx.patient.birth_date is None:
        return
    for d in ctx.diagnoses:
        if d.system not in DIAGNOSIS_SYSTEMS or not d.code or d.code not in ages:
            continue
        lo, hi = ages[d.code]
        for on in _dx_dates(ctx, d):
            age = ctx.patient.age_on(on)
            if age is None or lo <= age <= hi:
                continue
            category = dx_age_category(lo, hi)
            yield r.finding(
                expression=d.code_path,
                message=(
                    f"Diagnosis {d.number}: {d.code} is a {category} diagnosis "
                    f"({lo}-{hi}); the patient was {age} on {on.isoformat()}."
                ),
                evidence=f"{d.code} {category} age range {lo}-{hi}; patient age {age} on {on.isoformat()}; "
                f"{ctx.tables.cite('icd10cm_age')}; I/OCE edit 2",
            )
            break  # one finding per diagnosis


def has_ambiguous_gender_code(ctx: ClaimContext) -> bool:
    """Condition code 45 (ambiguous gender category) in Claim.supportingInfo."""
    for i, si in enumerate(as_list(ctx.claim.get("supportingInfo"))):
        if not isinstance(si, dict):
            continue
        cats = [c.code.lower().replace("-", "") for c in codings(si.get("category"), "")]
        for c in codings(si.get("code"), f"Claim.supportingInfo[{i}].code"):
            system = (c.system or "").lower().replace("-", "")
            if c.code == AMBIGUOUS_GENDER and (
                "conditioncode" in system or any("conditioncode" in k or k == "condition" for k in cats)
            ):
                return True
    return False


@rule(
    id="SEX001",
    name="diagnosis-sex-conflict",
    category="sex",
    severity="error",
    issue_type="business-rule",
    summary="A sex-specific diagnosis (pregnancy, prostate ...) conflicts with the patient's sex",
)
def diagnosis_sex_conflict(ctx: ClaimContext, r: Rule) -> Iterator[Finding]:
    """
    ## What it checks
    Each ICD-10-CM diagnosis that belongs to a sex-specific part of ICD-10-CM against the
    patient's sex (US Core birth sex when given, else ``Patient.gender``). The I/OCE sex
    columns are 0 for every code in every bundled version (CMS marks its edit 3 inactive),
    so the sex-specific codes are derived from the ICD-10-CM Tabular List's block titles:
    female: pregnancy, childbirth and the puerperium (O00-O9A), female pelvic organs and
    genital tract (N70-N98), female genital cancers (C51-C58), carcinoma in situ of the
    cervix and other female genital organs (D06, D07.0-D07.3), benign and uncertain
    neoplasms of female genital organs (D25-D28, D39), weeks of gestation (Z3A), pregnancy,
    delivery and postpartum encounters (Z33-Z34, Z36-Z37, Z39), gynecological examination
    (Z01.4), cervical cancer screening (Z12.4), female breast cancer (C50.x1x); male:
    diseases of male genital organs (N40-N53), male genital cancers (C60-C63), D07.4-D07.6,
    D29, D40, prostate screening (Z12.5), elevated PSA (R97.2), male breast cancer
    (C50.x2x). Patients of unknown or other sex are not checked, and NUBC condition code 45
    (ambiguous gender category) in ``Claim.supportingInfo`` bypasses the check, as it
    bypasses the I/OCE sex edits. Procedure/sex conflicts (I/OCE edit 8) are not checked:
    no public source in the shipped data carries procedure sex flags.

    ## Why payers deny it
    Payers' code editors (the Medicare Code Editor for inpatient claims, commercial claim
    editors for all claims) reject a diagnosis that cannot apply to the patient's sex; it
    is nearly always a wrong code, or the wrong patient on the claim.

    ## Example
    N40.0 (benign prostatic hyperplasia) on the claim of a female patient; O80
    (uncomplicated delivery) for a male patient.

    ## How to fix
    Check the patient's recorded sex and the diagnosis. For a transgender or intersex
    patient whose care legitimately crosses the sex edit, report condition code 45.
    """
    sex = ctx.patient.sex
    if sex is None:
        return
    table = ctx.tables.icd10cm_sex
    hits = [
        (d, s)
        for d in ctx.diagnoses
        if d.system in DIAGNOSIS_SYSTEMS and d.code and (s := table.get(d.code)) is not None and s.sex != sex
    ]
    if not hits or has_ambiguous_gender_code(ctx):
        return
    for d, s in hits:
        yield r.finding(
            expression=d.code_path,
            message=f"Diagnosis {d.number}: {d.code} is a {s.sex}-only diagnosis; the patient is {sex}.",
            evidence=f"{d.code} in {s.block}; patient sex {sex}; {ctx.tables.cite('icd10cm_sex')}; "
            "I/OCE edit 3 (diagnosis and sex conflict) has no sex data and is inactive",
        )
