"""The `openai` wire dialect: any OpenAI-compatible chat-completions upstream.

OpenAI itself, vLLM, llama-server, Ollama, Together, Groq, DeepSeek… differ only in
`base_url`, key and which parameters they accept, so they are configuration of this one
class (a `preset`), not subclasses. The request body is forwarded as it came, except for
the few parameters a preset spells differently. Streams are parsed one SSE event at a time
and handed on as they arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from crossroads.providers.base import UpstreamCall, UpstreamError
from crossroads.providers.http import (
    HttpUpstream,
    decode_json,
    parse_retry_after,
    upstream_error_from_body,
)
from crossroads.providers.openai.config import OpenAIProviderConfig
from crossroads.providers.openai.presets import GENERIC_OPENAI, PRESETS

__all__ = ["OpenAIProvider", "parse_retry_after", "upstream_error_from_body"]

_DONE = b"[DONE]"


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
        self._embeddings_url = f"{config.url}/embeddings"

    def _headers(self, call: UpstreamCall) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self._config.headers}
        key = call.api_key or self._config.api_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(call.extra_headers)
        return headers

    def _body(self, call: UpstreamCall) -> dict[str, Any]:
        body = call.body
        if self._rewrites:
            for name, rewrite in self._rewrites.items():
                if name in body:
                    rewrite(body, name)
        return body

    async def complete(self, call: UpstreamCall) -> dict[str, Any]:
        status, body = await self.post_json(
            self._url, self._body(call), self._headers(call), call.sent
        )
        decoded = decode_json(self.name, body, "a body")
        if not isinstance(decoded.get("choices"), list):
            raise UpstreamError(
                f"upstream {self.name!r} returned JSON that is not a chat completion",
                failure="malformed",
                status=status,
            )
        return decoded

    async def embeddings(self, call: UpstreamCall) -> dict[str, Any]:
        """`POST /embeddings` with the body as given (`model` already the upstream id)."""
        status, body = await self.post_json(
            self._embeddings_url, call.body, self._headers(call), call.sent
        )
        decoded = decode_json(self.name, body, "a body")
        if not isinstance(decoded.get("data"), list):
            raise UpstreamError(
                f"upstream {self.name!r} returned JSON that is not an embeddings list",
                failure="malformed",
                status=status,
            )
        return decoded

    async def stream(self, call: UpstreamCall) -> AsyncIterator[dict[str, Any]]:
        saw_done = False
        saw_finish = False
        async with self.open_stream(
            self._url, self._body(call), self._headers(call), call.sent
        ) as response:
            async for _event, data in self.events(response):
                if data == _DONE:
                    saw_done = True
                    response.release(ended=True)
                    break
                chunk = self._decode_chunk(data)
                if any(c.get("finish_reason") for c in chunk.get("choices") or ()):
                    saw_finish = True
                yield chunk
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
