"""State shared by worker processes: two stores on one ``state_dir`` stand for two workers."""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES
from fastapi.testclient import TestClient

from fhir_checker.cli.serve import worker_count
from fhir_checker.service import shared_state
from fhir_checker.service.app import create_app
from fhir_checker.service.auth import AuthError
from fhir_checker.service.config import ServiceConfig, config_from_mapping
from fhir_checker.service.feedback import UNKNOWN_RULE, FeedbackStore
from fhir_checker.service.shared_state import shared_stores

HOOK = "org.fhir-checker.claim-create"


def card(uuid: str, rule: str) -> dict[str, Any]:
    return {"uuid": uuid, "source": {"topic": {"code": rule}}}


def test_a_jti_seen_by_one_worker_is_a_replay_for_the_other(tmp_path: Path) -> None:
    (first, _), (second, _) = shared_stores(tmp_path), shared_stores(tmp_path)
    assert first.seen_before("iss-a", "t-1", exp=200.0, now=100.0) is False
    assert second.seen_before("iss-a", "t-1", exp=200.0, now=101.0) is True  # the other worker
    assert first.seen_before("iss-a", "t-1", exp=200.0, now=150.0) is True
    assert second.seen_before("iss-b", "t-1", exp=200.0, now=150.0) is False  # per issuer
    # Once its token has expired, the pair may be used again (its row is taken over).
    assert second.seen_before("iss-a", "t-1", exp=400.0, now=300.0) is False
    assert first.seen_before("iss-a", "t-1", exp=400.0, now=301.0) is True


def test_expired_jtis_are_pruned_and_the_table_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fhir_checker.service.shared_state as shared

    cache, _ = shared_stores(tmp_path)
    for n in range(5):
        cache.seen_before("iss", f"t-{n}", exp=110.0, now=100.0)
    monkeypatch.setattr(shared, "MAX_REPLAY_ENTRIES", 3)
    cache._pruned_at = 0.0  # prune on the next call
    assert cache.seen_before("iss", "fresh", exp=500.0, now=200.0) is False  # the 5 expired went
    (count,) = cache._db.execute("SELECT COUNT(*) FROM jti").fetchone()
    assert count == 1
    for n in range(3):
        cache.seen_before("iss", f"live-{n}", exp=500.0, now=201.0)
    cache._pruned_at = 0.0
    with pytest.raises(AuthError, match="too many tokens"):
        cache.seen_before("iss", "one-more", exp=500.0, now=202.0)


def test_feedback_on_another_workers_card_counts_once_for_all(tmp_path: Path) -> None:
    (_, issuer), (_, receiver) = shared_stores(tmp_path), shared_stores(tmp_path)
    issuer.remember([card("c-1", "PTP001"), card("c-2", "MUE001")])
    assert issuer.knows("c-1")  # its own cards: at once, from the buffer
    writer_db = shared_state.connect(tmp_path)
    assert issuer.flush(writer_db) == 2  # what the state writer thread does every 0.1 s
    assert issuer.flush(writer_db) == 0  # written once
    assert receiver.knows("c-1") and receiver.knows("c-2")
    assert (
        receiver.record({"feedback": [{"card": "c-1", "outcome": "accepted", "acceptedSuggestions": [{}]}]})
        == 1
    )
    override = {"card": "c-2", "outcome": "overridden", "overrideReason": {"reason": {"code": "clinical"}}}
    issuer.record({"feedback": [override, {"card": "c-x", "outcome": "overridden"}]})
    for store in (issuer, receiver):
        stats = store.stats()
        assert stats["cardsRemembered"] == 2
        assert stats["rules"]["PTP001"] == {
            "accepted": 1,
            "overridden": 0,
            "suggestionsAccepted": 1,
            "overrideReasons": {},
        }
        assert stats["rules"]["MUE001"]["overrideReasons"] == {"clinical": 1}
        assert stats["rules"][UNKNOWN_RULE]["overrideReasons"] == {"(no reason given)": 1}


