"""The `anthropic` dialect over HTTP: Anthropic's Messages API at `/v1/messages`.

All translation lives in `translate` (and its stream mapper); this module only adds what
talking to Anthropic needs — the `x-api-key` and `anthropic-version` headers, the event
names of its stream, and the rule that a stream is complete only at `message_stop`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from crossroads.providers.anthropic.config import AnthropicProviderConfig
from crossroads.providers.anthropic.parameters import ANTHROPIC_CAPABILITIES
from crossroads.providers.anthropic.reasoning import lost_thinking
from crossroads.providers.anthropic.translate import (
    StreamMapper,
    map_request,
    map_response,
)
from crossroads.providers.base import UpstreamCall, UpstreamError
from crossroads.providers.http import HttpUpstream, decode_json

__all__ = ["AnthropicProvider"]


class AnthropicProvider(HttpUpstream):
    dialect = "anthropic"

    def __init__(self, name: str, config: AnthropicProviderConfig) -> None:
        super().__init__(name, config)
        self.capabilities = replace(
            ANTHROPIC_CAPABILITIES.with_parameters(config.parameters), cannot_honour=lost_thinking
        )
        self._config = config
        self._url = f"{config.url}/v1/messages"

    def _headers(self, call: UpstreamCall) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "anthropic-version": self._config.anthropic_version,
            **self._config.headers,
        }
        key = call.api_key or self._config.api_key
        if key:
            headers["x-api-key"] = key
        headers.update(call.extra_headers)
        return headers

    async def complete(self, call: UpstreamCall) -> dict[str, Any]:
        request = map_request(call.body, default_max_tokens=self._config.default_max_tokens)
        status, body = await self.post_json(self._url, request.body, self._headers(call), call.sent)
        message = decode_json(self.name, body, "a body")
        if message.get("type") != "message" or not isinstance(message.get("content"), list):
            raise UpstreamError(
                f"upstream {self.name!r} returned JSON that is not a Messages API message",
                failure="malformed",
                status=status,
            )
        return map_response(message, request)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[dict[str, Any]]:
        request = map_request(
            call.body, default_max_tokens=self._config.default_max_tokens, stream=True
        )
        mapper = StreamMapper(request)
        async with self.open_stream(
            self._url, request.body, self._headers(call), call.sent
        ) as response:
            async for name, data in self.events(response):
                event = decode_json(self.name, data, "a stream event")
                kind = event.get("type")
                for chunk in mapper.feed(kind if isinstance(kind, str) else name, event):
                    yield chunk
                if mapper.finished:
                    response.release(ended=True)
                    break
        if not mapper.finished:
            raise self.interrupted()
