"""The worker: leased job -> current Claim -> gather_claim -> engine -> write-back.

The current Claim is always read from the server (the notification's payload may be an
older version, and the queue keeps no payloads). A Claim whose tags already record this
content's result is skipped: that is a redelivery, or the notification our own tag update
caused on a server without ``$meta-add``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .. import run as run_engine
from ..fhirclient import FhirClient, FhirError
from ..gather import gather_claim
from ..logs import exception_summary
from .queue import CLAIM, SWEEP, ClaimQueue, Job
from .writeback import WriteBack, has_result

log = logging.getLogger("fhir_checker.hapi")

CHECKED_FINDINGS, CHECKED_PASSED = "findings", "passed"
UNCHANGED, GONE = "unchanged", "gone"
#: Errors that a retry will not fix: the job fails at once instead of backing off for minutes.
#: Not 401: an expired token is renewed outside the worker, and the job must survive until then.
_PERMANENT = frozenset({400, 403, 422})


@dataclass
class Checker:
    """Checks one Claim on the server and writes the result back. Shared by worker and sweep."""

    client: FhirClient
    profile: str | None = None
    writeback: WriteBack = field(init=False)

    def __post_init__(self) -> None:
        self.writeback = WriteBack(self.client)

    async def check(self, claim_id: str, claim: dict[str, Any] | None = None) -> str:
        """``findings`` / ``passed`` (checked now), ``unchanged`` (already had its result), ``gone``."""
        if claim is None:
            try:
                claim = await self.client.read("Claim", claim_id)
            except FhirError as exc:
                if exc.status in (404, 410):
                    return GONE
                raise
        if has_result(claim):
            return UNCHANGED
        gathered = await gather_claim(self.client, claim)
        unreadable = gathered.unreadable
        if unreadable:
            # A timeout, 5xx, 401 or bad JSON is not "the data is not there": checking now would
            # write a result built on a gap (a false "unresolved reference"). Retry the job.
            shown = ", ".join(m for m in gathered.missing if not m.endswith(("(404)", "(410)")))
            auth = next((e.status for e in unreadable.values() if e.status in (401, 403)), None)
            raise FhirError(f"Claim/{claim_id}: could not read {shown[:300]}", status=auth)
        if gathered.missing:
            # A count only: a reference is written by the sender and could hold anything.
            log.info(
                "Claim/%s: some references could not be read",
                claim_id,
                extra={"claim_id": claim_id, "missing": len(gathered.missing)},
            )
        result = await asyncio.to_thread(run_engine, gathered.bundle, profile=self.profile)
        summary = await self.writeback.write(claim, result.outcome)
        return summary.status


def _job_fields(job: Job, started: float) -> dict[str, object]:
    """What a job's log line carries: ids, the attempt and the time (never the Claim)."""
    return {
        "job": job.key,
        "claim_id": job.claim_id,
        "attempt": job.attempts,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
    }


class Worker:
    """Drains the queue with a few concurrent jobs until stopped."""

    def __init__(
        self,
        queue: ClaimQueue,
        checker: Checker,
        *,
        concurrency: int = 2,
        sweep: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.queue = queue
        self.checker = checker
        self.concurrency = concurrency
        self._sweep = sweep  # async callable run for 'sweep' jobs
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        released = self.queue.release_orphans()  # jobs of a worker that was killed mid-job
        if released:
            log.warning("took back %d job(s) leased by a worker that is no longer running", released)
        self._tasks = [
            asyncio.create_task(self._loop(n), name=f"precheck-worker-{n}") for n in range(self.concurrency)
        ]

    async def stop(self, timeout: float = 10.0) -> None:
        """Let running jobs finish (up to ``timeout``); an unfinished job keeps its lease and
        is picked up again after a restart."""
        self._stop.set()
        self._wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        self._tasks = []

    async def _loop(self, n: int) -> None:
        while not self._stop.is_set():
            job = self.queue.lease()
            if job is None:
                wait = self.queue.next_ready_in()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), timeout=min(5.0, wait if wait is not None else 5.0)
                    )
                continue
            await self.run_job(job)

    async def run_job(self, job: Job) -> str | None:
        started = time.perf_counter()
        try:
            if job.kind == CLAIM and job.claim_id:
                result = await self.checker.check(job.claim_id)
            elif job.kind == SWEEP and self._sweep is not None:
                result = str(await self._sweep())
            else:
                result = "ignored"
        except FhirError as exc:
            if exc.status in _PERMANENT:
                self._fail(job, str(exc))
                again = False
            else:
                again = self.queue.retry(job, str(exc))
            outcome = "retry" if again else "failed"
            log.warning(
                "%s: FHIR call failed (%s), %s",
                job.key,
                exc.reason,
                outcome,
                extra={**_job_fields(job, started), "outcome": outcome, "fhir_status": exc.status},
            )
            return None
        except Exception as exc:  # a bug must not kill the worker; the job is retried
            # The queue is stored on disk: the exception type and where, never its message
            # (a message can quote a resource).
            name, frames = exception_summary((type(exc), exc, exc.__traceback__))
            again = self.queue.retry(job, f"{name} at {frames[-1] if frames else '?'}")
            outcome = "retry" if again else "failed"
            log.exception(
                "%s: unexpected error, %s", job.key, outcome, extra={**_job_fields(job, started), "outcome": outcome}
            )
            return None
        self.queue.complete(job, result)
        # A sweep's result is a sentence about counts; a claim's is findings/passed/unchanged/gone.
        log.info("%s: %s", job.key, result, extra={**_job_fields(job, started), "outcome": result})
        return result

    def _fail(self, job: Job, error: str) -> None:
        # Exhaust the attempts so retry() marks it failed now.
        self.queue.retry(Job(job.key, job.kind, job.claim_id, job.version_id, self.queue.max_attempts), error)
