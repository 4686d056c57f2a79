"""``serve --workers N``: N uvicorn processes on one listening socket, connections balanced.

Why not uvicorn's own ``workers=N``: an asyncio worker accepts every connection that is
waiting when it wakes. 50 keep-alive clients connecting at once ended up 47 on one worker and
3 on the other, so the second core sat idle. A ``SO_REUSEPORT`` socket per worker (the kernel
spreading connections by a hash of their addresses) was better but still uneven: 28 / 22, at
times 35 / 19, and with 50 keep-alive clients the worker with more of them sets the p99 (CDS
hook at 50 clients: 22-31 ms against 18-19 ms for two servers given 25 clients each).

So the workers share one socket (made here, inherited by each), and :class:`BalancedListener`
counts each worker's open connections in shared memory: a worker that has more than the
least-loaded one leaves a waiting connection to it (the same readiness wakes every worker):
the aim of Node's cluster round-robin and Envoy's ``exact_balance``. A worker never waits on
another for long: after :attr:`BalancedListener.MAX_DEFER_SECONDS` it accepts anyway.

The parent only supervises: it starts the workers (spawned, so each loads its own tables),
restarts one that dies, and stops them all on SIGINT / SIGTERM.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import signal
import socket
import sys
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any, Protocol

log = logging.getLogger("fhir_checker.service")

#: A worker that dies within this many seconds of starting is not restarted: it would only
#: die again (port taken, bad configuration); the server stops with an error instead.
EARLY_EXIT_SECONDS = 20.0
STOP_GRACE_SECONDS = 15.0


def supported() -> bool:
    """Sockets can be handed to spawned workers (POSIX: the fd is inherited)."""
    return sys.platform != "win32"


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """The TCP listening socket every worker accepts from (made once, in the parent).

    ``proto`` is ``IPPROTO_TCP``: asyncio then sets ``TCP_NODELAY`` on every connection.
    No ``SO_REUSEPORT``: a second server on the port fails to bind instead of sharing it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


class Counts(Protocol):
    """Open connections per worker: a shared-memory ``RawArray("i", n)`` (any int array in tests)."""

    def __getitem__(self, n: int, /) -> int: ...
    def __setitem__(self, n: int, value: int, /) -> None: ...
    def __iter__(self) -> Iterator[int]: ...


#: A worker's slot in the shared counts before it serves (not started, or being restarted).
ABSENT = -1


class BalancedListener(socket.socket):
    """One worker's view of the shared listening socket: ``accept`` counts this worker's
    connections in ``counts[me]`` and refuses (``EAGAIN``, which asyncio reads as "none
    waiting") while another serving worker has fewer, so that one takes the connection.

    The count goes up at ``accept``, not at ``connection_made``: asyncio accepts a burst in
    one go and makes the protocols later. :meth:`closed` (called from the protocol's
    ``connection_lost``) takes it down again.
    """

    #: Longest a worker leaves waiting connections to others (one that is busy or stuck).
    MAX_DEFER_SECONDS = 0.05
    #: A pause this long between refusals starts a new deferral (a new connection).
    DEFER_GAP_SECONDS = 0.1

    counts: Counts
    me: int
    _deferring_since: float | None
    _last_deferral: float

    @classmethod
    def adopt(cls, sock: socket.socket, counts: Counts, me: int) -> BalancedListener:
        """``sock`` (inherited from the parent) as this worker's balanced listener."""
        listener = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        listener.counts, listener.me = counts, me
        listener._deferring_since, listener._last_deferral = None, 0.0
        return listener

    def accept(self) -> tuple[socket.socket, Any]:
        counts, me = self.counts, self.me
        if counts[me] == ABSENT:  # asyncio asks only once the server is up: serving now
            counts[me] = 0
        mine = counts[me]
        fewest = min((n for n in counts if n != ABSENT), default=mine)
        if mine > fewest and self._may_defer():
            raise BlockingIOError(errno.EAGAIN, "left to a worker with fewer connections")
        conn, addr = super().accept()
        counts[me] = mine + 1
        self._deferring_since = None
        return conn, addr

    def _may_defer(self) -> bool:
        now = time.monotonic()
        if self._deferring_since is None or now - self._last_deferral > self.DEFER_GAP_SECONDS:
            self._deferring_since = now
        self._last_deferral = now
        return now - self._deferring_since < self.MAX_DEFER_SECONDS

    def closed(self) -> None:
        """One of this worker's connections is gone."""
        if self.counts[self.me] > 0:
            self.counts[self.me] -= 1


def _worker(  # pragma: no cover - runs in a child
    app: str, server: dict[str, Any], sock: socket.socket, counts: Counts, me: int
) -> None:
    import uvicorn

    from . import protocol

    listener = BalancedListener.adopt(sock, counts, me)
    protocol.on_connection_lost = listener.closed
    config = uvicorn.Config(app, factory=True, **server)
    uvicorn.Server(config).run(sockets=[listener])


def run_workers(count: int, app: str, server: dict[str, Any]) -> int:
    """Run ``count`` workers serving the app factory ``app`` until a signal; the exit code."""
    try:
        sock = listening_socket(server["host"], server["port"], server["backlog"])
    except OSError as exc:  # here, not in N children: the port is taken, or not ours
        log.error("cannot listen on %s:%s: %s", server["host"], server["port"], exc.strerror)
        return 1
    spawn = multiprocessing.get_context("spawn")
    counts = spawn.RawArray("i", [ABSENT] * count)  # open connections per worker (shared memory)
    stopping = False

    def start(n: int) -> tuple[multiprocessing.process.BaseProcess, float]:
        counts[n] = ABSENT  # a dead worker's connections died with it; others need not wait
        proc = spawn.Process(target=_worker, args=(app, server, sock, counts, n), name="fhir-checker-worker")
        proc.start()
        return proc, time.monotonic()

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    workers = [start(n) for n in range(count)]
    log.info("started %d worker processes on %s:%s", count, server["host"], server["port"])
    code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for n, (proc, started) in enumerate(workers):
                if proc.is_alive() or stopping:
                    continue
                if time.monotonic() - started < EARLY_EXIT_SECONDS:
                    log.error("worker %s exited at start-up (code %s): stopping", proc.pid, proc.exitcode)
                    stopping, code = True, 1
                    break
                log.warning("worker %s exited (code %s): starting another", proc.pid, proc.exitcode)
                workers[n] = start(n)
    finally:
        for proc, _ in workers:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc, _ in workers:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    return code
