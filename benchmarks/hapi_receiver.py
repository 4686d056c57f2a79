"""Rest-hook receiver: how fast a notification is answered, and how fast the queue drains.

    python benchmarks/hapi_receiver.py --count 300

In-process: a FastAPI app with the receiver installed, the worker talking to the stateful
fake FHIR server of the unit tests (respx, no network). Prints the answer latency of
``PUT /subscription/Claim/{id}`` (what HAPI waits for: enqueue + durable SQLite commit) and
the end-to-end throughput (read, gather, check, Task, tags) of the worker.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import respx
from fastapi import FastAPI
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hapi_fake import BASE, FakeFhir, clinical_claim

from fhir_checker.hapi.receiver import install
from fhir_checker.hapi.writeback import has_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=300)
    args = ap.parse_args()
    fake = FakeFhir(page_size=100)
    claims = [clinical_claim(fake, claim_id=f"c{n}", bad_code=n % 3 == 0) for n in range(args.count)]
    with tempfile.TemporaryDirectory() as tmp, respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        router.route(host="testserver").pass_through()
        app = FastAPI()
        install(app, fhir_base=BASE, queue_path=str(Path(tmp) / "q.sqlite"))
        with TestClient(app) as http:
            http.put("/subscription/Claim/warmup", json={"resourceType": "Claim", "id": "warmup"})
            latencies = []
            started = time.perf_counter()
            for claim in claims:
                t0 = time.perf_counter()
                r = http.put(f"/subscription/Claim/{claim['id']}", json=claim)
                latencies.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
            deadline = time.monotonic() + 600
            while not all(has_result(fake.get("Claim", c["id"])) for c in claims):
                if time.monotonic() > deadline:
                    raise SystemExit("queue did not drain in 600 s")
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"notifications: {args.count}")
    print(
        f"answer latency ms: median {statistics.median(latencies):.2f}  p99 {p99:.2f}  max {latencies[-1]:.2f}"
    )
    print(
        f"all checked and written back in {elapsed:.2f} s ({args.count / elapsed:.0f} claims/s, worker concurrency 2)"
    )
    print(f"Tasks created: {len(fake.of_type('Task'))}")


if __name__ == "__main__":
    main()
