"""State that must hold across worker processes (``serve --workers N``), in one SQLite file.

- the JWT ``jti`` replay cache: a token replayed to another worker must still be refused;
- CDS card feedback: the worker that gets the feedback is rarely the one that issued the
  card, and ``/feedback/stats`` must count every worker's feedback.

WAL mode, ``synchronous=NORMAL`` (no fsync per request: losing the last moments of replay
entries in a power cut is fine, the tokens expire within minutes), a busy timeout so two
workers writing at once wait instead of failing. Each replay-cache write is one statement,
so it is atomic across processes without an explicit transaction. One worker, no
``state_dir``: the in-memory versions in :mod:`.auth` and :mod:`.feedback` are used instead.

Off the request path, on one background thread per process (:class:`StateWriter`):

- the cards a hook call issued are buffered in memory and written every
  :data:`FLUSH_EVERY` seconds, many calls in one transaction. Written by each call, with
  two workers, they cost ~150 us of CPU a call and their lock waits put tens of ms on the
  p99; a card is visible to the other workers within ~0.1 s (feedback on a card not yet
  visible waits that long, see :meth:`SqliteFeedbackStore.settle_delay`). Each write is
  one row (``card_batch``: the batch's uuid -> rule id map as JSON, with its lowest and
  highest uuid to find it by), not a row per card: at 2 workers x 50 clients that is
  ~10,000 cards a second, and a B-tree insert per card, plus the deletes that keep the
  table bounded, cost ~15 us of CPU per hook call. Feedback, which is rare, pays instead:
  it reads the few batches whose uuid range holds its card;
- checkpoints (copying the WAL into the database file, with an fsync), every
  :data:`CHECKPOINT_EVERY` seconds: SQLite's automatic checkpoint runs inside the commit
  that crosses 1,000 WAL pages, on the event loop, and its fsync held 1 % of CDS hook calls
  for ~200 ms (p99 at one client: 198 ms; 2.6 ms without).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import orjson

from .auth import MAX_REPLAY_ENTRIES, AuthError
from .feedback import FeedbackStore, RuleFeedback

log = logging.getLogger("fhir_checker.service")

FILE_NAME = "fhir-checker-state.sqlite"
#: Seconds between WAL checkpoints (background thread; the WAL stays small at this rate).
CHECKPOINT_EVERY = 1.0
#: Seconds between writes of the buffered cards (background thread).
FLUSH_EVERY = 0.1
#: Cards buffered at most; past this a hook call drops its cards' records rather than grow
#: memory without bound while the database is unwritable (feedback on them counts as unknown).
MAX_BUFFERED_CARDS = 100_000
#: Expired jti rows are deleted at most this often (seconds), not on every token.
PRUNE_EVERY = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jti (
    iss TEXT NOT NULL, jti TEXT NOT NULL, exp REAL NOT NULL, PRIMARY KEY (iss, jti)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS card_batch (
    id INTEGER PRIMARY KEY, lo TEXT NOT NULL, hi TEXT NOT NULL, n INTEGER NOT NULL, cards TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS card_batch_hi ON card_batch (hi);
CREATE TABLE IF NOT EXISTS feedback (
    rule_id TEXT PRIMARY KEY,
    accepted INTEGER NOT NULL DEFAULT 0,
    overridden INTEGER NOT NULL DEFAULT 0,
    suggestions_accepted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS override_reason (
    rule_id TEXT NOT NULL, code TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (rule_id, code)
);
"""


