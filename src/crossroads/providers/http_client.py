"""A lean HTTP/1.1 client for upstream calls: keep-alive pools on asyncio, parsing by httptools.

Every proxied request makes one upstream call, so the client's own cost is paid on every
request. Measured against the benchmark's mock upstream, aiohttp's client spent about 385k
interpreter instructions per call (URL objects, multidicts, tracing hooks, timers, a
payload writer, a stream reader); a Rust-backed client (pyreqwest) spent 130k but runs its
own runtime thread, and that thread could abort the interpreter as it exited. This client
does only what an upstream call needs: a POST with a JSON body on a pooled keep-alive
connection, the response head, and the body either whole or as it arrives. Parsing is
llhttp's (httptools, which uvicorn also uses), including chunked transfer-encoding.

Timeouts: `connect_timeout` bounds opening a connection (and its TLS handshake);
`read_timeout` bounds each wait for bytes from the upstream, so a stream that keeps
producing is never cut off, while one that stalls is. `Accept-Encoding: identity` is sent, so
answers arrive uncompressed and are forwarded as they come.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = [
    "ConnectFailed",
    "ConnectionDropped",
    "HttpClient",
    "HttpClientError",
    "ProtocolViolation",
    "ReadTimedOut",
    "Response",
]

# Past this many unread bytes of a response the socket stops being read until the consumer
# catches up, so a slow reader cannot make the gateway buffer an upstream's whole answer.
_HIGH_WATER = 256 * 1024
# How long a connection whose answer is over (an SSE `[DONE]`) may wait for the end of the
# HTTP body before it is given up: an upstream sends it right after, and a connection that
# is kept saves a new TCP (and TLS) handshake on the next call.
_LINGER_S = 1.0


class HttpClientError(Exception):
    """The upstream could not be reached or did not answer as HTTP."""


class ConnectFailed(HttpClientError):
    """No connection: refused, unresolvable, a failed TLS handshake, or connect timeout."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class ReadTimedOut(HttpClientError, TimeoutError):
    """The upstream sent nothing for `read_timeout` seconds."""


class ConnectionDropped(HttpClientError):
    """The connection closed before the response was complete; `answered` when its head
    (status and headers) had already arrived."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


class ProtocolViolation(HttpClientError):
    """The upstream's bytes are not a valid HTTP/1.1 response."""


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


class Response:
    """One response: `status` and `headers` (names in lower case) as soon as the head has
    arrived; the body through `read()` (whole) or `next_chunk()` (as it arrives).

    `release()` hands the connection back to the pool when the body was read to its end,
    and closes it otherwise; `read()` releases by itself, and so does reading the last
    chunk, so only a consumer that stops early needs to call it.
    """

    __slots__ = (
        "_connection",
        "_done",
        "_error",
        "_size",
        "_waiter",
        "chunks",
        "headers",
        "status",
    )

    def __init__(self, connection: _Connection) -> None:
        self._connection: _Connection | None = connection
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: HttpClientError | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def read(self) -> bytes:
        """The whole body."""
        try:
            while not self._done:
                await self._wait()
        finally:
            self.release()
        return b"".join(self.chunks)

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body as it arrived, or None after the last."""
        while not self.chunks:
            if self._done:
                self.release()
                return None
            try:
                await self._wait()
            except BaseException:
                self.release()
                raise
        chunk = self.chunks.popleft()
        self._size -= len(chunk)
        if self._size < _HIGH_WATER and self._connection is not None:
            self._connection.resume()
        return chunk

    def release(self, *, ended: bool = False) -> None:
        """Done with this response. `ended`: the consumer saw the answer's own end (say, an
        SSE `[DONE]`) before the body's, so the connection may be kept if the body's end
        follows at once; otherwise an unfinished body closes it, which also tells the
        upstream to stop generating."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if ended and not self._done and self._error is None:
            connection.linger()
        else:
            connection.finish(reusable=self._done and self._error is None)

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    # --- fed by the connection ------------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _body(self, data: bytes) -> bool:
        """Keep `data`; False once the consumer is `_HIGH_WATER` bytes behind."""
        self.chunks.append(data)
        self._size += len(data)
        self._wake()
        return self._size < _HIGH_WATER

    def _complete(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, error: HttpClientError) -> None:
        if not self._done:
            self._error = error
            self._wake()


