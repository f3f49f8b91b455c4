"""The `openai` wire dialect: any OpenAI-compatible chat-completions upstream.

OpenAI itself, vLLM, llama-server, Ollama, Together, Groq, DeepSeek… differ only in
`base_url`, key and which parameters they accept, so they are configuration of this one
class (a `preset`), not subclasses. The request body is forwarded as it came, except for
the few parameters a preset spells differently. Streams are parsed one SSE event at a time
and handed on as they arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from crossroads.config import OpenAIProviderConfig
from crossroads.providers.base import UpstreamCall, UpstreamError
from crossroads.providers.http import HttpUpstream, decode_json, parse_retry_after
from crossroads.providers.presets import GENERIC_OPENAI, PRESETS

__all__ = ["OpenAIProvider", "parse_retry_after", "upstream_error_from_body"]

_DONE = b"[DONE]"


def upstream_error_from_body(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> UpstreamError:
    """Keep the upstream's own message and code when it sent an error envelope.

    Understands OpenAI's `{"error": {"message", "code", "param"}}`, Anthropic's
    `{"type": "error", "error": {"type", "message"}}` and Google's
    `{"error": {"code": 400, "message", "status"}}`.
    """
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
            # OpenAI's `code`; else Anthropic's error `type` or Google's `status` name.
            kind = "type" if decoded.get("type") == "error" else "status"
            for field in ("code", kind):
                if isinstance(error.get(field), str):
                    code = error[field]
                    break
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


class OpenAIProvider(HttpUpstream):
    """An OpenAI-compatible upstream at `base_url`."""

    dialect = "openai"

    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        super().__init__(name, config)
        preset = PRESETS.get(config.preset) if config.preset else None
        capabilities = preset.capabilities if preset else GENERIC_OPENAI
        self.capabilities = capabilities.with_parameters(config.parameters)
        self._rewrites = {
            name: rewrite
            for name, rewrite in (preset.rewrites if preset else {}).items()
            if self.capabilities.support(name) == "translated"
        }
        self._config = config
        self._url = f"{config.url}/chat/completions"

    def _headers(self, call: UpstreamCall) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self._config.headers}
        key = call.api_key or self._config.api_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(call.extra_headers)
        return headers

    def _send(self, call: UpstreamCall) -> Any:
        body = call.body
        if self._rewrites:
            for name, rewrite in self._rewrites.items():
                if name in body:
                    rewrite(body, name)
        return self.post(self._url, body, self._headers(call), call.sent)

    async def complete(self, call: UpstreamCall) -> dict[str, Any]:
        try:
            async with self._send(call) as response:
                body = await response.read()
                if response.status >= 400:
                    raise upstream_error_from_body(response.status, body, response.headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.transport_error(exc) from None
        decoded = decode_json(self.name, body, "a body")
        if not isinstance(decoded.get("choices"), list):
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
            async with self._send(call) as response:
                if response.status >= 400:
                    body = await response.read()
                    raise upstream_error_from_body(response.status, body, response.headers)
                async for _event, data in self.events(response):
                    if data == _DONE:
                        saw_done = True
                        break
                    chunk = self._decode_chunk(data)
                    if any(c.get("finish_reason") for c in chunk.get("choices") or ()):
                        saw_finish = True
                    yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.transport_error(exc) from None
        if not saw_done and not saw_finish:
            raise self.interrupted()

    def _decode_chunk(self, data: bytes) -> dict[str, Any]:
        chunk = decode_json(self.name, data, "a stream event")
        if "error" in chunk and "choices" not in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamError(
                f"upstream {self.name!r} failed mid-stream: {message}",
                failure="stream_interrupted",
                status=error.get("status") if isinstance(error, dict) else None,
            )
        return chunk
