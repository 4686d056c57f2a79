"""Dump every answer the engine gives on a fixed corpus, to prove a speed change changes none.

    python scripts/dump_outcomes.py -o /tmp/before.txt
    ... change the hot path ...
    python scripts/dump_outcomes.py -o /tmp/after.txt && cmp /tmp/before.txt /tmp/after.txt

The corpus: every fixture (the example claims and every rule case, with its ``today`` and
``profile``; validation ``auto`` and ``full``) and generated claims (fixed seeds, one set
with many deliberate mistakes). Each answer is written as the OperationOutcome JSON, the
findings (rule, severity, line, fix, extra) and, for the generated claims, the bulk runner's
NDJSON output and tally. Nothing timing-dependent is written.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from datetime import date
from pathlib import Path
from typing import IO, Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

TODAY = date(2026, 11, 22)


def _findings(res: Any) -> bytes:
    return repr(
        [
            (f.rule_id, f.severity.value, f.line, f.expression, f.fix, sorted(f.extra.items()))
            for f in res.findings
        ]
    ).encode()


def _write(out: IO[bytes], label: str, res: Any) -> None:
    out.write(label.encode() + b"\n")
    out.write(orjson.dumps(res.outcome) + b"\n")
    out.write(_findings(res) + b"\n")
    out.write(f"fatal={res.fatal} incomplete={res.incomplete} claim={res.claim_id}\n".encode())


def fixtures(out: IO[bytes]) -> int:
    from fhir_checker.engine import run

    n = 0
    for path in sorted(ROOT.glob("fixtures/*.json")):
        raw = path.read_bytes()
        for mode in ("auto", "full"):
            _write(out, f"# {path.name} {mode}", run(raw, today=date(2026, 3, 20), validation=mode))
            n += 1
    for path in sorted(ROOT.glob("fixtures/rules/*/*.json")):
        case = orjson.loads(path.read_bytes())
        today = date.fromisoformat(case.get("today", "2026-11-22"))
        raw = orjson.dumps(case["input"])
        for mode in ("auto", "full"):
            res = run(raw, profile=case.get("profile"), today=today, validation=mode)
            _write(out, f"# {path.parent.name}/{path.name} {mode}", res)
            n += 1
    return n


def generated(count: int, seed: int, mistakes: float) -> list[bytes]:
    from generate_claims import Generator, build_pool  # type: ignore[import-not-found]

    gen = Generator(build_pool(seed=seed), seed, mistake_share=mistakes)
    return [line.rstrip(b"\n") for line in gen.lines(count)]


def claims(out: IO[bytes], lines: list[bytes], label: str) -> None:
    from fhir_checker.bulk import BulkOptions, blocks_of, check_stream
    from fhir_checker.engine import run
    from fhir_checker.tally import Tally

    for i, line in enumerate(lines):
        _write(out, f"# {label} {i}", run(line, today=TODAY))
    tally = Tally()
    bulk = hashlib.sha256()
    for res in check_stream(blocks_of(lines, 97), BulkOptions(today=TODAY), jobs=1):
        bulk.update(res.output)
        out.write(res.output)
        tally.merge(res.tally)
    tally.bad_line_numbers.sort()
    out.write(f"# {label} bulk sha256 {bulk.hexdigest()}\n".encode())
    # counters sorted: their order among equal counts is insertion order, not an answer
    items = sorted((k, sorted(v.items()) if isinstance(v, dict) else v) for k, v in vars(tally).items())
    out.write(repr(items).encode() + b"\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--claims", help="NDJSON file of claims to use instead of generating them")
    a = ap.parse_args()
    with open(a.output, "wb") as out:
        n = fixtures(out)
        main_set = Path(a.claims).read_bytes().splitlines() if a.claims else generated(a.count, 11, 0.05)
        claims(out, main_set, "gen")
        claims(out, generated(max(a.count // 5, 1), 23, 0.6), "mistakes")
    print(f"{n} fixture runs, {len(main_set)} + {max(a.count // 5, 1)} claims -> {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
