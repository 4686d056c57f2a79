"""Hypothesis strategies: realistic claims built from real codes, and mutations that break them.

Codes come from the fixture claims (what the rules are known to fire on) and from the packed
tables (a deterministic sample of HCPCS/CPT and ICD-10-CM codes, billable or not), so the
generated claims reach the NCCI, MUE, add-on, I/OCE and record rules, not just the parser.

A generated input is a bare ``Claim`` (its resources ``contained``), a ``Bundle``
(collection, transaction, searchset, batch; ``urn:uuid`` or ``Type/id`` references) or a
``Parameters`` holding either. Lines link to diagnoses (``diagnosisSequence``), to
``Procedure`` resources (``procedureSequence``) and to ``MedicationAdministration``
resources (``informationSequence`` -> ``supportingInfo``).
"""

from __future__ import annotations

import copy
import json
import os
import zlib
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from fhir_checker.codes import CPT, HCPCS, HCPCS_OID, ICD10CM, MODIFIER_SYSTEMS
from fhir_checker.tables import get_tables

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
#: The long (``slow``) profile explores new random examples locally; under CI it runs on a
#: fixed seed, so a submission's result is reproducible. FHIR_CHECKER_FUZZ=random|fixed overrides.
SLOW_DERANDOMIZE = (
    os.environ.get("FHIR_CHECKER_FUZZ", "fixed" if os.environ.get("CI") else "random") == "fixed"
)

TODAY = date(2026, 4, 1)  # every property checks "as of" this day: outcomes stay reproducible

Json = dict[str, Any]


# ----------------------------------------------------------------------------- code pools


@dataclass(frozen=True)
class Pools:
    procedures: tuple[tuple[str, str], ...]  # (system, code) billed on Claim.item
    modifiers: tuple[str, ...]
    diagnoses: tuple[str, ...]  # ICD-10-CM as written in the fixtures (some header / bad codes)
    revenue: tuple[str, ...]
    drugs: tuple[str, ...]  # HCPCS drug codes with a billing unit in the packed table


def _walk_items(node: Any, out: dict[str, set[Any]]) -> None:
    if isinstance(node, dict):
        if node.get("resourceType") == "Claim":
            for item in node.get("item") or []:
                for c in (item.get("productOrService") or {}).get("coding") or []:
                    if isinstance(c.get("code"), str) and isinstance(c.get("system"), str):
                        out["procedures"].add((c["system"], c["code"]))
                for m in item.get("modifier") or []:
                    for c in m.get("coding") or []:
                        if isinstance(c.get("code"), str):
                            out["modifiers"].add(c["code"])
                for c in (item.get("revenue") or {}).get("coding") or []:
                    if isinstance(c.get("code"), str):
                        out["revenue"].add(c["code"])
        if node.get("system") == ICD10CM and isinstance(node.get("code"), str):
            out["diagnoses"].add(node["code"])
        for v in node.values():
            _walk_items(v, out)
    elif isinstance(node, list):
        for v in node:
            _walk_items(v, out)


def _every_nth(codes: list[str], n: int) -> list[str]:
    return sorted(codes)[::n]


