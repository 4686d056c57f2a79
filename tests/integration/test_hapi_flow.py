"""End to end against a real FHIR server: Subscription -> notification -> check -> Task and tags.

The tests of this module run in order and share one checker and one Subscription: a clean
claim, a claim with findings, a redelivery, a new version, then claims created while the
checker is down (caught by ``fhir-checker sweep``, and by the service's own sweep at start).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import httpx
import pytest

import fhir_checker
from fhir_checker.hapi.writeback import (
    STATUS_SYSTEM,
    TASK_CODE,
    TASK_IDENTIFIER_SYSTEM,
    has_result,
    summarize,
)

from .fhir_server import AUTH, SECRET, Checker, cli, load_port_placement, wait_for

pytestmark = pytest.mark.integration

BAD_CODE = {"system": "http://snomed.info/sct", "code": "73761001"}  # not CPT/HCPCS: COD001 error
state: dict[str, Any] = {}


def claim_tag(claim: dict[str, Any]) -> str | None:
    return next(
        (t["code"] for t in claim.get("meta", {}).get("tag", []) if t.get("system") == STATUS_SYSTEM), None
    )


def read(fhir: httpx.Client, ref: str) -> dict[str, Any]:
    r = fhir.get(f"/{ref}")
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def tasks_for(fhir: httpx.Client, claim_id: str) -> list[dict[str, Any]]:
    r = fhir.get("/Task", params={"identifier": f"{TASK_IDENTIFIER_SYSTEM}|Claim/{claim_id}"})
    r.raise_for_status()
    return [
        e["resource"]
        for e in r.json().get("entry", [])
        if e.get("resource", {}).get("resourceType") == "Task"
    ]


def post_claim(fhir: httpx.Client, claim: dict[str, Any]) -> dict[str, Any]:
    r = fhir.post("/Claim", json=claim, headers={"Prefer": "return=representation"})
    assert r.status_code == 201, r.text[:500]
    created: dict[str, Any] = r.json()
    return created


def checked(fhir: httpx.Client, claim_id: str, timeout: float = 30) -> dict[str, Any]:
    """The Claim once the checker has written its result back."""
    return dict(wait_for(f"Claim/{claim_id} to be checked", lambda: _if_checked(fhir, claim_id), timeout))


def _if_checked(fhir: httpx.Client, claim_id: str) -> dict[str, Any] | None:
    claim = read(fhir, f"Claim/{claim_id}")
    return claim if has_result(claim) else None


def expected_status(fhir: httpx.Client, fhir_base: str, claim: dict[str, Any], refs: list[str]) -> str:
    """What the engine says locally about the same claim and resources (so the assertion
    follows the rule set as it grows)."""
    entries = [{"fullUrl": f"{fhir_base}/Claim/{claim['id']}", "resource": claim}]
    entries += [{"fullUrl": f"{fhir_base}/{ref}", "resource": read(fhir, ref)} for ref in refs]
    result = fhir_checker.run({"resourceType": "Bundle", "type": "collection", "entry": entries})
    return summarize(result.outcome).status


def references_of(claim: dict[str, Any]) -> list[str]:
    refs = [claim["patient"]["reference"], *(i["coverage"]["reference"] for i in claim.get("insurance", []))]
    refs += [d["diagnosisReference"]["reference"] for d in claim.get("diagnosis", [])]
    refs += [p["procedureReference"]["reference"] for p in claim.get("procedure", [])]
    refs += [
        s["valueReference"]["reference"] for s in claim.get("supportingInfo", []) if "valueReference" in s
    ]
    return list(dict.fromkeys(refs))


def with_bad_code(claim: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(claim)
    bad["item"][0]["productOrService"] = {"coding": [BAD_CODE]}
    return bad


def test_subscription_is_created_once_and_activated(
    fhir: httpx.Client, fhir_base: str, checker: Checker
) -> None:
    done = subscribe(fhir_base, checker)
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert first["status"] == "active", first  # requested -> active by the server
    again = json.loads(subscribe(fhir_base, checker).stdout)
    assert again["subscription"] == first["subscription"] and again["created"] is False
    sub = read(fhir, first["subscription"])
    assert sub["criteria"] == "Claim?status=active"
    assert sub["channel"]["type"] == "rest-hook" and sub["channel"]["payload"] == "application/fhir+json"
    assert sub["channel"]["header"] == [f"Authorization: Bearer {SECRET}"]  # the server sends it back to us
    state["subscription"] = first["subscription"]


def subscribe(fhir_base: str, checker: Checker) -> Any:
    return cli(
        "subscribe", "--fhir-base", fhir_base, "--endpoint", checker.endpoint, "--wait", "20",
        "--subscription-secret", SECRET,
    )  # fmt: skip


def test_receiver_refuses_notifications_without_the_secret(checker: Checker) -> None:
    claim = {"resourceType": "Claim", "id": "nosecret", "status": "active"}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.put(f"{checker.endpoint}/Claim/nosecret", json=claim, headers=headers)
        assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
        assert r.headers["content-type"].startswith("application/fhir+json")
    assert httpx.post(checker.endpoint, content=b"").status_code == 401
    assert checker.status()["pending"] == 0


def test_clean_claim_gets_its_tag(fhir: httpx.Client, fhir_base: str, checker: Checker, run_id: str) -> None:
    template = load_port_placement(fhir, run_id)
    state["template"] = template
    claim = post_claim(fhir, template)
    got = checked(fhir, claim["id"])
    want = expected_status(fhir, fhir_base, claim, references_of(claim))
    assert claim_tag(got) == want
    if want == "passed":
        assert tasks_for(fhir, claim["id"]) == []  # clean: tag only
    # Our own tag update must not start a loop: the version settles.
    time.sleep(3)
    settled = read(fhir, f"Claim/{claim['id']}")
    assert settled["meta"]["versionId"] == got["meta"]["versionId"]
    assert int(settled["meta"]["versionId"]) <= 2  # 1 with $meta-add (HAPI), 2 with a tag PUT


def test_claim_with_findings_gets_a_task(fhir: httpx.Client, checker: Checker) -> None:
    claim = post_claim(fhir, with_bad_code(state["template"]))
    got = checked(fhir, claim["id"])
    assert claim_tag(got) == "findings"
    [task] = tasks_for(fhir, claim["id"])
    assert task["status"] == "requested" and task["intent"] == "order"
    assert task["code"]["coding"][0]["code"] == TASK_CODE
    assert task["focus"]["reference"].startswith(f"Claim/{claim['id']}")
    assert task["for"]["reference"] == claim["patient"]["reference"]
    [outcome] = [c for c in task["contained"] if c["resourceType"] == "OperationOutcome"]
    assert task["output"][0]["valueReference"]["reference"] == f"#{outcome['id']}"
    rules = {i["details"]["coding"][0]["code"] for i in outcome["issue"]}
    assert "COD001" in rules
    state["findings"] = claim["id"]
    state["task"] = task


def test_redelivery_makes_no_second_task(fhir: httpx.Client, checker: Checker) -> None:
    claim_id = state["findings"]
    original = read(fhir, f"Claim/{claim_id}/_history/1")
    done_before = checker.status()["done"]
    for _ in range(2):  # HAPI redelivers the same version after a timeout
        r = httpx.put(
            f"{checker.endpoint}/Claim/{claim_id}",
            json=original,
            headers={"Content-Type": "application/fhir+json", **AUTH},
        )
        assert r.status_code == 200 and r.json()["resourceType"] == "OperationOutcome"
    time.sleep(2)
    assert checker.status()["done"] == done_before  # deduped in the queue
    [task] = tasks_for(fhir, claim_id)
    assert (
        task["id"] == state["task"]["id"] and task["meta"]["versionId"] == state["task"]["meta"]["versionId"]
    )


def test_new_version_updates_the_same_task(fhir: httpx.Client, checker: Checker) -> None:
    claim_id = state["findings"]
    current = read(fhir, f"Claim/{claim_id}")
    edited = copy.deepcopy(current)
    edited["item"][1]["productOrService"] = {"coding": [BAD_CODE]}  # now two bad lines
    edited["meta"] = {k: v for k, v in current["meta"].items() if k not in ("versionId", "lastUpdated")}
    r = fhir.put(f"/Claim/{claim_id}", json=edited)
    assert r.status_code == 200, r.text[:500]

    def task_updated() -> dict[str, Any] | None:
        found = tasks_for(fhir, claim_id)
        return (
            found[0]
            if len(found) == 1 and found[0]["meta"]["versionId"] != state["task"]["meta"]["versionId"]
            else None
        )

    task = wait_for("the Task to be updated", task_updated)
    assert task["id"] == state["task"]["id"]
    issues = [i for i in task["contained"][0]["issue"] if i["details"]["coding"][0]["code"] == "COD001"]
    assert len(issues) == 2
    assert has_result(read(fhir, f"Claim/{claim_id}"))


def test_claim_created_while_down_is_caught_by_sweep(
    fhir: httpx.Client, fhir_base: str, checker: Checker
) -> None:
    checker.stop()
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    claim = post_claim(fhir, with_bad_code(state["template"]))
    time.sleep(1)
    assert claim_tag(read(fhir, f"Claim/{claim['id']}")) is None  # nobody checked it
    done = cli("sweep", "--fhir-base", fhir_base, "--since", since)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["results"].get("findings", 0) >= 1, report
    assert claim_tag(read(fhir, f"Claim/{claim['id']}")) == "findings"
    assert len(tasks_for(fhir, claim["id"])) == 1
    # A second sweep finds nothing new to do for it.
    again = json.loads(cli("sweep", "--fhir-base", fhir_base, "--since", since).stdout)
    assert again["failed"] == [] and again["unchanged"] >= 1


def test_service_sweeps_at_start_after_downtime(fhir: httpx.Client, fhir_base: str, checker: Checker) -> None:
    claim = post_claim(fhir, state["template"])  # the checker is still down
    # Let the server's delivery retries for the downtime claims run out first (sekmet: 3
    # attempts over ~7 s, then Subscription status 'error'), so they cannot race the revival below.
    time.sleep(9)
    assert claim_tag(read(fhir, f"Claim/{claim['id']}")) is None
    checker.start("--sweep-interval", "3600")
    got = checked(fhir, claim["id"], timeout=60)
    assert claim_tag(got) in ("passed", "findings")
    # The server may have marked the Subscription 'error' after failed deliveries; subscribe revives it.
    done = subscribe(fhir_base, checker)
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "active", done.stdout + done.stderr
    live = post_claim(fhir, with_bad_code(state["template"]))
    assert claim_tag(checked(fhir, live["id"])) == "findings"
