"""The subscription worker killed (-9) mid-queue and restarted: every claim gets exactly one result.

Against a real FHIR server (sekmet-fhir in CI): claims with findings are created, queued
(as the receiver queues a notification), the checker runs as a process, is killed with
SIGKILL while jobs are leased and others are still pending, and is started again on the same
queue file. Afterwards every claim carries its result tag and exactly one result Task: no
claim is lost, none checked twice into a second Task.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_checker.hapi.queue import ClaimQueue
from fhir_checker.hapi.writeback import has_result

from .fhir_server import Checker, load_port_placement, wait_for
from .test_hapi_flow import claim_tag, post_claim, read, tasks_for, with_bad_code

pytestmark = pytest.mark.integration

CLAIMS = 40


def queue_states(path: Path) -> dict[str, int]:
    """Straight from the SQLite file, as another process sees it (no lock held for long)."""
    db = sqlite3.connect(path, timeout=5)
    try:
        return {str(s): int(n) for s, n in db.execute("SELECT state, COUNT(*) FROM job GROUP BY state")}
    finally:
        db.close()


def test_worker_killed_mid_queue_loses_and_duplicates_nothing(
    fhir: httpx.Client, fhir_base: str, tmp_path: Path, run_id: str
) -> None:
    template = with_bad_code(load_port_placement(fhir, f"{run_id}-restart"))
    claims: list[dict[str, Any]] = [post_claim(fhir, template) for _ in range(CLAIMS)]
    queue_path = tmp_path / "queue.sqlite"  # the file Checker(..., tmp_path) serves with
    queue = ClaimQueue(queue_path)
    for claim in claims:
        assert queue.enqueue_claim(claim["id"], claim["meta"]["versionId"])
    queue.close()

    checker = Checker(fhir_base, tmp_path)
    # No Subscription points at this checker, and no sweep: the queue is all it works on.
    checker.start()
    try:

        def part_done() -> bool:
            states = queue_states(queue_path)
            return states.get("done", 0) >= 2

        wait_for("the first claims to be checked", part_done, timeout=60, every=0.02)
        assert checker.proc is not None
        os.kill(checker.proc.pid, signal.SIGKILL)
        checker.proc.wait(timeout=10)  # reaped: its pid no longer names a process
        at_kill = queue_states(queue_path)
    finally:
        checker.stop()
    assert at_kill.get("done", 0) < CLAIMS, f"the worker finished before it was killed: {at_kill}"
    assert at_kill.get("pending", 0) + at_kill.get("leased", 0) > 0, at_kill

    print(f"queue when the worker was killed: {at_kill}")
    checker.start()
    try:
        # Well within the 120 s lease: the dead worker's leases are taken back at start.
        wait_for(
            "every claim to be checked after the restart",
            lambda: queue_states(queue_path).get("done", 0) == CLAIMS,
            timeout=60,
        )
    finally:
        checker.stop()
    assert queue_states(queue_path) == {"done": CLAIMS}
    if at_kill.get("leased"):
        assert "leased by a worker that is no longer running" in checker.log_tail(400)
    time.sleep(1)  # let any write still in flight land before counting
    for claim in claims:
        current = read(fhir, f"Claim/{claim['id']}")
        assert has_result(current) and claim_tag(current) == "findings", claim["id"]
        found = tasks_for(fhir, claim["id"])
        assert len(found) == 1, f"Claim/{claim['id']}: {len(found)} result Tasks"
