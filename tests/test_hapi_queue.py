"""The durable claim queue: dedupe, leases, retries, restart survival."""

from __future__ import annotations

from pathlib import Path

from fhir_checker.hapi.queue import DONE, FAILED, PENDING, ClaimQueue


def test_same_version_is_queued_once_new_version_again(tmp_path: Path) -> None:
    q = ClaimQueue(tmp_path / "q.sqlite")
    assert q.enqueue_claim("c1", "1", now=100)
    assert not q.enqueue_claim("c1", "1", now=101)  # redelivery
    assert q.enqueue_claim("c1", "2", now=102)
    job = q.lease(now=103)
    assert job is not None and (job.claim_id, job.version_id) == ("c1", "1")
    q.complete(job, "passed", now=104)
    assert not q.enqueue_claim("c1", "1", now=105)  # done stays done
    assert q.counts() == {"pending": 1, "leased": 0, "done": 1, "failed": 0}


def test_survives_restart_and_expired_lease_is_redelivered(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    q = ClaimQueue(path, lease_seconds=30)
    q.enqueue_claim("c1", "1", now=100)
    leased = q.lease(now=100)
    assert leased is not None
    q.close()  # the process dies while the job is leased
    q2 = ClaimQueue(path, lease_seconds=30)
    assert q2.lease(now=110) is None  # lease still held
    again = q2.lease(now=131)
    assert again is not None and again.key == leased.key and again.attempts == 2


def test_retry_backs_off_then_fails_and_redelivery_revives(tmp_path: Path) -> None:
    q = ClaimQueue(tmp_path / "q.sqlite", max_attempts=2)
    q.enqueue_claim("c1", "1", now=0)
    job = q.lease(now=0)
    assert job is not None and q.retry(job, "HTTP 503", now=0)
    assert q.lease(now=1) is None  # backing off (2 s)
    job = q.lease(now=2.5)
    assert job is not None and not q.retry(job, "HTTP 503", now=3)
    assert q.state_of("c1", "1") == FAILED
    assert q.enqueue_claim("c1", "1", now=10)  # delivered again: a new chance
    assert q.state_of("c1", "1") == PENDING


def test_id_only_notifications_are_not_deduped_once_done(tmp_path: Path) -> None:
    q = ClaimQueue(tmp_path / "q.sqlite")
    assert q.enqueue_claim("c1", None, now=0)
    assert not q.enqueue_claim("c1", None, now=0)  # still waiting: coalesced
    job = q.lease(now=0)
    assert job is not None
    q.complete(job, "passed", now=1)
    assert q.enqueue_claim("c1", None, now=2)  # may be a new version: check again


def test_sweep_requested_while_running_runs_again(tmp_path: Path) -> None:
    q = ClaimQueue(tmp_path / "q.sqlite")
    assert q.enqueue_sweep(now=0)
    assert not q.enqueue_sweep(now=0)  # coalesced while waiting
    job = q.lease(now=0)
    assert job is not None and job.kind == "sweep"
    assert q.enqueue_sweep(now=1)  # asked for while running
    q.complete(job, "swept", now=2)
    again = q.lease(now=2)
    assert again is not None and again.kind == "sweep"
    q.complete(again, "swept", now=3)
    assert q.lease(now=4) is None


def test_prune_forgets_old_done_jobs_only(tmp_path: Path) -> None:
    q = ClaimQueue(tmp_path / "q.sqlite")
    q.enqueue_claim("old", "1", now=0)
    q.enqueue_claim("new", "1", now=0)
    job = q.lease(now=0)
    assert job is not None and job.claim_id == "old"
    q.complete(job, "passed", now=0)
    assert q.prune(older_than=100, now=1000) == 1
    assert q.state_of("old", "1") is None and q.state_of("new", "1") == PENDING
    assert q.counts()[DONE] == 0


def test_watermark_kv(tmp_path: Path) -> None:
    q = ClaimQueue(tmp_path / "q.sqlite")
    assert q.get("sweep.since") is None
    q.put("sweep.since", "2026-03-01T00:00:00Z")
    q.put("sweep.since", "2026-03-02T00:00:00Z")
    assert q.get("sweep.since") == "2026-03-02T00:00:00Z"