def connect(state_dir: str | Path) -> sqlite3.Connection:
    """The shared database in ``state_dir`` (created, with its tables, when missing)."""
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    # autocommit (isolation_level=None): every statement commits on its own.
    db = sqlite3.connect(directory / FILE_NAME, timeout=10.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it, off the loop
    db.executescript(_SCHEMA)
    return db


class StateWriter:
    """One thread, its own connection: writes the stores' buffered cards every
    :data:`FLUSH_EVERY` seconds and checkpoints the WAL every ``every`` seconds."""

    def __init__(self, path: Path, every: float = CHECKPOINT_EVERY) -> None:
        self.path = path
        self.every = every
        # Opened here, so a database that cannot be opened fails at start-up, not in the thread.
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._stores: list[SqliteFeedbackStore] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fhir-checker-state-writer", daemon=True)
        self._thread.start()

    def add(self, store: SqliteFeedbackStore) -> None:
        with self._lock:
            self._stores.append(store)

    def _run(self) -> None:
        try:
            tick = min(FLUSH_EVERY, self.every)
            last_checkpoint = time.monotonic()
            while not self._stop.wait(tick):
                self.flush()
                if time.monotonic() - last_checkpoint >= self.every:
                    self.checkpoint(self._db)
                    last_checkpoint = time.monotonic()
            self.flush()  # stopping: what is buffered is written, then one last checkpoint
            self.checkpoint(self._db)
        finally:
            self._db.close()

    def flush(self) -> None:
        with self._lock:
            stores = list(self._stores)
        for store in stores:
            try:
                store.flush(self._db)
            except Exception as exc:  # busy or I/O: the cards stay buffered for the next round
                log.warning("writing the issued cards failed: %s", type(exc).__name__)

    @staticmethod
    def checkpoint(db: sqlite3.Connection) -> None:
        try:
            # PASSIVE: copies what it can without waiting for, or blocking, the workers.
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:  # busy or I/O: the next round tries again; the thread lives on
            log.warning("state database checkpoint failed: %s", type(exc).__name__)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)


def _insert_batch(db: sqlite3.Connection, cards: dict[str, str]) -> None:
    """One row for a batch of cards (uuid -> rule id). Card uuids are time-ordered (UUID v7),
    so a batch's range [lo, hi] overlaps few others, and a lookup by ``hi`` reads few rows."""
    db.execute(
        "INSERT INTO card_batch (lo, hi, n, cards) VALUES (?, ?, ?, ?)",
        (min(cards), max(cards), len(cards), orjson.dumps(cards).decode()),
    )


def _lookup(db: sqlite3.Connection, card_id: str) -> str | None:
    """The rule of a written card: from the newest batch whose uuid range holds it."""
    for (cards,) in db.execute(
        "SELECT cards FROM card_batch WHERE hi >= ?1 AND lo <= ?1 ORDER BY id DESC", (card_id,)
    ):
        rule_id = orjson.loads(cards).get(card_id)
        if isinstance(rule_id, str):
            return rule_id
    return None


#: Deletes the batches whose cards are all past the ``max_cards`` most recent (the newest
#: batches holding at least ``max_cards`` cards are kept).
_TRIM_BATCHES = (
    "DELETE FROM card_batch WHERE id IN (SELECT id FROM "
    "(SELECT id, SUM(n) OVER (ORDER BY id DESC) - n AS newer FROM card_batch) WHERE newer >= ?)"
)


