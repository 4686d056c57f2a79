"""Maintainer script: write the example bundles in fixtures/ (deterministic output).

    python scripts/make_fixtures.py

The bundles are realistic transaction-style collections: a Claim with the Patient,
Conditions, Procedures, Device, Coverage and MedicationAdministrations behind it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "fixtures"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"


def urn(n: int) -> str:
    return f"urn:uuid:00000000-0000-4000-8000-{n:012d}"


def patient(pid: int, birth: str, gender: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"pat-{pid}",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": f"MRN{pid:07d}"}],
        "name": [{"family": "Example", "given": ["Pat"]}],
        "gender": gender,
        "birthDate": birth,
    }


def condition(n: int, code: str, pat: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"cond-{n}",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": ICD, "code": code}]},
        "subject": {"reference": pat},
    }


def procedure(
    n: int,
    codes: list[tuple[str, str]],
    pat: str,
    start: str,
    end: str | None = None,
    status: str = "completed",
    **extra: Any,
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": f"proc-{n}",
        "status": status,
        "code": {"coding": [{"system": s, "code": c} for s, c in codes]},
        "subject": {"reference": pat},
    }
    if end:
        p["performedPeriod"] = {"start": start, "end": end}
    else:
        p["performedDateTime"] = start
    p.update(extra)
    return p


def med_admin(n: int, hcpcs: str, value: float, unit: str, pat: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": f"medadmin-{n}",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": HCPCS, "code": hcpcs}]},
        "subject": {"reference": pat},
        "effectiveDateTime": when,
        "dosage": {"dose": {"value": value, "unit": unit, "system": UCUM, "code": unit}},
    }


def line(
    seq: int,
    system: str,
    code: str,
    units: float,
    date: str,
    dx: list[int],
    mods: tuple[str, ...] = (),
    procs: list[int] | None = None,
    info: list[int] | None = None,
    revenue: str | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {"sequence": seq, "careTeamSequence": [1], "diagnosisSequence": dx}
    if procs:
        item["procedureSequence"] = procs
    if info:
        item["informationSequence"] = info
    if revenue:
        item["revenue"] = {
            "coding": [{"system": "https://www.nubc.org/CodeSystem/RevenueCodes", "code": revenue}]
        }
    item["productOrService"] = {"coding": [{"system": system, "code": code}]}
    if mods:
        item["modifier"] = [
            {"coding": [{"system": CPT if m[0].isdigit() else HCPCS, "code": m}]} for m in mods
        ]
    item["servicedDate"] = date
    item["quantity"] = {"value": units}
    return item


def claim(
    cid: str,
    ctype: str,
    pat: str,
    created: str,
    items: list[dict[str, Any]],
    dx: list[str],
    procs: list[tuple[str, str]],
    info: list[str],
    cov: str,
) -> dict[str, Any]:
    return {
        "resourceType": "Claim",
        "id": cid,
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": ctype}]},
        "use": "claim",
        "patient": {"reference": pat},
        "created": created,
        "provider": {"reference": "Organization/org-hospital"},
        "priority": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]
        },
        "insurer": {"reference": "Organization/org-medicare", "display": "Medicare Part B"},
        "careTeam": [{"sequence": 1, "provider": {"reference": "Practitioner/prac-1"}}],
        "supportingInfo": [
            {
                "sequence": i + 1,
                "category": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/claiminformationcategory",
                            "code": "info",
                        }
                    ]
                },
                "valueReference": {"reference": ref},
            }
            for i, ref in enumerate(info)
        ],
        "diagnosis": [
            {"sequence": i + 1, "diagnosisReference": {"reference": ref}} for i, ref in enumerate(dx)
        ],
        "procedure": [
            {"sequence": i + 1, "date": d, "procedureReference": {"reference": ref}}
            for i, (ref, d) in enumerate(procs)
        ],
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": cov}}],
        "item": items,
    }


def coverage(pat: str) -> dict[str, Any]:
    return {
        "resourceType": "Coverage",
        "id": "cov-1",
        "status": "active",
        "beneficiary": {"reference": pat},
        "payor": [{"reference": "Organization/org-medicare", "display": "Medicare Part B"}],
    }


def bundle(resources: list[dict[str, Any]], n0: int = 1) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": urn(n0 + i), "resource": r} for i, r in enumerate(resources)],
    }


def _ref_map(resources: list[dict[str, Any]], n0: int = 1) -> dict[str, str]:
    return {f"{r['resourceType']}/{r['id']}": urn(n0 + i) for i, r in enumerate(resources)}


def to_urns(b: dict[str, Any]) -> dict[str, Any]:
    """Rewrite Type/id references to the entries' urn:uuid fullUrls (transaction style)."""
    refs = _ref_map([e["resource"] for e in b["entry"]])
    text = json.dumps(b)
    for k, v in refs.items():
        text = text.replace(f'"reference": "{k}"', f'"reference": "{v}"')
    out: dict[str, Any] = json.loads(text)
    return out


