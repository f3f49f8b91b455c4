"""One keep-alive HTTP/1.1 connection to an upstream, and the response it is reading.

`Connection` is the asyncio protocol: it writes a whole request, feeds what arrives to
llhttp (httptools, which uvicorn also uses; chunked transfer-encoding included) and hands
the head and the body to a `Response`. It also keeps the read timeout: `read_timeout`
bounds each wait for bytes, so a stream that keeps producing is never cut off while one
that stalls is. The pool it belongs to (`HttpClient`) decides when it is opened, reused
and closed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Hashable
from typing import Protocol, cast

import httptools

__all__ = [
    "ConnectFailed",
    "Connection",
    "ConnectionDropped",
    "HttpClientError",
    "Pool",
    "ProtocolViolation",
    "ReadTimedOut",
    "Response",
    "tls_alert",
]

# Past this many unread bytes of a response read piece by piece (`next_chunk`) the socket
# stops being read until the consumer catches up, so a slow reader cannot make the gateway
# buffer an upstream's whole stream. A body read whole (`read`) is never paused: its reader
# wants every byte in memory anyway, and a pause would wait for a consumer that waits too.
_HIGH_WATER = 256 * 1024
# How long a connection whose answer is over (an SSE `[DONE]`) may wait for the end of the
# HTTP body before it is given up: an upstream sends it right after, and a connection that
# is kept saves a new TCP (and TLS) handshake on the next call.
_LINGER_S = 1.0


class HttpClientError(Exception):
    """The upstream could not be reached or did not answer as HTTP."""


class ConnectFailed(HttpClientError):
    """No connection: refused, unresolvable, a failed TLS handshake (`tls`; `untrusted` when
    the upstream's certificate could not be verified), a proxy that refused the tunnel, or
    connect timeout (`timed_out`)."""

    def __init__(
        self,
        message: str,
        *,
        timed_out: bool = False,
        tls: bool = False,
        untrusted: bool = False,
        tls_alert: str | None = None,
    ) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.tls = tls or untrusted or tls_alert is not None
        self.untrusted = untrusted
        # The TLS alert the upstream ended the handshake with ("unknown ca"), if any.
        self.tls_alert = tls_alert


class ReadTimedOut(HttpClientError, TimeoutError):
    """The upstream sent nothing for `read_timeout` seconds."""


class ConnectionDropped(HttpClientError):
    """The connection closed before the response was complete; `answered` when its head
    (status and headers) had already arrived. `tls_alert` is the TLS alert that ended it,
    when one did: with TLS 1.3 an upstream that refuses the client certificate (none sent,
    or one it does not trust) says so only after the handshake, as the request arrives."""

    def __init__(self, message: str, *, answered: bool, tls_alert: str | None = None) -> None:
        super().__init__(message)
        self.answered = answered
        self.tls_alert = tls_alert


class ProtocolViolation(HttpClientError):
    """The upstream's bytes are not a valid HTTP/1.1 response."""


class Pool(Protocol):
    """What a connection needs of the pool that owns it."""

    @property
    def read_timeout(self) -> float: ...

    def park(self, connection: Connection) -> None:
        """`connection` finished a response and may serve the next request."""

    def retire(self, connection: Connection) -> None:
        """`connection` is closed: count it out (called at least once, maybe more)."""


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
        "_whole",
        "chunks",
        "headers",
        "status",
    )

    def __init__(self, connection: Connection) -> None:
        self._connection: Connection | None = connection
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: HttpClientError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._whole = False  # read whole: no high-water mark

    async def read(self) -> bytes:
        """The whole body."""
        self._whole = True
        if self._connection is not None:
            self._connection.resume()  # paused before `read` was called: nobody else will
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
        """Keep `data`; False once a piece-by-piece consumer is `_HIGH_WATER` bytes behind."""
        self.chunks.append(data)
        self._size += len(data)
        self._wake()
        return self._whole or self._size < _HIGH_WATER

    def _complete(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, error: HttpClientError) -> None:
        if not self._done:
            self._error = error
            self._wake()


class Connection(asyncio.Protocol):
    """One keep-alive connection, serving one request at a time; also httptools' callbacks."""

    def __init__(self, pool: Pool, key: Hashable) -> None:
        self._client = pool
        self.key = key
        # Served a response before the current one: it was taken from the idle pool.
        self.reused = False
        # Some byte of the current response arrived (a silent death before any is a
        # stale keep-alive connection, which the client may replay on a fresh one).
        self.heard = False
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
        self.heard = False
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
            self.reused = True
            self._client.park(self)
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
            self._client.retire(self)

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
        self.heard = True
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
                alert = tls_alert(exc)
                if alert is not None:
                    reason = f": the upstream sent the TLS alert {alert!r}"
                self._fail(
                    ConnectionDropped(
                        f"connection closed {what}{reason}", answered=answered, tls_alert=alert
                    )
                )
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._client.retire(self)

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


def tls_alert(exc: BaseException | None) -> str | None:
    """The alert in an `ssl.SSLError` such as `TLSV13_ALERT_CERTIFICATE_REQUIRED`, as
    "certificate required"; None for anything that is not a TLS alert."""
    if not isinstance(exc, ssl.SSLError):
        return None
    reason = exc.reason or ""
    _, found, alert = reason.partition("_ALERT_")
    if not found:
        return None
    return alert.lower().replace("_", " ")
