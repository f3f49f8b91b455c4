"""Response, chunk and usage models: OpenAI's fields first, Crossroads' additions after.

The gateway builds responses as plain dicts on the hot path (they come from upstreams as
dicts and are enriched in place); these models document that shape for `/openapi.json`
and let tests check responses against it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ErrorBody",
    "ErrorResponse",
    "Usage",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PromptTokensDetails(_Open):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None  # written to the upstream's cache (Anthropic)


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: dict[str, Any] | None = None
    # Crossroads' additions.
    prompt_characters: int
    response_characters: int
    prompt_cache_hit_tokens: int
    prompt_cache_miss_tokens: int
    cost: float
    latency_ms: float
    estimated: bool | None = None


class ToolCallFunction(_Open):
    name: str
    arguments: str


class ResponseToolCall(_Open):
    id: str
    type: Literal["function"]
    function: ToolCallFunction


class ResponseMessage(_Open):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    tool_calls: list[ResponseToolCall] | None = None
    reasoning_content: str | None = None  # the model's reasoning, when it reasoned
    # Signed reasoning to give back with this message (Anthropic's thinking blocks).
    reasoning_details: list[dict[str, Any]] | None = None


class Choice(_Open):
    index: int
    message: ResponseMessage
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None
    model: str | None = None  # set on fan-out
    content_filter_results: dict[str, Any] | None = None  # safety ratings (Gemini)


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    service_tier: str | None = None
    provider: str
    dropped_params: list[str] | None = None  # parameters the provider could not honour
    adjusted_params: dict[str, float] | None = None  # clamped into the provider's range: sent


class ChunkChoice(_Open):
    index: int
    delta: dict[str, Any]
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(_Open):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    provider: str | None = None  # on the usage chunk
    dropped_params: list[str] | None = None  # on the first chunk and the usage chunk
    adjusted_params: dict[str, float] | None = None  # the same


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorBody
