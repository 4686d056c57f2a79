"""``fhir-checker serve`` as a user runs it: a subprocess on a free port, spoken to over HTTP.

One server with ``--no-auth`` and one with JWT auth (a config file trusting an inline key
set) for the whole module: each start costs about a second.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml
from conftest import FIXTURES, assert_valid_outcome
from cryptography.hazmat.primitives.asymmetric import ec

FHIR_JSON = "application/fhir+json"
HOOK = "org.fhir-checker.claim-create"
ISS = "https://ehr.example.org"
KEY = ec.generate_private_key(ec.SECP384R1())
EXAMPLES = sorted(p.name for p in FIXTURES.glob("*.json"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        cmd = [str(Path(sys.executable).with_name("fhir-checker")), "serve", "--port", str(self.port), *args]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}/cds-services", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer in 60 s: {self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def base_env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_CHECKER_")}
    env["FHIR_CHECKER_MAX_BODY_BYTES"] = "200000"  # small, so 413 is cheap to provoke
    return env


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("serve"), "--no-auth", env=base_env())
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve-auth")
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
    config = {"issuers": {ISS: {"jwks": {"keys": [{**public, "kid": "k1", "alg": "ES384", "use": "sig"}]}}}}
    (tmp / "service.yaml").write_text(yaml.safe_dump(config))
    s = Server(tmp, "--config", "service.yaml", env=base_env())
    try:
        yield s
    finally:
        s.stop()


def hook_body(claim: Any, **extra: Any) -> dict[str, Any]:
    return {
        "hook": HOOK,
        "hookInstance": str(uuid.uuid4()),
        "context": {"patientId": "pat-1", "claim": claim},
        **extra,
    }


def is_outcome(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith(FHIR_JSON), r.headers["content-type"]
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert_valid_outcome(body)
    return body


@pytest.mark.parametrize("name", EXAMPLES)
def test_precheck_every_example(open_server: Server, name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    r = httpx.post(
        f"{open_server.url}/fhir/Claim/$precheck", content=data, headers={"Content-Type": FHIR_JSON}
    )
    outcome = is_outcome(r, 200)
    errors = [i for i in outcome["issue"] if i["severity"] == "error"]
    assert bool(errors) == ("miscoded" in name)  # only the deliberately miscoded example has errors
    context = {e["url"].rsplit("/", 1)[-1]: e for e in outcome["extension"]}
    assert "precheck-context" in context  # names the pack and table dates


def test_metadata_discovery_docs(open_server: Server) -> None:
    url = open_server.url
    cap = httpx.get(f"{url}/fhir/metadata")
    assert cap.status_code == 200 and cap.headers["content-type"].startswith(FHIR_JSON)
    assert cap.json()["resourceType"] == "CapabilityStatement"
    assert httpx.get(f"{url}/fhir/OperationDefinition/claim-precheck").json()["code"] == "precheck"
    discovery = httpx.get(f"{url}/cds-services").json()
    assert discovery["services"][0]["id"] == "claim-precheck"
    docs = httpx.get(f"{url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "/fhir/Claim/$precheck" in httpx.get(f"{url}/openapi.json").json()["paths"]
    assert "authentication is OFF" in open_server.output()  # --no-auth says so, loudly


def test_errors_are_outcomes(open_server: Server) -> None:
    precheck = f"{open_server.url}/fhir/Claim/$precheck"
    is_outcome(httpx.post(precheck, content=b"{not json", headers={"Content-Type": FHIR_JSON}), 400)
    is_outcome(httpx.post(precheck, content=b"{}", headers={"Content-Type": "text/plain"}), 415)
    big = b'{"resourceType": "Claim", "note": "' + b"x" * 300_000 + b'"}'
    is_outcome(httpx.post(precheck, content=big, headers={"Content-Type": FHIR_JSON}), 413)
    hook = f"{open_server.url}/cds-services/claim-precheck"
    # The claim by reference, no prefetch, no fhirServer: required data cannot be had.
    missing = is_outcome(httpx.post(hook, json=hook_body("Claim/c-1")), 412)
    assert "Claim/c-1" in missing["issue"][0]["details"]["text"]
    # A fhirServer off the allowlist is refused, never called.
    off_list = hook_body("Claim/c-1", fhirServer="http://169.254.169.254/fhir")
    is_outcome(httpx.post(hook, json=off_list), 403)
    is_outcome(httpx.get(f"{open_server.url}/no/such/path"), 404)


def token(aud: str) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": aud, "exp": now + 120, "iat": now, "jti": str(uuid.uuid4()), "sub": "ehr"}
    return jwt.encode(claims, KEY, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})


def test_auth_on_hook_needs_a_valid_jwt(auth_server: Server) -> None:
    hook = f"{auth_server.url}/cds-services/claim-precheck"
    claim = json.loads((FIXTURES / "bare-claim.json").read_text())
    is_outcome(httpx.post(hook, json=hook_body(claim)), 401)
    wrong_aud = {"Authorization": f"Bearer {token('https://elsewhere.example')}"}
    is_outcome(httpx.post(hook, json=hook_body(claim), headers=wrong_aud), 401)
    good = {"Authorization": f"Bearer {token(hook)}"}  # aud = the hook's URL (served at --port)
    r = httpx.post(hook, json=hook_body(claim), headers=good)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["cards"] == []
    assert "authentication is OFF" not in auth_server.output()
    # $precheck is not behind the CDS JWT (see README: put it behind a gateway if needed).
    data = (FIXTURES / "bare-claim.json").read_bytes()
    r = httpx.post(
        f"{auth_server.url}/fhir/Claim/$precheck", content=data, headers={"Content-Type": FHIR_JSON}
    )
    assert r.status_code == 200
