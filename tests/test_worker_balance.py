"""``serve --workers``: connections are balanced over the workers by their open-connection
counts (``BalancedListener``), on one shared listening socket, with real sockets here."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import socket
import time
from collections.abc import Iterator

import pytest

from fhir_checker.service import protocol
from fhir_checker.service.workers import ABSENT, BalancedListener, listening_socket

Shared = tuple[socket.socket, list[BalancedListener], "ctypes.Array[ctypes.c_int]"]


@pytest.fixture
def shared() -> Iterator[Shared]:
    """One listening socket and two workers' views of it (dup'd fds, as inherited ones are)."""
    sock = listening_socket("127.0.0.1", 0, 64)
    counts = (ctypes.c_int * 2)(ABSENT, ABSENT)
    views = [BalancedListener.adopt(sock.dup(), counts, n) for n in range(2)]
    for view in views:
        view.setblocking(False)
    try:
        yield sock, views, counts
    finally:
        for view in views:
            view.close()
        sock.close()


def _connect(sock: socket.socket, n: int) -> list[socket.socket]:
    clients = [socket.create_connection(sock.getsockname()) for _ in range(n)]
    time.sleep(0.05)  # the handshakes complete: all n wait in the accept queue
    return clients


def _drain(view: BalancedListener, into: list[socket.socket]) -> None:
    """What asyncio does on readiness: accept until EAGAIN."""
    while True:
        try:
            conn, _ = view.accept()
        except BlockingIOError:
            return
        into.append(conn)


def test_a_burst_of_connections_is_split_evenly_whoever_wakes_first(shared: Shared) -> None:
    sock, (a, b), counts = shared
    clients = _connect(sock, 10)
    got_a: list[socket.socket] = []
    got_b: list[socket.socket] = []
    try:
        _drain(a, got_a)  # a wakes first, b is not serving yet: no one to leave them to
        assert len(got_a) == 10
        for conn in got_a:
            conn.close()
            a.closed()
        assert counts[0] == 0
        got_a.clear()
        with pytest.raises(BlockingIOError):
            b.accept()  # nothing waiting; b counts as serving from its first accept on
        assert counts[1] == 0
        more = _connect(sock, 10)
        clients += more
        for _ in range(10):  # both woken by each readiness, in either order
            _drain(a, got_a)
            _drain(b, got_b)
        assert (len(got_a), len(got_b)) == (5, 5)
        assert (counts[0], counts[1]) == (5, 5)
    finally:
        for s in clients + got_a + got_b:
            s.close()


def test_the_worker_with_more_connections_defers_only_so_long(shared: Shared) -> None:
    """A worker that never accepts (busy, stuck) does not hold connections up for long."""
    sock, (a, _b), counts = shared
    counts[1] = 0  # b serving, with no connections, but it never wakes in this test
    counts[0] = 3
    clients = _connect(sock, 1)
    try:
        started = time.monotonic()
        with pytest.raises(BlockingIOError):
            a.accept()  # b has fewer: a leaves it
        while True:
            try:
                conn, _ = a.accept()
                break
            except BlockingIOError:
                assert time.monotonic() - started < 1.0
                time.sleep(0.005)
        conn.close()
        waited = time.monotonic() - started
        assert BalancedListener.MAX_DEFER_SECONDS <= waited < BalancedListener.MAX_DEFER_SECONDS + 0.5
        assert counts[0] == 4
    finally:
        for s in clients:
            s.close()


def test_an_absent_worker_is_not_waited_for_and_counts_come_down(shared: Shared) -> None:
    sock, (a, _b), counts = shared
    counts[0] = 7  # a has many; b is restarting (absent)
    clients = _connect(sock, 2)
    got: list[socket.socket] = []
    try:
        _drain(a, got)
        assert len(got) == 2 and counts[0] == 9
        for _ in range(12):
            a.closed()
        assert counts[0] == 0  # never below zero
    finally:
        for s in clients + got:
            s.close()


def test_the_protocols_report_closed_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[int] = []
    monkeypatch.setattr(protocol, "on_connection_lost", lambda: closed.append(1))

    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for cls, uvicorns in (
        (protocol.NoDelayHttpToolsProtocol, HttpToolsProtocol),
        (protocol.NoDelayH11Protocol, H11Protocol),
    ):
        proto = cls.__new__(cls)
        monkeypatch.setattr(uvicorns, "connection_lost", lambda self, exc: None)
        proto.connection_lost(None)
    assert closed == [1, 1]


def test_an_asyncio_server_on_two_views_splits_keep_alive_clients() -> None:
    """The same with asyncio's own accept loop (what uvicorn runs): two servers in one loop
    stand for two workers; 20 clients connecting at once are split 10 / 10."""

    async def main() -> tuple[int, int]:
        sock = listening_socket("127.0.0.1", 0, 64)
        counts = (ctypes.c_int * 2)(ABSENT, ABSENT)
        views = [BalancedListener.adopt(sock.dup(), counts, n) for n in range(2)]
        served = [0, 0]

        def factory(n: int) -> type[asyncio.Protocol]:
            class Echo(asyncio.Protocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    served[n] += 1

                def connection_lost(self, exc: Exception | None) -> None:
                    views[n].closed()

            return Echo

        loop = asyncio.get_running_loop()
        servers = [await loop.create_server(factory(n), sock=views[n]) for n in range(2)]
        for view in views:  # both serving, as after start-up
            with contextlib.suppress(BlockingIOError):
                view.accept()
        conns = [await asyncio.open_connection(*sock.getsockname()) for _ in range(20)]
        for _ in range(50):
            if sum(served) == 20:
                break
            await asyncio.sleep(0.01)
        for _, writer in conns:
            writer.close()
        for server in servers:
            server.close()
        sock.close()
        return served[0], served[1]

    assert asyncio.run(main()) == (10, 10)