def port_placement() -> dict[str, Any]:
    """Adult AML patient, tunneled port placed in the hospital outpatient department."""
    pat = "Patient/pat-1"
    dos = "2026-03-10"
    res: list[dict[str, Any]] = [patient(1, "1968-05-14", "female"), coverage(pat)]
    res.append(condition(1, "C92.00", pat))
    res.append(condition(2, "D69.59", pat))
    device = {
        "resourceType": "Device",
        "id": "dev-port",
        "type": {"coding": [{"system": HCPCS, "code": "C1788", "display": "Port, indwelling (implantable)"}]},
        "patient": {"reference": pat},
    }
    res.append(device)
    res.append(
        procedure(
            1,
            [(CPT, "36561")],
            pat,
            f"{dos}T09:05:00-05:00",
            f"{dos}T09:50:00-05:00",
            focalDevice=[{"manipulated": {"reference": "Device/dev-port"}}],
            bodySite=[
                {
                    "coding": [{"system": "http://snomed.info/sct", "code": "7771000", "display": "Left"}],
                    "text": "left upper chest",
                }
            ],
        )
    )
    res.append(procedure(2, [(CPT, "76937")], pat, f"{dos}T09:10:00-05:00"))
    res.append(procedure(3, [(CPT, "77001")], pat, f"{dos}T09:30:00-05:00"))
    res.append(
        procedure(4, [(CPT, "99152"), (CPT, "99153")], pat, f"{dos}T09:02:00-05:00", f"{dos}T09:40:00-05:00")
    )
    res.append(procedure(5, [(CPT, "85027")], pat, f"{dos}T07:30:00-05:00"))
    res.append(procedure(6, [(CPT, "85610")], pat, f"{dos}T07:30:00-05:00"))
    res.append(procedure(7, [(HCPCS, "P9037")], pat, f"{dos}T08:15:00-05:00"))
    res.append(med_admin(1, "J0690", 2, "g", pat, f"{dos}T08:50:00-05:00"))
    res.append(med_admin(2, "J2250", 2, "mg", pat, f"{dos}T09:02:00-05:00"))
    res.append(med_admin(3, "J3010", 100, "ug", pat, f"{dos}T09:02:00-05:00"))
    dx = ["Condition/cond-1", "Condition/cond-2"]
    procs = [(f"Procedure/proc-{i}", dos) for i in range(1, 8)]
    info = [
        "MedicationAdministration/medadmin-1",
        "MedicationAdministration/medadmin-2",
        "MedicationAdministration/medadmin-3",
    ]
    items = [
        line(1, CPT, "36561", 1, dos, [1], procs=[1], revenue="0361"),
        line(2, CPT, "76937", 1, dos, [1], procs=[2], revenue="0402"),
        line(3, CPT, "77001", 1, dos, [1], procs=[3], revenue="0320"),
        line(4, HCPCS, "C1788", 1, dos, [1], revenue="0278"),
        line(5, HCPCS, "C1894", 1, dos, [1], revenue="0272"),
        line(6, CPT, "99152", 1, dos, [1], procs=[4], revenue="0370"),
        line(7, CPT, "99153", 1, dos, [1], procs=[4], revenue="0370"),
        line(8, HCPCS, "J0690", 4, dos, [1], info=[1], revenue="0636"),
        line(9, HCPCS, "J2250", 2, dos, [1], info=[2], revenue="0636"),
        line(10, HCPCS, "J3010", 1, dos, [1], info=[3], revenue="0636"),
        line(11, CPT, "85027", 1, dos, [1], procs=[5], revenue="0305"),
        line(12, CPT, "85610", 1, dos, [1], procs=[6], revenue="0305"),
        line(13, HCPCS, "P9037", 1, dos, [2], procs=[7], revenue="0390"),
    ]
    c = claim("claim-port-1", "institutional", pat, "2026-03-11", items, dx, procs, info, "Coverage/cov-1")
    return to_urns(bundle([c, *res]))


