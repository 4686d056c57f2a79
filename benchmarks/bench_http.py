"""HTTP latency and throughput of ``fhir-checker serve`` on loopback.

    python benchmarks/bench_http.py                       # starts the server itself
    python benchmarks/bench_http.py --url http://127.0.0.1:8080   # a server already running

Starts ``fhir-checker serve --host 127.0.0.1 --port N`` in a subprocess (unless --url),
then, for 1, 10 and 50 concurrent clients (httpx async, keep-alive), sends realistic
synthetic claims for --seconds per level (and at most --max-requests), and prints p50 / p99
latency and requests per second for:
- ``POST /fhir/Claim/$precheck`` (the Bundle as the body);
- the CDS Hooks service found at ``GET /cds-services``, with every prefetch it asks for
  filled from the same Bundle.

Each is driven twice: by httpx AsyncClients, and by a minimal asyncio HTTP/1.1 client
(``raw``), because httpx itself costs ~1 ms of CPU per request on the same 2 cores.

Traffic goes to 127.0.0.1 only; every loop is bounded in time and count, and the server is
stopped at the end. On a 2-core machine the load generator shares the CPU with the server:
the figures are a floor. Target (issue 7): p99 < 25 ms at 50 concurrent clients.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from generate_claims import Generator, build_pool  # noqa: E402

FHIR_JSON = "application/fhir+json"
TARGET_P99_MS = 25.0


def say(label: str, value: str) -> None:
    print(f"{label:<58} {value}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", "import sys; from fhir_checker.cli import main; sys.exit(main())"]
    # --no-auth: the load generator has no CDS client keys (the JWT check is measured in tests).
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-auth", "--log-level", "warning"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(base: str, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"the server exited ({proc.returncode}): {err[-600:]}")
        try:
            httpx.get(f"{base}/cds-services", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"the server at {base} did not answer within {timeout:.0f} s")


# ---------------------------------------------------------------- requests


def bundles(count: int, seed: int) -> list[dict[str, Any]]:
    gen = Generator(build_pool(seed=seed), seed, bundle_share=1.0)
    return [gen.claim(n) for n in range(count)]


def _resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"].get("resourceType") == rtype]


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }


def server_form(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle as an EHR's FHIR server holds it: ``Type/id`` references, not ``urn:uuid``."""
    by_urn = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle["entry"]
        if e.get("fullUrl") and e["resource"].get("id")
    }

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (by_urn.get(v, v) if k == "reference" else rewrite(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    out: dict[str, Any] = rewrite(bundle)
    return out


def cds_request(service: dict[str, Any], bundle: dict[str, Any]) -> dict[str, Any]:
    """A hook call for ``service`` with every prefetch template filled from ``bundle``."""
    bundle = server_form(bundle)
    claim = _resources(bundle, "Claim")[0]
    patient = _resources(bundle, "Patient")[0]
    prefetch: dict[str, Any] = {}
    for key, template in (service.get("prefetch") or {}).items():
        rtype, _, query = str(template).partition("?")
        rtype = rtype.split("/")[0]
        found = _resources(bundle, rtype)
        if query or len(found) != 1:
            prefetch[key] = _searchset(found)
        else:
            prefetch[key] = found[0]
    context: dict[str, Any] = {
        "userId": "Practitioner/prac-1",
        "patientId": patient["id"],
        "claimId": claim["id"],
        "claim": claim,  # the draft claim itself (org.fhir-checker.claim-create)
    }
    hook = service.get("hook", "")
    if hook in ("order-sign", "order-select"):
        context["draftOrders"] = _searchset([claim])
        context["selections"] = [f"Claim/{claim['id']}"]
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": prefetch,
    }


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (POST, Content-Length bodies).

    httpx costs about 1 ms of CPU per request in the load generator; on 2 cores, shared with
    the server, that and not the server sets the figures at 50 clients. This client costs a
    tenth of that, so ``--client raw`` measures the server more closely.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, content: bytes, headers: dict[str, str] | None = None) -> int:
        if self._conn is None:
            self._conn = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._conn
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: {FHIR_JSON}\r\nContent-Length: {len(content)}\r\n\r\n"
        )
        writer.write(head.encode() + content)
        status_line = await reader.readline()
        length, chunked, close = 0, False, False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and "close" in value.lower():
                close = True
        if chunked:
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await reader.readexactly(length)
        if close:
            await self.aclose()
        parts = status_line.split()
        return int(parts[1]) if len(parts) > 1 else 599

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


