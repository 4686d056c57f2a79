"""NCCI tables: load time, memory, lookup cost and checks per second with every rule on.

    python benchmarks/bench_tables.py [--runs 5] [--claims 3000]

Prints:
- PTP table load, cold (a fresh process per run, median): both packed PTP tables opened
  (memory-mapped, code index built), measured inside the process after ``import numpy``,
  and the same with the MUE and add-on tables too;
- resident memory (VmRSS) of a fresh process: after import, after both PTP tables loaded,
  and after 2,000 synthetic claims were checked against them (pages touched by lookups);
- lookup cost: ``edits_among`` for an 8-code day, both tables;
- checks per second on one core with every registered rule on (synthetic claims from
  benchmarks/generate_claims.py, JSON bytes -> engine.check -> orjson.dumps).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_LOAD = r"""
import json, sys, time
import numpy  # not counted: the product imports it anyway
from fhir_checker.tables import Tables
t = Tables()
t0 = time.perf_counter()
a = t.ptp_practitioner; b = t.ptp_outpatient_hospital
t1 = time.perf_counter()
t.mue_practitioner; t.mue_outpatient_hospital; t.addons
t2 = time.perf_counter()
print(json.dumps({"ptp": t1 - t0, "ncci": t2 - t0, "rows": len(a) + len(b)}))
"""

_MEMORY = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
def rss():
    status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    return int(status["VmRSS"].split()[0]) / 1024
import fhir_checker
from fhir_checker.tables import get_tables
out = {"import": rss()}
t = get_tables()
t.ptp_practitioner; t.ptp_outpatient_hospital
out["ptp"] = rss()
from generate_claims import Generator, build_pool
gen = Generator(build_pool(seed=3), 3)
for line in list(gen.lines(2000)):
    fhir_checker.check(line)
out["checked"] = rss()
print(json.dumps(out))
"""


def say(label: str, value: str) -> None:
    print(f"{label:<62} {value}", flush=True)


def fresh(code: str, *args: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.decode()[-600:])
    result: dict[str, float] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result


def bench_lookup() -> None:
    from datetime import date

    from fhir_checker.tables import get_tables

    t = get_tables()
    day = ["36561", "76937", "77001", "96523", "96413", "96374", "J0690", "99213"]
    on = date(2026, 3, 10)
    for name, table in (
        ("practitioner", t.ptp_practitioner),
        ("outpatient hospital", t.ptp_outpatient_hospital),
    ):
        n = 2000
        started = time.perf_counter()
        for _ in range(n):
            table.edits_among(day, on)
        us = 1e6 * (time.perf_counter() - started) / n
        say(
            f"lookup: all pairs of an 8-code day, {name}",
            f"{us:.0f} us ({len(table.edits_among(day, on))} pairs)",
        )


def bench_checks(count: int) -> None:
    import gc
    from datetime import date

    import orjson

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from generate_claims import Generator, build_pool

    from fhir_checker import all_rules, engine, get_tables

    get_tables().warm()
    lines = [ln.rstrip(b"\n") for ln in Generator(build_pool(seed=11), 11).lines(count)]
    today = date(2026, 11, 22)
    for line in lines[:200]:
        engine.check(line, today=today)
    best = 0.0
    found = 0
    for _ in range(3):
        gc.collect()
        started = time.perf_counter()
        for line in lines:
            orjson.dumps(engine.check(line, today=today))
        best = max(best, len(lines) / (time.perf_counter() - started))
    for line in lines:
        found += sum(
            1
            for f in engine.run(line, today=today).findings
            if f.rule_id.startswith(("PTP", "MUE", "ADD", "SOL"))
        )
    say(
        f"checks per second, one core, all {len(all_rules())} rules on",
        f"{best:,.0f} claims/s ({count:,} synthetic claims; {found:,} NCCI findings)",
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--claims", type=int, default=3000)
    a = ap.parse_args()
    from fhir_checker.tables import get_tables

    t = get_tables()
    sizes = sum(t.path(n).stat().st_size for n in ("ptp_practitioner", "ptp_outpatient_hospital"))
    loads = [fresh(_LOAD) for _ in range(a.runs)]
    rows = int(loads[0]["rows"])
    say(
        "PTP tables on disk (both, packed, memory-mapped)",
        f"{sizes / 1e6:.1f} MB for {rows:,} rows ({sizes / rows:.1f} bytes/row)",
    )
    say(
        "load both PTP tables, cold (fresh process, median)",
        f"{1000 * statistics.median(x['ptp'] for x in loads):.0f} ms",
    )
    say(
        "  + MUE and add-on tables",
        f"{1000 * statistics.median(x['ncci'] for x in loads):.0f} ms",
    )
    mem = fresh(_MEMORY, str(ROOT / "benchmarks"))
    say(
        "RSS: after import / both PTP loaded / 2,000 claims checked",
        f"{mem['import']:.0f} MB / {mem['ptp']:.0f} MB / {mem['checked']:.0f} MB",
    )
    bench_lookup()
    bench_checks(a.claims)
    return 0


if __name__ == "__main__":
    sys.exit(main())
