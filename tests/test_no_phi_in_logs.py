"""No PHI in logs: one claim with a known patient through every entry point, logs at DEBUG.

The Patient has a known name, birth date, identifier, address and phone; the Claim's
patient reference has the name as its display; a Condition note and a Coverage's
subscriber id carry more of it. Each test runs one door with every ``fhir_checker*``,
``uvicorn*`` and ``httpx``/``httpcore`` logger at DEBUG, formats every record with both
formatters (JSON and text), adds what the process wrote to stderr (the CLI's own log
handler, forked workers included), and asserts none of those strings (nor the FHIR bearer
token or the subscription secret) appears. Logging a resource anywhere on these paths
makes them fail: ``test_the_detector_sees_a_logged_resource`` shows that it would.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
import uvicorn
from conftest import load_fixture
from hapi_fake import BASE, FakeFhir

import fhir_checker
from fhir_checker.cli import build_parser, main
from fhir_checker.cli.serve import build_app
from fhir_checker.hapi.writeback import has_result
from fhir_checker.logs import JsonFormatter, TextFormatter, configure_from_args
from fhir_checker.service.config import ServiceConfig

FAMILY, GIVEN = "Wrexhamsworth", "Ottoline"
BIRTH_DATE = "1957-11-23"
MRN = "MRN-7731-QX"
SUBSCRIBER_ID = "SUB-55781-ZK"
ADDRESS_LINE, CITY, POSTAL = "4417 Wisteria Hollow Road", "Quillbrook", "K7Q 2Z9"
PHONE = "555-0147-9321"
NOTE = "Brought in by her neighbour Thaddeus Ormsgill"
TOKEN = "tok-8f3a77c1-bearer-SECRET"
SECRET = "sub-secret-91c2e0"
PHI = (
    FAMILY,
    GIVEN,
    BIRTH_DATE,
    MRN,
    SUBSCRIBER_ID,
    ADDRESS_LINE,
    "Wisteria",
    CITY,
    POSTAL,
    PHONE,
    "Thaddeus",
    "Ormsgill",
)
SECRETS = (TOKEN, SECRET)

LOGGERS = ("fhir_checker", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "httpx", "httpcore")
HOOK = "org.fhir-checker.claim-create"
CLAIM_ID = "claim-port-1"


# ---------------------------------------------------------------------------- the claim


def phi_bundle() -> dict[str, Any]:
    """The correctly billed port placement claim, with a patient whose details we know."""
    bundle = load_fixture("port-placement-aml.json")
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Patient":
            res["name"] = [{"use": "official", "family": FAMILY, "given": [GIVEN]}]
            res["birthDate"] = BIRTH_DATE
            res["identifier"] = [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": MRN}]
            res["address"] = [{"line": [ADDRESS_LINE], "city": CITY, "postalCode": POSTAL}]
            res["telecom"] = [{"system": "phone", "value": PHONE}]
        elif res["resourceType"] == "Claim":
            res["patient"]["display"] = f"{GIVEN} {FAMILY}"
        elif res["resourceType"] == "Coverage":
            res["subscriberId"] = SUBSCRIBER_ID
        elif res["resourceType"] == "Condition":
            res["note"] = [{"text": NOTE}]
    return bundle


def on_server(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's resources as a FHIR server holds them: references become ``Type/id``."""
    names = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: names.get(v, v) if k == "reference" and isinstance(v, str) else fix(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return [fix(copy.deepcopy(e["resource"])) for e in bundle["entry"]]


#: A conditional reference (as in a transaction Bundle) holds the MRN: it cannot be read, and
#: what could not be read must not be logged by its reference.
CONDITIONAL = {
    "sequence": 1,
    "category": {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/claiminformationcategory", "code": "info"}
        ]
    },
    "valueReference": {"reference": f"DocumentReference?identifier=urn:oid:2.16.840.1.113883.19.5|{MRN}"},
}


COND_CLAIM_ID = "claim-cond-1"


