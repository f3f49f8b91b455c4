"""What every HTTP dialect shares: one pooled client, SSE framing, upstream errors.

The `openai`, `anthropic` and `gemini` dialects differ in paths, headers and bodies, not in
how connections are pooled, how a server-sent-event stream is cut into events, or how a
timeout, a dropped connection or an error status is reported. `HttpUpstream` holds that
part; a dialect subclasses it and adds its translation. Events are yielded as they arrive,
one at a time: nothing is buffered beyond the event being read.

The connections are `HttpClient`'s (see `http_client` for why it is not aiohttp's); a
provider's proxy and TLS settings only configure it (`transport`).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import orjson

from crossroads.providers.base import UpstreamError
from crossroads.providers.http_client import (
    ConnectFailed,
    ConnectionDropped,
    HttpClient,
    HttpClientError,
    Response,
)
from crossroads.providers.transport import TransportSettings, client_options

__all__ = [
    "HttpSettings",
    "HttpUpstream",
    "SseEvent",
    "decode_json",
    "parse_retry_after",
    "redact_credentials",
    "retry_delay",
    "upstream_error_from_body",
    "upstream_error_from_envelope",
]

SseEvent = tuple[str, bytes]  # (event name, "message" when unnamed; the data payload)
# A google.protobuf.Duration in JSON: seconds with up to nine fractional digits, then "s".
_DURATION = re.compile(r"(\d{1,12}(?:\.\d{0,9})?)s")

# Header names that carry a credential: Authorization, x-api-key, x-goog-api-key, api-key,
# and any configured header naming a key, token or secret.
_CREDENTIAL_HEADER = re.compile(r"auth|key|token|secret", re.IGNORECASE)
REDACTED = "[redacted]"


def redact_credentials(text: str, headers: Mapping[str, str]) -> str:
    """`text` with every credential sent in `headers` (whole value, and the token after a
    scheme such as `Bearer`) replaced by `[redacted]`."""
    secrets: set[str] = set()
    for name, value in headers.items():
        if _CREDENTIAL_HEADER.search(name) and len(value) >= 4:
            secrets.add(value)
            token = value.partition(" ")[2].strip()
            if len(token) >= 4:
                secrets.add(token)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


_TLS_CODE = "upstream_tls_error"


class HttpSettings(TransportSettings, Protocol):
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
    if (seconds := headers.get("retry-after")) is not None:
        try:
            return max(float(seconds), 0.0)
        except ValueError:
            return None
    return None


def retry_delay(error: Mapping[str, Any]) -> float | None:
    """Seconds to wait, from a google.rpc.RetryInfo in a Google error's `details`.

    Google says when to retry only there (`"retryDelay": "17s"`, a protobuf Duration in
    JSON), never in a `Retry-After` header.
    """
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and (match := _DURATION.fullmatch(delay.strip())):
                return float(match[1])
    return None


def upstream_error_from_body(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> UpstreamError:
    """Keep the upstream's own message and code when it sent an error envelope.

    Understands OpenAI's `{"error": {"message", "code", "param"}}`, Anthropic's
    `{"type": "error", "error": {"type", "message"}}` and Google's
    `{"error": {"code": 400, "message", "status", "details"}}`. Header names are matched in
    lower case.
    """
    message = body[:2000].decode("utf-8", "replace").strip() or f"HTTP {status}"
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = None
    return upstream_error_from_envelope(status, decoded, message, headers)


def upstream_error_from_envelope(
    status: int,
    decoded: Any,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    in_stream: bool = False,
) -> UpstreamError:
    """The `UpstreamError` for an error envelope already decoded (see
    `upstream_error_from_body`); `message` stands when the envelope has none. `in_stream`:
    it came as an event inside a stream whose HTTP status was 200, and `status` is the one
    the same error has without streaming, so both paths surface and route it alike."""
    code: str | None = None
    param: str | None = None
    retry_after = parse_retry_after(headers or {})
    if isinstance(decoded, dict):
        error = decoded.get("error", decoded)
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            # OpenAI's `code`; else Anthropic's error `type` or Google's `status` name.
            kind = "type" if decoded.get("type") == "error" else "status"
            for field in ("code", kind):
                if isinstance(error.get(field), str):
                    code = error[field]
                    break
            param = error.get("param") if isinstance(error.get("param"), str) else None
            if retry_after is None:
                retry_after = retry_delay(error)
        elif isinstance(error, str):
            message = error
    return UpstreamError(
        message,
        failure="http",
        status=status,
        retry_after=retry_after,
        code=code,
        param=param,
        in_stream=in_stream,
    )


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


async def _error_status(response: Response) -> UpstreamError:
    return upstream_error_from_body(response.status, await response.read(), response.headers)


class HttpUpstream:
    """A provider reached over HTTP; subclasses set `dialect` and implement the calls.

    `post_json` and `open_stream` raise only `UpstreamError`: an error status with the
    upstream's own message, a timeout, a refused or dropped connection.
    """

    dialect = ""

    def __init__(self, name: str, settings: HttpSettings) -> None:
        self.name = name
        self.not_ready_reason = ""
        self._settings = settings
        self._client: HttpClient | None = None

    @property
    def ready(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        settings = self._settings
        tls, proxies = client_options(self.name, settings, os.environ)
        self._client = HttpClient(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_connections=settings.max_connections,
            tls=tls,
            proxies=proxies,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _post(
        self, url: str, body: Any, headers: Mapping[str, str], sent: list[Any] | None
    ) -> Response:
        """POST `body` as JSON; the response once its head is in, its status below 400.

        `sent`, when given, receives the body exactly as sent (`debug.echo_upstream_body`).
        """
        if sent is not None:
            sent.append(body)
        if self._client is None:
            raise UpstreamError(f"provider {self.name!r} is not started", failure="connection")
        try:
            response = await self._client.post(url, headers, orjson.dumps(body))
            if response.status >= 400:
                raise await _error_status(response)
        except UpstreamError as exc:
            # Upstreams quote the credential they were sent ("Incorrect API key: sk-…");
            # the message is logged and returned to the caller, so the key is cut out.
            exc.message = redact_credentials(exc.message, headers)
            exc.args = (exc.message,)
            raise
        except HttpClientError as exc:
            raise self.transport_error(exc) from None
        except ValueError as exc:  # a header value no HTTP request can carry
            message = redact_credentials(f"cannot call upstream {self.name!r}: {exc}", headers)
            raise UpstreamError(message, failure="connection") from None
        return response

    async def post_json(
        self, url: str, body: Any, headers: Mapping[str, str], sent: list[Any] | None = None
    ) -> tuple[int, bytes]:
        """POST `body` and read the whole answer: its status (below 400) and its bytes."""
        response = await self._post(url, body, headers, sent)
        try:
            return response.status, await response.read()
        except HttpClientError as exc:
            raise self.transport_error(exc) from None

    @contextlib.asynccontextmanager
    async def open_stream(
        self, url: str, body: Any, headers: Mapping[str, str], sent: list[Any] | None = None
    ) -> AsyncIterator[Response]:
        """POST `body` and hold the response open, for `events`; the connection is released
        when the block ends (and closed if the body was not read to its end)."""
        response = await self._post(url, body, headers, sent)
        try:
            yield response
        finally:
            response.release()

    async def events(self, response: Response) -> AsyncIterator[SseEvent]:
        """The response body as server-sent events, each yielded as soon as it is complete.

        Handles `event:` names and multi-line `data:`; comments and `id:`/`retry:` fields
        are skipped. A final event without its blank line is still delivered.
        """
        name = "message"
        data: list[bytes] = []
        pending = b""
        while True:
            try:
                chunk = await response.next_chunk()
            except HttpClientError as exc:
                raise self.transport_error(exc) from None
            if chunk is None:
                lines = [pending] if pending else []
            else:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
            for raw_line in lines:
                line = raw_line.rstrip(b"\r")
                if not line:
                    if data:
                        yield name, b"\n".join(data)
                    name, data = "message", []
                elif line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
                elif line.startswith(b"event:"):
                    name = line[6:].strip().decode("utf-8", "replace")
            if chunk is None:
                break
        if data:
            yield name, b"\n".join(data)

    def transport_error(self, exc: HttpClientError) -> UpstreamError:
        """A timeout or connection failure of the HTTP client's, in our terms."""
        if isinstance(exc, TimeoutError) or (isinstance(exc, ConnectFailed) and exc.timed_out):
            return UpstreamError(f"upstream {self.name!r} timed out: {exc}", failure="timeout")
        if isinstance(exc, ConnectionDropped) and exc.answered:
            message = f"upstream {self.name!r} closed the connection mid-answer: {exc}"
            return UpstreamError(message, failure="stream_interrupted")
        if isinstance(exc, ConnectionDropped) and exc.tls_alert is not None:
            return UpstreamError(
                self._tls_alert_message(exc.tls_alert), failure="connection", code=_TLS_CODE
            )
        if isinstance(exc, ConnectFailed) and exc.tls:
            message = f"could not reach upstream {self.name!r}: {exc}"
            if exc.untrusted:
                message += (
                    f" (if a private CA signed the upstream's certificate, name it in "
                    f"providers.{self.name}.ca_bundle)"
                )
            elif exc.tls_alert is not None:
                # TLS 1.2 refuses a client certificate inside the handshake.
                message += f": {self._tls_fix(exc.tls_alert)}"
            return UpstreamError(message, failure="connection", code=_TLS_CODE)
        return UpstreamError(f"could not reach upstream {self.name!r}: {exc}", failure="connection")

    def _tls_alert_message(self, alert: str) -> str:
        message = f"upstream {self.name!r} ended the TLS connection with the alert {alert!r}"
        return f"{message}: {self._tls_fix(alert)}"

    def _tls_fix(self, alert: str) -> str:
        """What a TLS alert from the upstream means for this provider, and what to change."""
        where = f"providers.{self.name}"
        client_side = ("certificate", "unknown ca", "access denied", "handshake failure")
        if not any(word in alert for word in client_side):
            return f"check {where}'s TLS settings (ca_bundle, client_cert, verify)"
        if self._settings.client_cert:
            return (
                f"it refused the client certificate in {where}.client_cert: use one signed by "
                f"a CA the upstream trusts, not expired, with its key in {where}.client_key"
            )
        return (
            "it may require a client certificate (mutual TLS) and none is configured: set "
            f"{where}.client_cert and {where}.client_key"
        )

    def interrupted(self) -> UpstreamError:
        return UpstreamError(
            f"upstream {self.name!r} ended the stream before the answer was complete",
            failure="stream_interrupted",
        )
