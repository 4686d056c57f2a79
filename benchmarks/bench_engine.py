"""Engine throughput: JSON text in, OperationOutcome JSON out, on realistic synthetic claims.

    python benchmarks/bench_engine.py                  # everything (about 1-2 minutes)
    python benchmarks/bench_engine.py --bulk-count 0   # skip the bulk run

Prints, each on its own line:
- in-process checks per second on ONE core (bytes -> engine.check -> orjson.dumps), every
  table and every registered rule on; per-claim latency p50/p99;
- parse cost per claim: orjson.loads vs fhir.resources (R4B) model validation, and the
  engine's structure check in its fast path vs ``validation="full"``;
- the bulk path (``fhir-checker check --ndjson --jobs 2``) on --bulk-count claims, and the
  time that extrapolates to for 1M claims;
- pyoce (the Python port of the CMS I/OCE) on the same claims, when a Python with pyoce is
  found (``$PYOCE_PYTHON``, else /work/pyoce-venv/bin/python); it says so when not.

Targets (issue 7): >= 3,000 claims/s on one core; 1M claims < 3 minutes with 2 processes.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from generate_claims import Generator, build_pool  # noqa: E402
from machine import describe  # noqa: E402

TODAY = date(2026, 11, 22)
TARGET_ONE_CORE = 3000
TARGET_1M_S = 180


def say(label: str, value: str) -> None:
    print(f"{label:<58} {value}", flush=True)


def claims(count: int, seed: int) -> list[bytes]:
    gen = Generator(build_pool(seed=seed), seed)
    return [line.rstrip(b"\n") for line in gen.lines(count)]


def bench_one_core(lines: list[bytes], rounds: int) -> float:
    from fhir_checker import engine

    for line in lines[:200]:  # warm caches (packs, rule selection)
        engine.check(line, today=TODAY)
    best = 0.0
    lat: list[float] = []
    pc = time.perf_counter
    for _ in range(rounds):
        gc.collect()
        started = pc()
        for line in lines:
            t0 = pc()
            orjson.dumps(engine.check(line, today=TODAY))
            lat.append(pc() - t0)
        best = max(best, len(lines) / (pc() - started))
    lat.sort()
    say("one core: claims/s (bytes -> check -> orjson.dumps)", f"{best:,.0f}   target >= {TARGET_ONE_CORE:,}")
    say(
        "one core: per-claim latency p50 / p99 / max",
        f"{1e6 * lat[len(lat) // 2]:.0f} us / {1e6 * lat[int(len(lat) * 0.99)]:.0f} us / {1e6 * lat[-1]:.0f} us",
    )
    return best


def bench_parse(lines: list[bytes], sample: int) -> None:
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.claim import Claim

    from fhir_checker import engine

    pc = time.perf_counter
    started = pc()
    for line in lines:
        orjson.loads(line)
    say("parse: orjson.loads per claim", f"{1e6 * (pc() - started) / len(lines):.1f} us")
    docs = [orjson.loads(x) for x in lines[:sample]]
    started = pc()
    for d in docs:
        (Bundle if d["resourceType"] == "Bundle" else Claim).model_validate(d)
    say("parse: fhir.resources R4B model_validate per claim", f"{1e3 * (pc() - started) / len(docs):.2f} ms")
    for mode in ("auto", "full"):
        subset = lines[:sample]
        started = pc()
        for line in subset:
            orjson.dumps(engine.check(line, today=TODAY, validation=mode))
        rate = len(subset) / (pc() - started)
        what = "fast shape check, models only when off" if mode == "auto" else "models on every resource"
        say(f"engine validation={mode} ({what}): claims/s", f"{rate:,.0f}")


def bench_bulk(lines: list[bytes], count: int, jobs: int) -> None:
    if count <= 0:
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "claims.ndjson"
        with src.open("wb") as fh:
            written = 0
            while written < count:
                chunk = lines[: count - written]
                fh.write(b"\n".join(chunk) + b"\n")
                written += len(chunk)
        size = src.stat().st_size
        cmd = [sys.executable, "-c", "import sys; from fhir_checker.cli import main; sys.exit(main())"]
        cmd += ["check", "--ndjson", str(src), "--jobs", str(jobs), "--today", TODAY.isoformat()]
        started = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            proc = subprocess.run(cmd, stdout=sink, stderr=subprocess.PIPE, check=False)
        elapsed = time.perf_counter() - started
        if proc.returncode not in (0, 1, 2):
            say("bulk: FAILED", proc.stderr.decode()[-500:])
            return
        rate = count / elapsed
        say(
            f"bulk --jobs {jobs}: {count:,} claims ({size / 1e6:,.0f} MB) in",
            f"{elapsed:.1f} s = {rate:,.0f} claims/s (process start included)",
        )
        million = 1_000_000 / rate
        verdict = "meets" if million < TARGET_1M_S else "MISSES"
        say(
            f"bulk --jobs {jobs}: 1M claims, extrapolated",
            f"{million:.0f} s ({verdict} the < {TARGET_1M_S} s target)",
        )


# ---------------------------------------------------------------- pyoce

_PYOCE_RUNNER = r"""
import json, sys, time, logging
logging.disable(logging.CRITICAL)
import pyoce
claims = json.load(open(sys.argv[1]))
engine = pyoce.IoceComponent()
for c in claims[:50]:
    engine.process(dict(c))
