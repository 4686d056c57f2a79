"""Checker + write-back against a fake FHIR server (respx): Task, tags, idempotency, loops."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
import respx
from hapi_fake import BASE, FakeFhir, clinical_claim

from fhir_checker.fhirclient import FhirClient, FhirError
from fhir_checker.hapi.worker import GONE, UNCHANGED, Checker
from fhir_checker.hapi.writeback import (
    CHECKED_SYSTEM,
    STATUS_SYSTEM,
    TASK_CODE,
    TASK_IDENTIFIER_SYSTEM,
    content_hash,
    has_result,
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["system"]: t["code"] for t in resource["meta"].get("tag", [])}


async def check(fake: FakeFhir, claim_id: str = "c1", checker: Checker | None = None) -> str:
    with respx.mock(assert_all_called=False) as router:
        fake.mount(router)
        async with FhirClient(BASE) as client:
            return await (checker or Checker(client)).check(claim_id)


def test_findings_make_one_task_and_tags_without_new_version() -> None:
    fake = FakeFhir(meta_ops=True)
    clinical_claim(fake, bad_code=True)
    assert run(check(fake)) == "findings"
    claim = fake.get("Claim", "c1")
    assert claim["meta"]["versionId"] == "1"  # $meta-add: no new version, no new notification
    assert tags(claim) == {STATUS_SYSTEM: "findings", CHECKED_SYSTEM: content_hash(claim)}
    [task] = fake.of_type("Task")
    assert task["status"] == "requested" and task["intent"] == "order"
    assert task["identifier"] == [{"system": TASK_IDENTIFIER_SYSTEM, "value": "Claim/c1"}]
    assert task["code"]["coding"][0]["code"] == TASK_CODE
    assert task["focus"] == {"reference": "Claim/c1/_history/1"}
    assert task["for"] == {"reference": "Patient/pat1"}
    [outcome] = task["contained"]
    assert outcome["resourceType"] == "OperationOutcome" and outcome["id"] == "outcome"
    assert task["output"][0]["valueReference"] == {"reference": "#outcome"}
    assert any(i["details"]["coding"][0]["code"] == "COD001" for i in outcome["issue"])
    assert "1 error(s)" in task["businessStatus"]["text"]


def test_clean_claim_gets_tag_only() -> None:
    fake = FakeFhir()
    clinical_claim(fake)
    assert run(check(fake)) == "passed"
    assert fake.of_type("Task") == []
    assert tags(fake.get("Claim", "c1"))[STATUS_SYSTEM] == "passed"


def test_redelivery_of_same_version_does_nothing() -> None:
    fake = FakeFhir()
    clinical_claim(fake, bad_code=True)
    run(check(fake))
    writes = fake.count("POST", "Task") + fake.count("PUT", "Task")
    assert run(check(fake)) == UNCHANGED
    assert len(fake.of_type("Task")) == 1
    assert fake.count("POST", "Task") + fake.count("PUT", "Task") == writes


def test_new_version_updates_the_same_task_and_clean_version_completes_it() -> None:
    fake = FakeFhir(sticky_tags=True)  # HAPI: an edit keeps the old tags
    claim = clinical_claim(fake, bad_code=True)
    run(check(fake))
    [task] = fake.of_type("Task")
    # The user edits the claim: a second bad line. Old tags stick, the content hash does not match.
    claim = dict(fake.get("Claim", "c1"))
    claim["item"] = [*claim["item"], dict(claim["item"][0], sequence=2)]
    fake.put(claim)
    assert not has_result(fake.get("Claim", "c1"))
    assert run(check(fake)) == "findings"
    [task2] = fake.of_type("Task")
    assert task2["id"] == task["id"] and task2["meta"]["versionId"] == "2"
    assert task2["focus"] == {"reference": "Claim/c1/_history/2"}
    assert "2 error(s)" in task2["businessStatus"]["text"]
    # Fixed: a clean version completes the Task and swaps the status tag (stale one deleted).
    claim = dict(fake.get("Claim", "c1"))
    claim["item"] = [
        dict(
            claim["item"][0],
            productOrService={"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}]},
        )
    ]
    fake.put(claim)
    assert run(check(fake)) == "passed"
    [task3] = fake.of_type("Task")
    assert task3["status"] == "completed" and task3["id"] == task["id"]
    got = fake.get("Claim", "c1")
    assert [t["code"] for t in got["meta"]["tag"] if t["system"] == STATUS_SYSTEM] == ["passed"]
    assert has_result(got)


def test_without_meta_add_the_guarded_put_does_not_loop() -> None:
    fake = FakeFhir(meta_ops=False)
    clinical_claim(fake, bad_code=True)

    async def twice() -> list[str]:
        with respx.mock(assert_all_called=False) as router:
            fake.mount(router)
            async with FhirClient(BASE) as client:
                checker = Checker(client)
                first = await checker.check("c1")
                # Our PUT made version 2; the server notifies it. It must be recognised.
                second = await checker.check("c1")
                return [first, second]

    assert run(twice()) == ["findings", UNCHANGED]
    claim = fake.get("Claim", "c1")
    assert claim["meta"]["versionId"] == "2" and has_result(claim)
    assert fake.count("POST", "$meta-add") == 1  # learnt once, then PUT directly
    assert len(fake.of_type("Task")) == 1


def test_tag_put_conflict_raises_for_retry() -> None:
    fake = FakeFhir(meta_ops=False)
    clinical_claim(fake)
    fake.fail[("PUT", "Claim/c1")] = 412  # someone edited the claim meanwhile
    with pytest.raises(FhirError) as err:
        run(check(fake))
    assert err.value.status == 412
    assert not has_result(fake.get("Claim", "c1"))


def test_deleted_claim_is_gone() -> None:
    assert run(check(FakeFhir(), "nope")) == GONE


def test_missing_references_still_checked_and_reported_as_findings() -> None:
    fake = FakeFhir()
    claim = clinical_claim(fake)
    claim["diagnosis"].append({"sequence": 2, "diagnosisReference": {"reference": "Condition/gone"}})
    fake.put(claim)
    assert run(check(fake)) == "findings"
    [task] = fake.of_type("Task")
    codes = {
        i["details"]["coding"][1]["code"]
        for i in task["contained"][0]["issue"]
        if len(i["details"]["coding"]) > 1
    }
    assert "reference" in codes


def test_an_unexpected_error_is_retried_and_its_message_is_not_stored(tmp_path: Any) -> None:
    import sqlite3

    from fhir_checker.hapi.queue import ClaimQueue
    from fhir_checker.hapi.worker import Worker

    class Exploding:
        async def check(self, claim_id: str) -> str:
            raise RuntimeError("patient Jane Q Public, born 1961-04-02")

    queue = ClaimQueue(tmp_path / "q.sqlite")
    queue.enqueue_claim("c1", "1")
    worker = Worker(queue, Exploding())  # type: ignore[arg-type]
    job = queue.lease()
    assert job is not None
    assert run(worker.run_job(job)) is None
    [(state, error)] = sqlite3.connect(tmp_path / "q.sqlite").execute("SELECT state, last_error FROM job").fetchall()
    assert state == "pending"  # backed off, to be tried again
    assert error.startswith("RuntimeError at ") and "test_hapi_worker.py" in error
    assert "Jane" not in error and "1961" not in error
