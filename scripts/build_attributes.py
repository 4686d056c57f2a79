"""Maintainer script: pack the I/OCE attribute tables the age, sex, device, modifier and
terminated-code rules read into fhir_checker/data.

Usage: python scripts/build_attributes.py PATH/TO/shared/cms

Reads (all public CMS data; see the folder's README.md and ioce/README.md):
  ioce/hcpcs_attributes.tsv.gz, ioce/hcpcs_validity.tsv.gz     procedure ages, device flags
  ioce/diagnosis_attributes.tsv, ioce/diagnosis_validity.tsv.gz diagnosis ages
  ioce/device_procedure.tsv                                    device pairs (edits 98, 135)
  ioce/modifiers.tsv, modifiers_2024.tsv                       valid modifiers
  pfs_indicators_2024.tsv                                      PC/TC indicators
  hcpcs_level2_2024.tsv                                        xref of terminated codes
and writes small gzipped TSVs with only the columns the rules use, plus their entries in
manifest.json (only this script's keys are touched). The product never reads the source
folder; it reads only what this script writes. Output is byte-reproducible (gzip mtime 0).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "fhir_checker" / "data"

IOCE_SOURCE = (
    "CMS Integrated Outpatient Code Editor (I/OCE) data tables, version 27.1.0 "
    "(effective 2026-04-01), as bundled in the pyoce 0.1.0 wheel (PyPI)"
)
IOCE_HISTORY = "versions 20.2.27 (2019-07-01) to 27.1.0 (2026-04-01)"

#: Age limits stated in the CPT code descriptor ("patient younger than 5 years" /
#: "patient age 5 years or older") for codes where the I/OCE table carries no limit.
#: Only the numbers are shipped, never descriptor text. I/OCE carries 99151 as 0-4 itself.
CPT_DESCRIPTOR_AGES: dict[str, tuple[int, int]] = {
    "99152": (5, 124),  # moderate sedation, same physician, initial 15 min, age 5 or older
    "99155": (0, 4),  # moderate sedation, other physician, initial 15 min, under 5
    "99156": (5, 124),  # moderate sedation, other physician, initial 15 min, age 5 or older
}

#: Terminated HCPCS codes and the code CMS added in their place, where the HCPCS file's own
#: xref column cannot say (it predates the change). Each entry is checked below against the
#: I/OCE validity spans: the old code's last day + 1 = the new code's first day.
CURATED_REPLACEMENTS: dict[str, tuple[str, str, str]] = {
    "J2001": (
        "J2003",
        "CMS HCPCS quarterly update 2024-10-01: J2001 (lidocaine HCl for IV infusion, 10 mg) "
        "deleted, J2003 (lidocaine HCl, 1 mg) added",
        "J2003 is per 1 mg where J2001 was per 10 mg: multiply the units by 10",
    ),
}

#: Sex-specific ICD-10-CM blocks and categories (ICD-10-CM Tabular List block titles). The
#: I/OCE sex columns are 0 everywhere, so this is the only sex source the product has.
#: Each entry: (sex, first, last, label); first/last compare against the code's first
#: len(first) characters (with the dot), so "D07.0".."D07.3" selects D07.0-D07.39.
SEX_RANGES: tuple[tuple[str, str, str, str], ...] = (
    ("F", "O00", "O9A", "Pregnancy, childbirth and the puerperium (O00-O9A)"),
    ("F", "N70", "N77", "Inflammatory diseases of female pelvic organs (N70-N77)"),
    ("F", "N80", "N98", "Noninflammatory disorders of female genital tract (N80-N98)"),
    ("F", "C51", "C58", "Malignant neoplasms of female genital organs (C51-C58)"),
    ("F", "D06", "D06", "Carcinoma in situ of cervix uteri (D06)"),
    ("F", "D07.0", "D07.3", "Carcinoma in situ of female genital organs (D07.0-D07.3)"),
    ("F", "D25", "D28", "Benign neoplasms of uterus, ovary and other female genital organs (D25-D28)"),
    ("F", "D39", "D39", "Neoplasm of uncertain behavior of female genital organs (D39)"),
    ("F", "Z3A", "Z3A", "Weeks of gestation (Z3A)"),
    ("F", "Z33", "Z34", "Pregnant state; supervision of normal pregnancy (Z33-Z34)"),
    ("F", "Z36", "Z37", "Antenatal screening; outcome of delivery (Z36-Z37)"),
    ("F", "Z39", "Z39", "Maternal postpartum care and examination (Z39)"),
    ("F", "Z01.4", "Z01.4", "Gynecological examination (Z01.4)"),
    ("F", "Z12.4", "Z12.4", "Screening for malignant neoplasm of cervix (Z12.4)"),
    ("M", "N40", "N53", "Diseases of male genital organs (N40-N53)"),
    ("M", "C60", "C63", "Malignant neoplasms of male genital organs (C60-C63)"),
    ("M", "D07.4", "D07.6", "Carcinoma in situ of male genital organs (D07.4-D07.6)"),
    ("M", "D29", "D29", "Benign neoplasm of male genital organs (D29)"),
    ("M", "D40", "D40", "Neoplasm of uncertain behavior of male genital organs (D40)"),
    ("M", "Z12.5", "Z12.5", "Screening for malignant neoplasm of prostate (Z12.5)"),
    ("M", "R97.2", "R97.2", "Elevated prostate specific antigen (R97.2)"),
)


def _rows(path: Path) -> Iterator[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)


def _write(name: str, header: str, rows: Iterable[tuple[object, ...]]) -> tuple[str, int, str]:
    path = DATA / f"{name}.tsv.gz"
    lines = ["\t".join(str(v) for v in r) + "\n" for r in rows]
    with gzip.GzipFile(path, "wb", mtime=0) as fh:
        fh.write((header + "\n" + "".join(lines)).encode())
    return path.name, len(lines), hashlib.sha256(path.read_bytes()).hexdigest()


def _day_after(ymd: str) -> str:
    d = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:])) + timedelta(days=1)
    return d.strftime("%Y%m%d")


def _sex_of(dotted: str) -> tuple[str, str] | None:
    for sex, first, last, label in SEX_RANGES:
        key = dotted[: len(first)]
        if first <= key <= last:
            return sex, label
    # Malignant neoplasm of breast: the 5th character says the sex (C50.x1x female, C50.x2x male).
    if dotted.startswith("C50.") and len(dotted) >= 6 and dotted[5] in "12":
        return (
            ("F", "Malignant neoplasm of female breast (C50.x1x)")
            if dotted[5] == "1"
            else ("M", "Malignant neoplasm of male breast (C50.x2x)")
        )
    return None


def build(cms: Path) -> dict[str, dict[str, object]]:
    ioce = cms / "ioce"
    entries: dict[str, dict[str, object]] = {}

    # -- procedures: ages and device flags ------------------------------------------------
    dev = list(_rows(ioce / "device_procedure.tsv"))
    intensive = {
        r["procedure_code"]: r for r in dev if r["relation"] == "device_intensive_requires_any_device"
    }
    attrs = {r["code"]: r for r in _rows(ioce / "hcpcs_attributes.tsv.gz")}
    ages: dict[str, tuple[int, int, str]] = {}
    for r in _rows(ioce / "hcpcs_validity.tsv.gz"):  # ended codes keep their last range
        ages[r["code"]] = (int(r["lo_age"]), int(r["hi_age"]), "i")
    for code, r in attrs.items():
        ages[code] = (int(r["lo_age"]), int(r["hi_age"]), "i")
    for code, (lo, hi) in CPT_DESCRIPTOR_AGES.items():
        assert ages.get(code, (0, 124, ""))[:2] == (0, 124), f"{code}: I/OCE now has an age range"
        ages[code] = (lo, hi, "c")
    proc_rows = []
    for code in sorted(set(ages) | set(attrs)):
        lo, hi, src = ages.get(code, (0, 124, "i"))
        a = attrs.get(code, {})
        di = int(code in intensive)
        device = int(a.get("device", "0") == "1")
        cg = int(di and intensive[code]["procedure_bypass_e92_with_cg"] == "1")
        pt = int(a.get("passthrough_device", "0") == "1")
        if (lo, hi) != (0, 124) or di or device or pt:
            proc_rows.append((code, lo, hi, src, di, device, cg, pt))
    entries["procedure_attributes"] = _entry(
        _write(
            "procedure_attributes",
            "code\tlo_age\thi_age\tage_source\tdevice_intensive\tdevice\te92_cg_bypass\tpassthrough",
            proc_rows,
        ),
        title="Procedure age ranges and device flags (I/OCE)",
        source=f"{IOCE_SOURCE}: data_hcpcs lo_age/hi_age, device, passthrough_device; device_procedure "
        f"(edit 92, CG bypass); ages of codes ended earlier from the {IOCE_HISTORY} spans; "
        f"age_source c = age stated in the CPT descriptor where I/OCE has none ({', '.join(CPT_DESCRIPTOR_AGES)})",
        effective="2026-04-01",
    )

    # -- device pairs: edit 135 (device-dependent) and 98/105 (pass-through) ------------------
    pair_rows = sorted(
        (
            "dependent" if r["relation"] == "device_dependent_requires_device" else "passthrough",
            r["procedure_code"],
            r["device_code"],
            r["date_activated"] or "0",
        )
        for r in dev
        if r["relation"] != "device_intensive_requires_any_device"
    )
    entries["device_procedure_pairs"] = _entry(
        _write("device_procedure_pairs", "relation\tprocedure\tdevice\tdate_activated", pair_rows),
        title="Device-dependent procedures and pass-through device pairs (I/OCE)",
        source=f"{IOCE_SOURCE}: map_device_procedure (edit 135) and offset_codepair list 1 (edits 98, 105)",
        effective="2026-04-01",
    )

    # -- modifiers -----------------------------------------------------------------------------
    level2: dict[str, str] = {}
    level_of: dict[str, str] = {}
    for r in _rows(cms / "modifiers_2024.tsv"):
        level_of.setdefault(r["modifier"], r["level"])
        if r["level"] == "2" and r["description"]:
            level2.setdefault(r["modifier"], r["description"])
    mod_rows = []
    ioce_mods = {r["modifier"]: r for r in _rows(ioce / "modifiers.tsv") if r["placeholder"] == "0"}
    for m in sorted(set(ioce_mods) | set(level_of)):
        row = ioce_mods.get(m)
        valid_from = "0"
        if row is not None:
            if row["date_activated"] != "0":
                valid_from = row["date_activated"]
            elif row["row_since_date"] > "2019-07-01" and not any(
                row[k] == "1"
                for k in (
                    "ncci",
                    "therapy",
                    "non_discount",
                    "died_transferred",
                    "device_req_exclusion",
                    "telehealth",
                    "assistant_surgeon",
                )
            ):
                # An all-zero row can only have started by the modifier entering the list
                # (a flag change would start a new row too: such rows are left undated).
                valid_from = row["row_since_date"].replace("-", "")
        mod_rows.append(
            (
                m,
                int(row is not None),
                level_of.get(m, "0"),
                valid_from,
                int(row is not None and row["device_req_exclusion"] == "1"),
                level2.get(m, "").replace("\t", " "),
            )
        )
    entries["modifier_attributes"] = _entry(
        _write(
            "modifier_attributes",
            "modifier\tin_ioce\tlevel\tvalid_from\tdevice_exclusion\tdescription",
            mod_rows,
        ),
        title="Valid modifiers (I/OCE list and CMS HCPCS/CPT modifier file)",
        source=f"{IOCE_SOURCE}: data_modifier (valid list, date_activated, first version of the row); "
        "CMS HCPCS modifier file 2024 (level 1 CPT, level 2 HCPCS with CMS public descriptions)",
        effective="2026-04-01",
    )

    # -- PFS PC/TC indicator -----------------------------------------------------------------
    pctc: dict[str, str] = {}
    for r in _rows(cms / "pfs_indicators_2024.tsv"):
        if r["mod"] in ("", "26", "TC") and r["pctc"] and (r["mod"] == "" or r["hcpcs_code"] not in pctc):
            pctc[r["hcpcs_code"]] = r["pctc"]
    entries["pfs_pctc"] = _entry(
        _write("pfs_pctc", "code\tpctc", sorted(pctc.items())),
        title="Medicare PFS PC/TC indicators",
        source="CMS Medicare Physician Fee Schedule relational value file 2024 (PC/TC indicator column)",
        effective="2024",
    )

    # -- terminated HCPCS -> replacement ----------------------------------------------------------
    spans: dict[str, list[tuple[str, str]]] = {}
    for r in _rows(ioce / "hcpcs_validity.tsv.gz"):
        spans.setdefault(r["code"], []).append((r["valid_from"], r["valid_to"]))
    repl: dict[str, tuple[str, str, str, str]] = {}
    for r in _rows(cms / "hcpcs_level2_2024.tsv"):
        xref = r["xref"].strip()
        if r["date_terminated"] and xref and xref != r["code"] and len(xref) == 5:
            repl[r["code"]] = (xref, r["date_terminated"], "x", "")
    for old, (new, _why, note) in CURATED_REPLACEMENTS.items():
        last = max(t for _f, t in spans[old])
        assert any(f == _day_after(last) for f, _t in spans[new]), f"{old}->{new}: spans do not meet"
        repl[old] = (new, last, "c", note)
    entries["hcpcs_replacements"] = _entry(
        _write(
            "hcpcs_replacements",
            "code\treplacement\tlast_day\tsource\tnote",
            sorted((k, *v) for k, v in repl.items()),
        ),
        title="Replacement codes for terminated HCPCS codes",
        source="CMS HCPCS Level II file 2024 (xref column of terminated codes, source x); curated "
        "from CMS HCPCS quarterly updates and checked against the I/OCE validity spans, source c: "
        + "; ".join(f"{k} -> {v[0]} ({v[1]})" for k, v in CURATED_REPLACEMENTS.items()),
        effective="2024-10-01",
    )

    # -- diagnoses: age (edit 2) and derived sex ----------------------------------------------
    dx_age: dict[str, tuple[int, int]] = {}
    for r in _rows(ioce / "diagnosis_validity.tsv.gz"):
        dx_age[r["code_dotted"]] = (int(r["lo_age"]), int(r["hi_age"]))
    for r in _rows(ioce / "diagnosis_attributes.tsv"):
        dx_age[r["code_dotted"]] = (int(r["lo_age"]), int(r["hi_age"]))
    entries["icd10cm_age"] = _entry(
        _write(
            "icd10cm_age",
            "code\tlo_age\thi_age",
            sorted((c, lo, hi) for c, (lo, hi) in dx_age.items() if (lo, hi) != (0, 124)),
        ),
        title="ICD-10-CM age ranges: newborn, pediatric, maternity, adult (I/OCE)",
        source=f"{IOCE_SOURCE}: data_dx10 lo_age/hi_age (edit 2); ended codes from the {IOCE_HISTORY} spans",
        effective="2026-04-01",
    )
    sex_rows = sorted((c, *s) for c in dx_age if (s := _sex_of(c)) is not None)
    entries["icd10cm_sex"] = _entry(
        _write("icd10cm_sex", "code\tsex\tblock", sex_rows),
        title="Sex-specific ICD-10-CM codes (derived from ICD-10-CM block titles)",
        source="Derived: ICD-10-CM Tabular List chapters and blocks that are sex-specific by title "
        "(O00-O9A, N70-N98, C51-C58, D06, D07.0-D07.3, D25-D28, D39, Z3A, Z33-Z39 female; N40-N53, "
        "C60-C63, D07.4-D07.6, D29, D40, Z12.5, R97.2 male; C50 by its 5th character) applied to the "
        f"I/OCE diagnosis list ({IOCE_HISTORY}). The I/OCE sex columns are 0 for every code.",
        effective="2026-04-01",
    )
    return entries


def _entry(written: tuple[str, int, str], *, title: str, source: str, effective: str) -> dict[str, object]:
    file, rows, sha = written
    return {
        "title": title,
        "file": file,
        "rows": rows,
        "sha256": sha,
        "source": source,
        "effective": effective,
    }


def main(cms: Path) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    entries = build(cms)
    manifest_path = DATA / "manifest.json"  # shared: re-read just before writing, touch only our keys
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"tables": {}}
    manifest.setdefault("tables", {}).update(entries)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for name, e in entries.items():
        print(f"{name}: {e['rows']} rows -> {e['file']}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/cms"))
