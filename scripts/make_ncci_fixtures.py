"""Maintainer script: write the fixture cases of the NCCI rules (PTP, MUE, ADD, SOL).

    python scripts/make_ncci_fixtures.py

Every pair, MUE and add-on used here was looked up in the shipped tables (see
tests/test_ncci_rules.py, which asserts the same facts against the tables).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "rules"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
DOS = "2026-03-10"

Line = tuple[str, list[str], float] | tuple[str, list[str], float, dict[str, Any]]


def claim(
    lines: list[Line],
    *,
    kind: str = "professional",
    dos: str = DOS,
    cid: str = "claim-ncci-1",
    care_team: list[str] | None = None,
) -> dict[str, Any]:
    items = []
    for i, spec in enumerate(lines):
        code, mods, qty = spec[0], spec[1], spec[2]
        extra = spec[3] if len(spec) > 3 else {}  # type: ignore[misc]
        item: dict[str, Any] = {
            "sequence": i + 1,
            "diagnosisSequence": [1],
            "productOrService": {"coding": [{"system": CPT if code[0].isdigit() else HCPCS, "code": code}]},
        }
        if mods:
            item["modifier"] = [
                {"coding": [{"system": CPT if m[0].isdigit() else HCPCS, "code": m}]} for m in mods
            ]
        item["servicedDate"] = dos
        item["quantity"] = {"value": qty}
        item.update(extra)
        items.append(item)
    c: dict[str, Any] = {
        "resourceType": "Claim",
        "id": cid,
        "contained": [
            {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1961-05-14"},
            {
                "resourceType": "Condition",
                "id": "c1",
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C92.00"}]},
                "subject": {"reference": "#p"},
            },
        ],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": kind}]},
        "use": "claim",
        "patient": {"reference": "#p"},
        "created": "2026-03-12",
        "provider": {"reference": "Organization/org-clinic"},
        "priority": {"coding": [{"code": "normal"}]},
        "diagnosis": [{"sequence": 1, "diagnosisReference": {"reference": "#c1"}}],
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare Part B"}}],
        "item": items,
    }
    if care_team:
        c["careTeam"] = [
            {"sequence": n + 1, "provider": {"reference": ref}} for n, ref in enumerate(care_team)
        ]
    return c


def code_path(i: int) -> str:
    return f"Claim.item[{i}].productOrService.coding[0]"


def qty_path(i: int) -> str:
    return f"Claim.item[{i}].quantity"


def case(
    rule: str, name: str, description: str, input_: dict[str, Any], expect: list[tuple[str, str]]
) -> None:
    d = OUT / rule
    d.mkdir(parents=True, exist_ok=True)
    body = {
        "description": description,
        "today": "2026-11-22",
        "input": input_,
        "expect": [{"rule": rule, "severity": sev, "expression": ex} for sev, ex in expect],
    }
    (d / f"{name}.json").write_text(json.dumps(body, indent=2) + "\n")


def main() -> None:
    # PTP001: modifier indicator 0 pairs (practitioner table).
    case(
        "PTP001",
        "fires",
        "36561 + 96523 same day (practitioner): 96523 is column 2 of an indicator-0 pair.",
        claim([("36561", [], 1), ("96523", [], 1)]),
        [("error", code_path(1))],
    )
    case(
        "PTP001",
        "fires-even-with-59",
        "Indicator 0: modifier 59 (and XU) on 96523 does not bypass the edit.",
        claim([("36561", [], 1), ("96523", ["59", "XU"], 1)]),
        [("error", code_path(1))],
    )
    case(
        "PTP001",
        "passes",
        "36561 + 76937 + 77001: no PTP pair exists among them.",
        claim([("36561", [], 1), ("76937", [], 1), ("77001", [], 1)]),
        [],
    )
    case(
        "PTP001",
        "passes-other-day",
        "36561 and 96523 on different dates of service: no same-day pair.",
        claim([("36561", [], 1), ("96523", [], 1, {"servicedDate": "2026-03-17"})]),
        [],
    )
    # PTP002: modifier indicator 1 pairs.
    case(
        "PTP002",
        "fires",
        "96413 + 96374 same day without an NCCI modifier: 96374 (column 2) is flagged.",
        claim([("96413", [], 1), ("96374", [], 1)]),
        [("error", code_path(1))],
    )
    case(
        "PTP002",
        "fires-mutually-exclusive",
        "36560 vs 36561 (mutually exclusive, indicator 1): 36561 is column 2.",
        claim([("36560", [], 1), ("36561", [], 1)]),
        [("error", code_path(1))],
    )
    case(
        "PTP002",
        "fires-outpatient-hospital",
        "96413 + 96374 on an institutional claim (outpatient hospital table).",
        claim([("96413", [], 1), ("96374", [], 1)], kind="institutional"),
        [("error", code_path(1))],
    )
    case(
        "PTP002",
        "bypassed",
        "96413 + 96374 with XU on 96374: an NCCI-associated modifier bypasses indicator 1.",
        claim([("96413", [], 1), ("96374", ["XU"], 1)]),
        [],
    )
    case(
        "PTP002",
        "bypassed-59-on-column1",
        "96413 + 96374 with 59 on the column-1 line: either line may carry it.",
        claim([("96413", ["59"], 1), ("96374", [], 1)]),
        [],
    )
    case(
        "PTP002",
        "passes-deleted-before-dos",
        "0001A + 96160 on 2024-03-01: the pair was deleted 2023-12-31, before the date of service.",
        claim([("0001A", [], 1), ("96160", [], 1)], dos="2024-03-01"),
        [],
    )
    case(
        "PTP002",
        "passes-other-provider",
        "96413 and 96374 by two different practitioners (care team): PTP edits compare one provider's lines.",
        claim(
            [("96413", [], 1, {"careTeamSequence": [1]}), ("96374", [], 1, {"careTeamSequence": [2]})],
            care_team=["Practitioner/prac-1", "Practitioner/prac-2"],
        ),
        [],
    )
    # MUE001: MAI 1 (per line).
    case(
        "MUE001",
        "fires",
        "A6460 has MUE 1 with MAI 1 (line edit): 2 units on one line.",
        claim([("A6460", [], 2)]),
        [("error", qty_path(0))],
    )
    case(
        "MUE001",
        "passes",
        "A6460 with 1 unit on each of two lines: MAI 1 is applied per line.",
        claim([("A6460", [], 1), ("A6460", ["RT"], 1)]),
        [],
    )
    # MUE002: MAI 2/3 (per date of service).
    case(
        "MUE002",
        "fires",
        "J0690 (MUE 16, MAI 3): 10 + 8 units on one date of service = 18.",
        claim([("J0690", [], 10), ("J0690", [], 8)]),
        [("error", qty_path(0))],
    )
    case(
        "MUE002",
        "fires-mai2",
        "30110 (MUE 1, MAI 2 policy): one unit on each of two lines, RT and LT, is 2.",
        claim([("30110", ["RT"], 1), ("30110", ["LT"], 1)]),
        [("error", qty_path(0))],
    )
    case("MUE002", "passes", "J0690 4 units: within its MUE of 16.", claim([("J0690", [], 4)]), [])
    case(
        "MUE002",
        "passes-other-days",
        "J0690 10 units on each of two dates: summed per date, not per claim.",
        claim([("J0690", [], 10), ("J0690", [], 10, {"servicedDate": "2026-03-11"})]),
        [],
    )
    # ADD001: Type 1 add-on.
    case(
        "ADD001",
        "fires",
        "96371 (type 1) without its only primary 96369.",
        claim([("96371", [], 1)]),
        [("error", code_path(0))],
    )
    case(
        "ADD001",
        "fires-99153",
        "99153 without 99151, 99152 or G0500 (99213 is no primary of it).",
        claim([("99213", [], 1), ("99153", [], 1)]),
        [("error", code_path(1))],
    )
    case(
        "ADD001",
        "fires-outpatient-hospital-warning",
        "Outpatient hospital (OPPS) claim: 99153 without 99151/99152/G0500 is a warning, not an "
        "error (the I/OCE raises edit 106 on non-OPPS claims only).",
        claim([("99213", [], 1), ("99153", [], 1)], kind="institutional", cid="claim-ncci-opps"),
        [("warning", code_path(1))],
    )
    case(
        "ADD001",
        "passes",
        "99153 with its primary 99152 on the same date.",
        claim([("99152", [], 1), ("99153", [], 1)]),
        [],
    )
    # ADD002: Type 3 add-on.
    case(
        "ADD002",
        "fires",
        "96161 (type 3) billed alone: none of its listed primaries (E/M codes).",
        claim([("96161", [], 1)]),
        [("warning", code_path(0))],
    )
    case(
        "ADD002",
        "passes",
        "96161 with 99213, a listed primary.",
        claim([("99213", [], 1), ("96161", [], 1)]),
        [],
    )
    # ADD003: Type 2 add-on.
    case(
        "ADD003",
        "fires",
        "0054T (type 2, contractor-defined primaries) as the only service of the day.",
        claim([("0054T", [], 1)]),
        [("information", code_path(0))],
    )
    case(
        "ADD003",
        "passes",
        "0054T with a procedure billed the same day (27447) that can be its primary.",
        claim([("27447", [], 1), ("0054T", [], 1)]),
        [],
    )
    # SOL001: 96523 sole service (professional only).
    case(
        "SOL001",
        "fires",
        "96523 with 80230 by the same practitioner: no PTP pair links them, CPT's instruction does.",
        claim([("96523", [], 1), ("80230", [], 1)]),
        [("error", code_path(0))],
    )
    case("SOL001", "passes", "96523 as the only service of the day.", claim([("96523", [], 1)]), [])
    case(
        "SOL001",
        "passes-institutional",
        "96523 with 80230 on an institutional claim: the rule is for professional claims.",
        claim([("96523", [], 1), ("80230", [], 1)], kind="institutional"),
        [],
    )
    case(
        "SOL001",
        "passes-other-provider",
        "96523 and 80230 by different practitioners of the care team.",
        claim(
            [("96523", [], 1, {"careTeamSequence": [1]}), ("80230", [], 1, {"careTeamSequence": [2]})],
            care_team=["Practitioner/prac-1", "Practitioner/prac-2"],
        ),
        [],
    )


if __name__ == "__main__":
    main()
