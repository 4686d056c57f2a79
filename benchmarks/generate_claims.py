"""Synthetic FHIR claims at scale, as NDJSON (one Claim or Bundle per line); seedable.

    python benchmarks/generate_claims.py --count 100000 --seed 7 -o /tmp/claims.ndjson

The claims are built like the example claims in fixtures/: the billed codes, revenue codes,
diagnoses, patients and dates of the fixture claims (co-billed sets kept together, so edit
pairs that meet in real claims meet here too), mixed with codes drawn from the packed
code-validity tables so lookups are spread over the code sets. 2-8 lines per claim,
modifiers on about a fifth of the lines, units above 1 for drugs, professional and
institutional claims, Bundles (Claim + Patient + Conditions + Coverage + Procedures) and bare
Claims with contained resources. A small share carries deliberate mistakes (malformed or
deleted codes, missing diagnosis pointers, a date of service after the claim date).
Synthetic data only: no real patient.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
REVENUE = "https://www.nubc.org/CodeSystem/RevenueCodes"

#: Modifiers seen on real outpatient claims (NCCI bypass, laterality, repeat, drug waste).
MODIFIERS = ("25", "59", "XS", "XU", "LT", "RT", "76", "91", "26", "TC", "JW", "JZ", "50", "GA")


@dataclass(frozen=True)
class Line:
    system: str
    code: str
    revenue: str | None
    units: float


@dataclass
class Pool:
    """What the generator draws from."""

    sets: list[list[Line]]  # the lines of each fixture claim (codes billed together)
    codes: list[Line]  # every fixture line, and codes from the packed tables
    diagnoses: list[str]
    patients: list[tuple[str, str]]  # (birthDate, gender)
    dates: list[date]
    ended: list[str]  # codes terminated before the window: the "deleted code" mistake


def _walk_claims(doc: Any) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(claim, other resources) of a fixture file (example or rule case)."""
    if isinstance(doc, dict) and "input" in doc:
        doc = doc["input"]
    if not isinstance(doc, dict):
        return
    if doc.get("resourceType") == "Claim":
        yield doc, [c for c in doc.get("contained", []) if isinstance(c, dict)]
    elif doc.get("resourceType") == "Bundle":
        res = [e.get("resource", {}) for e in doc.get("entry", []) if isinstance(e, dict)]
        for r in res:
            if r.get("resourceType") == "Claim":
                yield (
                    r,
                    [x for x in res if x is not r]
                    + [c for c in r.get("contained", []) if isinstance(c, dict)],
                )


def _default_revenue(code: str) -> str:
    if code[:1] == "J":
        return "0636"
    if code[:1] == "C":
        return "0278"
    if code[:1] == "P":
        return "0390"
    if code[:2] == "99":
        return "0510"
    if code[:1] == "8":
        return "0300"
    if code[:1] == "7":
        return "0320"
    if code[:2] == "96":
        return "0335"
    return "0360"


def build_pool(table_share_codes: int = 400, table_share_dx: int = 300, seed: int = 0) -> Pool:
    """Harvest the fixtures; add codes from the packed tables (valid today)."""
    from fhir_checker.codes import is_cpt_format, is_hcpcs_level2_format, is_icd10_format, normalise_icd10
    from fhir_checker.tables import get_tables

    tables = get_tables()
    hcpcs, icd = tables.hcpcs_validity, tables.icd10cm.billable
    sets: list[list[Line]] = []
    codes: dict[tuple[str, str], Line] = {}
    dx: set[str] = set()
    patients: set[tuple[str, str]] = set()
    dates: set[date] = set()
    # dates of service fall within fixture dates -150 / +60 days: keep the codes valid on
    # the whole window, so invalid codes come from the deliberate mistakes, not the draw
    window = (date(2025, 9, 1), date(2026, 8, 31))
    files = sorted(ROOT.glob("fixtures/*.json")) + sorted(ROOT.glob("fixtures/rules/*/*.json"))
    for f in files:
        for claim, others in _walk_claims(orjson.loads(f.read_bytes())):
            lines: list[Line] = []
            for item in claim.get("item", []):
                for c in item.get("productOrService", {}).get("coding", []):
                    code = str(c.get("code", "")).upper()
                    ok = is_cpt_format(code) or is_hcpcs_level2_format(code)
                    if not ok or not all(hcpcs.validity(code, d).status == "valid" for d in window):
                        continue  # the rule fixtures' deliberate mistakes are not the mix
                    rev = (item.get("revenue", {}).get("coding") or [{}])[0].get("code")
                    units = float(item.get("quantity", {}).get("value", 1) or 1)
                    ln = Line(CPT if code[0].isdigit() else HCPCS, code, rev, units)
                    lines.append(ln)
                    codes.setdefault((ln.system, code), ln)
                if isinstance(item.get("servicedDate"), str) and f.parent.name == "fixtures":
                    dates.add(date.fromisoformat(item["servicedDate"][:10]))  # the example claims' dates
            if len(lines) >= 2:
                sets.append(lines)
            for r in others:
                if r.get("resourceType") == "Patient" and r.get("birthDate") and r.get("gender"):
                    patients.add((str(r["birthDate"]), str(r["gender"])))
                if r.get("resourceType") == "Condition":
                    for c in r.get("code", {}).get("coding", []):
                        d = normalise_icd10(str(c.get("code", "")))
                        if is_icd10_format(d) and all(icd.validity(d, w).status == "valid" for w in window):
                            dx.add(d)
            for d in claim.get("diagnosis", []):
                for c in d.get("diagnosisCodeableConcept", {}).get("coding", []):
                    code = normalise_icd10(str(c.get("code", "")))
                    if is_icd10_format(code) and all(icd.validity(code, w).status == "valid" for w in window):
                        dx.add(code)
    rnd = random.Random(seed)
    valid = sorted(
        c
        for c in hcpcs.codes()
        if (is_cpt_format(c) or is_hcpcs_level2_format(c))
        and all(hcpcs.validity(c, d).status == "valid" for d in window)
    )
    for code in rnd.sample(valid, min(table_share_codes, len(valid))):
        units = float(rnd.choice((1, 1, 2, 4, 10))) if code[0] == "J" else 1.0
        codes.setdefault(
            (CPT if code[0].isdigit() else HCPCS, code),
            Line(CPT if code[0].isdigit() else HCPCS, code, None, units),
        )
    dx_valid = sorted(c for c in icd.codes() if all(icd.validity(c, d).status == "valid" for d in window))
    dx.update(rnd.sample(dx_valid, min(table_share_dx, len(dx_valid))))
    return Pool(
        sets=sets,
        codes=sorted(codes.values(), key=lambda x: x.code),
        diagnoses=sorted(dx),
        patients=sorted(patients),
        dates=sorted(dates) or [date(2026, 3, 10)],
        ended=[c for c in hcpcs.codes() if hcpcs.validity(c, window[0]).status == "ended"][:500],
    )


def _urn(n: int, k: int) -> str:
    return f"urn:uuid:{n:08x}-0000-4000-8000-{k:012d}"


