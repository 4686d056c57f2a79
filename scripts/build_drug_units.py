"""Maintainer script: pack the billing unit of each HCPCS drug code into fhir_checker/data.

Usage: python scripts/build_drug_units.py PATH/TO/cms

The unit a drug code is billed in is part of its public HCPCS Level II description
("Injection, cefazolin sodium, 500 mg" -> 500 mg per unit). Reads
``hcpcs_level2_2024.tsv`` (long descriptions, mid-2024 file) and, for codes newer than that
file, the short descriptions in ``ioce/hcpcs_attributes.tsv.gz`` (I/OCE 27.1.0). Writes
``drug_units.tsv.gz`` (code, amount, UCUM unit, description; amount and unit empty when the
description names no measurable unit, e.g. "per vial") and its manifest entry. The product
never reads the source folder; it reads only what this script writes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "fhir_checker" / "data"
NAME = "drug_units"

#: Description unit words -> (UCUM unit, factor). Units, IU and USP units are kept as
#: written; the rule treats them as one dimension (the drug defines what a unit is).
UNIT_WORDS: dict[str, tuple[str, float]] = {
    "mg": ("mg", 1),
    "milligram": ("mg", 1),
    "milligrams": ("mg", 1),
    "mcg": ("ug", 1),
    "microgram": ("ug", 1),
    "micrograms": ("ug", 1),
    "ug": ("ug", 1),
    "g": ("g", 1),
    "gm": ("g", 1),
    "gram": ("g", 1),
    "grams": ("g", 1),
    "ml": ("mL", 1),
    "cc": ("mL", 1),
    "unit": ("U", 1),
    "units": ("U", 1),
    "u": ("U", 1),
    "usp unit": ("[USP'U]", 1),
    "usp units": ("[USP'U]", 1),
    "iu": ("[iU]", 1),
    "i.u.": ("[iU]", 1),
    "kiu": ("[iU]", 1000),
    "million units": ("U", 1_000_000),
    "meq": ("meq", 1),
    "mmol": ("mmol", 1),
}
_WORDS = "|".join(sorted((re.escape(w) for w in UNIT_WORDS), key=len, reverse=True))
_AMOUNT = re.compile(rf"(?P<per>per\s+|up to\s+)?(?P<n>\d[\d,]*(?:\.\d+)?)?\s*(?P<u>{_WORDS})(?![a-z])", re.I)

_EQUALS_ONE_UNIT = re.compile(rf"(?P<n>\d[\d,]*(?:\.\d+)?)\s*(?P<u>{_WORDS})\s*=\s*1\s*unit", re.I)


def parse_unit(description: str) -> tuple[float, str] | None:
    """The amount per billing unit a description names, or None.

    A "per ..." phrase wins (``per 1 usp unit (up to 999 usp units)``), else the last
    amount; a bare "per gm" means one gram.
    """
    eq = _EQUALS_ONE_UNIT.search(description)
    if eq:  # "5% dextrose/normal saline (500 ml = 1 unit)"
        ucum, factor = UNIT_WORDS[eq.group("u").lower()]
        return float(eq.group("n").replace(",", "")) * factor, ucum
    found: list[tuple[bool, float, str]] = []
    for m in _AMOUNT.finditer(description):
        per = bool(m.group("per")) and m.group("per").lower().startswith("per")
        n = m.group("n")
        if n is None and not per:
            continue  # a unit word without an amount ("units of ...") names nothing
        amount = float(n.replace(",", "")) if n else 1.0
        if amount <= 0:
            continue
        ucum, factor = UNIT_WORDS[m.group("u").lower()]
        found.append((per, amount * factor, ucum))
    if not found:
        return None
    pers = [f for f in found if f[0]]
    _, amount, unit = pers[0] if pers else found[-1]
    return amount, unit


def is_drug(code: str, description: str) -> bool:
    d = description.lower()
    return code.startswith("J") or d.startswith(("injection", "inj ", "inj,"))


def _fmt(amount: float) -> str:
    return f"{amount:g}" if amount < 1e15 else str(int(amount))


def main(cms: Path) -> None:
    rows: dict[str, tuple[str, str, str]] = {}
    with (cms / "hcpcs_level2_2024.tsv").open(encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            code, desc = r["code"], (r["description"] or "").strip()
            if not desc or not is_drug(code, desc):
                continue
            unit = parse_unit(desc)
            rows[code] = (_fmt(unit[0]), unit[1], desc) if unit else ("", "", desc)
    with gzip.open(cms / "ioce" / "hcpcs_attributes.tsv.gz", "rt", encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            code, desc = r["code"], (r["hcpcs_l2_short_description"] or "").strip()
            if code in rows and rows[code][0]:
                continue  # the long description is the better source
            if not desc or code[:1].isdigit() or not is_drug(code, desc):
                continue
            unit = parse_unit(desc)
            if unit:
                rows[code] = (_fmt(unit[0]), unit[1], desc)
            elif code not in rows:
                rows[code] = ("", "", desc)
    body = "code\tamount\tunit\tdescription\n" + "".join(
        f"{c}\t{a}\t{u}\t{d}\n" for c, (a, u, d) in sorted(rows.items())
    )
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"{NAME}.tsv.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as out:  # mtime=0: reproducible bytes
        out.write(body.encode())
    manifest_path = DATA / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"tables": {}}
    manifest.setdefault("tables", {})[NAME] = {
        "title": "HCPCS drug billing units (from the public HCPCS Level II descriptions)",
        "file": path.name,
        "rows": len(rows),
        "with_unit": sum(1 for a, _, _ in rows.values() if a),
        "source": "CMS HCPCS Level II file (mid-2024) long descriptions; for newer codes the "
        "I/OCE 27.1.0 (2026-04-01) HCPCS short descriptions",
        "effective": "2026-04-01",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"{path.name}: {len(rows)} drug codes, {manifest['tables'][NAME]['with_unit']} with a unit")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/cms"))
