"""What every HTTP dialect shares: one pooled aiohttp session, SSE framing, transport errors.

The `openai`, `anthropic` and `gemini` dialects differ in paths, headers and bodies, not in
how connections are pooled, how a server-sent-event stream is cut into events, or how a
timeout or a dropped connection is reported. `HttpUpstream` holds that part; a dialect
subclasses it and adds its translation. Events are yielded as they arrive, one at a time:
nothing is buffered beyond the event being read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import aiohttp
import orjson

from crossroads.providers.base import UpstreamError

__all__ = ["HttpSettings", "HttpUpstream", "SseEvent", "decode_json", "parse_retry_after"]

SseEvent = tuple[str, bytes]  # (event name, "message" when unnamed; the data payload)


class HttpSettings(Protocol):
    """The connection settings every HTTP provider config carries."""

    @property
    def connect_timeout(self) -> float: ...
    @property
    def read_timeout(self) -> float: ...
    @property
    def max_connections(self) -> int: ...


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `Retry-After` (seconds form)."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    if (seconds := headers.get("Retry-After")) is not None:
        try:
            return max(float(seconds), 0.0)
        except ValueError:
            return None
    return None


def decode_json(provider: str, data: bytes, what: str) -> dict[str, Any]:
    """A JSON object from the upstream, or `UpstreamError(failure="malformed")`."""
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            f"upstream {provider!r} sent {what} that is not JSON: {data[:200]!r}",
            failure="malformed",
        ) from None
    if not isinstance(decoded, dict):
        raise UpstreamError(
            f"upstream {provider!r} sent {what} that is not a JSON object", failure="malformed"
        )
    return decoded


class HttpUpstream:
    """A provider reached over HTTP; subclasses set `dialect` and implement the calls."""

    dialect = ""

    def __init__(self, name: str, settings: HttpSettings) -> None:
        self.name = name
        self.not_ready_reason = ""
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def ready(self) -> bool:
        return self._session is not None

    async def start(self) -> None:
        settings = self._settings
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.max_connections, keepalive_timeout=60, enable_cleanup_closed=False
            ),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
            ),
            skip_auto_headers=("User-Agent",),
            # Upstream APIs authenticate by header; a cookie jar would only cost time on
            # every request and response.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def post(
        self, url: str, body: Any, headers: Mapping[str, str], sent: list[Any] | None = None
    ) -> Any:
        """Start a POST (an async context manager yielding the response).

        `sent`, when given, receives the body exactly as sent (`debug.echo_upstream_body`).
        """
        if sent is not None:
            sent.append(body)
        if self._session is None:
            raise UpstreamError(f"provider {self.name!r} is not started", failure="connection")
        return self._session.post(url, data=orjson.dumps(body), headers=headers)

    async def events(self, response: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
        """The response body as server-sent events, each yielded as soon as it is complete.

        Handles `event:` names and multi-line `data:`; comments and `id:`/`retry:` fields
        are skipped. A final event without its blank line is still delivered.
        """
        name = "message"
        data: list[bytes] = []
        async for raw_line in response.content:
            line = raw_line.rstrip(b"\r\n")
            if not line:
                if data:
                    yield name, b"\n".join(data)
                name, data = "message", []
                continue
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif line.startswith(b"event:"):
                name = line[6:].strip().decode("utf-8", "replace")
        if data:
            yield name, b"\n".join(data)

    def transport_error(self, exc: Exception) -> UpstreamError:
        """A timeout or connection failure of aiohttp's, in our terms."""
        if isinstance(exc, TimeoutError):
            message = f"upstream {self.name!r} timed out: {exc}".rstrip(": ")
            return UpstreamError(message, failure="timeout")
        if isinstance(exc, aiohttp.ClientPayloadError):
            message = f"upstream {self.name!r} closed the connection mid-answer: {exc}"
            return UpstreamError(message, failure="stream_interrupted")
        return UpstreamError(f"could not reach upstream {self.name!r}: {exc}", failure="connection")

    def interrupted(self) -> UpstreamError:
        return UpstreamError(
            f"upstream {self.name!r} ended the stream before the answer was complete",
            failure="stream_interrupted",
        )
