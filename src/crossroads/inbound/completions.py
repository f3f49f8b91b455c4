"""Legacy `POST /v1/completions` ↔ chat completions.

A prompt becomes one user message and the answer's text the completion's `text`; a list of
prompts is one chat request per prompt, whose choices are numbered on across prompts as
OpenAI numbers them (prompt i's j-th choice is `i * n + j`). `max_tokens` defaults to 16,
OpenAI's default for this endpoint. Token-id prompts, `suffix`, `logprobs` and `best_of`
other than `n` are what a chat model cannot do, and are refused with a 400 naming them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crossroads.protocol.errors import bad_request, unsupported_parameter

__all__ = [
    "CompletionRequest",
    "chat_bodies",
    "completion_chunk",
    "parse_request",
    "prompts",
    "text_choices",
]

_DEFAULT_MAX_TOKENS = 16
_PASSED = (
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "user",
)


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: Annotated[str, Field(min_length=1)]
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: Annotated[int, Field(ge=0)] | None = _DEFAULT_MAX_TOKENS
    temperature: Annotated[float, Field(ge=0, le=2, strict=False)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, strict=False)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2, strict=False)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2, strict=False)] | None = None
    logit_bias: dict[str, int] | None = None
    logprobs: int | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None
    seed: int | None = None
    user: str | None = None


def parse_request(body: Any) -> CompletionRequest:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    try:
        request = CompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"][:1])
        message = "Missing required parameter" if first["type"] == "missing" else first["msg"]
        raise bad_request(f"Invalid '{path}': {message}.", param=path) from None
    prompt = request.prompt
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], str):
        raise unsupported_parameter(
            "prompt", ": token-id prompts need the model's tokenizer; send the prompt as text"
        )
    if isinstance(prompt, list) and not prompt:
        raise bad_request("Invalid 'prompt': at least one prompt is required.", param="prompt")
    refused = [
        name
        for name, unset in (
            ("suffix", request.suffix is None),
            ("logprobs", not request.logprobs),
            ("best_of", request.best_of in (None, 1, request.n)),
        )
        if not unset
    ]
    if refused:
        raise unsupported_parameter(refused, " by chat models behind this gateway")
    return request


def prompts(request: CompletionRequest) -> list[str]:
    prompt = request.prompt
    return [prompt] if isinstance(prompt, str) else [str(p) for p in prompt]


def chat_bodies(request: CompletionRequest) -> list[dict[str, Any]]:
    """One chat-completions body per prompt."""
    base: dict[str, Any] = {"model": request.model}
    for name in _PASSED:
        if (value := getattr(request, name)) is not None:
            base[name] = value
    if request.max_tokens is not None:
        base["max_tokens"] = request.max_tokens
    extra = {k: v for k, v in (request.model_extra or {}).items() if k not in base}
    if request.stream:
        base["stream"] = True
        base["stream_options"] = {"include_usage": True}
    return [
        {**extra, **base, "messages": [{"role": "user", "content": prompt}]}
        for prompt in prompts(request)
    ]


def text_choices(
    completion: Mapping[str, Any], offset: int, echo: str | None
) -> list[dict[str, Any]]:
    """The legacy choices for one prompt's chat completion, numbered from `offset`."""
    return [
        {
            "text": (echo or "") + (choice.get("message", {}).get("content") or ""),
            "index": offset + choice.get("index", 0),
            "logprobs": None,
            "finish_reason": choice.get("finish_reason"),
        }
        for choice in completion.get("choices") or ()
    ]


def completion_chunk(
    completion_id: str, model: str, choices: list[dict[str, Any]], usage: Any = None
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk
