"""``fhir-checker data``: list the packed tables (``info``) or rebuild the NCCI ones from
CMS's quarterly files (``import``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("data", help="the packed CMS tables: info, import")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    info = dsub.add_parser("info", help="every table: name, title, source, effective date, rows, file")
    info.add_argument("--json", action="store_true", help="print the manifest entries as JSON")
    info.add_argument(
        "--dir", type=Path, help="data directory (default: $FHIR_CHECKER_DATA or the package's)"
    )
    info.set_defaults(func=run_info)
    imp = dsub.add_parser(
        "import",
        help="rebuild NCCI tables from CMS's own quarterly files (any subset)",
        description=(
            "Read CMS's PTP (tab-delimited .txt, several parts per setting), MUE (.csv) and add-on "
            "code files and pack them. Nothing is replaced unless every file reads cleanly."
        ),
    )
    imp.add_argument(
        "--ptp-practitioner", type=Path, nargs="+", metavar="FILE", help="PTP practitioner file(s)"
    )
    imp.add_argument(
        "--ptp-outpatient", type=Path, nargs="+", metavar="FILE", help="PTP outpatient hospital file(s)"
    )
    imp.add_argument("--mue-practitioner", type=Path, metavar="FILE", help="MUE practitioner services CSV")
    imp.add_argument(
        "--mue-outpatient", type=Path, metavar="FILE", help="MUE outpatient hospital services CSV"
    )
    imp.add_argument("--addon", type=Path, metavar="FILE", help="add-on code edit file (.txt or .csv)")
    imp.add_argument(
        "--effective",
        metavar="YYYY-MM-DD",
        help="the release's effective date (default: from the file name, else the latest row date)",
    )
    imp.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="data directory to write (default: $FHIR_CHECKER_DATA or the package's); a new directory "
        "gets a copy of the other shipped tables, so FHIR_CHECKER_DATA=DIR works at once",
    )
    imp.set_defaults(func=run_import)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_info(args: argparse.Namespace) -> int:
    import json

    from ..tables import data_dir

    directory: Path = args.dir or data_dir()
    try:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"fhir-checker: cannot read {directory / 'manifest.json'}: {exc}", file=sys.stderr)
        return 2
    tables: dict[str, dict[str, Any]] = manifest.get("tables", {})
    if args.json:
        print(json.dumps({"directory": str(directory), "tables": tables}, indent=2, sort_keys=True))
        return 0
    # One block per table: readable at any terminal width (sources are long sentences).
    print(f"{len(tables)} tables in {directory}\n")
    for name, entry in sorted(tables.items()):
        rows = entry.get("rows")
        print(f"{name}: {entry.get('title', '')}")
        print(f"  source:    {entry.get('source', '')}")
        print(
            f"  effective: {entry.get('effective', '')}   rows: "
            f"{f'{rows:,}' if isinstance(rows, int) else rows or '-'}   file: {entry.get('file', '')}"
        )
        if entry.get("covers"):
            print(f"  covers:    {entry['covers']}")
        print()
    return 0


def run_import(args: argparse.Namespace) -> int:
    from ..tables import PACKAGE_DATA, data_dir
    from ..tables.cms_import import CmsFileError, install, plan_imports

    ptp = {
        k: v
        for k, v in (("practitioner", args.ptp_practitioner), ("outpatient-hospital", args.ptp_outpatient))
        if v
    }
    mue = {
        k: v
        for k, v in (("practitioner", args.mue_practitioner), ("outpatient-hospital", args.mue_outpatient))
        if v
    }
    if not (ptp or mue or args.addon):
        print(
            "fhir-checker: data import needs at least one of --ptp-practitioner, --ptp-outpatient, "
            "--mue-practitioner, --mue-outpatient, --addon",
            file=sys.stderr,
        )
        return 2
    out: Path = args.out or data_dir()
    try:
        planned = plan_imports(ptp=ptp, mue=mue, addon=args.addon, effective=args.effective)
        done = install(planned, out, base=PACKAGE_DATA)
    except (CmsFileError, ValueError) as exc:
        print(f"fhir-checker: {exc}", file=sys.stderr)
        print("fhir-checker: nothing was replaced", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fhir-checker: cannot write to {out}: {exc.strerror}; nothing was replaced", file=sys.stderr)
        return 2
    for entry in done:
        print(
            f"{entry['name']:<26} {entry['rows']:>10,} rows  effective {entry['effective']}  -> {out / entry['file']}"
        )
    return 0
