"""Cold start and memory: a fresh process, from nothing to its first answer.

    python benchmarks/bench_startup.py

Prints, each the median of --runs fresh processes:
- API cold start: interpreter start + ``import fhir_checker`` + every table loaded +
  the first claim checked (the example port-placement bundle), wall time seen from outside;
- the same split into import / tables / first check, as seen from inside;
- CLI cold start: ``fhir-checker check fixtures/port-placement-aml.json`` to exit;
- resident memory: peak RSS (VmHWM) of a process with every table loaded that has checked
  2,000 synthetic claims.

Targets (issue 7): cold start < 2 s, resident memory < 400 MB.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import describe  # noqa: E402

FIXTURE = ROOT / "fixtures" / "port-placement-aml.json"

_API = r"""
import sys, time, json
t0 = time.perf_counter()
import fhir_checker
t1 = time.perf_counter()
fhir_checker.get_tables().warm()
t2 = time.perf_counter()
out = fhir_checker.check(open(sys.argv[1], "rb").read())
t3 = time.perf_counter()
assert out["resourceType"] == "OperationOutcome"
print(json.dumps({"import": t1 - t0, "tables": t2 - t1, "first": t3 - t2}))
"""

_MEMORY = r"""
import sys, json
sys.path.insert(0, sys.argv[1])
import fhir_checker
from generate_claims import Generator, build_pool
fhir_checker.get_tables().warm()
gen = Generator(build_pool(seed=3), 3)
lines = list(gen.lines(2000))
for line in lines:
    fhir_checker.check(line)
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
print(json.dumps({k: int(status[k].split()[0]) for k in ("VmHWM", "VmRSS")}))
"""


def say(label: str, value: str) -> None:
    print(f"{label:<58} {value}", flush=True)


def timed(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, check=False, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd[:3]} failed: {proc.stderr.decode()[-400:]}")
    return elapsed, proc.stdout.decode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    say("machine", describe())
    walls, inside = [], []
    for _ in range(a.runs):
        wall, out = timed([sys.executable, "-c", _API, str(FIXTURE)])
        walls.append(wall)
        inside.append(json.loads(out.strip().splitlines()[-1]))
    med = statistics.median(walls)
    say("API cold start to first answer (wall, fresh process)", f"{med:.2f} s   target < 2 s")
    parts = {k: statistics.median(x[k] for x in inside) for k in ("import", "tables", "first")}
    say(
        "  inside: import / load every table / first check",
        f"{parts['import']:.2f} s / {parts['tables']:.2f} s / {1000 * parts['first']:.0f} ms",
    )
    cli = [sys.executable, "-c", "import sys; from fhir_checker.cli import main; sys.exit(main())"]
    cli_walls = [timed([*cli, "check", str(FIXTURE)])[0] for _ in range(a.runs)]
    say("CLI cold start: fhir-checker check FILE (wall)", f"{statistics.median(cli_walls):.2f} s")
    _, out = timed([sys.executable, "-c", _MEMORY, str(ROOT / "benchmarks")])
    mem = json.loads(out.strip().splitlines()[-1])
    say(
        "resident memory, all tables + 2,000 claims checked",
        f"peak {mem['VmHWM'] / 1024:.0f} MB, now {mem['VmRSS'] / 1024:.0f} MB   target < 400 MB",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