def test_shared_feedback_matches_the_in_memory_store(tmp_path: Path) -> None:
    """Same calls, same stats: the SQLite store is a drop-in for the in-memory one."""
    memory, (_, shared) = FeedbackStore(max_cards=3), shared_stores(tmp_path)
    calls = [card(f"c-{n}", f"R{n % 2}") for n in range(3)]
    entries = [
        {"card": "c-0", "outcome": "accepted"},
        {"card": "c-1", "outcome": "overridden", "overrideReason": {"reason": {"code": "x"}}},
        {"card": "c-2", "outcome": "overridden"},
        {"card": "nope", "outcome": "accepted", "acceptedSuggestions": [{}, {}]},
    ]
    for store in (memory, shared):
        store.remember(calls)
        store.record({"feedback": entries})
    assert memory.stats() == shared.stats()


def test_the_app_uses_the_shared_stores_with_a_state_dir(tmp_path: Path) -> None:
    claim = json.loads((FIXTURES / "port-placement-miscoded.json").read_text())
    claim_resource = next(e["resource"] for e in claim["entry"] if e["resource"]["resourceType"] == "Claim")
    body = {
        "hook": HOOK,
        "hookInstance": "h-1",
        "context": {"patientId": "p", "claim": claim_resource},
        "prefetch": {"bundle": claim},
    }
    cfg = ServiceConfig(auth=False, state_dir=str(tmp_path))
    with TestClient(create_app(cfg)) as one, TestClient(create_app(cfg)) as two:
        answer = one.post("/cds-services/claim-precheck", json=body)
        assert answer.status_code == 200, answer.text[:300]
        cards = answer.json()["cards"]
        assert cards
        feedback = {"feedback": [{"card": cards[0]["uuid"], "outcome": "accepted"}]}
        assert two.post("/cds-services/claim-precheck/feedback", json=feedback).json() == {"received": 1}
        rule_id = cards[0]["source"]["topic"]["code"]
        for client in (one, two):  # each "worker" reports what both saw
            stats = client.get("/cds-services/claim-precheck/feedback/stats").json()
            assert stats["rules"][rule_id]["accepted"] == 1
            assert stats["cardsRemembered"] == len(cards)


def test_state_dir_in_the_config_file() -> None:
    assert config_from_mapping({"state_dir": "/var/lib/x"}).state_dir == "/var/lib/x"
    assert ServiceConfig().state_dir is None