def port_flush() -> dict[str, Any]:
    """A port flush visit: 96523 billed alone on a professional claim (clean)."""
    pat = "Patient/pat-2"
    dos = "2026-04-02"
    res = [
        patient(2, "1968-05-14", "female"),
        coverage(pat),
        condition(3, "C92.00", pat),
        condition(4, "Z45.2", pat),
        procedure(8, [(CPT, "96523")], pat, f"{dos}T10:00:00-05:00"),
    ]
    items = [line(1, CPT, "96523", 1, dos, [1, 2], procs=[1])]
    c = claim(
        "claim-flush-1",
        "professional",
        pat,
        "2026-04-02",
        items,
        ["Condition/cond-3", "Condition/cond-4"],
        [("Procedure/proc-8", dos)],
        [],
        "Coverage/cov-1",
    )
    return to_urns(bundle([c, *res]))


def prolonged_infusion() -> dict[str, Any]:
    """Hepatic arterial chemotherapy by implanted pump, more than 8 hours (96425), for colon
    cancer metastatic to the liver; professional claim."""
    pat = "Patient/pat-3"
    dos = "2026-05-05"
    res = [
        patient(3, "1959-11-30", "male"),
        coverage(pat),
        condition(5, "C18.7", pat),
        condition(6, "Z51.11", pat),
        condition(7, "C78.7", pat),
        procedure(9, [(CPT, "96425")], pat, f"{dos}T08:00:00-05:00", f"{dos}T17:30:00-05:00"),
    ]
    items = [line(1, CPT, "96425", 1, dos, [2, 1, 3], procs=[1])]
    c = claim(
        "claim-infusion-1",
        "professional",
        pat,
        "2026-05-06",
        items,
        ["Condition/cond-5", "Condition/cond-6", "Condition/cond-7"],
        [("Procedure/proc-9", dos)],
        [],
        "Coverage/cov-1",
    )
    return to_urns(bundle([c, *res]))


def bare_claim() -> dict[str, Any]:
    """A bare professional Claim with its Patient and Condition contained."""
    return {
        "resourceType": "Claim",
        "id": "claim-bare-1",
        "contained": [
            {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "1980-02-01"},
            {
                "resourceType": "Condition",
                "id": "c1",
                "code": {"coding": [{"system": ICD, "code": "E11.9"}]},
                "subject": {"reference": "#p"},
            },
        ],
        "status": "active",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]
        },
        "use": "claim",
        "patient": {"reference": "#p"},
        "created": "2026-02-03",
        "provider": {"reference": "Organization/org-clinic"},
        "priority": {"coding": [{"code": "normal"}]},
        "diagnosis": [{"sequence": 1, "diagnosisReference": {"reference": "#c1"}}],
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare Part B"}}],
        "item": [
            {
                "sequence": 1,
                "diagnosisSequence": [1],
                "productOrService": {"coding": [{"system": CPT, "code": "99213"}]},
                "servicedDate": "2026-02-03",
                "quantity": {"value": 1},
            },
        ],
    }


# --- record-check rule cases (fixtures/rules/<RULE>/<case>.json) ----------------------
# Each is a variant of an example bundle with one thing changed, and the findings of that
# rule it must produce (the port-placement bundle itself produces none).

TODAY = "2026-11-22"


def _claim(b: dict[str, Any]) -> dict[str, Any]:
    claim: dict[str, Any] = b["entry"][0]["resource"]
    return claim


def _entry(b: dict[str, Any], rid: str) -> tuple[int, dict[str, Any]]:
    for i, e in enumerate(b["entry"]):
        if e["resource"].get("id") == rid:
            return i, e["resource"]
    raise KeyError(rid)


def _case(
    rule_id: str,
    name: str,
    description: str,
    data: dict[str, Any],
    expect: list[tuple[str, str]],
    profile: str | None = None,
) -> tuple[str, str, dict[str, Any]]:
    case: dict[str, Any] = {"description": description, "today": TODAY}
    if profile:
        case["profile"] = profile
    case["input"] = data
    case["expect"] = [{"rule": rule_id, "severity": sev, "expression": ex} for sev, ex in expect]
    return rule_id, name, case


