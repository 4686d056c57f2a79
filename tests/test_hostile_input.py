"""Hostile input through every door: a clear OperationOutcome, never a traceback or a 500.

Doors: the CLI (``fhir-checker check``, also ``--ndjson``), the FHIR operation
(``POST /fhir/Claim/$precheck``), the CDS hook (``POST /cds-services/claim-precheck``) and
the HAPI rest-hook receiver (``PUT /subscription/Claim/{id}``). The plain tests named
``test_regression_*`` are the failing examples found by the property runs, kept as they were.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fhirpathpy
import orjson
import pytest
import respx
from conftest import ROOT, assert_expressions_resolve, assert_valid_outcome, claim_of, load_fixture
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hapi_fake import BASE, FakeFhir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import SLOW_DERANDOMIZE, TODAY, claim_or_self, claims, json_values, mutated, raw_bytes

import fhir_checker
from fhir_checker.cli import main
from fhir_checker.hapi.receiver import install
from fhir_checker.hook_cards import OUTCOME_EXTENSION
from fhir_checker.service import ServiceConfig, create_app

FHIR = {"content-type": "application/fhir+json"}
PRECHECK = "/fhir/Claim/$precheck"
HOOK_URL = "/cds-services/claim-precheck"
HOOK = "org.fhir-checker.claim-create"
MB = 1024 * 1024

_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
}
QUICK = settings(max_examples=8, derandomize=True, print_blob=False, **_COMMON)
SLOW = settings(max_examples=1000, derandomize=SLOW_DERANDOMIZE, print_blob=True, **_COMMON)


def deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_claim(depth: int) -> bytes:
    """A Claim whose extension nests ``depth`` levels deep."""
    return b'{"resourceType":"Claim","id":"c1","extension":' + deep_array(depth) + b"}"


def fifty_mb_claim() -> bytes:
    head = b'{"resourceType":"Claim","id":"c1","text":{"status":"generated","div":"<div>'
    return head + b"x" * (50 * MB) + b'</div>"}}'


def assert_fatal(outcome: dict[str, Any]) -> str:
    assert_valid_outcome(outcome)
    assert [i["severity"] for i in outcome["issue"]] == ["fatal"], outcome
    text: str = outcome["issue"][0]["details"]["text"]
    assert text.strip() and "Traceback" not in text
    return text


# ============================================================================ engine


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b'{"resourceType": "Claim", "item": [', "not valid JSON"),
        (b"", "empty"),
        (b"   \n\t ", "empty"),
        (bytes(range(256)) * 16, "not valid JSON"),
        (deep_array(10_000), "nested deeper"),
        (deep_claim(10_000), "nested deeper"),
        (deep_claim(100), "nested deeper"),
        (b'{"resourceType": "Patient", "id": "p1"}', "resourceType is 'Patient'"),
        (b'{"resourceType": 7}', "resourceType"),
        (b'{"id": "x"}', "no resourceType"),
        (b"null", "JSON null"),
        (b'"Claim"', "JSON string"),
        (b'{"resourceType": "Bundle", "entry": 5}', "no entry array"),
        (b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient"}}]}', "no Claim"),
        (b'{"resourceType": "Parameters", "parameter": 5}', "Parameters"),
        (b'{"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": 5}]}', "Parameters"),
        (
            b'{"resourceType": "Claim", "item": [{"sequence": 1, "quantity": {"value": NaN}}]}',
            "not valid JSON",
        ),
        (b'{"resourceType": "Claim", "id": "\\ud800"}', "not valid JSON"),
    ],
)
def test_engine_answers_hostile_input_with_one_fatal_issue(data: bytes, says: str) -> None:
    result = fhir_checker.run(data, today=TODAY)
    assert result.fatal
    assert says in assert_fatal(result.outcome)


def test_engine_refuses_fifty_megabytes_without_parsing() -> None:
    result = fhir_checker.run(fifty_mb_claim(), today=TODAY)
    assert "over the limit" in assert_fatal(result.outcome)
    assert result.outcome["issue"][0]["code"] == "too-costly"


def test_engine_takes_a_claim_missing_every_required_element() -> None:
    """Missing required elements are findings (STR000, with FHIRPath), not a crash."""
    data = {"resourceType": "Claim", "id": "c1"}
    outcome = fhir_checker.check(data, today=TODAY)
    assert_valid_outcome(outcome)
    missing = {i["details"]["text"] for i in outcome["issue"] if i["code"] == "required"}
    assert {
        f"Claim.{e} is required but missing." for e in ("insurance", "patient", "status", "created")
    } <= missing
    for issue in outcome["issue"]:
        assert all(fhirpathpy.evaluate(data, e) for e in issue["expression"])


def test_regression_model_error_under_a_reference_points_at_the_element() -> None:
    """Found by test_properties: pydantic reports a wrong-typed Reference at
    ``.coverage.root``; the expression must be ``Claim.insurance[0].coverage``."""
    claim = claim_of(load_fixture("port-placement-aml.json"))
    claim["insurance"][0]["coverage"] = 5
    outcome = fhir_checker.check(claim, today=TODAY)
    exprs = [
        e for i in outcome["issue"] if i["details"]["coding"][0]["code"] == "STR000" for e in i["expression"]
    ]
    assert "Claim.insurance[0].coverage" in exprs, exprs
    for e in exprs:
        assert fhirpathpy.evaluate(claim, e), e


def _port_claim() -> dict[str, Any]:
    return claim_of(load_fixture("port-placement-aml.json"))


def _assert_checked(data: dict[str, Any]) -> dict[str, Any]:
    result = fhir_checker.run(data, today=TODAY)  # raised before the fix
    assert not result.fatal
    assert_valid_outcome(result.outcome)
    assert_expressions_resolve(result.outcome, data)
    return result.outcome


@pytest.mark.parametrize(
    "claim_type",
    [{"coding": True}, {"coding": 5}, {"coding": {"code": "institutional"}}],
    ids=["bool", "number", "object"],
)
def test_regression_claim_type_coding_not_a_list(claim_type: Any) -> None:
    """Was a TypeError in packs._claim_type (picking the default pack by Claim.type)."""
    claim = _port_claim()
    claim["type"] = claim_type
    _assert_checked(claim)


@pytest.mark.parametrize("field", ["status", "use"])
@pytest.mark.parametrize("value", [{}, [], ["active"]], ids=["object", "empty-list", "list"])
def test_regression_claim_status_or_use_unhashable(field: str, value: Any) -> None:
    """Was 'unhashable type' in the fast shape check (``value in {...}``)."""
    claim = _port_claim()
    claim[field] = value
    outcome = _assert_checked(claim)
    assert any(i["details"]["coding"][0]["code"] == "STR000" for i in outcome["issue"])


def test_regression_unhashable_procedure_status_and_resource_type() -> None:
    bundle = load_fixture("port-placement-aml.json")
    proc = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Procedure")
    proc["status"] = {"code": "completed"}
    bundle["entry"].append({"resource": {"resourceType": ["Patient"], "id": "x"}})
    _assert_checked(bundle)


@pytest.mark.parametrize(
    ("element", "value", "expected"),
    [
        ("insurance", None, "Claim"),
        ("billablePeriod", [], "Claim"),
        ("patient", [], "Claim"),
    ],
)
def test_regression_error_on_a_null_or_empty_element_points_at_its_holder(
    element: str, value: Any, expected: str
) -> None:
    """Was an expression FHIRPath cannot resolve: ``null`` and ``[]`` are no node, so
    'Claim.insurance' (= null) pointed at nothing; now the Claim holding it."""
    claim = _port_claim()
    claim[element] = value
    outcome = _assert_checked(claim)
    hits = [i for i in outcome["issue"] if i["details"]["text"].startswith(f"Claim.{element}")]
    assert hits and all(i["expression"] == [expected] for i in hits), hits


def test_regression_null_quantity_of_a_line_points_at_the_line() -> None:
    claim = _port_claim()
    claim["item"][1]["quantity"] = []
    outcome = _assert_checked(claim)
    assert any(i["expression"] == ["Claim.item[1]"] for i in outcome["issue"])


# ============================================================================ CLI

CLI_CASES = {
    "malformed.json": (b'{"resourceType": "Claim", "item": [', "not valid JSON"),
    "wrong-type.json": (b'{"resourceType": "Patient", "id": "p1"}', "Patient"),
    "empty.json": (b"", "empty"),
    "garbage.bin": (bytes(range(256)) * 64, "not valid JSON"),
    "deep.json": (deep_array(10_000), "nested deeper"),
    "deep-claim.json": (deep_claim(10_000), "nested deeper"),
}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
@pytest.mark.parametrize("fmt", ["json", "table"])
def test_cli_check_exits_2_with_a_fatal_outcome(
    name: str, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, says = CLI_CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    assert main(["check", str(path), "--format", fmt]) == 2
    out = capsys.readouterr().out
    if fmt == "json":
        assert says in assert_fatal(json.loads(out))
    else:
        assert "fatal" in out and "INPUT" in out


def test_cli_check_fifty_megabytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(fifty_mb_claim())
    assert main(["check", str(path)]) == 2
    assert "over the limit" in assert_fatal(json.loads(capsys.readouterr().out))


def test_cli_check_several_hostile_inputs_one_outcome_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for name, (data, _) in sorted(CLI_CASES.items()):
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(load_fixture("port-placement-aml.json")))
    assert main(["check", *paths, str(good), str(tmp_path / "missing.json"), "--today", "2026-04-01"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(paths) + 2
    for line in [*lines[:-2], lines[-1]]:
        assert_fatal(json.loads(line))
    assert "fatal" not in {i["severity"] for i in json.loads(lines[-2])["issue"]}


def test_cli_ndjson_with_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = orjson.dumps(load_fixture("port-placement-aml.json"))
    lines = [
        good,
        b'{"resourceType": "Claim", "item": [',
        b"",
        b"[1, 2, 3]",
        bytes(range(1, 10)) + b"\xff\xfe",
        b'{"resourceType": "Patient"}',
        deep_claim(3000),
        b"null",
        good,
    ]
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["check", "--ndjson", str(path), "--jobs", "1", "--today", "2026-04-01"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(lines)
    outcomes = [json.loads(o) for o in out]
    for o in outcomes[1:-1]:
        assert_fatal(o)
    for o in (outcomes[0], outcomes[-1]):
        assert_valid_outcome(o)
        assert "fatal" not in {i["severity"] for i in o["issue"]}


#: The installed console script, as a user runs it (the same main() when it is not installed).
_SCRIPT = Path(sys.executable).with_name("fhir-checker")
CLI = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "import sys; from fhir_checker.cli import main; sys.exit(main())"]
)


def test_cli_process_prints_no_traceback(tmp_path: Path) -> None:
    """The real entry point, in a process of its own: stderr stays free of tracebacks."""
    paths = []
    for name, (data, _) in sorted(CLI_CASES.items()):
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    proc = subprocess.run(
        [*CLI, "check", *paths],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    outs = proc.stdout.decode().splitlines()
    assert len(outs) == len(paths)
    for line in outs:
        assert_fatal(json.loads(line))
    stdin = subprocess.run(
        [*CLI, "check", "-"],
        input=bytes(range(256)),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert stdin.returncode == 2 and b"Traceback" not in stdin.stderr
    assert_fatal(json.loads(stdin.stdout))


# ============================================================================ HTTP: $precheck


@pytest.fixture(scope="module")
def service() -> Iterator[TestClient]:
    cfg = ServiceConfig(auth=False, fhir_servers=("https://ehr.example.org/fhir",))
    with TestClient(create_app(cfg), raise_server_exceptions=False) as client:
        yield client


def assert_error_outcome(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith("application/fhir+json")
    assert "Traceback" not in resp.text
    body: dict[str, Any] = resp.json()
    assert_valid_outcome(body)
    assert body["issue"][0]["severity"] in ("error", "fatal")
    return body


def _chunks(total: int, size: int = MB) -> Iterator[bytes]:
    yield b'{"resourceType":"Claim","id":"c1","text":"'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


PRECHECK_CASES: list[tuple[str, bytes, dict[str, str], int]] = [
    ("malformed", b'{"resourceType": "Claim", "item": [', FHIR, 400),
    ("empty", b"", FHIR, 400),
    ("binary", bytes(range(256)) * 16, FHIR, 400),
    ("json-array", b"[]", FHIR, 400),
    ("no-resource-type", b'{"id": "x"}', FHIR, 400),
    ("resource-type-number", b'{"resourceType": 1}', FHIR, 400),
    ("deep-10000", deep_array(10_000), FHIR, 400),
    ("deep-claim-10000", deep_claim(10_000), FHIR, 400),
    ("deep-claim-500", deep_claim(500), FHIR, 422),
    ("wrong-resource-type", b'{"resourceType": "Patient", "id": "p1"}', FHIR, 422),
    ("bundle-without-claim", b'{"resourceType": "Bundle", "entry": []}', FHIR, 422),
    ("text-plain", b'{"resourceType": "Claim"}', {"content-type": "text/plain"}, 415),
    ("no-content-type", b'{"resourceType": "Claim"}', {}, 415),
    ("xml", b"<Claim/>", {"content-type": "application/fhir+xml"}, 415),
    ("parameters-parameter-number", b'{"resourceType": "Parameters", "parameter": 5}', FHIR, 400),
    ("parameters-parameter-object", b'{"resourceType": "Parameters", "parameter": {"name": "x"}}', FHIR, 400),
    (
        "parameters-unknown-profile",
        b'{"resourceType": "Parameters", "parameter": [{"name": "profile", "valueString": "nope"}]}',
        FHIR,
        400,
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "status"), [c[1:] for c in PRECHECK_CASES], ids=[c[0] for c in PRECHECK_CASES]
)
def test_precheck_hostile_bodies(
    service: TestClient, body: bytes, headers: dict[str, str], status: int
) -> None:
    assert_error_outcome(service.post(PRECHECK, content=body, headers=headers), status)


def test_regression_precheck_parameters_with_a_non_list_parameter(service: TestClient) -> None:
    """Was a 500: reading the 'profile' part iterated ``Parameters.parameter`` = 5."""
    body = assert_error_outcome(
        service.post(PRECHECK, content=b'{"resourceType": "Parameters", "parameter": 5}', headers=FHIR), 400
    )
    assert "Parameters" in body["issue"][0]["details"]["text"]


def test_precheck_fifty_megabytes_declared_and_chunked(service: TestClient) -> None:
    assert_error_outcome(service.post(PRECHECK, content=fifty_mb_claim(), headers=FHIR), 413)
    # No Content-Length: refused while reading, at the limit, not after 50 MB.
    assert_error_outcome(service.post(PRECHECK, content=_chunks(50 * MB), headers=FHIR), 413)


def test_precheck_unknown_profile_query_and_path_like_profile(service: TestClient) -> None:
    claim = json.dumps(claim_of(load_fixture("port-placement-aml.json")))
    for profile in ("no-such-pack", "../../../etc/passwd", "\x00"):
        body = assert_error_outcome(
            service.post(PRECHECK, params={"profile": profile}, content=claim, headers=FHIR), 400
        )
        assert "unknown rule pack" in body["issue"][0]["details"]["text"]


def test_regression_precheck_profile_too_long_for_a_path(service: TestClient) -> None:
    """Was a 500: ``?profile=`` of 5,000 characters made ``Path.exists()`` raise ENAMETOOLONG."""
    claim = json.dumps(claim_of(load_fixture("port-placement-aml.json")))
    assert_error_outcome(
        service.post(PRECHECK, params={"profile": "x" * 5000}, content=claim, headers=FHIR), 400
    )


def test_regression_precheck_profile_is_a_name_never_a_server_path(service: TestClient) -> None:
    """Was: ``?profile=/etc/passwd`` read that file and echoed why it is no rule pack (a
    file-existence oracle on the server). A client may only name an installed pack."""
    pack_file = str(ROOT / "profiles" / "cms-practitioner.yaml")
    claim = json.dumps(claim_of(load_fixture("port-placement-aml.json")))
    for profile in ("/etc/passwd", pack_file):
        body = assert_error_outcome(
            service.post(PRECHECK, params={"profile": profile}, content=claim, headers=FHIR), 400
        )
        assert "(top)" not in body["issue"][0]["details"]["text"]
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": load_fixture("port-placement-aml.json")},
            {"name": "profile", "valueString": "/etc/hostname"},
        ],
    }
    assert_error_outcome(service.post(PRECHECK, content=json.dumps(params), headers=FHIR), 400)
    ok = service.post(PRECHECK, params={"profile": "cms-practitioner"}, content=claim, headers=FHIR)
    assert ok.status_code == 200


def test_precheck_missing_required_elements_is_200_with_findings(service: TestClient) -> None:
    resp = service.post(PRECHECK, content=b'{"resourceType": "Claim"}', headers=FHIR)
    assert resp.status_code == 200
    outcome = resp.json()
    assert_valid_outcome(outcome)
    assert any(i["code"] == "required" for i in outcome["issue"])


def precheck_never_500(service: TestClient, data: Any) -> None:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    resp = service.post(PRECHECK, content=body, headers=FHIR)
    assert resp.status_code in (200, 400, 413, 422), (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith("application/fhir+json")
    outcome = resp.json()
    assert_valid_outcome(outcome)
    if resp.status_code == 200:  # the same answer the Python API gives
        assert outcome["issue"] == fhir_checker.check(body)["issue"]


_precheck_inputs = st.one_of(claims(), mutated(), raw_bytes())


@QUICK
@given(data=_precheck_inputs)
def test_precheck_property_quick(service: TestClient, data: Any) -> None:
    precheck_never_500(service, data)


@pytest.mark.slow
@SLOW
@given(data=_precheck_inputs)
def test_precheck_property_slow(service: TestClient, data: Any) -> None:
    precheck_never_500(service, data)


# ============================================================================ HTTP: CDS hook


def hook_request(**overrides: Any) -> dict[str, Any]:
    bundle = load_fixture("port-placement-aml.json")
    claim = claim_of(bundle)
    body: dict[str, Any] = {
        "hook": HOOK,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"patientId": "pat-1", "claim": claim},
        "prefetch": {"everything": bundle},
    }
    body.update(overrides)
    return body


def post_hook(service: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return service.post(HOOK_URL, content=content, headers=headers or {"content-type": "application/json"})


def test_hook_baseline_answers_cards(service: TestClient) -> None:
    resp = post_hook(service, hook_request())
    assert resp.status_code == 200, resp.text[:300]
    assert isinstance(resp.json()["cards"], list)


HOOK_CASES: list[tuple[str, Any, int]] = [
    ("malformed-json", b'{"hook": "org.fhir-checker.claim-create", ', 400),
    ("empty-body", b"", 400),
    ("binary", bytes(range(256)), 400),
    ("json-array", b"[]", 400),
    ("json-null", b"null", 400),
    ("deep", deep_array(10_000), 400),
    ("missing-hook", {k: v for k, v in hook_request().items() if k != "hook"}, 400),
    ("wrong-hook", hook_request(hook="patient-view"), 400),
    ("hook-not-a-string", hook_request(hook=["x"]), 400),
    ("missing-hook-instance", {k: v for k, v in hook_request().items() if k != "hookInstance"}, 400),
    ("missing-context", {k: v for k, v in hook_request().items() if k != "context"}, 400),
    ("context-a-string", hook_request(context="pat-1"), 400),
    ("context-without-patient", hook_request(context={"claim": {"reference": "Claim/1"}}), 400),
    (
        "context-patient-a-number",
        hook_request(context={"patientId": 7, "claim": {"reference": "Claim/1"}}),
        400,
    ),
    ("context-without-claim", hook_request(context={"patientId": "pat-1"}), 400),
    (
        "context-claim-a-patient",
        hook_request(context={"patientId": "pat-1", "claim": {"resourceType": "Patient"}}),
        400,
    ),
    ("context-claim-a-number", hook_request(context={"patientId": "pat-1", "claim": 5}), 400),
    ("prefetch-a-list", hook_request(prefetch=[1, 2]), 400),
    ("prefetch-value-a-string", hook_request(prefetch={"patient": "Patient/pat-1"}), 400),
    ("prefetch-value-no-resource-type", hook_request(prefetch={"patient": {"id": "pat-1"}}), 400),
    (
        "prefetch-bundle-entry-a-number",
        hook_request(prefetch={"p": {"resourceType": "Bundle", "entry": 5}}),
        400,
    ),
    (
        "fhir-authorization-a-string",
        hook_request(fhirServer="https://ehr.example.org/fhir", fhirAuthorization="x"),
        400,
    ),
    ("fhir-server-a-number", hook_request(fhirServer=5), 400),
    ("fhir-server-off-allowlist", hook_request(fhirServer="http://169.254.169.254/latest"), 403),
    # prefetch of the wrong type: the patient is not there, and there is no server to read it from
    (
        "prefetch-wrong-type",
        hook_request(
            context={
                "patientId": "pat-1",
                "claim": {"resourceType": "Claim", "id": "c1", "patient": {"reference": "Patient/pat-1"}},
            },
            prefetch={"patient": {"resourceType": "Condition", "id": "pat-1"}},
        ),
        412,
    ),
    (
        "claim-reference-without-server",
        hook_request(context={"patientId": "pat-1", "claim": "Claim/nope"}, prefetch=None),
        412,
    ),
]


@pytest.mark.parametrize(("body", "status"), [c[1:] for c in HOOK_CASES], ids=[c[0] for c in HOOK_CASES])
def test_hook_hostile_requests(service: TestClient, body: Any, status: int) -> None:
    assert_error_outcome(post_hook(service, body), status)


def test_hook_wrong_content_type_and_size(service: TestClient) -> None:
    assert_error_outcome(post_hook(service, hook_request(), {"content-type": "text/plain"}), 415)
    huge = hook_request(prefetch={"junk": {"resourceType": "Basic", "id": "b", "text": "x" * (11 * MB)}})
    assert_error_outcome(post_hook(service, huge), 413)


def test_hook_huge_prefetch_under_the_limit(service: TestClient) -> None:
    """Thousands of prefetched Conditions (about 4 MB): answered, not a timeout or 500."""
    conditions = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": f"c{i}",
                    "subject": {"reference": "Patient/pat-1"},
                }
            }
            for i in range(40_000)
        ],
    }
    body = hook_request()
    body["prefetch"]["conditions"] = conditions
    resp = post_hook(service, body)
    assert resp.status_code == 200, resp.text[:300]
    assert isinstance(resp.json()["cards"], list)


def test_regression_hook_prefetch_bundle_entry_not_a_list(service: TestClient) -> None:
    """Was a 500: ``prefetch.x.entry`` = 5 was iterated."""
    body = assert_error_outcome(
        post_hook(service, hook_request(prefetch={"x": {"resourceType": "Bundle", "entry": 5}})), 400
    )
    assert "prefetch.x" in body["issue"][0]["details"]["text"]


def test_regression_hook_claim_contained_not_a_list(service: TestClient) -> None:
    """Was a 500: ``context.claim.contained`` = 5 was iterated; now the claim is checked."""
    claim = claim_of(load_fixture("port-placement-aml.json"))
    claim["contained"] = 5
    resp = post_hook(service, hook_request(context={"patientId": "pat-1", "claim": claim}))
    assert resp.status_code == 200, resp.text[:300]
    answer = resp.json()
    assert isinstance(answer["cards"], list)
    assert_valid_outcome(answer["extension"][OUTCOME_EXTENSION])


_prefetch_values = st.one_of(
    json_values(12),
    st.builds(lambda d: {"resourceType": "Bundle", "entry": d}, json_values(12)),
    st.sampled_from(["Patient", "Condition", "Claim", "OperationOutcome"]).map(
        lambda t: {"resourceType": t, "id": "pat-1"}
    ),
)


@st.composite
def hook_bodies(draw: st.DrawFn) -> dict[str, Any]:
    claim = (
        claim_or_self(draw(st.one_of(claims(), mutated()))) if draw(st.booleans()) else draw(json_values(8))
    )
    body = hook_request(
        context={"patientId": draw(st.sampled_from(["pat-1", "", 5])), "claim": claim},
        prefetch=draw(
            st.one_of(
                st.none(),
                st.dictionaries(
                    st.sampled_from(["patient", "conditions", "x"]), _prefetch_values, max_size=3
                ),
            )
        ),
    )
    return body


def hook_never_500(service: TestClient, body: dict[str, Any]) -> None:
    resp = post_hook(service, copy.deepcopy(body))
    assert resp.status_code in (200, 400, 412), (resp.status_code, resp.text[:300])
    if resp.status_code == 200:
        assert isinstance(resp.json()["cards"], list)
    else:
        assert_error_outcome(resp, resp.status_code)


@QUICK
@given(body=hook_bodies())
def test_hook_property_quick(service: TestClient, body: dict[str, Any]) -> None:
    hook_never_500(service, body)


@pytest.mark.slow
@SLOW
@given(body=hook_bodies())
def test_hook_property_slow(service: TestClient, body: dict[str, Any]) -> None:
    hook_never_500(service, body)


# ============================================================================ subscription receiver


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[TestClient, FakeFhir]]:
    fake = FakeFhir()
    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        router.route(host="testserver").pass_through()
        app = FastAPI()
        install(app, fhir_base=BASE, queue_path=str(tmp_path / "q.sqlite"))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client, fake


def assert_refused(resp: Any, status: int) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith("application/fhir+json")
    body = resp.json()
    assert_valid_outcome(body)
    assert body["issue"][0]["severity"] == "error"


RECEIVER_CASES: list[tuple[str, str, bytes, int]] = [
    ("garbage", "/subscription/Claim/c1", b"{not json", 400),
    ("binary", "/subscription/Claim/c1", bytes(range(256)), 400),
    ("json-null", "/subscription/Claim/c1", b"null", 400),
    ("json-array", "/subscription/Claim/c1", b"[]", 400),
    ("wrong-type", "/subscription/Claim/c1", b'{"resourceType": "Patient", "id": "c1"}', 400),
    ("no-resource-type", "/subscription/Claim/c1", b'{"id": "c1"}', 400),
    ("id-mismatch", "/subscription/Claim/c1", b'{"resourceType": "Claim", "id": "c2"}', 400),
    ("id-a-list", "/subscription/Claim/c1", b'{"resourceType": "Claim", "id": ["c1"]}', 400),
    ("deep-300", "/subscription/Claim/c1", deep_claim(300), 400),
    ("deep-10000", "/subscription/Claim/c1", deep_claim(10_000), 400),
    ("not-a-fhir-id", "/subscription/Claim/" + "a" * 100, b"", 400),
    ("id-with-bad-characters", "/subscription/Claim/a$b", b"", 400),
    ("ping-garbage", "/subscription", b"{not json", 400),
    (
        "ping-deep",
        "/subscription",
        b'{"resourceType":"Bundle","entry":[{"resource":' + deep_claim(300) + b"}]}",
        400,
    ),
]


@pytest.mark.parametrize(
    ("url", "body", "status"), [c[1:] for c in RECEIVER_CASES], ids=[c[0] for c in RECEIVER_CASES]
)
def test_receiver_refuses_hostile_notifications(
    receiver: tuple[TestClient, FakeFhir], url: str, body: bytes, status: int
) -> None:
    client, _ = receiver
    assert_refused(client.put(url, content=body, headers=FHIR), status)
    assert client.get("/subscription/status").json()["queue"]["pending"] == 0  # nothing queued


def test_receiver_fifty_megabytes(receiver: tuple[TestClient, FakeFhir]) -> None:
    client, _ = receiver
    assert_refused(client.put("/subscription/Claim/c1", content=fifty_mb_claim(), headers=FHIR), 413)
    assert_refused(client.put("/subscription/Claim/c1", content=_chunks(50 * MB), headers=FHIR), 413)


def test_regression_receiver_deep_claim_was_a_500(receiver: tuple[TestClient, FakeFhir]) -> None:
    """Was a plain-text 500: hashing a Claim nested 300 deep for the queue overflowed orjson."""
    client, _ = receiver
    resp = client.put("/subscription/Claim/c1", content=deep_claim(300), headers=FHIR)
    assert_refused(resp, 400)
    assert "nested deeper" in resp.json()["issue"][0]["diagnostics"]


def test_regression_receiver_null_body_is_not_an_empty_notification(
    receiver: tuple[TestClient, FakeFhir],
) -> None:
    """Was 200 + a queued read: the body ``null`` was taken for 'no payload'."""
    client, _ = receiver
    assert_refused(client.put("/subscription/Claim/c1", content=b"null", headers=FHIR), 400)
    assert client.get("/subscription/status").json()["queue"] == {
        "pending": 0,
        "leased": 0,
        "done": 0,
        "failed": 0,
    }


def test_regression_receiver_bundle_entry_not_a_list(receiver: tuple[TestClient, FakeFhir]) -> None:
    """Was a 500: a notification Bundle whose ``entry`` is 5. Now it names no claim: a sweep."""
    client, _ = receiver
    resp = client.post("/subscription", content=b'{"resourceType": "Bundle", "entry": 5}', headers=FHIR)
    assert resp.status_code == 200, resp.text[:300]
    assert_valid_outcome(resp.json())


def receiver_never_500(client: TestClient, body: bytes) -> None:
    resp = client.put("/subscription/Claim/c1", content=body, headers=FHIR)
    assert resp.status_code in (200, 400, 413), (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith("application/fhir+json")
    assert_valid_outcome(resp.json())


_notification_bodies = st.one_of(raw_bytes(), mutated().map(lambda d: json.dumps(claim_or_self(d)).encode()))


def test_receiver_property_quick(receiver: tuple[TestClient, FakeFhir]) -> None:
    client, _ = receiver
    QUICK(given(_notification_bodies)(lambda body: receiver_never_500(client, body)))()


@pytest.mark.slow
def test_receiver_property_slow(receiver: tuple[TestClient, FakeFhir]) -> None:
    client, _ = receiver
    SLOW(given(_notification_bodies)(lambda body: receiver_never_500(client, body)))()


def test_regression_header_children_by_range_match_a_full_scan() -> None:
    """DX002 named a header's billable codes by scanning all ~74,000 per header: a claim with
    thousands of header diagnoses took seconds (found by the fuzz job's huge arrays). The
    range lookup must name exactly what the scan named."""
    from fhir_checker.rules.codes import _billable_below
    from fhir_checker.tables import get_tables

    icd = get_tables().icd10cm
    codes = icd.billable.codes()
    for header in [*sorted(icd.headers)[::500], "C92.0", "E11", "Z"]:
        assert _billable_below(icd, header) == sorted(
            c for c in codes if c.startswith(header) and c != header
        )


def test_regression_lone_surrogate_in_a_dict_is_a_fatal_outcome_that_can_be_sent() -> None:
    """Was an outcome that no door could serialise: a dict input (Python API) whose Claim id
    and code held lone surrogates, echoed into the outcome (found by the fuzz job)."""
    data = load_fixture("port-placement-aml.json")
    claim = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Claim")
    claim["id"] = "a\ud800b"
    claim["item"][0]["productOrService"]["coding"][0]["code"] = "\udfff"
    outcome = fhir_checker.run(data).outcome
    orjson.dumps(outcome)
    assert "not valid Unicode" in assert_fatal(outcome)


@pytest.mark.parametrize(
    "mutate",
    [
        # Found by the fuzz job: a number where a list belongs, in elements rules read.
        lambda d: d.update(type={"coding": 5}, deviceName=7) if d["resourceType"] == "Device" else None,
        lambda d: d.update(focalDevice=[{"action": {"coding": 3}, "manipulated": {"reference": "Device/x"}}])
        if d["resourceType"] == "Procedure"
        else None,
        lambda d: d.update(careTeam=4, supportingInfo=9) if d["resourceType"] == "Claim" else None,
    ],
    ids=["device-type-coding", "focal-device-action-coding", "claim-careteam-supportinginfo"],
)
def test_a_number_where_a_list_belongs_gives_an_outcome(mutate: Any) -> None:
    bundle = load_fixture("port-placement-aml.json")
    for entry in bundle["entry"]:
        mutate(entry["resource"])
    outcome = fhir_checker.check(bundle, today=TODAY)
    assert_valid_outcome(outcome)
    assert_expressions_resolve(outcome, bundle)


def test_cli_a_bad_today_names_the_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", "--today", "notadate", "fixtures/port-placement-aml.json"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "'notadate' is not a date: give YYYY-MM-DD" in err and "fromisoformat" not in err