def test_worker_count() -> None:
    assert worker_count("3") == 3
    assert worker_count("cores") >= 1
    for bad in ("0", "-1", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            worker_count(bad)


def test_serve_with_two_workers_refuses_a_replay_whichever_worker_gets_it(tmp_path: Path) -> None:
    """12 tokens, each used then replayed on fresh connections: with a per-process replay cache
    about half the replays would land on the worker that had not seen the token (all 12 on the
    same one: 1 in 4,096)."""
    import httpx
    import jwt as pyjwt
    import yaml
    from test_serve_cli import ISS, KEY, Server, base_env, token

    public = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
    config = {"issuers": {ISS: {"jwks": {"keys": [{**public, "kid": "k1", "alg": "ES384", "use": "sig"}]}}}}
    (tmp_path / "service.yaml").write_text(yaml.safe_dump(config))
    state = tmp_path / "state"
    server = Server(
        tmp_path, "--config", "service.yaml", "--workers", "2", "--state-dir", str(state), env=base_env()
    )
    try:
        hook = f"{server.url}/cds-services/claim-precheck"
        claim = json.loads((FIXTURES / "bare-claim.json").read_text())
        body = {"hook": HOOK, "hookInstance": "h", "context": {"patientId": "p", "claim": claim}}
        tokens = [token(hook) for _ in range(12)]
        for t in tokens:
            first = httpx.post(hook, json=body, headers={"Authorization": f"Bearer {t}"})
            assert first.status_code == 200, first.text[:300]
        for t in tokens:
            again = httpx.post(hook, json=body, headers={"Authorization": f"Bearer {t}"})
            assert again.status_code == 401 and "replay" in again.text
        assert (state / "fhir-checker-state.sqlite").exists()
        started = [line for line in server.output().splitlines() if "Started server process" in line]
        assert len(started) == 2  # two worker processes served
    finally:
        server.stop()


def test_workers_refuse_a_port_something_already_listens_on() -> None:
    import socket

    from fhir_checker.service import workers

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = {"host": "127.0.0.1", "port": port, "backlog": 16}
        assert workers.run_workers(2, "unused:factory", server) == 1  # no worker is started


def test_the_workers_listening_socket_is_tcp_and_not_shared_with_other_servers() -> None:
    import socket

    from fhir_checker.service import workers

    with workers.listening_socket("127.0.0.1", 0, 16) as first:
        port = first.getsockname()[1]
        assert first.proto == socket.IPPROTO_TCP  # what asyncio needs to set TCP_NODELAY
        with pytest.raises(OSError):  # no SO_REUSEPORT: a second server cannot take half of it
            workers.listening_socket("127.0.0.1", port, 16)


def test_a_worker_that_dies_is_replaced_and_the_rest_stop_with_the_parent(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx
    from test_serve_cli import free_port

    port = free_port()
    script = (
        "import sys; from fhir_checker.service import workers\n"
        "workers.EARLY_EXIT_SECONDS = 0.5  # a kill in the test is not a start-up failure\n"
        f"sys.exit(workers.run_workers(2, 'fhir_checker.service.app:create_app', "
        f"{{'host': '127.0.0.1', 'port': {port}, 'backlog': 64, 'log_level': 'warning'}}))\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)

    def workers_of() -> list[int]:
        found = []
        for task in Path(f"/proc/{parent.pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
        # uvicorn workers, not multiprocessing's resource tracker
        return [p for p in found if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text()]

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/cds-services", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        deadline = time.monotonic() + 60
        while not answers():
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        first = workers_of()
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        while len(set(workers_of()) - {first[0]}) < 2:  # a new one, beside the survivor
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        assert answers()
        now = workers_of()
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 0
        assert not [p for p in now if Path(f"/proc/{p}").exists()]  # no worker outlives it
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_checkpoints_run_off_the_request_path(tmp_path: Path) -> None:
    """Requests never checkpoint (its fsync stalled the event loop); the state writer thread
    copies the WAL into the database file, where a reader that ignores the WAL finds it."""
    db = shared_state.connect(tmp_path)  # as shared_stores does, without its checkpointer
    cache = shared_state.SqliteReplayCache(db)
    assert db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    path = tmp_path / shared_state.FILE_NAME

    def rows_in_database_file() -> int:
        # immutable=1: read the database file alone, as if there were no WAL
        ro = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            (n,) = ro.execute("SELECT COUNT(*) FROM jti").fetchone()
            return int(n)
        except sqlite3.DatabaseError:  # not even the table is in the file yet (or a torn read)
            return 0
        finally:
            ro.close()

    for n in range(3000):  # far past the 1,000 pages at which SQLite would checkpoint itself
        assert not cache.seen_before("iss", f"jti-{n}-" + "x" * 200, time.time() + 300, time.time())
    assert rows_in_database_file() == 0  # no checkpoint happened in the writes themselves
    writer = shared_state.StateWriter(path, every=0.05)
    try:
        deadline = time.monotonic() + 10
        while rows_in_database_file() < 3000 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.stop()
    assert rows_in_database_file() == 3000
    shared_stores(tmp_path)  # the service's stores: one writer for the file
    assert path.resolve() in shared_state._writers
    shared_state.stop_writers()
    assert not shared_state._writers


def cards_in_database(path: Path) -> dict[str, str]:
    db = sqlite3.connect(path / shared_state.FILE_NAME)
    try:
        written: dict[str, str] = {}
        for (cards,) in db.execute("SELECT cards FROM card_batch ORDER BY id"):
            written.update(json.loads(cards))
        return written
    finally:
        db.close()


def test_a_hook_calls_cards_are_written_by_the_state_writer_not_by_the_call(tmp_path: Path) -> None:
    """``remember`` (on every hook call) only buffers; the writer thread writes many calls'
    cards in one transaction, and a last time when it stops."""
    writer = shared_state.StateWriter((tmp_path / shared_state.FILE_NAME), every=60.0)
    db = shared_state.connect(tmp_path)
    store = shared_state.SqliteFeedbackStore(db)
    try:
        for n in range(50):
            store.remember([card(f"c-{n}-a", "PTP001"), card(f"c-{n}-b", "MUE001")])
        assert cards_in_database(tmp_path) == {}  # nothing written by the calls themselves
        assert store.stats()["cardsRemembered"] == 100  # but counted, and known here
        assert store.knows("c-7-b")
        writer.add(store)
        deadline = time.monotonic() + 10
        while len(cards_in_database(tmp_path)) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        written = cards_in_database(tmp_path)
        assert len(written) == 100 and written["c-7-b"] == "MUE001"
        assert store.stats()["cardsRemembered"] == 100  # not counted twice once written
        store.remember([card("late", "ADD001")])
    finally:
        writer.stop()  # the last flush: nothing buffered is lost at shutdown
    assert cards_in_database(tmp_path)["late"] == "ADD001"


def test_cards_stay_buffered_while_the_database_cannot_be_written(tmp_path: Path) -> None:
    store = shared_state.SqliteFeedbackStore(shared_state.connect(tmp_path))
    store.remember([card("c-1", "PTP001")])
    blocker = shared_state.connect(tmp_path)
    blocker.execute("BEGIN IMMEDIATE")  # another worker holds the write lock
    writer_db = sqlite3.connect(tmp_path / shared_state.FILE_NAME, timeout=0.05, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        store.flush(writer_db)
    assert store.knows("c-1")  # still buffered
    blocker.execute("ROLLBACK")
    assert store.flush(writer_db) == 1
    assert cards_in_database(tmp_path) == {"c-1": "PTP001"}


def test_the_buffer_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_state, "MAX_BUFFERED_CARDS", 3)
    store = shared_state.SqliteFeedbackStore(shared_state.connect(tmp_path))
    store.remember([card("a", "R1"), card("b", "R1")])
    store.remember([card("c", "R1"), card("d", "R1")])  # would pass the bound: not kept
    assert store.knows("b") and not store.knows("c")
    assert store.flush(shared_state.connect(tmp_path)) == 2
    store.remember([card("c", "R1")])  # room again once written
    assert store.knows("c")


def test_a_flush_is_one_row_and_feedback_finds_its_card_in_it(tmp_path: Path) -> None:
    """Cards are written a batch to a row; a card is found in the newest batch whose uuid
    range holds it, also when another batch's range overlaps (another worker, same moments)."""
    (_, one), (_, two) = shared_stores(tmp_path), shared_stores(tmp_path)
    db = shared_state.connect(tmp_path)
    one.remember([card("b-1", "PTP001"), card("b-5", "MUE001")])
    two.remember([card("b-3", "ADD001"), card("b-7", "ADD001")])  # its range overlaps one's
    assert one.flush(db) == 2 and two.flush(db) == 2
    assert db.execute("SELECT COUNT(*), SUM(n) FROM card_batch").fetchone() == (2, 4)
    assert [two._rule_of(c) for c in ("b-1", "b-3", "b-5", "b-7")] == ["PTP001", "ADD001", "MUE001", "ADD001"]
    assert two._rule_of("b-4") is None and two._rule_of("a") is None and two._rule_of("z") is None
    one.remember([card("b-5", "DX001")])  # the same uuid again: the newest batch says
    one.flush(db)
    assert two._rule_of("b-5") == "DX001"


def test_the_card_table_keeps_the_newest_batches_holding_max_cards(tmp_path: Path) -> None:
    db = shared_state.connect(tmp_path)
    store = shared_state.SqliteFeedbackStore(db, max_cards=4)
    for n in range(5):  # five batches of two cards
        store.remember([card(f"t-{n}-a", "R1"), card(f"t-{n}-b", "R2")])
        store._flushes = 15  # the trim runs on the next (16th) flush
        store.flush(db)
    # After the last flush: batches 3 and 4 hold the 4 newest cards; 0-2 are gone.
    assert sorted(cards_in_database(tmp_path)) == ["t-3-a", "t-3-b", "t-4-a", "t-4-b"]
    assert store.knows("t-4-b") and not store.knows("t-2-a")
    assert store.stats()["cardsRemembered"] == 4