@cache
def pools() -> Pools:
    found: dict[str, set[Any]] = {k: set() for k in ("procedures", "modifiers", "diagnoses", "revenue")}
    for path in sorted(FIXTURES.rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        _walk_items(data.get("input", data), found)
    tables = get_tables()
    # A fixed sample of the packed tables: deterministic, and wide enough to hit ended codes.
    for code in _every_nth(tables.hcpcs_validity.codes(), 400):
        found["procedures"].add((CPT if code[:1].isdigit() else HCPCS, code))
    found["diagnoses"].update(_every_nth(tables.icd10cm.billable.codes(), 2500))
    found["diagnoses"].update(_every_nth(list(tables.icd10cm.headers), 3000))
    drugs = sorted(c for s, c in found["procedures"] if c[:1] == "J" and c in tables.drug_units)
    return Pools(
        procedures=tuple(sorted(found["procedures"])),
        modifiers=tuple(sorted(found["modifiers"])),
        diagnoses=tuple(sorted(found["diagnoses"])),
        revenue=tuple(sorted(found["revenue"])) or ("0361",),
        drugs=tuple(drugs) or ("J0690",),
    )


# ----------------------------------------------------------------------------- builders


def _concept(system: str, code: str) -> Json:
    return {"coding": [{"system": system, "code": code}]}


@dataclass
class _Refs:
    """How resources are referenced in this input: urn:uuid fullUrls, Type/id, or #contained."""

    style: str  # "urn", "relative", "contained"

    def full_url(self, rtype: str, rid: str) -> str | None:
        if self.style == "urn":
            n = zlib.crc32(f"{rtype}/{rid}".encode())  # deterministic across runs (hash() is not)
            return f"urn:uuid:00000000-0000-4000-8000-{n:012d}"
        if self.style == "relative":
            return f"https://ehr.example.org/fhir/{rtype}/{rid}"
        return None

    def to(self, rtype: str, rid: str) -> Json:
        if self.style == "urn":
            return {"reference": self.full_url(rtype, rid)}
        if self.style == "contained":
            return {"reference": f"#{rid}"}
        return {"reference": f"{rtype}/{rid}"}


@st.composite
def claim_parts(draw: st.DrawFn, style: str | None = None) -> tuple[Json, list[Json], str]:
    """(Claim, its supporting resources, reference style)."""
    p = pools()
    refs = _Refs(style or draw(st.sampled_from(["urn", "relative", "contained"])))
    institutional = draw(st.booleans())
    dos = draw(st.dates(min_value=date(2020, 1, 1), max_value=date(2026, 3, 31)))
    birth = draw(st.dates(min_value=date(1925, 1, 1), max_value=dos))
    resources: list[Json] = []

    patient = {
        "resourceType": "Patient",
        "id": "pat-1",
        "gender": draw(st.sampled_from(["male", "female", "other", "unknown"])),
        "birthDate": birth.isoformat(),
    }
    coverage = {
        "resourceType": "Coverage",
        "id": "cov-1",
        "status": "active",
        "beneficiary": refs.to("Patient", "pat-1"),
        "payor": [{"reference": "Organization/org-payer", "display": "Medicare Part B"}],
    }
    resources += [patient, coverage]
    if draw(st.booleans()):  # without them the provider / payer references stay unresolved
        resources += [
            {"resourceType": "Organization", "id": "org-provider", "name": "Example Hospital"},
            {"resourceType": "Organization", "id": "org-payer", "name": "Medicare Part B"},
        ]

    diagnoses: list[Json] = []
    for i, code in enumerate(draw(st.lists(st.sampled_from(p.diagnoses), min_size=1, max_size=4))):
        if draw(st.booleans()):
            cid = f"cond-{i + 1}"
            resources.append(
                {
                    "resourceType": "Condition",
                    "id": cid,
                    "code": _concept(ICD10CM, code),
                    "subject": refs.to("Patient", "pat-1"),
                }
            )
            diagnoses.append({"sequence": i + 1, "diagnosisReference": refs.to("Condition", cid)})
        else:
            diagnoses.append({"sequence": i + 1, "diagnosisCodeableConcept": _concept(ICD10CM, code)})

    items: list[Json] = []
    procedures: list[Json] = []
    supporting: list[Json] = []
    n_lines = draw(st.integers(min_value=1, max_value=6))
    for n in range(n_lines):
        drug = draw(st.booleans()) and n > 0
        if drug:
            system, code = draw(st.sampled_from([HCPCS, HCPCS_OID])), draw(st.sampled_from(p.drugs))
        else:
            system, code = draw(st.sampled_from(p.procedures))
        day = dos + timedelta(days=draw(st.integers(min_value=0, max_value=2)))
        item: Json = {"sequence": n + 1, "productOrService": _concept(system, code)}
        mods = draw(st.lists(st.sampled_from(p.modifiers), max_size=2, unique=True))
        if mods:
            item["modifier"] = [_concept(draw(st.sampled_from(sorted(MODIFIER_SYSTEMS))), m) for m in mods]
        if draw(st.integers(min_value=0, max_value=4)):  # mostly dated lines; some use billablePeriod
            item["servicedDate"] = day.isoformat()
        units = draw(st.one_of(st.integers(min_value=1, max_value=12), st.sampled_from([0.5, 1.5, 2.0])))
        item["quantity"] = {"value": units}
        links = draw(st.lists(st.integers(min_value=1, max_value=len(diagnoses)), max_size=4, unique=True))
        if links:
            item["diagnosisSequence"] = links
        if institutional:
            item["revenue"] = _concept(
                "https://www.nubc.org/CodeSystem/RevenueCodes", draw(st.sampled_from(p.revenue))
            )
        if drug and draw(st.booleans()):
            mid = f"medadmin-{n + 1}"
            dose = draw(st.sampled_from([1, 2, 10, 50, 500, 1000]))
            resources.append(
                {
                    "resourceType": "MedicationAdministration",
                    "id": mid,
                    "status": "completed",
                    "medicationCodeableConcept": _concept(HCPCS, code),
                    "subject": refs.to("Patient", "pat-1"),
                    "effectiveDateTime": f"{day.isoformat()}T09:00:00-05:00",
                    "dosage": {
                        "dose": {
                            "value": dose,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    },
                }
            )
            seq = len(supporting) + 1
            supporting.append(
                {
                    "sequence": seq,
                    "category": _concept(
                        "http://terminology.hl7.org/CodeSystem/claiminformationcategory", "info"
                    ),
                    "valueReference": refs.to("MedicationAdministration", mid),
                }
            )
            item["informationSequence"] = [seq]
        elif not drug and draw(st.booleans()):
            pid = f"proc-{n + 1}"
            proc: Json = {
                "resourceType": "Procedure",
                "id": pid,
                "status": "completed",
                "code": _concept(system, code),
                "subject": refs.to("Patient", "pat-1"),
            }
            start = draw(st.integers(min_value=0, max_value=600))
            if draw(st.booleans()):
                proc["performedPeriod"] = {
                    "start": f"{day.isoformat()}T08:{start % 60:02d}:00-05:00",
                    "end": f"{day.isoformat()}T{9 + start // 60:02d}:{start % 60:02d}:00-05:00",
                }
            else:
                proc["performedDateTime"] = f"{day.isoformat()}T08:00:00-05:00"
            resources.append(proc)
            seq = len(procedures) + 1
            procedures.append(
                {"sequence": seq, "date": day.isoformat(), "procedureReference": refs.to("Procedure", pid)}
            )
            item["procedureSequence"] = [seq]
        items.append(item)

    claim: Json = {
        "resourceType": "Claim",
        "id": draw(st.sampled_from(["claim-1", "c-2026-0001", "A.b-9"])),
        "status": "active",
        "type": _concept(
            "http://terminology.hl7.org/CodeSystem/claim-type",
            "institutional" if institutional else "professional",
        ),
        "use": "claim",
        "patient": refs.to("Patient", "pat-1"),
        "created": (dos + timedelta(days=draw(st.sampled_from([2, 3, 5, 0])))).isoformat(),
        "provider": {"reference": "Organization/org-provider"},
        "priority": _concept("http://terminology.hl7.org/CodeSystem/processpriority", "normal"),
        "billablePeriod": {"start": dos.isoformat(), "end": (dos + timedelta(days=2)).isoformat()},
        "insurance": [{"sequence": 1, "focal": True, "coverage": refs.to("Coverage", "cov-1")}],
        "diagnosis": diagnoses,
        "item": items,
    }
    if procedures:
        claim["procedure"] = procedures
    if supporting:
        claim["supportingInfo"] = supporting
    return claim, resources, refs.style


def assemble(
    claim: Json, resources: list[Json], style: str, shape: str, bundle_type: str = "collection"
) -> Json:
    """Put a claim and its resources into one input of the given shape."""
    claim = copy.deepcopy(claim)
    resources = copy.deepcopy(resources)
    if shape == "claim" or style == "contained":
        if style == "contained":
            claim["contained"] = resources
        doc: Json = claim
        if shape == "claim":
            return doc
        resources = []
    refs = _Refs(style)
    entries = [{"resource": claim}, *({"resource": r} for r in resources)]
    for e in entries:
        url = refs.full_url(e["resource"]["resourceType"], e["resource"]["id"])
        if url:
            e["fullUrl"] = url
    bundle: Json = {"resourceType": "Bundle", "type": bundle_type, "entry": entries}
    if bundle_type == "transaction":
        for e in entries:
            r = e["resource"]
            e["request"] = {"method": "POST", "url": r["resourceType"]}
    if bundle_type == "searchset":
        for e in entries:
            e["search"] = {"mode": "match" if e["resource"]["resourceType"] == "Claim" else "include"}
    if shape == "bundle":
        return bundle
    return {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": bundle}]}


@st.composite
def built_claims(draw: st.DrawFn) -> Json:
    """A generated claim input: bare Claim, Bundle or Parameters."""
    shape = draw(st.sampled_from(["claim", "bundle", "parameters"]))
    # A bare Claim mostly carries its resources contained; sometimes none (references dangle).
    style = "contained" if shape == "claim" and draw(st.integers(min_value=0, max_value=3)) else None
    claim, resources, style = draw(claim_parts(style))
    bundle_type = draw(st.sampled_from(["collection", "transaction", "searchset", "batch"]))
    return assemble(claim, resources, style, shape, bundle_type)


@cache
def fixture_inputs() -> tuple[Json, ...]:
    """Every fixture claim: the examples and each rule's fires/passes/bypassed cases."""
    out = []
    for path in sorted(FIXTURES.rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out.append(data.get("input", data))
    return tuple(out)


def claims() -> st.SearchStrategy[Json]:
    """Realistic claims: generated ones, and the fixture cases (they reach every rule)."""
    return st.one_of(built_claims(), st.sampled_from(fixture_inputs()).map(copy.deepcopy))


# ----------------------------------------------------------------------------- mutations


def nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) in a JSON tree, the root included."""
    out: list[tuple[tuple[Any, ...], Any]] = [(path, doc)]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += nodes(v, (*path, i))
    return out


def _parent_of(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path[:-1]:
        doc = doc[p]
    return doc


def the_claim(doc: Json) -> Json:
    """The Claim inside any generated shape (mutations aim at it most of the time)."""
    if doc.get("resourceType") == "Parameters":
        doc = doc["parameter"][0]["resource"]
    if doc.get("resourceType") == "Bundle":
        return next(e["resource"] for e in doc["entry"] if e["resource"].get("resourceType") == "Claim")
    return doc


WRONG_VALUES: tuple[Any, ...] = (
    None,
    0,
    -1,
    1.5,
    True,
    "",
    "x",
    [],
    {},
    [None],
    {"value": None},
    "2026-13-45",
    "\u0000\ud7ff\uffff",
    2**63 - 1,  # the largest integer JSON parsers keep exact (orjson: i64)
)

REQUIRED = ("status", "use", "created", "patient", "provider", "priority", "insurance", "type")

UNKNOWN_SYSTEMS = ("http://example.org/local-codes", "", "urn:oid:1.2.3", "http://snomed.info/sct")


def _deep(depth: int) -> Any:
    node: Any = "bottom"
    for n in range(depth):
        node = {"url": f"http://example.org/level-{n}", "extension": [node]} if n % 2 else [node]
    return node


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Json] | None = None) -> Json:
    """A realistic claim with one to three things broken."""
    doc = copy.deepcopy(draw(base or claims()))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        _mutate(draw, doc)
    return doc


def _mutate(draw: st.DrawFn, doc: Json) -> None:
    claim = the_claim(doc) if _has_claim(doc) else doc
    kind = draw(
        st.sampled_from(
            [
                "drop-required",
                "wrong-type",
                "dangling-sequence",
                "dangling-reference",
                "unknown-system",
                "huge-string",
                "null",
                "deep",
                "resource-type",
                "duplicate-id",
                "duplicate-sequence",
                "anywhere",
            ]
        )
    )
    items = claim.get("item") if isinstance(claim.get("item"), list) else []
    item = draw(st.sampled_from(items)) if items and isinstance(items[0], dict) else None
    if kind == "drop-required":
        claim.pop(draw(st.sampled_from(REQUIRED)), None)
        if item is not None and isinstance(item, dict):
            item.pop(draw(st.sampled_from(["productOrService", "sequence", "quantity"])), None)
    elif kind == "wrong-type":
        target = draw(
            st.sampled_from(["item", "diagnosis", "patient", "created", "billablePeriod", "insurance"])
        )
        claim[target] = draw(st.sampled_from(WRONG_VALUES))
    elif kind == "dangling-sequence" and isinstance(item, dict):
        key = draw(
            st.sampled_from(
                ["diagnosisSequence", "procedureSequence", "informationSequence", "careTeamSequence"]
            )
        )
        item[key] = [draw(st.integers(min_value=5, max_value=99))]
    elif kind == "dangling-reference":
        target = draw(st.sampled_from(["patient", "coverage", "diagnosis", "procedure"]))
        ref = {
            "reference": draw(
                st.sampled_from(["Patient/nope", "urn:uuid:dead", "#gone", "http://x/y/Z/1", "", "Claim"])
            )
        }
        if target == "patient":
            claim["patient"] = ref
        elif target == "coverage" and isinstance(claim.get("insurance"), list) and claim["insurance"]:
            claim["insurance"][0]["coverage"] = ref
        elif target == "diagnosis" and isinstance(claim.get("diagnosis"), list) and claim["diagnosis"]:
            claim["diagnosis"][0] = {"sequence": 1, "diagnosisReference": ref}
        else:
            claim["procedure"] = [{"sequence": 1, "procedureReference": ref}]
    elif (
        kind == "unknown-system" and isinstance(item, dict) and isinstance(item.get("productOrService"), dict)
    ):
        for c in item["productOrService"].get("coding") or []:
            if isinstance(c, dict):
                c["system"] = draw(st.sampled_from(UNKNOWN_SYSTEMS))
    elif kind == "huge-string":
        size = draw(st.sampled_from([10_000, 200_000]))
        where = draw(st.sampled_from(["id", "code", "text"]))
        if where == "code" and isinstance(item, dict) and isinstance(item.get("productOrService"), dict):
            item["productOrService"] = _concept(CPT, "9" * size)
        elif where == "id":
            claim["id"] = "a" * size
        else:
            claim["text"] = {"status": "generated", "div": "<div>" + "x" * size + "</div>"}
    elif kind == "null":
        path, _ = draw(st.sampled_from([n for n in nodes(claim) if n[0]]))
        _parent_of(claim, path)[path[-1]] = None
    elif kind == "deep":
        claim["extension"] = [
            {
                "url": "http://example.org/deep",
                "valueString": "x",
                "extension": _deep(draw(st.sampled_from([10, 40, 63, 70, 500]))),
            }
        ]
    elif kind == "resource-type":
        target = draw(st.sampled_from([claim, doc]))
        target["resourceType"] = draw(
            st.sampled_from(["Patient", "claim", "", None, 7, "OperationOutcome", "Bundle"])
        )
    elif kind == "duplicate-id":
        if doc.get("resourceType") in ("Bundle", "Parameters") and _has_claim(doc):
            bundle = doc if doc.get("resourceType") == "Bundle" else doc["parameter"][0]["resource"]
            entries = bundle.get("entry")
            if isinstance(entries, list) and len(entries) > 1:
                dup = copy.deepcopy(draw(st.sampled_from(entries)))
                entries.append(dup)
        elif isinstance(claim.get("contained"), list) and claim["contained"]:
            claim["contained"].append(copy.deepcopy(claim["contained"][0]))
    elif kind == "duplicate-sequence" and items and all(isinstance(i, dict) for i in items):
        items.append(copy.deepcopy(items[0]))
    elif kind == "anywhere":
        path, _ = draw(st.sampled_from([n for n in nodes(doc) if n[0]]))
        _parent_of(doc, path)[path[-1]] = draw(st.sampled_from(WRONG_VALUES))


def _has_claim(doc: Json) -> bool:
    try:
        the_claim(doc)
    except (KeyError, IndexError, StopIteration, TypeError, AttributeError):
        return False
    return True


def claim_or_self(doc: Json) -> Any:
    """The Claim of a (possibly broken) input, or the input itself when none can be found."""
    return the_claim(doc) if _has_claim(doc) else doc


# ----------------------------------------------------------------------------- raw text


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values (any shape, any keys)."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(
        leaves,
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
        max_leaves=max_leaves,
    )


def fhirish(max_leaves: int = 20) -> st.SearchStrategy[Json]:
    """JSON objects with a resourceType we accept and arbitrary contents."""
    return st.builds(
        lambda rt, body: {**body, "resourceType": rt},
        st.sampled_from(["Claim", "Bundle", "Parameters"]),
        st.dictionaries(
            st.sampled_from(
                [
                    "item",
                    "entry",
                    "parameter",
                    "diagnosis",
                    "procedure",
                    "patient",
                    "contained",
                    "id",
                    "resource",
                    "insurance",
                ]
            ),
            json_values(max_leaves),
            max_size=5,
        ),
    )


def raw_bytes() -> st.SearchStrategy[bytes]:
    """Text a hostile or broken client might send: truncated claims, garbage, JSON of another shape."""
    return st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
        json_values().map(lambda v: json.dumps(v).encode()),
        st.builds(
            lambda d, cut: json.dumps(d).encode()[:cut], claims(), st.integers(min_value=0, max_value=400)
        ),
    )


# ----------------------------------------------------------------------------- hostile shapes
# For the long fuzz job (tests/test_fuzz.py): what a broken or hostile sender produces beyond
# one wrong element: numbers as strings, odd unicode, huge arrays, references in loops.

UNICODE_TEXT = (
    "\u202eevil\u202c",  # right-to-left override
    "Zo\u0308e\u0301",  # combining marks
    "\U0001f489\U0001f3e5",  # emoji (astral plane)
    "\u0000",
    "\ufeff36561",  # a byte-order mark before a real code
    "３６５６１",  # full-width digits
    "J０690",
    "\u00a0 \t\n",
    "İı",  # case folding traps
    "x" * 3 + "\u0301" * 200,
    "a\ud800b",  # a lone surrogate: a Python str, but no JSON can carry it
)


def _numbers_as_strings(draw: st.DrawFn, claim: Json) -> None:
    for item in claim.get("item") if isinstance(claim.get("item"), list) else []:
        if not isinstance(item, dict):
            continue
        if "sequence" in item:
            item["sequence"] = str(item["sequence"])
        q = item.get("quantity")
        if isinstance(q, dict) and "value" in q:
            q["value"] = draw(st.sampled_from([str(q["value"]), "1e3", "NaN", "-0", " 2 ", "0x10"]))
        if isinstance(item.get("diagnosisSequence"), list):
            item["diagnosisSequence"] = [str(s) for s in item["diagnosisSequence"]]
        item["unitPrice"] = {
            "value": draw(st.sampled_from(["12.50", "1,000.00", "1e309"])),
            "currency": "USD",
        }
    for d in claim.get("diagnosis") if isinstance(claim.get("diagnosis"), list) else []:
        if isinstance(d, dict) and "sequence" in d:
            d["sequence"] = str(d["sequence"])


def _unicode(draw: st.DrawFn, claim: Json) -> None:
    text = draw(st.one_of(st.sampled_from(UNICODE_TEXT), st.text(min_size=1, max_size=30)))
    where = draw(st.sampled_from(["code", "system", "id", "display", "modifier", "diagnosis"]))
    items = (
        [i for i in claim.get("item") or [] if isinstance(i, dict)]
        if isinstance(claim.get("item"), list)
        else []
    )
    if where == "id":
        claim["id"] = text
    elif items and where in ("code", "system", "display"):
        pos = items[0].get("productOrService")
        codings = pos.get("coding") if isinstance(pos, dict) else None
        if isinstance(codings, list) and codings and isinstance(codings[0], dict):
            codings[0][where] = text
    elif items and where == "modifier":
        items[-1]["modifier"] = [{"coding": [{"system": HCPCS, "code": text}]}]
    else:
        claim["diagnosis"] = [{"sequence": 1, "diagnosisCodeableConcept": _concept(ICD10CM, text)}]


def _huge_array(draw: st.DrawFn, claim: Json) -> None:
    where = draw(st.sampled_from(["item", "diagnosis", "modifier", "coding", "contained", "sequence"]))
    items = claim.get("item") if isinstance(claim.get("item"), list) else []
    line = items[0] if items and isinstance(items[0], dict) else {"sequence": 1}
    if where == "item":
        n = draw(st.sampled_from([449, 450, 451, 2000]))
        claim["item"] = [dict(copy.deepcopy(line), sequence=i + 1) for i in range(n)]
    elif where == "diagnosis":
        n = draw(st.sampled_from([12, 13, 1000, 5000]))
        claim["diagnosis"] = [
            {"sequence": i + 1, "diagnosisCodeableConcept": _concept(ICD10CM, "C92.00")} for i in range(n)
        ]
    elif where == "modifier":
        line["modifier"] = [_concept(HCPCS, "59") for _ in range(draw(st.sampled_from([5, 1000])))]
    elif where == "coding":
        line["productOrService"] = {"coding": [{"system": CPT, "code": "36561"} for _ in range(1000)]}
    elif where == "contained":
        claim["contained"] = [{"resourceType": "Condition", "id": f"c{i}"} for i in range(3000)]
    else:
        line["diagnosisSequence"] = list(range(1, 3001))


def _reference_loop(draw: st.DrawFn, claim: Json) -> None:
    """References that point back at themselves or at each other."""
    kind = draw(st.sampled_from(["self", "contained-cycle", "procedure-device", "container", "related"]))
    cid = claim.get("id") if isinstance(claim.get("id"), str) else "claim-1"
    if kind == "self":
        claim["patient"] = {"reference": f"Claim/{cid}"}
        claim["insurance"] = [{"sequence": 1, "focal": True, "coverage": {"reference": f"Claim/{cid}"}}]
    elif kind == "related":
        claim["related"] = [{"claim": {"reference": f"Claim/{cid}"}}]
        claim["referral"] = {"reference": f"Claim/{cid}"}
    elif kind == "container":
        claim["contained"] = [
            {"resourceType": "Patient", "id": "p", "link": [{"other": {"reference": "#"}, "type": "seealso"}]}
        ]
        claim["patient"] = {"reference": "#p"}
    else:
        a, b = "#loop-a", "#loop-b"
        proc_a = {
            "resourceType": "Procedure",
            "id": "loop-a",
            "status": "completed",
            "subject": {"reference": "#loop-b"},
            "partOf": [{"reference": b}],
            "focalDevice": [{"manipulated": {"reference": a}}],
            "code": _concept(CPT, "36561"),
        }
        proc_b = {
            "resourceType": "Procedure",
            "id": "loop-b",
            "status": "completed",
            "subject": {"reference": "#loop-a"},
            "partOf": [{"reference": a}],
            "focalDevice": [{"manipulated": {"reference": b}}],
            "code": _concept(CPT, "77001"),
        }
        claim["contained"] = [proc_a, proc_b]
        claim["procedure"] = [
            {"sequence": 1, "procedureReference": {"reference": a}},
            {"sequence": 2, "procedureReference": {"reference": b}},
        ]
        claim["patient"] = {"reference": a}


HOSTILE = {
    "numbers-as-strings": _numbers_as_strings,
    "unicode": _unicode,
    "huge-array": _huge_array,
    "reference-loop": _reference_loop,
}


@st.composite
def hostile(draw: st.DrawFn) -> Json:
    """A realistic claim with one or two hostile changes, sometimes on top of ordinary mutations."""
    doc = copy.deepcopy(draw(st.one_of(claims(), mutated())))
    claim = the_claim(doc) if _has_claim(doc) else doc
    if not isinstance(claim, dict):
        return doc
    for kind in draw(st.lists(st.sampled_from(sorted(HOSTILE)), min_size=1, max_size=2, unique=True)):
        HOSTILE[kind](draw, claim)
    return doc


def fuzz_inputs() -> st.SearchStrategy[Any]:
    """Everything at once: realistic, broken, hostile, arbitrary FHIR-ish objects and raw bytes."""
    return st.one_of(claims(), mutated(), hostile(), hostile(), fhirish(), raw_bytes())
