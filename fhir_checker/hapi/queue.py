"""The durable work queue between the rest-hook receiver and the worker (one SQLite file).

- Durable: a notification is committed (``synchronous=FULL``, WAL) before the receiver
  answers, so a crash or restart after the answer loses nothing.
- At-least-once: a job is leased, not removed; it is marked done only after the result is
  written back. A lease that runs out (the worker died) makes the job ready again.
- Dedupe: the key is the Claim id and version, so a redelivered notification of a version
  already queued or done is a no-op.
- No PHI: only Claim ids and version ids are stored, never the delivered resource (the
  worker reads the current Claim from the server anyway).
- Crash recovery: a lease names its owner (host, pid, a token per process). A worker that
  starts takes back at once the leases of owners on this host that are dead (killed -9,
  crashed), instead of waiting for the lease to run out; live owners (``--workers N``
  siblings) and other hosts keep theirs until it runs out.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLAIM, SWEEP = "claim", "sweep"
#: Tells this process from an earlier one with the same pid (PID 1 in a restarted container).
_PROCESS_TOKEN = secrets.token_hex(4)
SWEEP_KEY = "sweep"
PENDING, LEASED, DONE, FAILED = "pending", "leased", "done", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job (
    key         TEXT PRIMARY KEY,   -- 'Claim/<id>|<version>' or 'sweep'
    kind        TEXT NOT NULL,      -- claim | sweep
    claim_id    TEXT,
    version_id  TEXT,
    state       TEXT NOT NULL,      -- pending | leased | done | failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  REAL NOT NULL,
    lease_until REAL,
    enqueued_at REAL NOT NULL,
    finished_at REAL,
    last_error  TEXT,
    result      TEXT,
    rerun       INTEGER NOT NULL DEFAULT 0,  -- a sweep asked for while one is running
    lease_owner TEXT                -- 'host|pid|token' of the process holding the lease
);
CREATE INDEX IF NOT EXISTS job_ready ON job(state, not_before);
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Job:
    key: str
    kind: str
    claim_id: str | None
    version_id: str | None
    attempts: int


def claim_key(claim_id: str, version_id: str | None) -> str:
    return f"Claim/{claim_id}|{version_id or '-'}"


class ClaimQueue:
    """Thread-safe; every call is one short transaction (safe to call from the event loop)."""

    def __init__(self, path: str | Path, *, lease_seconds: float = 120.0, max_attempts: int = 8) -> None:
        self.path = str(path)
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        self.owner = f"{socket.gethostname()}|{os.getpid()}|{_PROCESS_TOKEN}"
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {str(row[1]) for row in self._db.execute("PRAGMA table_info(job)")}
            if "lease_owner" not in columns:  # a queue file from before lease owners
                self._db.execute("ALTER TABLE job ADD COLUMN lease_owner TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(sql, args).fetchall()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return rows

    # ------------------------------------------------------------------ producers

    def enqueue_claim(self, claim_id: str, version_id: str | None, *, now: float | None = None) -> bool:
        """Queue a check of ``Claim/<claim_id>`` at ``version_id``. False when a duplicate.

        A version that failed for good gets a new chance when it is delivered again. Without a
        version (an id-only notification) every delivery is queued: it may be a new version.
        """
        now = time.time() if now is None else now
        rows = self._tx(
            "INSERT INTO job(key, kind, claim_id, version_id, state, not_before, enqueued_at) "
            "VALUES (?, 'claim', ?, ?, 'pending', ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET state='pending', attempts=0, not_before=excluded.not_before, "
            "last_error=NULL WHERE job.state='failed' OR (excluded.version_id IS NULL AND job.state='done') "
            "RETURNING key",
            (claim_key(claim_id, version_id), claim_id, version_id, now, now),
        )
        return bool(rows)

    def enqueue_sweep(self, *, now: float | None = None) -> bool:
        """Queue one catch-up sweep; coalesces with a sweep already waiting."""
        now = time.time() if now is None else now
        rows = self._tx(
            "INSERT INTO job(key, kind, state, not_before, enqueued_at) VALUES (?, 'sweep', 'pending', ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET "
            # A running sweep may already be past the claim that caused this ask: run again after it.
            "rerun = CASE WHEN job.state='leased' THEN 1 ELSE 0 END, "
            "state = CASE WHEN job.state='leased' THEN 'leased' ELSE 'pending' END, "
            "attempts = CASE WHEN job.state='leased' THEN job.attempts ELSE 0 END, "
            "not_before=excluded.not_before, enqueued_at=excluded.enqueued_at "
            "WHERE job.state != 'pending' RETURNING key",
            (SWEEP_KEY, now, now),
        )
        return bool(rows)

    # ------------------------------------------------------------------ consumers

    def lease(self, *, now: float | None = None) -> Job | None:
        """The oldest ready job, leased to the caller; a job whose lease ran out is ready again."""
        now = time.time() if now is None else now
        rows = self._tx(
            "UPDATE job SET state='leased', lease_until=?, lease_owner=?, attempts=attempts+1 WHERE key = ("
            "  SELECT key FROM job WHERE (state='pending' AND not_before<=?) OR (state='leased' AND lease_until<?)"
            "  ORDER BY not_before, enqueued_at LIMIT 1) "
            "RETURNING key, kind, claim_id, version_id, attempts",
            (now + self.lease_seconds, self.owner, now, now),
        )
        if not rows:
            return None
        key, kind, claim_id, version_id, attempts = rows[0]
        return Job(str(key), str(kind), _opt(claim_id), _opt(version_id), int(str(attempts)))

    def complete(self, job: Job, result: str, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._tx(
            "UPDATE job SET state = CASE rerun WHEN 1 THEN 'pending' ELSE 'done' END, rerun=0, attempts=0, "
            "finished_at=?, lease_until=NULL, result=?, last_error=NULL WHERE key=? AND state='leased'",
            (now, result, job.key),
        )

    def retry(self, job: Job, error: str, *, now: float | None = None) -> bool:
        """Back off and try again later; after ``max_attempts`` the job fails (False)."""
        now = time.time() if now is None else now
        if job.attempts >= self.max_attempts:
            self._tx(
                "UPDATE job SET state='failed', finished_at=?, lease_until=NULL, last_error=? WHERE key=?",
                (now, error[:500], job.key),
            )
            return False
        delay = min(300.0, 2.0**job.attempts)
        self._tx(
            "UPDATE job SET state='pending', not_before=?, lease_until=NULL, last_error=? WHERE key=?",
            (now + delay, error[:500], job.key),
        )
        return True

    def release_orphans(self, *, now: float | None = None) -> int:
        """Make ready again the jobs leased by dead processes of this host; how many.

        Their attempt stays counted: a claim that kills its worker every time still ends
        ``failed`` after ``max_attempts``, instead of crashing the worker forever.
        """
        now = time.time() if now is None else now
        host = socket.gethostname()
        rows = self._tx("SELECT key, lease_owner FROM job WHERE state='leased'")
        orphans = [str(key) for key, owner in rows if _dead_owner(str(owner or ""), host, self.owner)]
        for key in orphans:
            self._tx(
                "UPDATE job SET state='pending', not_before=?, lease_until=NULL, lease_owner=NULL "
                "WHERE key=? AND state='leased'",
                (now, key),
            )
        return len(orphans)

    # ------------------------------------------------------------------ upkeep

    def next_ready_in(self, *, now: float | None = None) -> float | None:
        """Seconds until the next job is ready (0 = now), None when nothing is waiting."""
        now = time.time() if now is None else now
        rows = self._tx(
            "SELECT MIN(CASE state WHEN 'pending' THEN not_before ELSE lease_until END) FROM job "
            "WHERE state IN ('pending', 'leased')"
        )
        value = rows[0][0] if rows else None
        return None if value is None else max(0.0, float(str(value)) - now)

    def counts(self) -> dict[str, int]:
        rows = self._tx("SELECT state, COUNT(*) FROM job WHERE kind='claim' GROUP BY state")
        out = {PENDING: 0, LEASED: 0, DONE: 0, FAILED: 0}
        out.update({str(s): int(str(n)) for s, n in rows})
        return out

    def state_of(self, claim_id: str, version_id: str | None) -> str | None:
        rows = self._tx("SELECT state FROM job WHERE key=?", (claim_key(claim_id, version_id),))
        return str(rows[0][0]) if rows else None

    def prune(self, *, older_than: float = 7 * 86400, now: float | None = None) -> int:
        """Forget finished jobs; past this horizon the Claim's tags still stop a second Task."""
        now = time.time() if now is None else now
        rows = self._tx(
            "DELETE FROM job WHERE state='done' AND finished_at < ? RETURNING key", (now - older_than,)
        )
        return len(rows)

    def get(self, key: str) -> str | None:
        rows = self._tx("SELECT v FROM kv WHERE k=?", (key,))
        return str(rows[0][0]) if rows else None

    def put(self, key: str, value: str) -> None:
        self._tx("INSERT INTO kv(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (key, value))


def _dead_owner(owner: str, host: str, me: str) -> bool:
    """True for a lease owner on ``host`` that is not a running process (nor ``me``)."""
    parts = owner.split("|")
    if len(parts) != 3 or parts[0] != host or owner == me:
        return False  # another host's, an old row without owner, or our own
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return True  # our pid, another token: an earlier incarnation (e.g. PID 1 after a restart)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, someone else's
        return False
    return False


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
