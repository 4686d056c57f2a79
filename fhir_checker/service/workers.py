"""``serve --workers N``: N uvicorn processes, each with its own ``SO_REUSEPORT`` socket.

Why not uvicorn's own ``workers=N``: it shares one listening socket, and an asyncio worker
accepts every connection that is waiting when it wakes. 50 keep-alive clients connecting at
once ended up 47 on one worker and 3 on the other, so the second core sat idle. With one
socket per worker and ``SO_REUSEPORT`` the kernel spreads connections by their addresses.

The parent only supervises: it starts the workers (spawned, so each loads its own tables),
restarts one that dies, and stops them all on SIGINT / SIGTERM. Where there is no
``SO_REUSEPORT`` :func:`supported` is False and the caller uses uvicorn's supervisor.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from types import FrameType
from typing import Any

log = logging.getLogger("fhir_checker.service")

#: A worker that dies within this many seconds of starting is not restarted: it would only
#: die again (port taken, bad configuration); the server stops with an error instead.
EARLY_EXIT_SECONDS = 20.0
STOP_GRACE_SECONDS = 15.0


def supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP listening socket that other workers may bind too (``SO_REUSEPORT``).

    ``proto`` is ``IPPROTO_TCP``: asyncio then sets ``TCP_NODELAY`` on every connection.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def _worker(app: str, server: dict[str, Any]) -> None:  # pragma: no cover - runs in a child
    import uvicorn

    sock = listening_socket(server["host"], server["port"], server["backlog"])
    config = uvicorn.Config(app, factory=True, **server)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(count: int, app: str, server: dict[str, Any]) -> int:
    """Run ``count`` workers serving the app factory ``app`` until a signal; the exit code."""
    # Fail here, not in N children, when something already listens on the port (a plain
    # bind: it fails even against a SO_REUSEPORT listener; never listening, so it takes no
    # connections).
    probe = socket.socket(socket.AF_INET6 if ":" in server["host"] else socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((server["host"], server["port"]))
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", server["host"], server["port"], exc.strerror)
        return 1
    finally:
        probe.close()

    spawn = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> tuple[multiprocessing.process.BaseProcess, float]:
        proc = spawn.Process(target=_worker, args=(app, server), name="fhir-checker-worker")
        proc.start()
        return proc, time.monotonic()

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    workers = [start() for _ in range(count)]
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
                workers[n] = start()
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
    return code