class _Connection(asyncio.Protocol):
    """One keep-alive connection, serving one request at a time; also httptools' callbacks."""

    def __init__(self, client: HttpClient, key: tuple[str, int, bool]) -> None:
        self._client = client
        self.key = key
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.retired = False  # counted out of the client's pool
        self.idle_since = 0.0
        self._response: Response | None = None
        self._head: asyncio.Future[Response] | None = None
        self._header_name = ""
        self._length_known = False  # Content-Length or chunked: the end is not the close
        self._keep_alive = False  # as the response head says (llhttp forgets after the body)
        self._paused = False
        self._lingering = False
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # --- the request ---------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[Response]:
        """Write one whole request; the future resolves with the response once its head is in."""
        assert self.transport is not None and self._response is None
        self._response = Response(self)
        self._head = self._loop.create_future()
        self._length_known = False
        self._last_read = self._loop.time()
        self._arm_timer()
        self.transport.write(data)
        return self._head

    def finish(self, *, reusable: bool) -> None:
        """The consumer is done with the current response."""
        self._lingering = False
        self._response = None
        self._head = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if reusable and self._keep_alive and not self.closed:
            self.resume()
            self._client._park(self)
        else:
            self.close()

    def linger(self) -> None:
        """Read on, discarding, until the body ends (then park) or `_LINGER_S` passes (close)."""
        self._lingering = True
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(_LINGER_S, self.close)
        self.resume()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self._client._retire(self)

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    # --- the read timeout ----------------------------------------------------------------

    def _arm_timer(self) -> None:
        self._timer = self._loop.call_at(
            self._last_read + self._client.read_timeout, self._check_timeout
        )

    def _check_timeout(self) -> None:
        if self._response is None or self._response._done:
            self._timer = None
            return
        if self._paused or self._loop.time() - self._last_read < self._client.read_timeout:
            self._arm_timer()  # still reading, or waiting for the consumer, not for the upstream
            return
        self._timer = None
        timeout = self._client.read_timeout
        self._fail(ReadTimedOut(f"no data for {timeout:g} s (read_timeout)"))
        self.close()

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        if self._response is None:
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolViolation(f"invalid HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        response = self._response
        if response is not None and not response._done:
            if response.status and not self._length_known:
                response._complete()  # a body delimited by the end of the connection
            else:
                reason = f": {exc}" if exc else ""
                answered = bool(response.status)
                what = "mid-response" if answered else "before answering"
                self._fail(
                    ConnectionDropped(f"connection closed {what}{reason}", answered=answered)
                )
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._client._retire(self)

    def pause_writing(self) -> None:  # request bodies are small; the transport buffers them
        pass

    # --- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._response is not None
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self._response.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if key == "content-length" or (key == "transfer-encoding" and "chunked" in text):
            self._length_known = True

    def on_headers_complete(self) -> None:
        response = self._response
        assert response is not None
        response.status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        if response.status in (204, 304):
            self._length_known = True
        if self._head is not None and not self._head.done():
            self._head.set_result(response)

    def on_body(self, body: bytes) -> None:
        assert self._response is not None
        if self._lingering:
            return  # the rest of an answer nobody reads any more
        if not self._response._body(body) and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._lingering:
            self.finish(reusable=True)
        elif self._response is not None:
            self._response._complete()

    def _fail(self, error: HttpClientError) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        if self._response is not None:
            self._response._fail(error)


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
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._open = 0  # connections opening or open, idle or busy
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._targets: dict[str, _Target] = {}
        self._tls = tls
        self._closed = False

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Response:
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

    async def _acquire(self, target: _Target) -> _Connection:
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

    async def _connect(self, target: _Target, key: tuple[str, int, bool]) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = _Connection(self, key)
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
            self._retire(connection)
            raise ConnectFailed(
                f"no connection to {target.host}:{target.port} within "
                f"{self.connect_timeout:g} s (connect_timeout)",
                timed_out=True,
            ) from None
        except OSError as exc:
            self._retire(connection)
            raise ConnectFailed(f"cannot connect to {target.host}:{target.port}: {exc}") from None
        except BaseException:
            self._retire(connection)
            raise
        return connection

    def _park(self, connection: _Connection) -> None:
        if self._closed:
            connection.close()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(connection.key, []).append(connection)
        self._wake_one()

    def _retire(self, connection: _Connection) -> None:
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
