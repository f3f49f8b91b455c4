"""A lean HTTP/1.1 client for upstream calls: keep-alive pools on asyncio, parsing by httptools.

Every proxied request makes one upstream call, so the client's own cost is paid on every
request. Measured against the benchmark's mock upstream, aiohttp's client spent about 385k
interpreter instructions per call (URL objects, multidicts, tracing hooks, timers, a
payload writer, a stream reader); a Rust-backed client (pyreqwest) spent 130k but runs its
own runtime thread, and that thread could abort the interpreter as it exited. This client
does only what an upstream call needs: a POST with a JSON body on a pooled keep-alive
connection, the response head, and the body either whole or as it arrives. Parsing is
llhttp's (httptools, which uvicorn also uses), including chunked transfer-encoding. This module
is the pool; `http_connection` is one connection and the response it reads.

Timeouts: `connect_timeout` bounds opening a connection (and its TLS handshake), and
`read_timeout` bounds each wait for bytes from the upstream, so a stream that keeps
producing is never cut off, while one that stalls is. `Accept-Encoding: identity` is sent, so
answers arrive uncompressed and are forwarded as they come.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from crossroads.providers.http_connection import (
    ConnectFailed,
    Connection,
    ConnectionDropped,
    HttpClientError,
    ProtocolViolation,
    ReadTimedOut,
    Response,
)

__all__ = [
    "ConnectFailed",
    "ConnectionDropped",
    "HttpClient",
    "HttpClientError",
    "ProtocolViolation",
    "ReadTimedOut",
    "Response",
]


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a URL points: the pool key, the `Host` header and the request target."""

    host: str
    port: int
    tls: bool
    host_header: str
    path: str


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.hostname, port, tls, parts.netloc.rpartition("@")[2], path)


class HttpClient:
    """Pooled keep-alive connections, at most `max_connections` open at once (callers past
    that wait for one to be free); idle connections are reused for `keepalive` seconds.
    `https://` URLs are verified against `tls`, by default the system's trusted roots."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        keepalive: float = 60.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._idle: dict[tuple[str, int, bool], list[Connection]] = {}
        self._open = 0  # connections opening or open, idle or busy
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._targets: dict[str, _Target] = {}
        self._tls = tls
        self._closed = False

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        """POST `body`; returns once the response head is in. Raises `HttpClientError`
        (and `ValueError` for a URL or header that cannot be sent)."""
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _target(url)
        # `identity`: answers arrive uncompressed, so they are forwarded as they come.
        head = [
            f"POST {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
            "Accept-Encoding: identity\r\n"
        ]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} contains a line break")
            head.append(f"{name}: {value}\r\n")
        head.append(f"Content-Length: {len(body)}\r\n\r\n")
        data = "".join(head).encode("latin-1") + body
        connection = await self._acquire(target)
        try:
            return await connection.send(data)
        except BaseException:
            connection.close()  # cancelled or failed mid-request: the connection is spent
            raise

    async def aclose(self) -> None:
        self._closed = True
        for connections in list(self._idle.values()):
            for connection in list(connections):
                connection.close()
        self._idle.clear()

    # --- the pool ------------------------------------------------------------------------

    async def _acquire(self, target: _Target) -> Connection:
        key = (target.host, target.port, target.tls)
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise ConnectFailed("the client is closed")
            idle = self._idle.get(key)
            while idle:
                connection = idle.pop()
                transport = connection.transport
                fresh = loop.time() - connection.idle_since < self._keepalive
                if fresh and transport is not None and not transport.is_closing():
                    return connection
                connection.close()
            if self._open >= self._max_connections:
                self._close_one_idle()  # an idle connection to another host makes room
            if self._open < self._max_connections:
                self._open += 1
                return await self._connect(target, key)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass on the turn this caller no longer needs
                raise

    async def _connect(self, target: _Target, key: tuple[str, int, bool]) -> Connection:
        loop = asyncio.get_running_loop()
        connection = Connection(self, key)
        tls = None
        if target.tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(
                    lambda: connection,
                    target.host,
                    target.port,
                    ssl=tls,
                    server_hostname=target.host if tls else None,
                )
        except TimeoutError:
            self.retire(connection)
            raise ConnectFailed(
                f"no connection to {target.host}:{target.port} within "
                f"{self.connect_timeout:g} s (connect_timeout)",
                timed_out=True,
            ) from None
        except OSError as exc:
            self.retire(connection)
            raise ConnectFailed(f"cannot connect to {target.host}:{target.port}: {exc}") from None
        except BaseException:
            self.retire(connection)
            raise
        return connection

    def park(self, connection: Connection) -> None:
        if self._closed:
            connection.close()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(connection.key, []).append(connection)
        self._wake_one()

    def retire(self, connection: Connection) -> None:
        """Count `connection` out of the pool, exactly once, whatever closed it."""
        if connection.retired:
            return
        connection.retired = True
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
        self._open -= 1
        self._wake_one()

    def _close_one_idle(self) -> None:
        for connections in self._idle.values():
            if connections:
                connections.pop(0).close()
                return

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