class Generator:
    def __init__(self, pool: Pool, seed: int, bundle_share: float = 0.6, mistake_share: float = 0.05) -> None:
        self.pool = pool
        self.rnd = random.Random(seed)
        self.seed = seed
        self.bundle_share = bundle_share
        self.mistake_share = mistake_share

    def _lines(self) -> list[Line]:
        r = self.rnd
        n = r.randint(2, 8)
        out: list[Line] = []
        if self.pool.sets and r.random() < 0.6:
            base = r.choice(self.pool.sets)
            out.extend(r.sample(base, min(n, len(base))))
        while len(out) < n:
            out.append(r.choice(self.pool.codes))
        return out

    def _patient(self) -> tuple[str, str]:
        r = self.rnd
        if self.pool.patients and r.random() < 0.3:
            return r.choice(self.pool.patients)
        born = date(1930, 1, 1) + timedelta(days=r.randint(0, 90 * 365))
        return born.isoformat(), r.choice(("female", "male"))

    def claim(self, n: int) -> dict[str, Any]:
        r = self.rnd
        institutional = r.random() < 0.4
        dos0 = r.choice(self.pool.dates) + timedelta(days=r.randint(-150, 60))
        lines = self._lines()
        ndx = r.randint(1, min(4, len(self.pool.diagnoses)))
        dxs = r.sample(self.pool.diagnoses, ndx)
        birth, gender = self._patient()
        as_bundle = r.random() < self.bundle_share
        mistake = (
            r.choice(("malformed", "deleted", "pointer", "date")) if r.random() < self.mistake_share else None
        )
        cid = f"claim-{self.seed}-{n}"
        items: list[dict[str, Any]] = []
        procs: list[dict[str, Any]] = []
        multi_day = r.random() < 0.15
        for i, ln in enumerate(lines):
            dos = dos0 + timedelta(days=r.randint(0, 2)) if multi_day else dos0
            code = ln.code
            if mistake == "malformed" and i == 0:
                code = code[:-1]
            elif mistake == "deleted" and i == 0 and self.pool.ended:
                code = r.choice(self.pool.ended)
            item: dict[str, Any] = {
                "sequence": i + 1,
                "careTeamSequence": [1],
                "diagnosisSequence": sorted(r.sample(range(1, ndx + 1), r.randint(1, ndx))),
            }
            if mistake == "pointer" and i == 0:
                item["diagnosisSequence"] = [ndx + 3]
            if institutional:
                rev = ln.revenue or _default_revenue(code)
                item["revenue"] = {"coding": [{"system": REVENUE, "code": rev}]}
            system = (
                ln.system
                if code == ln.code or mistake != "deleted"
                else (CPT if code[0].isdigit() else HCPCS)
            )
            item["productOrService"] = {"coding": [{"system": system, "code": code}]}
            if r.random() < 0.2:
                item["modifier"] = [
                    {"coding": [{"system": CPT if m[0].isdigit() else HCPCS, "code": m}]}
                    for m in r.sample(MODIFIERS, r.choice((1, 1, 1, 2)))
                ]
            item["servicedDate"] = dos.isoformat()
            units = ln.units if ln.code[0] != "J" else float(r.choice((1, 1, 2, 3, 4, 6, 10)))
            item["quantity"] = {"value": int(units) if units.is_integer() else units}
            if as_bundle and ln.system == CPT and r.random() < 0.7:
                procs.append(
                    {
                        "resourceType": "Procedure",
                        "id": f"proc-{n}-{i}",
                        "status": "completed",
                        "code": {"coding": [{"system": CPT, "code": code}]},
                        "subject": {"reference": _urn(n, 2)},
                        "performedDateTime": f"{dos.isoformat()}T{r.randint(7, 17):02d}:{r.choice((0, 15, 30, 45)):02d}:00-05:00",
                    }
                )
                item["procedureSequence"] = [len(procs)]
            items.append(item)
        created = max(dos0, *(date.fromisoformat(it["servicedDate"]) for it in items)) + timedelta(
            days=r.randint(0, 10)
        )
        if mistake == "date":
            created = dos0 - timedelta(days=r.randint(1, 5))
        claim: dict[str, Any] = {
            "resourceType": "Claim",
            "id": cid,
            "status": "active",
            "type": {
                "coding": [
                    {"system": CLAIM_TYPE, "code": "institutional" if institutional else "professional"}
                ]
            },
            "use": "claim",
            "patient": {"reference": _urn(n, 2) if as_bundle else "#pat"},
            "created": created.isoformat(),
            "provider": {
                "reference": "Organization/org-hospital" if institutional else "Organization/org-clinic"
            },
            "priority": {"coding": [{"code": "normal"}]},
            "insurer": {"reference": "Organization/org-medicare", "display": "Medicare Part B"},
            "careTeam": [{"sequence": 1, "provider": {"reference": f"Practitioner/prac-{r.randint(1, 40)}"}}],
            "diagnosis": [],
            "insurance": [
                {
                    "sequence": 1,
                    "focal": True,
                    "coverage": {"reference": _urn(n, 3)} if as_bundle else {"display": "Medicare Part B"},
                }
            ],
            "item": items,
        }
        pat = {
            "resourceType": "Patient",
            "id": f"pat-{n}",
            "identifier": [
                {"system": "urn:oid:2.16.840.1.113883.19.5", "value": f"MRN{r.randint(1, 9_999_999):07d}"}
            ],
            "gender": gender,
            "birthDate": birth,
        }
        conditions = [
            {
                "resourceType": "Condition",
                "id": f"cond-{n}-{k}",
                "code": {"coding": [{"system": ICD, "code": d}]},
                "subject": {"reference": _urn(n, 2) if as_bundle else "#pat"},
            }
            for k, d in enumerate(dxs)
        ]
        if not as_bundle:
            pat["id"] = "pat"
            claim["contained"] = [pat]
            claim["diagnosis"] = [
                {"sequence": k + 1, "diagnosisCodeableConcept": {"coding": [{"system": ICD, "code": d}]}}
                for k, d in enumerate(dxs)
            ]
            # contained first, as FHIR servers write it
            return {"resourceType": "Claim", "id": cid, "contained": claim.pop("contained"), **claim}
        claim["diagnosis"] = [
            {"sequence": k + 1, "diagnosisReference": {"reference": _urn(n, 10 + k)}} for k in range(ndx)
        ]
        if procs:
            claim["procedure"] = [
                {
                    "sequence": k + 1,
                    "date": p["performedDateTime"][:10],
                    "procedureReference": {"reference": _urn(n, 20 + k)},
                }
                for k, p in enumerate(procs)
            ]
        coverage = {
            "resourceType": "Coverage",
            "id": f"cov-{n}",
            "status": "active",
            "beneficiary": {"reference": _urn(n, 2)},
            "payor": [{"reference": "Organization/org-medicare", "display": "Medicare Part B"}],
        }
        entries = [(_urn(n, 1), claim), (_urn(n, 2), pat), (_urn(n, 3), coverage)]
        entries += [(_urn(n, 10 + k), c) for k, c in enumerate(conditions)]
        entries += [(_urn(n, 20 + k), p) for k, p in enumerate(procs)]
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"fullUrl": u, "resource": res} for u, res in entries],
        }

    def lines(self, count: int) -> Iterator[bytes]:
        for n in range(count):
            yield orjson.dumps(self.claim(n)) + b"\n"


def generate(count: int, seed: int = 7, out: IO[bytes] | None = None, **kw: Any) -> None:
    gen = Generator(build_pool(seed=seed), seed, **kw)
    sink = out or sys.stdout.buffer
    for line in gen.lines(count):
        sink.write(line)
    sink.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="claims to write (default 1000)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bundle-share", type=float, default=0.6, help="share of Bundles (rest: bare Claims)")
    ap.add_argument(
        "--mistake-share", type=float, default=0.05, help="share of claims with a deliberate mistake"
    )
    ap.add_argument("-o", "--output", help="file to write (default stdout)")
    a = ap.parse_args()
    if a.output:
        with open(a.output, "wb") as fh:
            generate(a.count, a.seed, fh, bundle_share=a.bundle_share, mistake_share=a.mistake_share)
    else:
        generate(a.count, a.seed, None, bundle_share=a.bundle_share, mistake_share=a.mistake_share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
