"""Structured logs: the formatters, configure_logging, and what each door logs."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from conftest import FIXTURES
from fastapi.testclient import TestClient
from hapi_fake import BASE, FakeFhir, clinical_claim

from fhir_checker.cli import main
from fhir_checker.fhirclient import FhirClient
from fhir_checker.hapi.queue import ClaimQueue
from fhir_checker.hapi.worker import Checker, Worker
from fhir_checker.logs import (
    FORMAT_ENV,
    LEVEL_ENV,
    JsonFormatter,
    TextFormatter,
    configure_logging,
)
from fhir_checker.service import ServiceConfig, create_app

PORT_CLAIM = FIXTURES / "port-placement-aml.json"
BAD_CLAIM = FIXTURES / "rules" / "PTP001" / "fires.json"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def record(msg: str = "checked claim", exc: bool = False, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("fhir_checker", logging.INFO, __file__, 1, msg, None, None)
    if exc:
        try:
            raise KeyError("Smith")
        except KeyError:
            rec.exc_info = sys.exc_info()
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------- formatters


def test_json_formatter_writes_the_fields_as_keys() -> None:
    line = JsonFormatter().format(record(claim_id="c1", rule_ids=["PTP001", "MUE001"], elapsed_ms=1.5))
    out = json.loads(line)
    assert out["msg"] == "checked claim" and out["level"] == "info" and out["logger"] == "fhir_checker"
    assert out["claim_id"] == "c1" and out["rule_ids"] == ["PTP001", "MUE001"] and out["elapsed_ms"] == 1.5
    assert out["ts"].endswith("Z") and "\n" not in line


def test_exceptions_are_type_and_frames_without_the_message() -> None:
    for fmt in (JsonFormatter(), TextFormatter()):
        line = fmt.format(record("failed", exc=True))
        assert "KeyError" in line and "test_logs.py" in line and "record" in line
        assert "Smith" not in line


def test_text_formatter_quotes_values_that_could_break_the_line() -> None:
    line = TextFormatter().format(record(claim_id="c1\nINFO forged", rule_ids=["A1", "B2"], n=3))
    assert "\n" not in line
    assert 'claim_id="c1\\nINFO forged"' in line and "rule_ids=A1,B2" in line and "n=3" in line


# ---------------------------------------------------------------------------- configure_logging


def test_configure_logging_replaces_only_its_own_handler(capsys: pytest.CaptureFixture[str]) -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    configure_logging("info", "text")
    configure_logging("info", "json")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_fhir_checker_handler", False)]
    assert len(ours) == 1 and other in logging.getLogger().handlers
    logging.getLogger("fhir_checker.test").info("hello", extra={"claim_id": "c9"})
    [line] = json_lines(capsys.readouterr().err)
    assert line["claim_id"] == "c9"
    logging.getLogger().removeHandler(other)


def test_env_vars_pick_format_and_level(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(FORMAT_ENV, "json")
    monkeypatch.setenv(LEVEL_ENV, "info")
    assert main(["check", str(PORT_CLAIM)]) == 0
    [line] = [r for r in json_lines(capsys.readouterr().err) if r["msg"] == "checked claim"]
    assert line["claim_id"] == "claim-port-1"


def test_bad_env_value_ends_the_command_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(FORMAT_ENV, "xml")
    with pytest.raises(SystemExit) as exited:
        main(["check", str(PORT_CLAIM)])
    assert exited.value.code == 2  # a usage error, not "error findings" (1)
    assert "log format 'xml'" in capsys.readouterr().err


# ---------------------------------------------------------------------------- each door


def test_check_logs_claim_id_rule_ids_counts_and_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(json.loads(BAD_CLAIM.read_text())["input"]))
    assert main(["check", str(path), "--log-level", "info", "--log-format", "json"]) == 1
    [line] = [r for r in json_lines(capsys.readouterr().err) if r["msg"] == "checked claim"]
    assert "PTP001" in line["rule_ids"] and line["findings"] >= 1 and line["errors"] >= 1
    assert line["rules_run"] > 10 and line["pack"].startswith("cms-")
    assert isinstance(line["elapsed_ms"], float)


def test_check_is_quiet_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(PORT_CLAIM)]) == 0
    assert capsys.readouterr().err == ""


def test_service_logs_method_route_status_and_duration(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    with TestClient(create_app(ServiceConfig(auth=False))) as http:
        http.post(
            "/fhir/Claim/$precheck",
            content=PORT_CLAIM.read_bytes(),
            headers={"Content-Type": "application/fhir+json"},
        )
        http.post("/fhir/Claim/$precheck", content=b"{", headers={"Content-Type": "application/fhir+json"})
        http.get("/fhir/Patient/pat-1?name=someone")
    requests = [r for r in json_lines(capsys.readouterr().err) if r["msg"] == "request"]
    assert [(r["method"], r["route"], r["status"]) for r in requests] == [
        ("POST", "/fhir/Claim/$precheck", 200),
        ("POST", "/fhir/Claim/$precheck", 400),
        ("GET", "(no route)", 404),  # the raw path and query are never logged
    ]
    assert all(isinstance(r["duration_ms"], float) for r in requests)


def test_worker_logs_job_claim_attempt_and_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")
    fake = FakeFhir()
    clinical_claim(fake, bad_code=True)

    async def go() -> None:
        queue = ClaimQueue(tmp_path / "q.sqlite")
        async with FhirClient(BASE) as client:
            worker = Worker(queue, Checker(client))
            queue.enqueue_claim("c1", "1")
            fake.fail[("GET", "Claim/c1")] = 503  # the first attempt fails, the second works
            for _ in range(2):
                job = queue.lease(now=time.time() + 3600)
                assert job is not None
                await worker.run_job(job)
        queue.close()

    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        asyncio.run(go())
    jobs = [r for r in json_lines(capsys.readouterr().err) if "job" in r]
    assert [(r["job"], r["claim_id"], r["attempt"], r["outcome"]) for r in jobs] == [
        ("Claim/c1|1", "c1", 1, "retry"),
        ("Claim/c1|1", "c1", 2, "findings"),
    ]
    assert jobs[0]["fhir_status"] == 503 and jobs[0]["level"] == "warning"
    assert all(isinstance(r["elapsed_ms"], float) for r in jobs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_writes_every_line_as_json_uvicorn_included(tmp_path: Path) -> None:
    port = _free_port()
    exe = str(Path(sys.executable).with_name("fhir-checker"))
    proc = subprocess.Popen(
        [exe, "serve", "--no-auth", "--port", str(port), "--log-format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    assert httpx.get(f"http://127.0.0.1:{port}/fhir/metadata").status_code == 200
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not answer"
            time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [line for line in err.decode().splitlines() if line.strip() and not line.startswith("***")]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    # Everything but the --no-auth banner is one JSON object per line.
    assert len(records) == len([line for line in lines if line.strip()]), err.decode()
    assert any(r["logger"].startswith("uvicorn") for r in records)
    assert any(r.get("route") == "/fhir/metadata" and r.get("status") == 200 for r in records)
    assert not any(r.get("route") == "/healthz" for r in records)  # passing probes: debug only


def test_each_serve_worker_process_sets_up_its_own_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_checker.cli import build_parser
    from fhir_checker.cli.serve import ARGS_ENV, app_from_environment

    args = build_parser().parse_args(["serve", "--no-auth", "--log-format", "json", "--log-level", "warning"])
    shared = {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | None)}
    monkeypatch.setenv(ARGS_ENV, json.dumps(shared))
    app_from_environment()
    [ours] = [h for h in logging.getLogger().handlers if getattr(h, "_fhir_checker_handler", False)]
    assert isinstance(ours.formatter, JsonFormatter)
    assert logging.getLogger().level == logging.WARNING
