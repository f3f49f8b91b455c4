"""The `openai` wire dialect: any OpenAI-compatible chat-completions upstream.

OpenAI itself, vLLM, llama-server, Ollama, Together, Groq, DeepSeek… differ only in
`base_url`, key and what parameters they accept, so they are configuration of this one
class, not subclasses. One pooled `aiohttp` session per upstream is opened in `start` and
closed in `aclose`. Streams are parsed one SSE event at a time and handed on as they
arrive; nothing is buffered beyond the current line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from crossroads.config import OpenAIProviderConfig
from crossroads.providers.base import Capabilities, UpstreamCall, UpstreamError

__all__ = ["OpenAIProvider", "parse_retry_after", "upstream_error_from_body"]

_DONE = b"[DONE]"


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


def upstream_error_from_body(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> UpstreamError:
    """Keep the upstream's own message and code when it sent OpenAI's error envelope."""
    message = body[:2000].decode("utf-8", "replace").strip() or f"HTTP {status}"
    code: str | None = None
    param: str | None = None
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict):
        error = decoded.get("error", decoded)
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            code = error.get("code") if isinstance(error.get("code"), str) else None
            param = error.get("param") if isinstance(error.get("param"), str) else None
        elif isinstance(error, str):
            message = error
    return UpstreamError(
        message,
        failure="http",
        status=status,
        retry_after=parse_retry_after(headers or {}),
        code=code,
        param=param,
    )


class OpenAIProvider:
    """An OpenAI-compatible upstream at `base_url`."""

    dialect = "openai"

    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        self.name = name
        self.capabilities = Capabilities(vision=True)
        self.not_ready_reason = ""
        self._config = config
        self._url = f"{config.base_url}/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    @property
    def ready(self) -> bool:
        return self._session is not None

    async def start(self) -> None:
        config = self._config
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=config.max_connections, keepalive_timeout=60, enable_cleanup_closed=False
            ),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
            ),
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            skip_auto_headers=("User-Agent",),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, call: UpstreamCall) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self._config.headers}
        key = call.api_key or self._config.api_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(call.extra_headers)
        return headers

    def _post(self, call: UpstreamCall) -> Any:
        if self._session is None:
            raise UpstreamError(f"provider {self.name!r} is not started", failure="connection")
        return self._session.post(
            self._url, data=orjson.dumps(call.body), headers=self._headers(call)
        )

    async def complete(self, call: UpstreamCall) -> dict[str, Any]:
        try:
            async with self._post(call) as response:
                body = await response.read()
                if response.status >= 400:
                    raise upstream_error_from_body(response.status, body, response.headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._transport_error(exc) from None
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"upstream {self.name!r} returned a body that is not JSON: {body[:200]!r}",
                failure="malformed",
                status=response.status,
            ) from None
        if not isinstance(decoded, dict) or not isinstance(decoded.get("choices"), list):
            raise UpstreamError(
                f"upstream {self.name!r} returned JSON that is not a chat completion",
                failure="malformed",
                status=response.status,
            )
        return decoded

    async def stream(self, call: UpstreamCall) -> AsyncIterator[dict[str, Any]]:
        saw_done = False
        saw_finish = False
        try:
            async with self._post(call) as response:
                if response.status >= 400:
                    body = await response.read()
                    raise upstream_error_from_body(response.status, body, response.headers)
                async for raw_line in response.content:
                    line = raw_line.strip()
                    if not line.startswith(b"data:"):
                        continue  # blank separators, comments (": ping"), `event:` lines
                    data = line[5:].strip()
                    if data == _DONE:
                        saw_done = True
                        break
                    chunk = self._decode_chunk(data)
                    if any(c.get("finish_reason") for c in chunk.get("choices") or ()):
                        saw_finish = True
                    yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._transport_error(exc) from None
        if not saw_done and not saw_finish:
            raise UpstreamError(
                f"upstream {self.name!r} ended the stream before the answer was complete",
                failure="stream_interrupted",
            )

    def _transport_error(self, exc: Exception) -> UpstreamError:
        """A timeout or connection failure of aiohttp's, in our terms."""
        if isinstance(exc, TimeoutError):
            message = f"upstream {self.name!r} timed out: {exc}".rstrip(": ")
            return UpstreamError(message, failure="timeout")
        if isinstance(exc, aiohttp.ClientPayloadError):
            message = f"upstream {self.name!r} closed the connection mid-answer: {exc}"
            return UpstreamError(message, failure="stream_interrupted")
        return UpstreamError(f"could not reach upstream {self.name!r}: {exc}", failure="connection")

    def _decode_chunk(self, data: bytes) -> dict[str, Any]:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"upstream {self.name!r} sent a stream event that is not JSON: {data[:200]!r}",
                failure="malformed",
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamError(
                f"upstream {self.name!r} sent a stream event that is not an object",
                failure="malformed",
            )
        if "error" in chunk and "choices" not in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamError(
                f"upstream {self.name!r} failed mid-stream: {message}",
                failure="stream_interrupted",
                status=error.get("status") if isinstance(error, dict) else None,
            )
        return chunk
