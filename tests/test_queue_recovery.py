"""The queue after a worker is killed mid-job: its leases come back at once, nobody else's do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from fhir_checker.hapi.queue import LEASED, PENDING, ClaimQueue

LEASE_AND_WAIT = textwrap.dedent(
    """
    import sys, time
    from fhir_checker.hapi.queue import ClaimQueue
    q = ClaimQueue(sys.argv[1])
    job = q.lease()
    print(job.key if job else "none", flush=True)
    time.sleep(60)
    """
)


def lease_in_child(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", LEASE_AND_WAIT, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "Claim/c1|1"
    return proc


def test_leases_of_a_killed_worker_are_taken_back(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    q = ClaimQueue(path)
    q.enqueue_claim("c1", "1")
    child = lease_in_child(path)
    try:
        assert q.state_of("c1", "1") == LEASED
        assert q.release_orphans() == 0  # the owner is alive: its lease stands
        assert q.lease() is None
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert q.release_orphans() == 1
    assert q.state_of("c1", "1") == PENDING
    job = q.lease()
    assert job is not None and job.key == "Claim/c1|1"
    assert job.attempts == 2  # the killed attempt counts: a poison claim still ends 'failed'
    q.close()


def test_own_leases_are_not_orphans(tmp_path: Path) -> None:
    q = ClaimQueue(tmp_path / "q.sqlite")
    other = ClaimQueue(tmp_path / "q.sqlite")  # a second handle in the same process
    q.enqueue_claim("c1", "1")
    assert q.lease() is not None
    assert other.release_orphans() == 0 and q.release_orphans() == 0
    q.close()
    other.close()


def test_queue_file_from_before_lease_owners_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE job (key TEXT PRIMARY KEY, kind TEXT NOT NULL, claim_id TEXT, version_id TEXT,"
        " state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL,"
        " lease_until REAL, enqueued_at REAL NOT NULL, finished_at REAL, last_error TEXT, result TEXT,"
        " rerun INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO job VALUES ('Claim/c1|1', 'claim', 'c1', '1', 'leased', 1, 0, 9e99, 0,"
        " NULL, NULL, NULL, 0);"
    )
    db.commit()
    db.close()
    q = ClaimQueue(path)
    assert q.release_orphans() == 0  # no owner recorded: left to its lease
    q.enqueue_claim("c2", "1")
    job = q.lease()
    assert job is not None and job.key == "Claim/c2|1"
    q.close()