def fake_server() -> FakeFhir:
    """The claim's resources, and a second claim with the conditional reference."""
    fake = FakeFhir()
    for res in on_server(phi_bundle()):
        fake.put(res)
        if res["resourceType"] == "Claim":
            fake.put({**res, "id": COND_CLAIM_ID, "supportingInfo": [CONDITIONAL]})
    return fake


def claim_and_prefetch(bundle: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    claim = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Claim")
    others = [e for e in bundle["entry"] if e["resource"] is not claim]
    return claim, {"record": {"resourceType": "Bundle", "type": "collection", "entry": others}}


# ---------------------------------------------------------------------------- capture


class Captured(logging.Handler):
    """Every record, as both formatters write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []
        self._formatters = (JsonFormatter(), TextFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.extend(f.format(record) for f in self._formatters)

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def logs() -> Iterator[Captured]:
    root = logging.getLogger()
    handler = Captured()
    # Every logger of ours and of the server stack, including any made quieter on purpose.
    names = {"", *LOGGERS} | {
        n for n in logging.root.manager.loggerDict if n.split(".")[0] in {x.split(".")[0] for x in LOGGERS}
    }
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).propagate) for name in names}
    saved_handlers = list(root.handlers)
    root.addHandler(handler)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
        logging.getLogger(name).propagate = True
    try:
        yield handler
    finally:
        for h in list(root.handlers):
            if h not in saved_handlers:
                root.removeHandler(h)
        for name, (level, propagate) in saved.items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate


def leaks(text: str) -> list[str]:
    low = text.lower()
    return [s for s in (*PHI, *SECRETS) if s.lower() in low]


def assert_no_phi(logs: Captured, stderr: str = "", *, at_least: int = 1) -> None:
    # The test means something only if the door logged at all.
    assert len(logs.records) >= at_least, f"expected log records, got {len(logs.records)}"
    found = leaks(logs.text() + "\n" + stderr)
    assert not found, (
        f"PHI or a secret in the logs: {found}\n"
        + "\n".join(line for line in logs.lines + stderr.splitlines() if leaks(line))[:4000]
    )


def debug_flags(fmt: str = "json") -> list[str]:
    return ["--log-level", "debug", "--log-format", fmt]


# ---------------------------------------------------------------------------- the detector


def test_the_detector_sees_a_logged_resource(logs: Captured) -> None:
    patient = next(e["resource"] for e in phi_bundle()["entry"] if e["resource"]["resourceType"] == "Patient")
    logging.getLogger("fhir_checker.somewhere").debug("read %s", patient)
    assert set(leaks(logs.text())) >= {FAMILY, GIVEN, BIRTH_DATE, MRN, ADDRESS_LINE, PHONE}
    with pytest.raises(AssertionError, match="PHI or a secret"):
        assert_no_phi(logs)


def test_an_exception_message_is_not_logged(logs: Captured) -> None:
    # A library's message can quote a value from the resource; the type and frames are enough.
    try:
        int(FAMILY)
    except ValueError:
        logging.getLogger("fhir_checker.x").exception("could not read a number")
    assert logs.records[0].exc_info is not None
    assert "ValueError" in logs.text() and "test_an_exception_message_is_not_logged" in logs.text()
    assert_no_phi(logs)


# ---------------------------------------------------------------------------- the doors


def test_python_api(logs: Captured) -> None:
    bundle = phi_bundle()
    outcome = fhir_checker.check(bundle)
    assert outcome["resourceType"] == "OperationOutcome"
    fhir_checker.run(json.dumps(bundle))
    fhir_checker.run(b"{not json " + FAMILY.encode())  # a fatal outcome is logged too
    assert any(getattr(r, "claim_id", None) == CLAIM_ID for r in logs.records)
    assert_no_phi(logs, at_least=3)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_cli_check_file(logs: Captured, tmp_path: Path, capfd: pytest.CaptureFixture[str], fmt: str) -> None:
    path = tmp_path / "claim.json"
    path.write_text(json.dumps(phi_bundle()))
    assert main(["check", str(path), *debug_flags(fmt)]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["resourceType"] == "OperationOutcome"
    assert CLAIM_ID in err  # the CLI's own handler wrote the per-claim line to stderr
    assert_no_phi(logs, err)


def test_cli_ndjson_with_worker_processes(
    logs: Captured, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bundle = phi_bundle()
    broken = json.dumps(bundle)[:-40]  # a line that is not JSON, quoting the patient
    path = tmp_path / "claims.ndjson"
    path.write_text("\n".join([json.dumps(bundle), broken, json.dumps(bundle)]) + "\n")
    main(["check", "--ndjson", str(path), "--jobs", "2", *debug_flags()])
    out, err = capfd.readouterr()
    assert len(out.splitlines()) == 3
    assert err.count(CLAIM_ID) >= 2  # the forked workers' per-claim lines reached stderr
    assert_no_phi(logs, err, at_least=0)


def _serve_args(tmp_path: Path) -> Any:
    return build_parser().parse_args(
        [
            "serve",
            "--no-auth",
            "--fhir-base",
            BASE,
            "--fhir-token",
            TOKEN,
            "--subscription-secret",
            SECRET,
            "--queue",
            str(tmp_path / "queue.sqlite"),
            *debug_flags(),
        ]
    )


class ServerThread:
    """The app as ``serve`` runs it, under uvicorn in a thread (respx sees its FHIR calls)."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="debug", log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    req.add_header("Content-Type", "application/fhir+json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_http_service_cds_hooks_and_subscription_worker(
    logs: Captured, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_CHECKER_FHIR_SERVERS", BASE)  # the hook may read from the fake server
    args = _serve_args(tmp_path)
    configure_from_args(args)  # as `serve` does
    fake = fake_server()
    bundle = phi_bundle()
    claim, prefetch = claim_and_prefetch(bundle)
    server_claim = fake.get("Claim", CLAIM_ID)
    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        with ServerThread(build_app(args)) as url:
            status, outcome = http("POST", f"{url}/fhir/Claim/$precheck", bundle)
            assert status == 200 and outcome["resourceType"] == "OperationOutcome"
            hook = {"hook": HOOK, "hookInstance": str(uuid.uuid4()), "context": {"patientId": "pat-1"}}
            # The hook with everything prefetched ...
            status, cards = http(
                "POST",
                f"{url}/cds-services/claim-precheck",
                {**hook, "context": {"patientId": "pat-1", "claim": claim}, "prefetch": prefetch},
            )
            assert status == 200 and "cards" in cards
            # ... and with the rest read from the FHIR server, with its token.
            status, cards = http(
                "POST",
                f"{url}/cds-services/claim-precheck",
                {
                    **hook,
                    "context": {"patientId": "pat-1", "claim": server_claim},
                    "fhirServer": BASE,
                    "fhirAuthorization": {
                        "access_token": TOKEN,
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "scope": "patient/*.read",
                        "subject": "fhir-checker",
                    },
                },
            )
            assert status == 200 and "cards" in cards, cards
            assert fake.count("GET", "Patient") + fake.count("POST", "") >= 1  # it did read
            # A rest-hook notification: the worker reads the Claim, checks it, writes back.
            status, _ = http(
                "PUT",
                f"{url}/subscription/Claim/{CLAIM_ID}",
                server_claim,
                {"Authorization": f"Bearer {SECRET}"},
            )
            assert status == 200
            wait_for(lambda: has_result(fake.get("Claim", CLAIM_ID)))
            # The claim whose reference cannot be read: whatever the worker does with it is logged.
            http(
                "PUT",
                f"{url}/subscription/Claim/{COND_CLAIM_ID}",
                None,
                {"Authorization": f"Bearer {SECRET}"},
            )
            wait_for(
                lambda: any(getattr(r, "job", "").startswith(f"Claim/{COND_CLAIM_ID}") for r in logs.records)
            )
            # An empty notification: a sweep job searches the server for changed claims.
            status, _ = http("POST", f"{url}/subscription", None, {"Authorization": f"Bearer {SECRET}"})
            assert status == 200
            wait_for(lambda: any(getattr(r, "job", None) == "sweep" for r in logs.records))
            status, _ = http("GET", f"{url}/readyz")
            assert status == 200
    _, err = capfd.readouterr()
    routes = {getattr(r, "route", None) for r in logs.records}
    assert {"/fhir/Claim/$precheck", "/cds-services/claim-precheck"} <= routes
    assert any(getattr(r, "job", "").startswith(f"Claim/{CLAIM_ID}") for r in logs.records)
    assert any(r.name.startswith("uvicorn") for r in logs.records)
    assert_no_phi(logs, err, at_least=10)


def test_sweep_cli(logs: Captured, capfd: pytest.CaptureFixture[str]) -> None:
    fake = fake_server()
    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        code = main(["sweep", "--fhir-base", BASE, "--fhir-token", TOKEN, "--since", "24h", *debug_flags()])
    out, err = capfd.readouterr()
    assert code in (0, 1), err  # 1: the claim with the unreadable reference is reported failed
    assert json.loads(out)["seen"] == 2 and has_result(fake.get("Claim", CLAIM_ID))
    assert_no_phi(logs, err, at_least=2)


def test_subscribe_cli(logs: Captured, capfd: pytest.CaptureFixture[str]) -> None:
    fake = FakeFhir()
    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        main(
            [
                "subscribe",
                "--fhir-base",
                BASE,
                "--fhir-token",
                TOKEN,
                "--endpoint",
                "http://checker:8000/subscription",
                "--subscription-secret",
                SECRET,
                "--wait",
                "0",
                *debug_flags(),
            ]
        )
    _, err = capfd.readouterr()
    assert fake.of_type("Subscription")
    assert_no_phi(logs, err, at_least=1)


def test_worker_failure_paths(logs: Captured, tmp_path: Path) -> None:
    """A failing FHIR call and an unexpected error in a job log ids and reasons only."""
    from fhir_checker.fhirclient import FhirClient
    from fhir_checker.hapi.queue import ClaimQueue
    from fhir_checker.hapi.worker import Checker, Worker

    fake = fake_server()
    fake.fail[("POST", "")] = 500  # the batch read fails once ...

    class Exploding(Checker):
        async def check(self, claim_id: str, claim: dict[str, Any] | None = None) -> str:
            raise ValueError(f"bad value {FAMILY!r}")  # ... and a bug quotes the patient

    async def go() -> None:
        queue = ClaimQueue(tmp_path / "q.sqlite")
        async with FhirClient(BASE, token=TOKEN) as client:
            worker = Worker(queue, Checker(client))
            queue.enqueue_claim(CLAIM_ID, "1")
            job = queue.lease()
            assert job is not None
            await worker.run_job(job)
            queue.enqueue_claim(CLAIM_ID, "2")
            job = queue.lease()
            assert job is not None
            await Worker(queue, Exploding(client)).run_job(job)
        queue.close()

    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        asyncio.run(go())
    outcomes = [getattr(r, "outcome", None) for r in logs.records if getattr(r, "job", None)]
    assert outcomes and all(o in ("retry", "failed", "findings", "passed") for o in outcomes), outcomes
    assert any(getattr(r, "attempt", None) == 1 for r in logs.records)
    assert_no_phi(logs, at_least=2)


def test_service_config_is_not_logged_with_the_token(logs: Captured) -> None:
    # The service's start-up warnings name settings, never their values.
    from fhir_checker.service.app import create_app

    create_app(ServiceConfig(auth=False))
    assert_no_phi(logs)


def test_an_internal_error_in_the_service_logs_no_phi(
    logs: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from fhir_checker.service import create_app, fhir_operation

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"unexpected value {FAMILY!r} born {BIRTH_DATE}")  # a bug quoting the input

    monkeypatch.setattr(fhir_operation, "check_document", broken)
    with TestClient(create_app(ServiceConfig(auth=False)), raise_server_exceptions=False) as http:
        resp = http.post(
            "/fhir/Claim/$precheck",
            content=json.dumps(phi_bundle()),
            headers={"Content-Type": "application/fhir+json"},
        )
    assert resp.status_code == 500 and FAMILY not in resp.text
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in logs.records)
    assert any(getattr(r, "status", None) == 500 for r in logs.records)
    assert_no_phi(logs)
