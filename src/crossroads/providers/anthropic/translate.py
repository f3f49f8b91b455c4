"""OpenAI chat completions ↔ Anthropic's Messages API, as pure dict work.

The `anthropic` dialect speaks Anthropic's own API, so every request and every answer
crosses this module: `map_request` builds the `/v1/messages` body (the conversation in
messages.py, the parameters in options.py), `map_response` turns a Message into a
`chat.completion`, and `StreamMapper` turns each streamed event into `chat.completion.chunk`
dicts that `StreamAssembler` folds back into the same completion. Nothing here does I/O,
and the stream side runs once per event on the hot path: plain dicts, no models, no copies.

The one design decision: a streamed tool call is keyed by how many tool calls came before
it, not by Anthropic's content-block index, because OpenAI numbers tool calls 0, 1, 2…
while Anthropic numbers every block (text and thinking included). The mapper keeps the
block-index → tool-call-index table for the stream's lifetime. A thinking block streams as
`reasoning_content` deltas and then, once its signature has come, as one whole
`reasoning_details` entry (see reasoning.py), so a client collects entries, never pieces.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from crossroads.providers.anthropic.errors import stream_error
from crossroads.providers.anthropic.messages import map_messages
from crossroads.providers.anthropic.options import map_options
from crossroads.providers.anthropic.reasoning import reasoning_detail
from crossroads.providers.anthropic.tool_ids import from_anthropic

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicRequest",
    "StreamMapper",
    "map_request",
    "map_response",
    "map_usage",
]

DEFAULT_MAX_TOKENS = 4096


@dataclass(frozen=True, slots=True)
class AnthropicRequest:
    """A translated request, and what the answer's translation needs to know about it."""

    body: dict[str, Any]  # the Messages API body, `model` included (`stream` when streaming)
    json_tool: str | None  # the forced tool standing in for response_format / guided_json
    include_reasoning: bool  # False under `reasoning.exclude`: thinking is not returned
    model: str  # the upstream model id, echoed in the answer


def map_request(
    body: Mapping[str, Any],
    *,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    stream: bool = False,
) -> AnthropicRequest:
    """The Messages API request for an OpenAI chat-completions `body` (whose `model` is
    already the upstream id), or a 400 `GatewayError` for what Anthropic cannot express."""
    model = str(body.get("model") or "")
    options = map_options(body, default_max_tokens)
    thinking = options.fields.get("thinking", {}).get("type", "disabled") != "disabled"
    system, messages = map_messages(body.get("messages") or (), thinking=thinking)
    out: dict[str, Any] = {"model": model, "messages": messages, **options.fields}
    if system:
        out["system"] = system
    if stream:
        out["stream"] = True
    return AnthropicRequest(
        body=out,
        json_tool=options.json_tool,
        include_reasoning=options.include_reasoning,
        model=model,
    )


def map_response(message: Mapping[str, Any], request: AnthropicRequest) -> dict[str, Any]:
    """A `chat.completion` for a non-streamed Messages API `message`."""
    texts: list[str] = []
    thoughts: list[str] = []
    details: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if block.get("name") == request.json_tool:
                texts.append(arguments)
            else:
                function = {"name": block.get("name") or "", "arguments": arguments}
                call_id = from_anthropic(str(block.get("id") or ""))
                calls.append({"id": call_id, "type": "function", "function": function})
        elif request.include_reasoning and (detail := reasoning_detail(block, len(details))):
            details.append(detail)
            if kind == "thinking":
                thoughts.append(block.get("thinking") or "")
    answer: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        answer["tool_calls"] = calls
    if thoughts:
        answer["reasoning_content"] = "".join(thoughts)
    if details:
        answer["reasoning_details"] = details
    usage = message.get("usage")
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model or message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": answer,
                "logprobs": None,
                "finish_reason": _finish_reason(message.get("stop_reason"), request),
                **_stop_string(message),
            }
        ],
        "usage": map_usage(usage) if usage else None,
    }


def map_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's `usage` for Anthropic's. Anthropic's `input_tokens` excludes the prompt
    tokens read from or written to the cache, so the prompt is the sum of all three.
    Thinking is inside `output_tokens` and is not reported apart."""
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + written
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _stop_string(message: Mapping[str, Any]) -> dict[str, Any]:
    """`stop_reason`: the stop sequence that ended the answer, when one did. The field is
    the one vLLM reports it in; OpenAI's finish reason ("stop") cannot say which."""
    sequence = message.get("stop_sequence")
    if message.get("stop_reason") == "stop_sequence" and isinstance(sequence, str):
        return {"stop_reason": sequence}
    return {}


def _finish_reason(stop_reason: str | None, request: AnthropicRequest) -> str:
    """OpenAI's finish reason for Anthropic's `stop_reason`; unknown reasons end as `stop`.
    The forced tool of a JSON answer is the answer itself, so it stops rather than calls."""
    mapped = _FINISH_REASONS.get(stop_reason or "end_turn", "stop")
    return "stop" if mapped == "tool_calls" and request.json_tool else mapped