def _port() -> dict[str, Any]:
    return port_placement()


def record_cases() -> list[tuple[str, str, dict[str, Any]]]:
    cases = []
    # DOC001: 77001 not linked, and its Procedure was on another day
    b = _port()
    del _claim(b)["item"][2]["procedureSequence"]
    _, p3 = _entry(b, "proc-3")
    p3["performedDateTime"] = "2026-03-09T09:30:00-05:00"
    cases.append(
        _case(
            "DOC001",
            "fires",
            "77001 billed 2026-03-10, linked to no Procedure; the only 77001 Procedure is of 2026-03-09.",
            b,
            [("warning", "Claim.item[2].productOrService.coding[0]")],
        )
    )
    b = _port()
    for ln in _claim(b)["item"]:
        ln.pop("procedureSequence", None)
    cases.append(
        _case(
            "DOC001",
            "passes-unlinked",
            "No line links a Procedure, but each procedure line has one with its code on its date (99152 and 99153 share one sedation Procedure).",
            b,
            [],
        )
    )
    cases.append(
        _case("DOC001", "passes", "The full port placement: every procedure line documented.", _port(), [])
    )
    # DOC002 / DOC003: status
    b = _port()
    _entry(b, "proc-1")[1]["status"] = "not-done"
    cases.append(
        _case(
            "DOC002",
            "fires",
            "36561 billed, its Procedure is not-done (port placement cancelled).",
            b,
            [("error", "Claim.item[0].productOrService.coding[0]")],
        )
    )
    b = _port()
    _entry(b, "proc-2")[1]["status"] = "entered-in-error"
    cases.append(
        _case(
            "DOC002",
            "fires-entered-in-error",
            "76937's Procedure was entered in error.",
            b,
            [("error", "Claim.item[1].productOrService.coding[0]")],
        )
    )
    cases.append(_case("DOC002", "passes", "Every Procedure completed.", _port(), []))
    b = _port()
    _entry(b, "proc-4")[1]["status"] = "in-progress"
    cases.append(
        _case(
            "DOC003",
            "fires",
            "The sedation Procedure behind 99152 and 99153 is still in-progress.",
            b,
            [
                ("warning", "Claim.item[5].productOrService.coding[0]"),
                ("warning", "Claim.item[6].productOrService.coding[0]"),
            ],
        )
    )
    cases.append(_case("DOC003", "passes", "Every Procedure completed.", _port(), []))
    # UNB001: 77001 documented, not billed
    b = _port()
    del _claim(b)["item"][2]
    i3, _ = _entry(b, "proc-3")
    cases.append(
        _case(
            "UNB001",
            "fires",
            "77001 (fluoroscopic guidance) documented and completed, but no line bills it.",
            b,
            [("warning", f"Bundle.entry[{i3}].resource.code.coding[0]")],
        )
    )
    b = _port()
    del _claim(b)["item"][2]
    _entry(b, "proc-3")[1]["status"] = "not-done"
    cases.append(
        _case(
            "UNB001",
            "passes-not-done",
            "77001 not billed, and its Procedure was not done: nothing missed.",
            b,
            [],
        )
    )
    cases.append(_case("UNB001", "passes", "Every documented procedure billed.", _port(), []))
    # DAT003: line date vs performed date
    b = _port()
    _claim(b)["item"][0]["servicedDate"] = "2026-03-11"
    cases.append(
        _case(
            "DAT003",
            "fires",
            "36561 dated 2026-03-11; its Procedure was performed 2026-03-10.",
            b,
            [("error", "Claim.item[0].servicedDate")],
        )
    )
    cases.append(_case("DAT003", "passes", "Every linked line dated on its performed date.", _port(), []))
    # TIM001 / TIM002
    b = _port()
    _claim(b)["item"][6]["quantity"]["value"] = 3
    cases.append(
        _case(
            "TIM001",
            "fires",
            "38 minutes of sedation (09:02-09:40) support 99152 + 2 units of 99153; 3 are billed.",
            b,
            [("error", "Claim.item[6].quantity")],
        )
    )
    b = _port()
    _, p4 = _entry(b, "proc-4")
    p4["performedPeriod"]["end"] = "2026-03-10T09:20:00-05:00"
    cases.append(
        _case(
            "TIM001",
            "fires-under-23-minutes",
            "18 minutes of sedation support 99152 alone; 99153 x 1 is not supported.",
            b,
            [("error", "Claim.item[6].quantity")],
        )
    )
    b = prolonged_infusion()
    _, p9 = _entry(b, "proc-9")
    p9["performedPeriod"]["end"] = "2026-05-05T14:00:00-05:00"
    cases.append(
        _case(
            "TIM001",
            "fires-96425-under-8-hours",
            "96425 needs more than 8 hours; the pump infusion ran 6 hours.",
            b,
            [("error", "Claim.item[0].quantity")],
        )
    )
    b = _port()
    _, p4 = _entry(b, "proc-4")
    del p4["performedPeriod"]
    p4["performedDateTime"] = "2026-03-10T09:02:00-05:00"
    p4["note"] = [{"text": "Moderate sedation, intraservice time 25 minutes, independent observer present."}]
    cases.append(
        _case(
            "TIM001",
            "passes-note-minutes",
            "Sedation time documented in a note (25 minutes): 99152 + 1 unit of 99153.",
            b,
            [],
        )
    )
    cases.append(_case("TIM001", "passes", "38 minutes of sedation, 99152 + 99153 x 1.", _port(), []))
    b = _port()
    _, p4 = _entry(b, "proc-4")
    del p4["performedPeriod"]
    p4["performedDateTime"] = "2026-03-10T09:02:00-05:00"
    cases.append(
        _case(
            "TIM002",
            "fires",
            "The sedation Procedure has only a start time: no documented duration for 99152 / 99153.",
            b,
            [
                ("warning", "Claim.item[5].productOrService.coding[0]"),
                ("warning", "Claim.item[6].productOrService.coding[0]"),
            ],
        )
    )
    b = _port()
    _, p4 = _entry(b, "proc-4")
    del p4["performedPeriod"]
    p4["performedDateTime"] = "2026-03-10T09:02:00-05:00"
    p4["extension"] = [
        {
            "url": "https://fhir-checker.dev/StructureDefinition/intraservice-time",
            "valueDuration": {"value": 30, "unit": "min", "system": UCUM, "code": "min"},
        }
    ]
    cases.append(
        _case("TIM002", "passes-extension", "Sedation time carried by a Duration extension (30 min).", b, [])
    )
    cases.append(_case("TIM002", "passes", "Sedation documented with start and end times.", _port(), []))
    # UNI001 / UNI002
    b = _port()
    _claim(b)["item"][7]["quantity"]["value"] = 2
    cases.append(
        _case(
            "UNI001",
            "fires",
            "2 g cefazolin documented; J0690 (500 mg) billed x 2 instead of x 4.",
            b,
            [("error", "Claim.item[7].quantity")],
        )
    )
    b = _port()
    del _claim(b)["item"][9]["informationSequence"]
    _entry(b, "medadmin-3")[1]["dosage"]["dose"] = {"value": 0.15, "unit": "mg", "system": UCUM, "code": "mg"}
    cases.append(
        _case(
            "UNI001",
            "fires-by-code-and-date",
            "Fentanyl 0.15 mg found by HCPCS code and date (not linked): J3010 (0.1 mg) must be x 2 (rounded up).",
            b,
            [("error", "Claim.item[9].quantity")],
        )
    )
    b = _port()
    for ln in _claim(b)["item"]:
        ln.pop("informationSequence", None)
    _entry(b, "medadmin-1")[1]["dosage"]["dose"] = {"value": 2000, "unit": "mg", "system": UCUM, "code": "mg"}
    cases.append(
        _case(
            "UNI001",
            "passes-unlinked-mg",
            "Cefazolin 2000 mg found by code and date: J0690 x 4 is right.",
            b,
            [],
        )
    )
    cases.append(
        _case("UNI001", "passes", "J0690 x 4 (2 g), J2250 x 2 (2 mg), J3010 x 1 (100 ug).", _port(), [])
    )
    b = _port()
    _entry(b, "medadmin-2")[1]["status"] = "not-done"
    cases.append(
        _case(
            "UNI002",
            "fires",
            "J2250 billed, but the midazolam administration was not done.",
            b,
            [("warning", "Claim.item[8].productOrService.coding[0]")],
        )
    )
    cases.append(_case("UNI002", "passes", "Every drug line has its administration.", _port(), []))
    # RDV001 / RDV002
    b = _port()
    del _claim(b)["item"][3]
    i1, _ = _entry(b, "proc-1")
    cases.append(
        _case(
            "RDV001",
            "fires",
            "The port Procedure implants Device C1788, which the claim does not bill.",
            b,
            [("warning", f"Bundle.entry[{i1}].resource.focalDevice[0]")],
        )
    )
    b = _port()
    del _claim(b)["item"][3]
    _, dev = _entry(b, "dev-port")
    dev["type"] = {"text": "Implantable venous access port, single lumen"}
    cases.append(
        _case(
            "RDV001",
            "fires-device-by-name",
            "The Device is typed by name only ('... port'): C1788, not billed.",
            b,
            [("warning", f"Bundle.entry[{i1}].resource.focalDevice[0]")],
        )
    )
    cases.append(_case("RDV001", "passes", "C1788 billed with 36561.", _port(), []))
    b = _port()
    _claim(b)["item"][0]["modifier"] = [{"coding": [{"system": HCPCS, "code": "RT"}]}]
    cases.append(
        _case(
            "RDV002",
            "fires",
            "36561 billed with RT; the Procedure's bodySite is SNOMED 7771000 (left).",
            b,
            [("error", "Claim.item[0].modifier[0]")],
        )
    )
    b = _port()
    _claim(b)["item"][0]["modifier"] = [{"coding": [{"system": HCPCS, "code": "RT"}]}]
    _, p1 = _entry(b, "proc-1")
    p1["bodySite"] = [{"text": "left upper chest wall"}]
    cases.append(
        _case(
            "RDV002",
            "fires-text",
            "RT billed; the body site says 'left' in text only: a warning.",
            b,
            [("warning", "Claim.item[0].modifier[0]")],
        )
    )
    b = _port()
    _claim(b)["item"][0]["modifier"] = [{"coding": [{"system": HCPCS, "code": "LT"}]}]
    cases.append(_case("RDV002", "passes", "LT billed, left documented.", b, []))
    # MNC001 (port-and-infusion pack)
    b = _port()
    _claim(b)["item"][0]["diagnosisSequence"] = [2]
    cases.append(
        _case(
            "MNC001",
            "fires",
            "36561 linked only to D69.59 (thrombocytopenia): not a diagnosis the port policy accepts.",
            b,
            [("warning", "Claim.item[0].diagnosisSequence")],
            profile="port-and-infusion",
        )
    )
    b = prolonged_infusion()
    for i, code in ((1, "C92.00"), (3, "D69.59")):
        _entry(b, f"cond-{4 + i}")[1]["code"]["coding"][0]["code"] = code
    cases.append(
        _case(
            "MNC001",
            "fires-96425",
            "96425 (hepatic arterial pump chemotherapy) for AML (C92.00): the policy accepts liver-directed cancers only.",
            b,
            [("warning", "Claim.item[0].diagnosisSequence")],
            profile="port-and-infusion",
        )
    )
    cases.append(
        _case(
            "MNC001", "passes", "36561 for AML (C92.00): supported.", _port(), [], profile="port-and-infusion"
        )
    )
    cases.append(
        _case(
            "MNC001",
            "passes-96425",
            "96425 for colon cancer metastatic to the liver.",
            prolonged_infusion(),
            [],
            profile="port-and-infusion",
        )
    )
    cases.append(
        _case(
            "MNC001",
            "passes-no-policy",
            "The default pack has no medical-necessity policy: nothing to check.",
            _port(),
            [],
        )
    )
    return cases


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, fn in (
        ("port-placement-aml.json", port_placement),
        ("port-flush-visit.json", port_flush),
        ("prolonged-infusion.json", prolonged_infusion),
        ("bare-claim.json", bare_claim),
    ):
        (OUT / name).write_text(json.dumps(fn(), indent=2) + "\n")
    for rule_id, name, case in record_cases():
        folder = OUT / "rules" / rule_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(case, indent=2) + "\n")


if __name__ == "__main__":
    main()
