"""uvicorn's HTTP protocols with ``TCP_NODELAY`` on every connection, whoever made the socket,
and a count of open connections for ``serve --workers`` (see :mod:`.workers`).

asyncio sets ``TCP_NODELAY`` only on sockets whose ``proto`` is ``IPPROTO_TCP``. With
``--workers N`` uvicorn binds the listening socket itself as ``socket.socket(family)``
(``proto`` 0), so the connections the workers accept keep Nagle's algorithm on. A response
goes out as two writes (head, then body); the body waits for the client's delayed ACK, and
every request took 44 ms at one client instead of 0.7 (``bench_http.py --workers 2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # httptools is a dependency; without it, --http h11 still works
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - only where httptools is missing
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


#: Called when a connection closes: a worker's :class:`~.workers.BalancedListener` keeps its
#: count of open connections with it. None in a single-process server.
on_connection_lost: Callable[[], None] | None = None


def _closed() -> None:
    if on_connection_lost is not None:
        on_connection_lost()


def _no_delay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connection(asyncio.Protocol):
    """What both protocols add to uvicorn's: ``TCP_NODELAY``, and closed connections reported."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _no_delay(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        _closed()
        super().connection_lost(exc)


class NoDelayH11Protocol(_Connection, H11Protocol):
    pass


if HttpToolsProtocol is not None:

    class NoDelayHttpToolsProtocol(_Connection, HttpToolsProtocol):
        pass


def protocol_for(name: str) -> str:
    """The import string of the protocol class for ``--http`` (auto: httptools when installed)."""
    if name == "h11" or (name == "auto" and HttpToolsProtocol is None):
        return f"{__name__}:NoDelayH11Protocol"
    return f"{__name__}:NoDelayHttpToolsProtocol"
