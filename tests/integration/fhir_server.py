"""Helpers for the integration tests: a real FHIR R4 server at ``FHIR_BASE_URL``,
the checker as a subprocess, polling, loading the example claim's resources.

Run with ``FHIR_BASE_URL=http://127.0.0.1:8090/fhir python -m pytest -m integration``
(``.ci/run`` starts sekmet-fhir for this). The checker runs as ``fhir-checker serve
--fhir-base ...`` on a free loopback port, exactly as deployed; the FHIR server must be able
to reach that port (true when both run on one machine).
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
#: The receiver's shared secret: the Subscription carries it in ``channel.header``.
SECRET = "integration-" + secrets.token_hex(8)
AUTH = {"Authorization": f"Bearer {SECRET}"}
CLI = [sys.executable, "-c", "import sys; from fhir_checker.cli import main; sys.exit(main())"]


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0, every: float = 0.25) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Checker:
    """``fhir-checker serve --fhir-base ...`` as a subprocess that tests can stop and restart."""

    def __init__(self, fhir_base: str, workdir: Path) -> None:
        self.fhir_base = fhir_base
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.endpoint = f"{self.url}/subscription"
        self.log = workdir / "checker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        args = [
            *CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--no-auth",
            "--fhir-base", self.fhir_base, "--queue", str(self.workdir / "queue.sqlite"),
            "--subscription-secret", SECRET, *extra,
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"checker exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                r = httpx.get(f"{self.url}/subscription/status", headers=AUTH, timeout=2)
                return r.status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("the checker to answer", up, timeout=60)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def status(self) -> dict[str, int]:
        r = httpx.get(f"{self.url}/subscription/status", headers=AUTH, timeout=5)
        queue: dict[str, int] = r.json()["queue"]
        return queue

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def load_port_placement(fhir: httpx.Client, run_id: str) -> dict[str, Any]:
    """PUT the example's Patient, Coverage, Conditions, Device, Procedures and medication
    administrations (ids suffixed with ``run_id``); return its Claim, pointing at them."""
    data = json.loads((ROOT / "fixtures" / "port-placement-aml.json").read_text())
    new_ref = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}-{run_id}" for e in data["entry"]
    }

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: new_ref.get(v, v) if k == "reference" and isinstance(v, str) else rewrite(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    claim: dict[str, Any] = {}
    for entry in data["entry"]:
        res = rewrite(entry["resource"])
        if res["resourceType"] == "Claim":
            claim = res
            continue
        res["id"] = f"{res['id']}-{run_id}"
        r = fhir.put(f"/{res['resourceType']}/{res['id']}", json=res)
        assert r.status_code in (200, 201), r.text[:500]
    claim.pop("id", None)
    return claim
