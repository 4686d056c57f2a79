"""Instructions per check and per HTTP request, counted by callgrind: figures that do not move
with the host's load, for comparing builds on a shared VM.

    python benchmarks/bench_instructions.py              # engine, $precheck and the CDS hook
    python benchmarks/bench_instructions.py --count 100  # fewer claims (each run ~20-40 s)

Each figure is one fresh process under ``valgrind --tool=callgrind`` with counting off. The
process builds the generated Bundles (``generate_claims.py``, as ``bench_http.py`` sends them),
loads every table, runs each input twice (caches warm, then ``gc.freeze()`` as ``serve`` does
after its warm-up), turns counting on with ``callgrind_control``, runs each input once more
and exits. What is counted is only that last pass:
- ``engine``: ``engine.run`` on the loaded document (no JSON parse);
- ``$precheck`` and ``hook``: the whole ASGI app (``create_app``) called in-process, from the
  request body to the response bytes: parsing, the engine, cards, the middleware; no sockets.
Needs valgrind (Debian: ``apt-get install -y valgrind``); each run is ~50x slower than native.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import cpu_model  # noqa: E402

KINDS = ("engine", "precheck", "hook")
_COLLECTED = re.compile(r"Collected\s*:\s*([\d,]+)")


def say(label: str, value: str) -> None:
    print(f"{label:<58} {value}", flush=True)


def _count_from_here() -> None:
    """Turn callgrind's counting on for this process (returns once it is on)."""
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True, check=True)


async def _asgi_call(app: Any, path: str, body: bytes) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # never: the handlers read the body once
        return {"type": "http.disconnect"}

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    if status != [200]:
        raise SystemExit(f"{path} answered {status}: the counted run must be of real checks")


def child(kind: str, count: int, seed: int) -> None:
    import bench_http

    from fhir_checker.engine import run as run_engine
    from fhir_checker.loader import load
    from fhir_checker.service.app import create_app
    from fhir_checker.service.cds_hooks import discovery
    from fhir_checker.service.config import ServiceConfig
    from fhir_checker.service.fhir_operation import warm_up

    bundles = bench_http.bundles(count, seed)
    warm_up()
    if kind == "engine":
        docs = [load(b) for b in bundles]
        for _ in range(2):
            for d in docs:
                run_engine(d)
            gc.collect()
            gc.freeze()
        _count_from_here()
        for d in docs:
            run_engine(d)
        os._exit(0)  # nothing after the counted pass: no teardown in the count

    service = discovery()["services"][0]
    if kind == "hook":
        path = f"/cds-services/{service['id']}"
        bodies = [orjson.dumps(bench_http.cds_request(service, b)) for b in bundles]
    else:
        path, bodies = "/fhir/Claim/$precheck", [orjson.dumps(b) for b in bundles]
    app = create_app(ServiceConfig(auth=False))

    async def passes() -> None:
        for _ in range(2):
            for body in bodies:
                await _asgi_call(app, path, body)
            gc.collect()
            gc.freeze()
        _count_from_here()
        for body in bodies:
            await _asgi_call(app, path, body)
        os._exit(0)

    asyncio.run(passes())


def measure(kind: str, count: int, seed: int) -> int:
    """Instructions of the counted pass, from callgrind's summary."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"fhir-checker-callgrind-{os.getpid()}-{kind}.out"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--child",
        kind,
        "--count",
        str(count),
        "--seed",
        str(seed),
    ]
    env = {**os.environ, "FHIR_CHECKER_LOG_LEVEL": "warning"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    finally:
        out.unlink(missing_ok=True)
    found = _COLLECTED.findall(proc.stderr)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"the callgrind run of {kind} failed ({proc.returncode}): {proc.stderr[-600:]}")
    return int(found[-1].replace(",", ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=200, help="generated Bundles (claims or requests)")
    ap.add_argument("--seed", type=int, default=11, help="as bench_http.py's default")
    ap.add_argument("--only", choices=KINDS, nargs="+", default=list(KINDS))
    ap.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.count, a.seed)
        return 0
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("needs valgrind and callgrind_control on PATH (Debian: apt-get install -y valgrind)")
    from fhir_checker import compiled

    say("machine", f"{cpu_model()} (instruction counts do not depend on its speed or load)")
    say("build", "mypyc-compiled hot path" if compiled() else "pure Python")
    labels = {
        "engine": "engine.run per claim (loaded Bundle, no parse)",
        "precheck": "POST /fhir/Claim/$precheck per request (in-process)",
        "hook": "CDS hook with full prefetch per request (in-process)",
    }
    for kind in a.only:
        total = measure(kind, a.count, a.seed)
        say(labels[kind], f"{total / a.count / 1e6:.3f}M instructions ({a.count} Bundles, seed {a.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