class StreamMapper:
    """One streamed answer: each Messages API stream event becomes zero or more
    `chat.completion.chunk` dicts of one choice, the last carrying the usage."""

    __slots__ = (
        "_blocks",
        "_created",
        "_details",
        "_finished",
        "_id",
        "_model",
        "_reported_finish",
        "_request",
        "_thoughts",
        "_tools",
        "_usage",
    )

    def __init__(self, request: AnthropicRequest) -> None:
        self._request = request
        self._id = ""
        self._model = request.model
        self._created = int(time.time())
        # Content-block index → the OpenAI tool-call index of a tool_use block, or -1 for
        # the forced JSON tool, whose input is the message content.
        self._blocks: dict[int, int] = {}
        self._tools = 0
        # Content-block index → the thinking block being streamed, until it stops; and how
        # many reasoning_details entries were sent (each entry's `index`).
        self._thoughts: dict[int, dict[str, Any]] = {}
        self._details = 0
        self._usage: dict[str, Any] = {}
        self._reported_finish = False
        self._finished = False

    @property
    def finished(self) -> bool:
        """True once `message_stop` was seen."""
        return self._finished

    def feed(self, event: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The chunks for one SSE event, by its name and decoded `data`; events and delta
        types this mapper does not know yield nothing, so newer streams still map."""
        if event == "content_block_delta":
            return self._delta(data.get("index", 0), data.get("delta") or {})
        if event == "content_block_start":
            return self._block_start(data.get("index", 0), data.get("content_block") or {})
        if event == "content_block_stop":
            thought = self._thoughts.pop(data.get("index", 0), None)
            return [] if thought is None else self._detail(thought)
        if event == "message_delta":
            self._add_usage(data.get("usage"))
            stop_reason = (data.get("delta") or {}).get("stop_reason")
            if stop_reason is None:
                return []
            self._reported_finish = True
            chunk = self._chunk({}, _finish_reason(stop_reason, self._request))
            chunk["choices"][0].update(_stop_string(data.get("delta") or {}))
            return [chunk]
        if event == "message_start":
            message = data.get("message") or {}
            self._id = message.get("id") or self._id
            self._model = self._model or message.get("model") or ""
            self._add_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if event == "message_stop":
            return self._stop()
        if event == "error":
            raise stream_error(data)
        return []

    def _block_start(self, index: int, block: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "tool_use":
            # Anthropic streams the input as input_json_delta events after an empty `input`;
            # a server that sends the whole input here instead is honoured too.
            arguments = orjson.dumps(block["input"]).decode() if block.get("input") else ""
            if block.get("name") == self._request.json_tool:
                self._blocks[index] = -1
                return [self._chunk({"content": arguments})] if arguments else []
            self._blocks[index] = k = self._tools
            self._tools += 1
            function = {"name": block.get("name") or "", "arguments": arguments}
            call_id = from_anthropic(str(block.get("id") or ""))
            call = {"index": k, "id": call_id, "type": "function", "function": function}
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if not self._request.include_reasoning:
            return []
        if kind == "redacted_thinking":  # it comes whole, with nothing to stream
            return self._detail(block)
        if kind == "thinking":
            self._thoughts[index] = thought = {**block, "thinking": block.get("thinking") or ""}
            if thought["thinking"]:
                return [self._chunk({"reasoning_content": thought["thinking"]})]
        return []

    def _delta(self, index: int, delta: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind == "input_json_delta":
            partial = delta.get("partial_json")
            k = self._blocks.get(index)
            if not partial or k is None:
                return []
            if k < 0:
                return [self._chunk({"content": partial})]
            return [self._chunk({"tool_calls": [{"index": k, "function": {"arguments": partial}}]})]
        thought = self._thoughts.get(index)
        if thought is None:
            return []
        if kind == "thinking_delta":
            thinking = delta.get("thinking")
            thought["thinking"] += thinking or ""
            return [self._chunk({"reasoning_content": thinking})] if thinking else []
        if kind == "signature_delta":
            thought["signature"] = delta.get("signature")
        return []

    def _detail(self, block: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The chunk that hands a finished thinking block to the caller, to give back."""
        detail = reasoning_detail(block, self._details)
        if detail is None:
            return []
        self._details += 1
        return [self._chunk({"reasoning_details": [detail]})]

    def _add_usage(self, usage: Mapping[str, Any] | None) -> None:
        """Counts are cumulative: a later event's count replaces an earlier one."""
        if usage:
            self._usage.update((key, value) for key, value in usage.items() if value is not None)

    def _stop(self) -> list[dict[str, Any]]:
        self._finished = True
        chunks = [] if self._reported_finish else [self._chunk({}, "stop")]
        usage = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": map_usage(self._usage),
        }
        chunks.append(usage)
        return chunks

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
