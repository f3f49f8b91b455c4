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

Proxies (`ProxyRules`): an `http://` upstream is asked for through the proxy in absolute
form (`POST http://host/path`); an `https://` one through a CONNECT tunnel with TLS to the
upstream inside it. Connections are pooled per upstream and proxy alike.

A stale keep-alive connection: an upstream may close a connection it kept idle just as a
request is written to it. When a connection taken from the idle pool dies before a single
byte of the answer has arrived, the upstream cannot have answered, so the request is sent
once more on a fresh connection and the caller never sees the failure (`stale_retries`
counts them). Once any byte has arrived, or on a new connection, a failure is the caller's
to handle: a chat completion is never replayed after the upstream began to answer.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Hashable, Mapping
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
    tls_alert,
)
from crossroads.providers.http_tunnel import TunnelRefused, open_tunnel
from crossroads.providers.proxy import Proxy, ProxyRules

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
    """Where a URL points: the pool key, the request line's start and the `Host` header."""

    host: str
    port: int
    tls: bool
    proxy: Proxy | None
    # "POST <target> HTTP/1.1\r\nHost: …\r\n", with Proxy-Authorization when one is due.
    head: str

    @property
    def key(self) -> Hashable:
        return (self.host, self.port, self.tls, self.proxy)


def _target(url: str, proxies: ProxyRules | None) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    proxy = proxies.for_target(tls, parts.hostname, port) if proxies else None
    if proxy is None or tls:  # direct, or inside a tunnel: the upstream reads the request
        head = f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\n"
    else:  # the proxy reads it: the absolute form tells it where to
        head = f"POST http://{host_header}{path} HTTP/1.1\r\nHost: {host_header}\r\n"
        if proxy.authorization:
            head += f"Proxy-Authorization: {proxy.authorization}\r\n"
    return _Target(parts.hostname, port, tls, proxy, head)


class HttpClient:
    """Pooled keep-alive connections, at most `max_connections` open at once (callers past
    that wait for one to be free); idle connections are reused for `keepalive` seconds.
    `https://` URLs are verified against `tls`, by default the system's trusted roots;
    `proxies` says which upstreams are reached through which proxy (none by default)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        keepalive: float = 60.0,
        tls: ssl.SSLContext | None = None,
        proxies: ProxyRules | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._idle: dict[Hashable, list[Connection]] = {}
        self._open = 0  # connections opening or open, idle or busy
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._targets: dict[str, _Target] = {}
        self._tls = tls
        self._proxies = proxies
        self._closed = False
        self.stale_retries = 0  # requests replayed after a kept-alive connection died

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        """POST `body`; returns once the response head is in. Raises `HttpClientError`
        (and `ValueError` for a URL or header that cannot be sent).

        Sent once more on a fresh connection, and only then, when a kept-alive connection
        dies before any byte of the answer arrived (see the module docstring)."""
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _target(url, self._proxies)
        # `identity`: answers arrive uncompressed, so they are forwarded as they come.
        head = [target.head, "Accept-Encoding: identity\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} contains a line break")
            head.append(f"{name}: {value}\r\n")
        head.append(f"Content-Length: {len(body)}\r\n\r\n")
        data = "".join(head).encode("latin-1") + body
        connection = await self._acquire(target)
        try:
            return await connection.send(data)
        except ConnectionDropped:
            connection.close()
            if not connection.reused or connection.heard:
                raise
        except BaseException:
            connection.close()  # cancelled or failed mid-request: the connection is spent
            raise
        # The upstream closed the idle connection as the request reached it: it never
        # answered, so the request is replayed, once, on a connection opened for it.
        self.stale_retries += 1
        connection = await self._acquire(target, reuse=False)
        try:
            return await connection.send(data)
        except BaseException:
            connection.close()
            raise

    async def aclose(self) -> None:
        self._closed = True
        for connections in list(self._idle.values()):
            for connection in list(connections):
                connection.close()
        self._idle.clear()

    # --- the pool ------------------------------------------------------------------------

    async def _acquire(self, target: _Target, *, reuse: bool = True) -> Connection:
        key = target.key
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise ConnectFailed("the client is closed")
            idle = self._idle.get(key) if reuse else None
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

    async def _connect(self, target: _Target, key: Hashable) -> Connection:
        connection = Connection(self, key)
        tls = None
        if target.tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        where = f"{target.host}:{target.port}"
        if target.proxy is not None:
            where += f" through the proxy {target.proxy.shown}"
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._dial(connection, target, tls)
        except TimeoutError:
            self.retire(connection)
            raise ConnectFailed(
                f"no connection to {where} within {self.connect_timeout:g} s (connect_timeout)",
                timed_out=True,
            ) from None
        except ssl.SSLCertVerificationError as exc:
            self.retire(connection)
            raise ConnectFailed(
                f"TLS: the certificate of {target.host}:{target.port} could not be verified: "
                f"{exc.verify_message or exc.reason}",
                untrusted=True,
            ) from None
        except ssl.SSLError as exc:
            self.retire(connection)
            alert = tls_alert(exc)
            reason = f"the upstream sent the TLS alert {alert!r}" if alert else exc.reason or exc
            raise ConnectFailed(
                f"TLS handshake with {where} failed: {reason}", tls=True, tls_alert=alert
            ) from None
        except TunnelRefused as exc:
            self.retire(connection)
            raise ConnectFailed(f"no tunnel to {where}: {exc}") from None
        except OSError as exc:
            self.retire(connection)
            raise ConnectFailed(f"cannot connect to {where}: {exc}") from None
        except BaseException:
            self.retire(connection)
            raise
        return connection

    async def _dial(
        self, connection: Connection, target: _Target, tls: ssl.SSLContext | None
    ) -> None:
        """Connect `connection` to `target`: directly, or through its proxy (a CONNECT
        tunnel for TLS, the proxy itself for plain HTTP)."""
        loop = asyncio.get_running_loop()
        proxy = target.proxy
        if proxy is None:
            await loop.create_connection(
                lambda: connection,
                target.host,
                target.port,
                ssl=tls,
                server_hostname=target.host if tls else None,
            )
        elif tls is None:
            await loop.create_connection(lambda: connection, proxy.host, proxy.port)
        else:
            tunnel = await open_tunnel(proxy, target.host, target.port)
            try:
                inner = await loop.start_tls(tunnel, connection, tls, server_hostname=target.host)
            except BaseException:
                tunnel.close()
                raise
            if inner is None:  # the loop gave no TLS transport: nothing to speak over
                tunnel.close()
                raise ConnectionResetError("the TLS upgrade of the proxy tunnel failed")
            connection.connection_made(inner)

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