class SqliteReplayCache:
    """``(iss, jti)`` pairs seen by any worker, each kept until its token expires."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._pruned_at = 0.0

    def seen_before(self, iss: str, jti: str, exp: float, now: float) -> bool:
        """Record the pair; True when any worker already recorded it (a replay)."""
        if now - self._pruned_at > PRUNE_EVERY:
            self._pruned_at = now
            self._db.execute("DELETE FROM jti WHERE exp < ?", (now,))
            (count,) = self._db.execute("SELECT COUNT(*) FROM jti").fetchone()
            if count >= MAX_REPLAY_ENTRIES:
                self._pruned_at = 0.0  # look again on the next token
                raise AuthError("too many tokens in flight; try again shortly")
        # One statement: insert, or take over a row whose token has expired (not yet pruned).
        # No row changed = the pair is live in the table = a replay, whichever worker saw it.
        cur = self._db.execute(
            "INSERT INTO jti (iss, jti, exp) VALUES (?, ?, ?) "
            "ON CONFLICT (iss, jti) DO UPDATE SET exp = excluded.exp WHERE jti.exp < ?",
            (iss, jti, exp, now),
        )
        return cur.rowcount == 0


class SqliteFeedbackStore(FeedbackStore):
    """:class:`FeedbackStore` whose cards and counts live in the shared database.

    Issued cards are buffered here and written by the process's :class:`StateWriter`
    (:meth:`flush`); this worker sees its own buffered cards at once, the others within
    ~:data:`FLUSH_EVERY` s. Feedback counts are written at once (feedback is rare).
    """

    def __init__(self, db: sqlite3.Connection, max_cards: int = 100_000) -> None:
        super().__init__(max_cards)
        self._db = db
        self._buffer: dict[str, str] = {}  # uuid -> rule id, not yet written
        self._buffer_lock = threading.Lock()
        self._flushes = 0
        self._dropped = 0

    #: Feedback naming a card this store does not know waits this long once (another
    #: worker's card may not be written yet) before counting it as unknown.
    settle_delay = 2.5 * FLUSH_EVERY

    def _keep(self, pairs: list[tuple[str, str]]) -> None:
        if not pairs:
            return
        with self._buffer_lock:
            if len(self._buffer) + len(pairs) > MAX_BUFFERED_CARDS:
                self._dropped += len(pairs)
                return
            self._buffer.update(pairs)

    def flush(self, db: sqlite3.Connection) -> int:
        """Write the buffered cards in one transaction (on ``db``: the writer's connection);
        how many. On failure they stay buffered."""
        with self._buffer_lock:
            batch = dict(self._buffer)
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("%d issued cards were not recorded: the state database was not writable", dropped)
        if not batch:
            return 0
        db.execute("BEGIN IMMEDIATE")
        try:
            _insert_batch(db, batch)
            self._flushes += 1
            if self._flushes % 16 == 0:  # trim the oldest now and then, not on every write
                db.execute(_TRIM_BATCHES, (self.max_cards,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        with self._buffer_lock:  # written: out of the buffer, unless re-issued meanwhile
            for uuid, entry in batch.items():
                if self._buffer.get(uuid) == entry:
                    del self._buffer[uuid]
        return len(batch)

    def _rule_of(self, card_id: str) -> str | None:
        with self._buffer_lock:
            buffered = self._buffer.get(card_id)
        if buffered is not None:
            return buffered
        return _lookup(self._db, card_id)

    def _count(self, rule_id: str, accepted: bool, suggestions: int, reason_code: str | None) -> None:
        self._db.execute(
            "INSERT INTO feedback (rule_id, accepted, overridden, suggestions_accepted) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (rule_id) DO UPDATE SET accepted = accepted + excluded.accepted, "
            "overridden = overridden + excluded.overridden, "
            "suggestions_accepted = suggestions_accepted + excluded.suggestions_accepted",
            (rule_id, int(accepted), int(not accepted), suggestions),
        )
        if reason_code is not None:
            self._db.execute(
                "INSERT INTO override_reason (rule_id, code, n) VALUES (?, ?, 1) "
                "ON CONFLICT (rule_id, code) DO UPDATE SET n = n + 1",
                (rule_id, reason_code),
            )

    def _all_rules(self) -> dict[str, RuleFeedback]:
        rules = {
            str(r): RuleFeedback(accepted=a, overridden=o, suggestions_accepted=s)
            for r, a, o, s in self._db.execute(
                "SELECT rule_id, accepted, overridden, suggestions_accepted FROM feedback"
            )
        }
        for rule_id, code, n in self._db.execute("SELECT rule_id, code, n FROM override_reason"):
            rules.setdefault(str(rule_id), RuleFeedback()).override_reasons[str(code)] = int(n)
        return rules

    def _cards_remembered(self) -> int:
        (count,) = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM card_batch").fetchone()
        with self._buffer_lock:
            buffered = len(self._buffer)
        return min(int(count) + buffered, self.max_cards)


_writers: dict[Path, StateWriter] = {}
_writers_lock = threading.Lock()


def stop_writers() -> None:
    """Stop every state writer of this process, each after a last flush and checkpoint."""
    with _writers_lock:
        running = list(_writers.values())
        _writers.clear()
    for writer in running:
        writer.stop()


def shared_stores(state_dir: str | Path) -> tuple[SqliteReplayCache, SqliteFeedbackStore]:
    db = connect(state_dir)
    path = (Path(state_dir) / FILE_NAME).resolve()
    with _writers_lock:  # one writer per database file and process
        writer = _writers.get(path)
        if writer is None:
            writer = _writers[path] = StateWriter(path)
    feedback = SqliteFeedbackStore(db)
    writer.add(feedback)
    return SqliteReplayCache(db), feedback
