"""The FHIR door of the service: $precheck, metadata, OperationDefinition, errors, docs, CORS, config."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import assert_valid_outcome, claim_of, load_fixture
from fastapi.testclient import TestClient
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationdefinition import OperationDefinition

from fhir_checker.outcome import CONTEXT_EXTENSION
from fhir_checker.service import ServiceConfig, create_app, load_config
from fhir_checker.service.body import read_limited
from fhir_checker.service.config import ConfigError
from fhir_checker.service.errors import ServiceError

FHIR = {"content-type": "application/fhir+json"}
PRECHECK = "/fhir/Claim/$precheck"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(ServiceConfig(auth=False)), raise_server_exceptions=False) as c:
        yield c


def context_of(outcome: dict[str, Any]) -> dict[str, list[str]]:
    ext = next(e for e in outcome["extension"] if e["url"] == CONTEXT_EXTENSION)
    out: dict[str, list[str]] = {}
    for part in ext["extension"]:
        value = (
            part.get("valueString")
            or part.get("valueCode")
            or part.get("valueReference", {}).get("reference")
        )
        out.setdefault(part["url"], []).append(value)
    return out


def assert_outcome_error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = resp.json()
    assert_valid_outcome(body)
    assert "Traceback" not in resp.text
    return body


def test_precheck_bundle_names_pack_and_tables(client: TestClient) -> None:
    resp = client.post(PRECHECK, content=json.dumps(load_fixture("port-placement-aml.json")), headers=FHIR)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/fhir+json")
    outcome = resp.json()
    assert_valid_outcome(outcome)
    assert not [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]
    ctx = context_of(outcome)
    assert ctx["claim"] == ["Claim/claim-port-1"]
    assert ctx["rulePack"][0].startswith("cms-outpatient-hospital@")
    assert any(t.rsplit(" ", 1)[-1][:4].isdigit() for t in ctx["table"])


def test_precheck_bare_claim_and_parameters_with_profile(client: TestClient) -> None:
    claim = claim_of(load_fixture("port-placement-aml.json"))
    resp = client.post(PRECHECK, json=claim)  # application/json is accepted too
    assert resp.status_code == 200 and resp.json()["resourceType"] == "OperationOutcome"
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": load_fixture("port-placement-aml.json")},
            {"name": "profile", "valueString": "cms-practitioner"},
        ],
    }
    resp = client.post(PRECHECK, content=json.dumps(params), headers=FHIR)
    assert resp.status_code == 200
    assert context_of(resp.json())["rulePack"][0].startswith("cms-practitioner@")


def test_profile_query_parameter(client: TestClient) -> None:
    body = json.dumps(load_fixture("port-placement-aml.json"))
    resp = client.post(f"{PRECHECK}?profile=cms-practitioner", content=body, headers=FHIR)
    assert context_of(resp.json())["rulePack"][0].startswith("cms-practitioner@")
    bad = client.post(f"{PRECHECK}?profile=no-such-pack", content=body, headers=FHIR)
    assert "no-such-pack" in assert_outcome_error(bad, 400)["issue"][0]["details"]["text"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"", 400),
        (b"[1, 2]", 400),
        (b'{"hello": "world"}', 400),
        (b'{"resourceType": "Patient", "id": "p"}', 422),
        (b'{"resourceType": "Bundle", "type": "collection", "entry": []}', 422),
    ],
)
def test_bad_bodies(client: TestClient, body: bytes, status: int) -> None:
    assert_outcome_error(client.post(PRECHECK, content=body, headers=FHIR), status)


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", "application/fhir+xml", None])
def test_wrong_content_type(client: TestClient, ctype: str | None) -> None:
    headers = {"content-type": ctype} if ctype else {}
    body = assert_outcome_error(client.post(PRECHECK, content=b"{}", headers=headers), 415)
    assert body["issue"][0]["code"] == "not-supported"


def test_content_type_with_charset(client: TestClient) -> None:
    claim = claim_of(load_fixture("port-placement-aml.json"))
    resp = client.post(
        PRECHECK, content=json.dumps(claim), headers={"content-type": "application/fhir+json; charset=utf-8"}
    )
    assert resp.status_code == 200


def test_over_the_size_limit() -> None:
    with TestClient(create_app(ServiceConfig(auth=False, max_body_bytes=1000))) as c:
        big = json.dumps(load_fixture("port-placement-aml.json")).encode()
        assert_outcome_error(c.post(PRECHECK, content=big, headers=FHIR), 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked
            for i in range(0, len(big), 256):
                yield big[i : i + 256]

        assert_outcome_error(c.post(PRECHECK, content=chunks(), headers=FHIR), 413)


def test_limit_is_enforced_while_reading() -> None:
    """The reader stops pulling chunks as soon as the limit is passed."""
    pulled = 0

    class FakeRequest:
        headers: ClassVar[dict[str, str]] = {}

        async def stream(self) -> Any:
            nonlocal pulled
            for _ in range(1000):
                pulled += 1
                yield b"x" * 1024

    with pytest.raises(ServiceError) as err:
        asyncio.run(read_limited(FakeRequest(), 4096))  # type: ignore[arg-type]
    assert err.value.status == 413
    assert pulled == 5


def test_capability_statement_declares_the_operation(client: TestClient) -> None:
    resp = client.get("/fhir/metadata")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/fhir+json")
    cap = resp.json()
    CapabilityStatement.model_validate(cap)
    claim_res = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Claim")
    op = claim_res["operation"][0]
    assert op["name"] == "precheck"
    opdef = client.get("/fhir/OperationDefinition/claim-precheck").json()
    OperationDefinition.model_validate(opdef)
    assert opdef["url"] == op["definition"] and opdef["code"] == "precheck" and opdef["resource"] == ["Claim"]
    assert {p["name"] for p in opdef["parameter"]} == {"resource", "profile", "return"}
    assert_outcome_error(client.get("/fhir/OperationDefinition/other"), 404)


def test_unknown_paths_and_methods_are_outcomes(client: TestClient) -> None:
    assert_outcome_error(client.get("/nowhere"), 404)
    assert_outcome_error(client.get(PRECHECK), 405)


def test_unexpected_errors_are_plain_500_outcomes(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fhir_checker.service import fhir_operation

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("secret internals: patient John Doe")

    monkeypatch.setattr(fhir_operation, "run_engine", boom)
    claim = claim_of(load_fixture("port-placement-aml.json"))
    body = assert_outcome_error(client.post(PRECHECK, json=claim), 500)
    assert "John" not in json.dumps(body) and "RuntimeError" not in json.dumps(body)


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert PRECHECK in spec["paths"]
    assert "application/fhir+json" in spec["paths"][PRECHECK]["post"]["requestBody"]["content"]
    assert "/cds-services/claim-precheck" in spec["paths"]


def test_rule_docs(client: TestClient) -> None:
    page = client.get("/rules/COD003")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "How to fix" in page.text and "<script" not in page.text
    doc = client.get("/rules/COD003", headers={"accept": "application/json"}).json()
    assert doc["id"] == "COD003" and "## What it checks" in doc["doc"]
    listing = client.get("/rules", headers={"accept": "application/json"}).json()
    assert any(r["id"] == "COD003" for r in listing)
    assert_outcome_error(client.get("/rules/NOPE999"), 404)


def test_cors_only_for_configured_origins() -> None:
    cfg = ServiceConfig(auth=False, cors_origins=("https://ehr.example.org",))
    with TestClient(create_app(cfg)) as c:
        pre = {
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        }
        ok = c.options("/cds-services/claim-precheck", headers={"origin": "https://ehr.example.org", **pre})
        assert ok.headers.get("access-control-allow-origin") == "https://ehr.example.org"
        bad = c.options("/cds-services/claim-precheck", headers={"origin": "https://evil.example.com", **pre})
        assert "access-control-allow-origin" not in bad.headers


def test_auth_off_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        create_app(ServiceConfig(auth=False))
    assert any("authentication is OFF" in r.message for r in caplog.records)


def test_config_from_yaml_and_env(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text(
        "public_url: https://precheck.example.org\n"
        "issuers:\n  https://ehr.example.org:\n    jku: [https://ehr.example.org/jwks.json]\n"
        "fhir_servers: [https://ehr.example.org/fhir/]\n"
        "max_body_bytes: 2048\n"
    )
    cfg = load_config(path, env={"FHIR_CHECKER_CORS_ORIGINS": "https://a.example, https://b.example"})
    assert cfg.public_url == "https://precheck.example.org" and cfg.max_body_bytes == 2048
    assert cfg.issuers["https://ehr.example.org"].jku == ("https://ehr.example.org/jwks.json",)
    assert cfg.cors_origins == ("https://a.example", "https://b.example")
    assert cfg.fhir_server_allowed("https://EHR.example.org:443/fhir")
    assert not cfg.fhir_server_allowed("https://ehr.example.org/fhir2")
    assert not load_config(path, env={"FHIR_CHECKER_AUTH": "off"}).auth
    path.write_text("isuers: {}\n")
    with pytest.raises(ConfigError, match="isuers"):
        load_config(path, env={})
    path.write_text("issuers:\n  https://x.example: {}\n")
    with pytest.raises(ConfigError, match="jku, jwks_url or jwks"):
        load_config(path, env={})