async def run_level(
    client: httpx.AsyncClient,
    method_path: str,
    bodies: list[bytes],
    clients: int,
    seconds: float,
    max_requests: int,
    raw_client: bool = False,
) -> tuple[list[float], int, float]:
    """``clients`` concurrent loops for ``seconds`` (at most ``max_requests`` in all)."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + seconds
    url = client.base_url

    async def one_client(offset: int) -> None:
        nonlocal errors, sent
        raw = RawClient(url.host, url.port or 80) if raw_client else None
        i = offset
        try:
            while time.perf_counter() < stop_at and sent < max_requests:
                sent += 1
                body = bodies[i % len(bodies)]
                i += clients
                t0 = time.perf_counter()
                try:
                    if raw is not None:
                        ok = await raw.post(method_path, body) < 500
                    else:
                        resp = await client.post(
                            method_path, content=body, headers={"content-type": FHIR_JSON}
                        )
                        ok = resp.status_code < 500
                except (httpx.HTTPError, OSError, ValueError, asyncio.IncompleteReadError):
                    ok = False
                    if raw is not None:
                        await raw.aclose()
                latencies.append(time.perf_counter() - t0)
                errors += not ok
        finally:
            if raw is not None:
                await raw.aclose()

    started = time.perf_counter()
    await asyncio.gather(*(one_client(k) for k in range(clients)))
    return latencies, errors, time.perf_counter() - started


def report(name: str, clients: int, lat: list[float], errors: int, elapsed: float) -> None:
    if not lat:
        say(f"{name} x{clients}", "no request completed")
        return
    lat.sort()
    p50 = 1000 * lat[len(lat) // 2]
    p99 = 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    mark = ""
    if clients == 50:
        mark = "  (target p99 < 25 ms: " + ("met)" if p99 < TARGET_P99_MS else "MISSED)")
    say(
        f"{name}, {clients:>2} clients: p50 / p99, req/s",
        f"{p50:.1f} / {p99:.1f} ms, {len(lat) / elapsed:,.0f} req/s"
        + (f", {errors} errors" if errors else "")
        + mark,
    )


async def bench(base: str, args: argparse.Namespace) -> None:
    data = bundles(args.claims, args.seed)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as client:
        targets: list[tuple[str, str, list[bytes]]] = [
            ("POST /fhir/Claim/$precheck", "/fhir/Claim/$precheck", [orjson.dumps(b) for b in data])
        ]
        try:
            disc = (await client.get("/cds-services")).json()
            services = disc.get("services", [])
        except (httpx.HTTPError, ValueError):
            services = []
        if services:
            svc = next((s for s in services if "claim" in str(s.get("id", "")).lower()), services[0])
            targets.append(
                (
                    f"CDS hook {svc['id']} (prefetch)",
                    f"/cds-services/{svc['id']}",
                    [orjson.dumps(cds_request(svc, b)) for b in data],
                )
            )
        else:
            say("CDS hook", "no service listed at GET /cds-services: not measured")
        for name, path, bodies in targets:
            probe = await client.post(path, content=bodies[0], headers={"content-type": FHIR_JSON})
            if probe.status_code >= 400:
                say(f"{name}: FAILED", f"HTTP {probe.status_code}: {probe.text[:300]}")
                continue
            await run_level(client, path, bodies, 4, 1.0, 200)  # warm-up
            for kind in args.client:
                for clients in args.clients:
                    lat, errors, elapsed = await run_level(
                        client, path, bodies, clients, args.seconds, args.max_requests, kind == "raw"
                    )
                    report(f"{name} [{kind}]", clients, lat, errors, elapsed)
                    await asyncio.sleep(0.2)
    say(
        "requests per level",
        f"<= {args.max_requests:,} or {args.seconds:.0f} s; median claim lines "
        f"{statistics.median(len(_resources(b, 'Claim')[0]['item']) for b in data):.0f}",
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="use a server already running at this base URL (loopback only)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument(
        "--client",
        nargs="+",
        choices=("httpx", "raw"),
        default=["httpx", "raw"],
        help="load generator: httpx AsyncClient, and/or a minimal asyncio HTTP/1.1 client",
    )
    ap.add_argument("--seconds", type=float, default=5.0, help="per concurrency level")
    ap.add_argument("--max-requests", type=int, default=20_000, help="per concurrency level")
    ap.add_argument("--claims", type=int, default=200, help="distinct claims cycled through")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    proc = None
    if args.url:
        host = httpx.URL(args.url).host
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("bench_http only drives servers on this machine's loopback")
        base = args.url.rstrip("/")
    else:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        proc = start_server(port)
    try:
        wait_ready(base, proc)
        if proc is not None:
            say("server start to first answer", f"{time.perf_counter() - started:.2f} s")
        asyncio.run(bench(base, args))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
