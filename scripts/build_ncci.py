"""Maintainer script: pack the NCCI tables (PTP, MUE, add-on) into fhir_checker/data.

Usage: python scripts/build_ncci.py [PATH/TO/shared/cms]   (default /work/shared/cms)

Sources (see that folder's README.md and ioce/README.md):

- practitioner PTP: ``ncci_ptp_practitioner_2024q3.tsv.gz`` (CMS release 2024-07-01). That
  extract keeps each row's deletion date but not its effective date, so effective dates are
  inferred: a pair's rows are ordered by deletion date; the first is in force "since before
  the data begin", each later row from the day after the previous row's deletion. (A pair
  deleted and re-added after a gap would be in force in the gap too; CMS's own files, read by
  ``fhir-checker data import``, carry the real effective dates.)
- outpatient hospital PTP: the I/OCE history ``ioce/ncci_outpatient_history.tsv.gz``
  (I/OCE versions 2019-07-01 .. 2026-04-01, quarter granularity) is the authority for which
  pair is in force on which date and with which modifier indicator, because it is newer and
  carries real start dates (spans starting 2019-07-01 mean "on or before"). The rationale is
  taken from the CMS 2024-07-01 OPH file (the I/OCE has none): the CMS row of the pair with
  the same indicator, else any CMS row of the pair, else "Not stated (not in the CMS
  2024-07-01 file)". Pairs in the CMS file that the I/OCE never had (M0246 and other codes
  the I/OCE dropped, codes absent from every I/OCE version) are added from the CMS file with
  inferred effective dates as above.
- MUE practitioner / outpatient hospital and the NCCI add-on file, 2024-07-01 (no per-row
  dates: in force for the release).

Manifest: updates only its own keys, sorted, indent 2.
"""

from __future__ import annotations

import csv
import gzip
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_checker.tables.cms_import import Planned, install  # noqa: E402
from fhir_checker.tables.ncci import (  # noqa: E402
    NO_PRIMARY,
    NO_START,
    OPEN_END,
    AddonRow,
    Mue,
    PtpColumns,
    write_addons,
    write_mue,
    write_ptp,
)

DATA = ROOT / "fhir_checker" / "data"
IOCE_FIRST = 20190701
NOT_STATED = "Not stated (not in the CMS 2024-07-01 file)"


