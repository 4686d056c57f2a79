"""``fhir-checker check``: check claims from files or stdin, print OperationOutcomes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from ..logs import add_logging_options, configure_from_args

EXIT_CLEAN, EXIT_ERRORS, EXIT_BAD_INPUT = 0, 1, 2


def _date(text: str) -> date:
    """``--today``: argparse's own message for a bad one would name ``fromisoformat``."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a date: give YYYY-MM-DD") from None


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="check claims (files, '-' for stdin); print the OperationOutcome",
        description="Check FHIR claims (Claim, Bundle or Parameters JSON). One input prints one "
        "OperationOutcome; several inputs or NDJSON print one outcome per line, in order. "
        "Exit 0 clean (warnings allowed), 1 error findings, 2 bad input.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="JSON files, or '-' for stdin")
    p.add_argument(
        "--ndjson", metavar="FILE", help="NDJSON input (one Claim or Bundle per line; '-' = stdin)"
    )
    p.add_argument("--format", choices=("json", "table"), default="json")
    p.add_argument("--profile", help="rule pack name or YAML path (default: by claim type)")
    p.add_argument("--select", action="append", help="rule ids / prefixes / categories to run")
    p.add_argument("--ignore", action="append", help="rule ids / prefixes / categories to skip")
    p.add_argument("--today", type=_date, help="check as of this date (YYYY-MM-DD)")
    p.add_argument(
        "--validation",
        choices=("auto", "full"),
        default="auto",
        help="'full' validates every resource with the FHIR models",
    )
    p.add_argument("--jobs", type=int, default=0, help="worker processes for --ndjson (0 = all cores)")
    p.add_argument(
        "--summary",
        metavar="FILE",
        action="append",
        help="write a summary report (.html or .json); repeat for both",
    )
    # One log line per claim at info (claim id, rule ids, timings) on stderr: off by default.
    add_logging_options(p, default_level="warning")
    p.set_defaults(func=run)


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _inputs(paths: list[str]) -> Iterator[tuple[str, bytes | None, str | None]]:
    for p in paths:
        if p == "-":
            yield "<stdin>", sys.stdin.buffer.read(), None
            continue
        try:
            yield p, Path(p).read_bytes(), None
        except OSError as exc:
            yield p, None, f"cannot read {p}: {exc.strerror}"


def run(args: argparse.Namespace) -> int:
    from ..engine import run as run_check
    from ..outcome import fatal
    from ..packs import PackError, load_pack

    configure_from_args(args)
    if args.ndjson:
        from ..bulk import run_ndjson_cli

        return int(run_ndjson_cli(args))
    if not args.paths:
        print("fhir-checker check: give one or more PATHs, '-' for stdin, or --ndjson FILE", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        pack = load_pack(args.profile) if args.profile else None
    except PackError as exc:
        print(f"fhir-checker: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        select, ignore = _split(args.select), _split(args.ignore)
        from ..registry import select_rules

        select_rules(select, ignore)
    except KeyError as exc:
        print(f"fhir-checker: {exc.args[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    many = len(args.paths) > 1
    worst = EXIT_CLEAN
    for name, data, err in _inputs(args.paths):
        if data is None:
            outcome, is_fatal, has_errors = fatal(err or "unreadable", code="not-found"), True, True
        else:
            res = run_check(
                data, profile=pack, select=select, ignore=ignore, today=args.today, validation=args.validation
            )
            outcome, is_fatal, has_errors = res.outcome, res.fatal, res.has_errors
        if args.format == "table":
            from .table import print_table

            print_table(name, outcome)
        elif many:
            sys.stdout.write(orjson.dumps(outcome).decode() + "\n")
        else:
            sys.stdout.write(orjson.dumps(outcome, option=orjson.OPT_INDENT_2).decode() + "\n")
        code = EXIT_BAD_INPUT if is_fatal else EXIT_ERRORS if has_errors else EXIT_CLEAN
        worst = max(worst, code)
    sys.stdout.flush()
    return worst
