"""``fhir-checker subscribe`` and ``fhir-checker sweep`` against the fake server; parse_since."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import respx
from hapi_fake import BASE, FakeFhir, clinical_claim

from fhir_checker.cli import main
from fhir_checker.hapi.sweep import parse_since
from fhir_checker.hapi.writeback import has_result

ENDPOINT = "http://checker:8000/subscription"


def cli(fake: FakeFhir, *args: str) -> int:
    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        return main(list(args))


def test_subscribe_creates_once_then_finds_it(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeFhir()
    assert cli(fake, "subscribe", "--fhir-base", BASE, "--endpoint", ENDPOINT, "--wait", "0") == 0
    first = json.loads(capsys.readouterr().out)
    assert first["created"] is True and first["status"] == "requested"
    [sub] = fake.of_type("Subscription")
    assert sub["criteria"] == "Claim?status=active"
    assert sub["channel"] == {"type": "rest-hook", "endpoint": ENDPOINT, "payload": "application/fhir+json"}
    assert cli(fake, "subscribe", "--fhir-base", BASE, "--endpoint", ENDPOINT, "--wait", "0") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["created"] is False and again["subscription"] == first["subscription"]
    assert len(fake.of_type("Subscription")) == 1


def test_subscribe_revives_an_errored_subscription(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeFhir()
    fake.put(
        {
            "resourceType": "Subscription",
            "status": "error",
            "error": "delivery failed",
            "criteria": "Claim?status=active",
            "channel": {"type": "rest-hook", "endpoint": ENDPOINT, "payload": "application/fhir+json"},
        }
    )
    assert cli(fake, "subscribe", "--fhir-base", BASE, "--endpoint", ENDPOINT, "--wait", "0") == 0
    [sub] = fake.of_type("Subscription")
    assert sub["status"] == "requested" and "error" not in sub


def test_sweep_checks_only_claims_without_a_result(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeFhir()
    for n in range(1, 4):
        clinical_claim(fake, claim_id=f"c{n}", bad_code=n == 2)
    cancelled = dict(fake.get("Claim", "c3"), status="cancelled")
    fake.put(cancelled)
    assert cli(fake, "sweep", "--fhir-base", BASE, "--since", "1d") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["seen"] == 2 and report["results"] == {"findings": 1, "passed": 1}
    assert has_result(fake.get("Claim", "c1")) and not has_result(fake.get("Claim", "c3"))
    # Second sweep: nothing left to do.
    assert cli(fake, "sweep", "--fhir-base", BASE, "--since", "1d") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unchanged"] == 2 and report["results"] == {}
    assert len(fake.of_type("Task")) == 1


def test_sweep_bad_time_and_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--fhir-base", BASE, "--since", "yesterday"]) == 2
    assert "not a time" in capsys.readouterr().err
    fake = FakeFhir()
    fake.fail[("GET", "Claim")] = 503
    assert cli(fake, "sweep", "--fhir-base", BASE, "--since", "1h") == 2
    assert "HTTP 503" in capsys.readouterr().err


def test_parse_since() -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now=now) == "2026-03-10T10:30:00Z"
    assert parse_since("2d", now=now) == "2026-03-08T12:00:00Z"
    assert parse_since("2026-03-01", now=now) == "2026-03-01T00:00:00Z"
    assert parse_since("2026-03-01T08:00:00+02:00", now=now) == "2026-03-01T06:00:00Z"
    with pytest.raises(ValueError):
        parse_since("soon", now=now)


def test_subscribe_puts_the_shared_secret_in_the_channel_header(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeFhir()
    base_args = ("subscribe", "--fhir-base", BASE, "--endpoint", ENDPOINT, "--wait", "0")
    assert cli(fake, *base_args, "--subscription-secret", "s1", "--header", "X-Site: a") == 0
    [sub] = fake.of_type("Subscription")
    assert sub["channel"]["header"] == ["X-Site: a", "Authorization: Bearer s1"]
    assert "s1" not in capsys.readouterr().out  # the secret is not printed
    # A new secret updates the same Subscription rather than adding one.
    assert cli(fake, *base_args, "--subscription-secret", "s2") == 0
    [sub] = fake.of_type("Subscription")
    assert sub["channel"]["header"] == ["Authorization: Bearer s2"] and sub["status"] == "requested"
