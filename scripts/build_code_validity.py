"""Maintainer script: pack the I/OCE code-validity spans into fhir_checker/data.

Usage: python scripts/build_code_validity.py PATH/TO/cms/ioce

Reads hcpcs_validity.tsv.gz and diagnosis_validity.tsv.gz (I/OCE 27.1.0 history files,
extracted from the pyoce 0.1.0 wheel's LMDB; see docs/data.md) and writes compact
four-column gzipped TSVs plus their manifest entries. The product never reads the
source folder; it reads only what this script writes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "fhir_checker" / "data"


def _write(name: str, rows: list[tuple[str, str, str, str]]) -> tuple[str, int, str]:
    path = DATA / f"{name}.tsv.gz"
    body = "code\tvalid_from\tvalid_to\ttruncated\n" + "".join("\t".join(r) + "\n" for r in rows)
    with gzip.GzipFile(path, "wb", mtime=0) as fh:  # mtime=0: reproducible bytes
        fh.write(body.encode())
    return path.name, len(rows), hashlib.sha256(path.read_bytes()).hexdigest()


def main(ioce: Path) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    with gzip.open(ioce / "hcpcs_validity.tsv.gz", "rt") as fh:
        hc = [
            (r["code"], r["valid_from"], r["valid_to"], r["start_truncated"])
            for r in csv.DictReader(fh, delimiter="\t")
        ]
    with gzip.open(ioce / "diagnosis_validity.tsv.gz", "rt") as fh:
        dx = [
            (r["code_dotted"], r["valid_from"], r["valid_to"], r["start_truncated"])
            for r in csv.DictReader(fh, delimiter="\t")
        ]
    manifest_path = DATA / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"tables": {}}
    src = (
        "CMS Integrated Outpatient Code Editor (I/OCE) data tables, versions 20.2.27 "
        "(2019-07-01) to 27.1.0 (2026-04-01), as bundled in the pyoce 0.1.0 wheel (PyPI)"
    )
    for name, rows, title in (
        ("hcpcs_validity", sorted(hc), "HCPCS/CPT code validity spans (I/OCE)"),
        ("icd10cm_validity", sorted(dx), "ICD-10-CM code validity spans (I/OCE)"),
    ):
        file, n, sha = _write(name, rows)
        manifest["tables"][name] = {
            "title": title,
            "file": file,
            "rows": n,
            "source": src,
            "effective": "2026-04-01",
            "covers": "2019-07-01 to 2026-06-30 and after (open-ended spans)",
            "sha256": sha,
        }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
