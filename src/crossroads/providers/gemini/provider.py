"""The `gemini` dialect over HTTP: `models/{model}:generateContent` and its SSE stream.

All translation lives in `translate` (and its stream mapper); this module only adds what
talking to Google needs — the model in the URL, the `x-goog-api-key` header, `alt=sse`
streaming (whose end is the end of the body: there is no `[DONE]`), and the rule that a
stream is complete only when every candidate has reported a finish reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from crossroads.providers.base import UpstreamCall, UpstreamError
from crossroads.providers.gemini.config import GeminiProviderConfig
from crossroads.providers.gemini.parameters import GEMINI_CAPABILITIES
from crossroads.providers.gemini.schema import SchemaCache
from crossroads.providers.gemini.translate import StreamMapper, map_request, map_response
from crossroads.providers.http import HttpUpstream, decode_json

__all__ = ["GeminiProvider"]


class GeminiProvider(HttpUpstream):
    dialect = "gemini"

    def __init__(self, name: str, config: GeminiProviderConfig) -> None:
        super().__init__(name, config)
        self.capabilities = GEMINI_CAPABILITIES.with_parameters(config.parameters)
        self._config = config
        self._base = config.url
        self._schemas = SchemaCache()

    def _url(self, model: str, method: str) -> str:
        model = model.removeprefix("models/")
        return f"{self._base}/models/{quote(model, safe='-._~')}:{method}"

    def _headers(self, call: UpstreamCall) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self._config.headers}
        key = call.api_key or self._config.api_key
        if key:
            headers["x-goog-api-key"] = key
        headers.update(call.extra_headers)
        return headers

    async def complete(self, call: UpstreamCall) -> dict[str, Any]:
        request = map_request(call.body, self._schemas)
        url = self._url(request.model, "generateContent")
        status, body = await self.post_json(url, request.body, self._headers(call), call.sent)
        decoded = decode_json(self.name, body, "a body")
        if "candidates" not in decoded and "promptFeedback" not in decoded:
            raise UpstreamError(
                f"upstream {self.name!r} returned JSON that is not a GenerateContentResponse",
                failure="malformed",
                status=status,
            )
        return map_response(decoded, request)

    async def stream(self, call: UpstreamCall) -> AsyncIterator[dict[str, Any]]:
        request = map_request(call.body, self._schemas)
        url = self._url(request.model, "streamGenerateContent") + "?alt=sse"
        mapper = StreamMapper(request)
        async with self.open_stream(url, request.body, self._headers(call), call.sent) as response:
            async for _name, data in self.events(response):
                for chunk in mapper.feed(decode_json(self.name, data, "a stream event")):
                    yield chunk
        if not mapper.finished:
            raise self.interrupted()
        for chunk in mapper.finish():
            yield chunk