def _day_after(ymd: int) -> int:
    d = date(ymd // 10000, ymd // 100 % 100, ymd % 100) + timedelta(days=1)
    return d.year * 10000 + d.month * 100 + d.day


def _rows(path: Path) -> Iterator[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
        yield from csv.DictReader(fh, delimiter="\t")


Cms = dict[tuple[str, str], list[tuple[int, int, str]]]  # pair -> [(deletion, indicator, rationale)]


def read_cms_ptp(path: Path) -> Cms:
    pairs: Cms = {}
    for r in _rows(path):
        pairs.setdefault((r["column1"], r["column2"]), []).append(
            (int(r["deletion_date"]), int(r["modifier_indicator"]), r["rationale"])
        )
    return pairs


def add_inferred(cols: PtpColumns, c1: str, c2: str, rows: list[tuple[int, int, str]]) -> None:
    """CMS rows of one pair without effective dates: each from the previous row's deletion."""
    eff = NO_START
    for dele, ind, rat in sorted(rows):
        cols.add(c1, c2, eff, dele, ind, rat)
        eff = _day_after(dele) if dele != OPEN_END else eff


def practitioner(cms: Path) -> PtpColumns:
    cols = PtpColumns()
    for (c1, c2), rows in read_cms_ptp(cms / "ncci_ptp_practitioner_2024q3.tsv.gz").items():
        add_inferred(cols, c1, c2, rows)
    return cols


def outpatient(cms: Path) -> tuple[PtpColumns, dict[str, int]]:
    cms_pairs = read_cms_ptp(cms / "ncci_ptp_outpatient_hospital_2024q3.tsv.gz")
    cols = PtpColumns()
    stats = {"ioce_spans": 0, "rationale_from_cms": 0, "rationale_not_stated": 0, "cms_only_pairs": 0}
    seen: set[tuple[str, str]] = set()
    for r in _rows(cms / "ioce" / "ncci_outpatient_history.tsv.gz"):
        pair = (r["column1"], r["column2"])
        seen.add(pair)
        ind = int(r["modifier_indicator"])
        vf, vt = int(r["valid_from"]), int(r["valid_to"])
        cms_rows = cms_pairs.get(pair, [])
        same = [x for x in cms_rows if x[1] == ind]
        pick = max(same or cms_rows, default=None)  # the latest-deleted CMS row
        rationale = pick[2] if pick else NOT_STATED
        stats["rationale_from_cms" if pick else "rationale_not_stated"] += 1
        stats["ioce_spans"] += 1
        cols.add(pair[0], pair[1], NO_START if vf <= IOCE_FIRST else vf, vt, ind, rationale)
    for pair, rows in cms_pairs.items():
        if pair not in seen:
            stats["cms_only_pairs"] += 1
            add_inferred(cols, pair[0], pair[1], rows)
    return cols, stats


def mues(path: Path) -> list[Mue]:
    return [Mue(r["code"], int(r["mue_value"]), int(r["mai"]), r["rationale"]) for r in _rows(path)]


def addons(path: Path) -> list[AddonRow]:
    return [
        AddonRow(
            r["addon_code"],
            None if r["primary_code"] == NO_PRIMARY else r["primary_code"],
            int(r["aoc_edit_type"]),
        )
        for r in _rows(path)
    ]


def main(cms: Path) -> None:
    t0 = time.perf_counter()
    prac = practitioner(cms)
    oph, stats = outpatient(cms)
    print(f"read PTP in {time.perf_counter() - t0:.1f} s; OPH: {stats}", flush=True)
    cms_2024 = "CMS Medicare NCCI {what}, release effective 2024-07-01 ({file})"
    planned = [
        Planned(
            "ptp_practitioner",
            "ptp_practitioner.ptp",
            "NCCI PTP edits, practitioner services",
            cms_2024.format(what="PTP edits, practitioner", file="ncci_ptp_practitioner_2024q3")
            + "; effective dates inferred from deletion dates (the extract has none)",
            "2024-07-01",
            lambda p: write_ptp(prac, p, {"effective": "2024-07-01", "setting": "practitioner"}),
        ),
        Planned(
            "ptp_outpatient_hospital",
            "ptp_outpatient_hospital.ptp",
            "NCCI PTP edits, outpatient hospital services (I/OCE)",
            "CMS I/OCE NCCI table (map_ncci), versions 20.2.27 (2019-07-01) to 27.1.0 (2026-04-01), "
            "as bundled in the pyoce 0.1.0 wheel: pairs, indicators and date spans; rationales from "
            + cms_2024.format(
                what="PTP edits, outpatient hospital", file="ncci_ptp_outpatient_hospital_2024q3"
            )
            + f"; {stats['cms_only_pairs']} pairs only in the CMS file added from it",
            "2026-04-01",
            lambda p: write_ptp(oph, p, {"effective": "2026-04-01", "setting": "outpatient-hospital"}),
            {"covers": "2019-07-01 (on or before) to 2026-06-30 and after (open-ended spans)"},
        ),
    ]
    for setting, file in (
        ("practitioner", "mue_practitioner_2024q3"),
        ("outpatient_hospital", "mue_outpatient_hospital_2024q3"),
    ):
        rows = mues(cms / f"{file}.tsv")
        planned.append(
            Planned(
                f"mue_{setting}",
                f"mue_{setting}.tsv.gz",
                f"NCCI MUEs, {setting.replace('_', ' ')} services",
                cms_2024.format(what=f"MUE table, {setting.replace('_', ' ')}", file=file),
                "2024-07-01",
                lambda p, r=rows: write_mue(r, p),
            )
        )
    aoc = addons(cms / "addon_codes_2024q3.tsv")
    planned.append(
        Planned(
            "addon_codes",
            "addon_codes.tsv.gz",
            "NCCI add-on code edits",
            "CMS Medicare NCCI add-on code edits, file of 2024-06 for 2024-07-01 (addon_codes_2024q3)",
            "2024-07-01",
            lambda p: write_addons(aoc, p),
        )
    )
    for entry in install(planned, DATA):
        print(
            f"{entry['name']:<26} {entry['rows']:>10,} rows  {(DATA / entry['file']).stat().st_size / 1e6:6.2f} MB"
        )
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/cms"))