best = 0.0
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    for c in claims:
        engine.process(dict(c))
    best = max(best, len(claims) / (time.perf_counter() - t))
print(json.dumps({"rate": best, "version": pyoce.__version__, "python": sys.version.split()[0]}))
"""


def to_pyoce(line: bytes) -> dict[str, Any]:
    """Our FHIR claim -> pyoce's I/OCE input dict (bill type 131, outpatient hospital)."""
    from fhir_checker import loader
    from fhir_checker.context import build_context
    from fhir_checker.packs import load_pack
    from fhir_checker.tables import get_tables

    doc = loader.load(line)
    ctx = build_context(doc, get_tables(), load_pack("cms-outpatient-hospital"), TODAY)
    dates = [ln.service_date for ln in ctx.lines if ln.service_date]
    first = min(dates) if dates else TODAY
    last = max(dates) if dates else TODAY
    dx = [d.code.replace(".", "") for d in ctx.diagnoses if d.code]
    age = ctx.patient.age_on(first)
    items = []
    for ln in ctx.lines:
        item: dict[str, Any] = {
            "serviceDate": (ln.service_date or first).strftime("%Y%m%d"),
            "hcpcs": ln.code or "",
            "revenueCode": ln.revenue or "0510",
            "unitsInput": str(int(ln.units or 1)),
            "charge": "10000",
        }
        if ln.modifiers:
            item["hcpcsModifierInputList"] = [{"hcpcsModifier": m.code} for m in ln.modifiers]
        items.append(item)
    return {
        "claimId": ctx.claim_id or "",
        "billType": "131",
        "dateStarted": first.strftime("%Y%m%d"),
        "dateEnded": last.strftime("%Y%m%d"),
        "age": str(age) if age is not None else None,
        "sex": {"male": "1", "female": "2"}.get(ctx.patient.sex or "", "0"),
        "principalDiagnosisCode": {"diagnosis": dx[0] if dx else ""},
        "secondaryDiagnosisCodeList": [{"diagnosis": d} for d in dx[1:]],
        "lineItemList": items,
    }


def pyoce_python() -> str | None:
    for candidate in (os.environ.get("PYOCE_PYTHON"), "/work/pyoce-venv/bin/python"):
        if candidate and Path(candidate).exists():
            ok = subprocess.run([candidate, "-c", "import pyoce"], capture_output=True, check=False)
            if ok.returncode == 0:
                return candidate
    return None


def bench_pyoce(lines: list[bytes], ours: float, rounds: int) -> None:
    py = pyoce_python()
    if py is None:
        say(
            "pyoce: not run",
            "no Python with pyoce found (set PYOCE_PYTHON; pyoce needs Python >= 3.12)",
        )
        return
    converted = [to_pyoce(x) for x in lines]
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as fh:
        fh.write(orjson.dumps(converted))
        path = fh.name
    try:
        proc = subprocess.run(
            [py, "-c", _PYOCE_RUNNER, path, str(rounds)], capture_output=True, check=False, timeout=1800
        )
    finally:
        Path(path).unlink(missing_ok=True)
    if proc.returncode != 0:
        say("pyoce: FAILED", proc.stderr.decode()[-400:])
        return
    res = orjson.loads(proc.stdout.splitlines()[-1])
    say(
        f"pyoce {res['version']} (Python {res['python']}): claims/s, one core, same claims",
        f"{res['rate']:,.0f}   (dict in, dict out: no JSON parse)",
    )
    say("fhir-checker / pyoce", f"{ours / res['rate']:.1f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=5000, help="claims for the in-process runs")
    ap.add_argument("--rounds", type=int, default=3, help="timed passes (best is reported)")
    ap.add_argument("--bulk-count", type=int, default=100_000, help="claims for the bulk run (0: skip)")
    ap.add_argument("--jobs", type=int, default=2, help="processes for the bulk run")
    ap.add_argument("--sample", type=int, default=300, help="claims for the slow (model) measurements")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-pyoce", action="store_true")
    a = ap.parse_args()
    say("machine", describe())

    from fhir_checker import __version__
    from fhir_checker.registry import all_rules
    from fhir_checker.tables import get_tables

    started = time.perf_counter()
    tables = get_tables()
    tables.warm()
    say(
        "tables: load every table",
        f"{time.perf_counter() - started:.2f} s ({', '.join(tables.manifest['tables'])})",
    )
    from fhir_checker import compiled

    build = "mypyc-compiled hot path" if compiled() else "pure Python (FHIR_CHECKER_PURE_PYTHON build)"
    say("fhir-checker", f"{__version__}, {len(all_rules())} rules, {build}, Python {sys.version.split()[0]}")
    lines = claims(a.count, a.seed)
    avg_lines = statistics.mean(
        len(orjson.loads(x).get("item", [])) or 0 for x in lines if b'"Claim"' in x[:40]
    )
    say(
        "claims",
        f"{len(lines):,} synthetic (seed {a.seed}), {sum(map(len, lines)) / len(lines) / 1024:.1f} KiB avg"
        f", bare claims avg {avg_lines:.1f} lines",
    )
    ours = bench_one_core(lines, a.rounds)
    bench_parse(lines, a.sample)
    if not a.no_pyoce:
        bench_pyoce(lines, ours, a.rounds)
    bench_bulk(lines, a.bulk_count, a.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
