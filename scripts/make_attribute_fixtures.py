"""Maintainer script: write the fixture cases of the age, sex, device, modifier and
terminated-code rules (fixtures/rules/AGE*, SEX*, DEV*, MOD*, COD003/fires-replaced).

    python scripts/make_attribute_fixtures.py

Each case is a small bare Claim with a contained Patient; output is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "rules"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
MODIFIER = "http://www.ama-assn.org/go/cpt"  # CPT and HCPCS modifiers share the line's system
REVENUE = "https://www.nubc.org/CodeSystem/RevenueCodes"
CONDITION_CODES = "https://www.nubc.org/CodeSystem/ConditionCodes"

Line = dict[str, Any]


def item(
    code: str,
    mods: tuple[str, ...] = (),
    *,
    qty: float = 1,
    day: str = "2026-03-10",
    revenue: str | None = None,
    dx: tuple[int, ...] = (1,),
) -> Line:
    system = CPT if code[0].isdigit() else HCPCS
    it: Line = {"sequence": 0, "diagnosisSequence": list(dx)}
    if revenue:
        it["revenue"] = {"coding": [{"system": REVENUE, "code": revenue}]}
    it["productOrService"] = {"coding": [{"system": system, "code": code}]}
    if mods:
        it["modifier"] = [
            {"coding": [{"system": MODIFIER if m[0].isdigit() else HCPCS, "code": m}]} for m in mods
        ]
    it["servicedDate"] = day
    it["quantity"] = {"value": qty}
    return it


def claim(
    items: list[Line],
    *,
    birth: str = "1968-05-14",
    gender: str = "female",
    dx: tuple[str, ...] = ("C92.00",),
    institutional: bool = False,
    supporting: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    for i, it in enumerate(items, 1):
        it["sequence"] = i
    days = sorted(it["servicedDate"] for it in items)
    c: dict[str, Any] = {
        "resourceType": "Claim",
        "id": "claim-attr-1",
        "contained": [{"resourceType": "Patient", "id": "p", "gender": gender, "birthDate": birth}],
        "status": "active",
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/claim-type",
                    "code": "institutional" if institutional else "professional",
                }
            ]
        },
        "use": "claim",
        "patient": {"reference": "#p"},
        "billablePeriod": {"start": days[0], "end": days[-1]},
        "created": days[-1],
        "provider": {"reference": "Organization/org-1"},
        "priority": {"coding": [{"code": "normal"}]},
        "diagnosis": [
            {"sequence": i, "diagnosisCodeableConcept": {"coding": [{"system": ICD, "code": code}]}}
            for i, code in enumerate(dx, 1)
        ],
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare Part B"}}],
        "item": items,
    }
    if supporting:
        c["supportingInfo"] = supporting
    return c


def expect(rule: str, expression: str, severity: str = "error") -> dict[str, str]:
    return {"rule": rule, "severity": severity, "expression": expression}


def code_at(i: int) -> str:
    return f"Claim.item[{i}].productOrService.coding[0]"


def mod_at(i: int, j: int = 0) -> str:
    return f"Claim.item[{i}].modifier[{j}]"


def dx_at(i: int) -> str:
    return f"Claim.diagnosis[{i}].diagnosisCodeableConcept.coding[0]"


CASES: dict[str, dict[str, tuple[str, dict[str, Any], list[dict[str, str]]]]] = {
    "AGE001": {
        "fires": (
            "A 3-year-old billed 36561 (tunneled port, age 5 and over): I/OCE edit 7.",
            claim([item("36561")], birth="2022-11-02"),
            [expect("AGE001", code_at(0))],
        ),
        "fires-descriptor": (
            "A 3-year-old billed 99152 (moderate sedation, age 5 or older per the CPT descriptor).",
            claim([item("99152")], birth="2022-11-02"),
            [expect("AGE001", code_at(0))],
        ),
        "passes": (
            "A 3-year-old billed 36560 (under 5), a 6-year-old's code would be 36561.",
            claim([item("36560"), item("99151")], birth="2022-11-02"),
            [],
        ),
        "passes-adult": (
            "An adult with 36561 and 99152: both in range.",
            claim([item("36561"), item("99152")]),
            [],
        ),
    },
    "AGE002": {
        "fires": (
            "Z38.00 (liveborn infant, newborn 0-0) on a 57-year-old's claim: I/OCE edit 2.",
            claim([item("99213")], dx=("Z38.00",)),
            [expect("AGE002", dx_at(0))],
        ),
        "fires-maternity": (
            "O80 (maternity 9-64) for a 70-year-old, and Z00.129 (pediatric 0-17) with it.",
            claim([item("99213", dx=(1, 2))], birth="1956-01-20", dx=("O80", "Z00.129")),
            [expect("AGE002", dx_at(0)), expect("AGE002", dx_at(1))],
        ),
        "passes": (
            "Z38.00 on the newborn's own claim (age 0).",
            claim([item("99460")], birth="2026-03-09", dx=("Z38.00",)),
            [],
        ),
        "passes-adult": (
            "O80 for a 30-year-old mother.",
            claim([item("59409")], birth="1995-07-01", dx=("O80",)),
            [],
        ),
    },
    "SEX001": {
        "fires": (
            "N40.0 (benign prostatic hyperplasia) on a female patient's claim; C92.00 is not sex-specific.",
            claim([item("99213", dx=(1, 2))], dx=("N40.0", "C92.00")),
            [expect("SEX001", dx_at(0))],
        ),
        "fires-male": (
            "O80 (delivery) and C50.911 (right female breast) for a male patient.",
            claim([item("99213", dx=(1, 2))], gender="male", dx=("O80", "C50.911")),
            [expect("SEX001", dx_at(0)), expect("SEX001", dx_at(1))],
        ),
        "passes": (
            "N40.0 and C50.921 (male breast) for a male patient.",
            claim([item("99213", dx=(1, 2))], gender="male", dx=("N40.0", "C50.921")),
            [],
        ),
        "bypassed": (
            "N40.0 on a female patient's claim with condition code 45 (ambiguous gender category).",
            claim(
                [item("99213")],
                dx=("N40.0",),
                supporting=[
                    {
                        "sequence": 1,
                        "category": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/claiminformationcategory",
                                    "code": "info",
                                }
                            ]
                        },
                        "code": {"coding": [{"system": CONDITION_CODES, "code": "45"}]},
                    }
                ],
            ),
            [],
        ),
    },
    "DEV001": {
        "fires": (
            "33208 (pacemaker insertion, device-intensive) on an outpatient hospital claim with no device code: edit 92.",
            claim([item("33208", revenue="0360")], institutional=True),
            [expect("DEV001", code_at(0))],
        ),
        "passes": (
            "33208 with the pacemaker (C1785) and lead (C1898) codes the same day.",
            claim(
                [item("33208", revenue="0360"), item("C1785", revenue="0278"), item("C1898", revenue="0278")],
                institutional=True,
            ),
            [],
        ),
        "passes-port": (
            "36561 is not device-intensive in I/OCE 27.1.0: no device needed for edit 92.",
            claim([item("36561", revenue="0360"), item("77001", revenue="0320")], institutional=True),
            [],
        ),
        "passes-professional": (
            "33208 on a professional claim: the device edits are for outpatient hospital claims only.",
            claim([item("33208")]),
            [],
        ),
        "bypassed": (
            "33208-73 (discontinued before anesthesia): no device edit.",
            claim([item("33208", ("73",), revenue="0360")], institutional=True),
            [],
        ),
        "bypassed-cg": (
            "10035 with CG: one of the procedures whose edit 92 CG bypasses.",
            claim([item("10035", ("CG",), revenue="0360")], institutional=True),
            [],
        ),
        "fires-other-day": (
            "33208 on 2026-03-10, its device code billed on 2026-03-11: not the same day.",
            claim(
                [item("33208", revenue="0360"), item("C1785", revenue="0278", day="2026-03-11")],
                institutional=True,
            ),
            [expect("DEV001", code_at(0))],
        ),
    },
    "DEV002": {
        "fires": (
            "66683 (iris prosthesis) with a device code, but not C1839 the same day: edit 135.",
            claim([item("66683", revenue="0360"), item("C1780", revenue="0278")], institutional=True),
            [expect("DEV002", code_at(0))],
        ),
        "passes": (
            "0308T with C1840 (telescopic intraocular lens) the same day.",
            claim([item("0308T", revenue="0360"), item("C1840", revenue="0278")], institutional=True),
            [],
        ),
        "bypassed": (
            "66683-74 (discontinued after anesthesia): no device edit.",
            claim([item("66683", ("74",), revenue="0360")], institutional=True),
            [],
        ),
    },
    "DEV003": {
        "fires": (
            "C1739 (pass-through tissue marker) with no breast localization procedure: edit 98.",
            claim([item("C1739", revenue="0278"), item("77065", revenue="0401")], institutional=True),
            [expect("DEV003", code_at(0))],
        ),
        "passes": (
            "C1739 with 19081 (breast localization device placement), one of its paired procedures.",
            claim([item("19081", revenue="0360"), item("C1739", revenue="0278")], institutional=True),
            [],
        ),
    },
    "MOD001": {
        "fires": (
            "99213 with modifier 11: there is no modifier 11 (edit 22).",
            claim([item("99213", ("25", "11"))]),
            [expect("MOD001", mod_at(0, 1))],
        ),
        "passes": (
            "99213-25 and 73630-RT: valid modifiers.",
            claim([item("99213", ("25",)), item("73630", ("RT",))]),
            [],
        ),
        "bypassed": (
            "An ambulance line (revenue 0540) with origin/destination modifier RH: not edited.",
            claim([item("A0428", ("RH",), revenue="0540")], institutional=True),
            [],
        ),
    },
    "MOD002": {
        "fires": (
            "J9035 with JZ (zero drug wasted) on 2022-11-15: JZ may be reported from 2023-01-01.",
            claim([item("96413", day="2022-11-15"), item("J9035", ("JZ",), qty=40, day="2022-11-15")]),
            [expect("MOD002", mod_at(1))],
        ),
        "passes": (
            "J9035-JZ on 2023-02-01.",
            claim([item("96413", day="2023-02-01"), item("J9035", ("JZ",), qty=40, day="2023-02-01")]),
            [],
        ),
    },
    "MOD003": {
        "fires": (
            "64483-50 with 2 units: bilateral is one line with 1 unit (edit 74).",
            claim([item("64483", ("50",), qty=2)]),
            [expect("MOD003", mod_at(0))],
        ),
        "passes": (
            "64483-50 with 1 unit.",
            claim([item("64483", ("50",), qty=1)]),
            [],
        ),
    },
    "MOD004": {
        "fires": (
            "73630 with RT and LT on one line.",
            claim([item("73630", ("RT", "LT"))]),
            [expect("MOD004", mod_at(0, 1))],
        ),
        "passes": (
            "73630-RT and 73630-LT on two lines.",
            claim([item("73630", ("RT",)), item("73630", ("LT",))]),
            [],
        ),
    },
    "MOD005": {
        "fires": (
            "96374-59 with 96413: XE, XS, XP or XU says more (information).",
            claim([item("96413"), item("96374", ("59",))]),
            [expect("MOD005", mod_at(1), "information")],
        ),
        "passes": (
            "96374-XE with 96413.",
            claim([item("96413"), item("96374", ("XE",))]),
            [],
        ),
    },
    "MOD006": {
        "fires": (
            "99213-26 (PC/TC indicator 0) and 85060-TC (indicator 8: 26 only).",
            claim([item("99213", ("26",)), item("85060", ("TC",))]),
            [expect("MOD006", mod_at(0)), expect("MOD006", mod_at(1))],
        ),
        "passes": (
            "76937-26, 71046-TC (indicator 1) and 85060-26 (indicator 8).",
            claim([item("76937", ("26",)), item("71046", ("TC",)), item("85060", ("26",))]),
            [],
        ),
        "passes-institutional": (
            "99213-26 on an outpatient hospital claim: the PFS indicator applies to professional claims.",
            claim([item("99213", ("26",), revenue="0510")], institutional=True),
            [],
        ),
    },
    "COD003": {
        "fires-replaced": (
            "J2001 (ended 2024-09-30) billed for 2025-01-15: J2003 replaced it.",
            claim([item("96365", day="2025-01-15"), item("J2001", qty=10, day="2025-01-15")]),
            [expect("COD003", code_at(1))],
        ),
        "passes-replacement": (
            "J2003 (lidocaine HCl, 1 mg) x 100 for 2025-01-15: the code in force.",
            claim([item("96365", day="2025-01-15"), item("J2003", qty=100, day="2025-01-15")]),
            [],
        ),
    },
}


def main() -> None:
    for rule_id, cases in CASES.items():
        folder = OUT / rule_id
        folder.mkdir(parents=True, exist_ok=True)
        for name, (description, case_input, expected) in cases.items():
            case = {
                "description": description,
                "today": "2026-11-22",
                "input": case_input,
                "expect": expected,
            }
            (folder / f"{name}.json").write_text(json.dumps(case, indent=2) + "\n")


if __name__ == "__main__":
    main()
