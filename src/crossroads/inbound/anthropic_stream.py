"""The chat-completions stream → Anthropic's event sequence.

Anthropic's SDKs rebuild a Message from `message_start`, then for each content block
`content_block_start`, its deltas and `content_block_stop`, then `message_delta` (stop
reason, final usage) and `message_stop`; Anthropic sends a `ping` after the first
`content_block_start`, and so does this. OpenAI's chunks
carry no block boundaries, so `AnthropicStream` opens a block when the kind of delta
changes (reasoning, text, a tool call with a new id) and closes the open one first: blocks
never interleave, as Anthropic's never do. A thinking block's signature arrives in the
`reasoning_details` entry the anthropic dialect sends once the block is complete, and is
passed on as a `signature_delta`. An error after the stream began ends it with Anthropic's
`error` event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from crossroads.inbound.anthropic_answer import STOP_REASONS, anthropic_usage, message_id
from crossroads.inbound.anthropic_errors import anthropic_error_type
from crossroads.inbound.events import named_event, translated_events
from crossroads.inbound.stop_sequences import matched_stop
from crossroads.inbound.tool_calls import CallSequence, CallStep

__all__ = ["AnthropicStream", "anthropic_events"]


class AnthropicStream:
    """One streamed answer's events; `feed` each chat chunk, then `finish`."""

    def __init__(
        self,
        model: str,
        log_id: str,
        input_tokens: int = 0,
        stop_sequences: Sequence[str] | None = None,
    ) -> None:
        self._model = model
        self._stops = stop_sequences
        self._tail = ""  # the end of the text so far: enough to end with any stop sequence
        self._keep = max((len(stop) for stop in stop_sequences or ()), default=0)
        self._stop_sequence: str | None = None
        # message_start comes before the upstream has said: an estimate, made exact by
        # message_delta's usage at the end.
        self._input_tokens = input_tokens
        self._id = message_id(log_id)
        self._index = -1  # the open block's index; -1: none open
        self._kind: str | None = None  # its type
        self._calls = CallSequence()
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool-call index → block index
        self._stop_reason = "end_turn"
        self._usage: dict[str, Any] | None = None

    def start(self) -> list[bytes]:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return [named_event("message_start", {"type": "message_start", "message": message})]

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        if (error := chunk.get("error")) is not None:
            return self._error(error)
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        out: list[bytes] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one answer per message: a fan-out's other choices have no place
            delta = choice.get("delta") or {}
            if reasoning := delta.get("reasoning_content"):
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
            for detail in delta.get("reasoning_details") or ():
                out += self._detail(detail)
            if text := delta.get("content"):
                out += self._open("text", {"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": text}))
                if self._keep:
                    self._tail = (self._tail + text)[-self._keep :]
            for call in delta.get("tool_calls") or ():
                out += self._call_steps(self._calls.feed(call))
            if finish := choice.get("finish_reason"):
                self._stop_reason = STOP_REASONS.get(finish, "end_turn")
                self._stop_sequence = matched_stop(choice, self._tail, self._stops)
                if self._stop_sequence is not None:
                    self._stop_reason = "stop_sequence"
        return out

    def finish(self) -> list[bytes]:
        out = [*self._call_steps(self._calls.finish()), *self._close()]
        usage = anthropic_usage(self._usage)
        delta = {"stop_reason": self._stop_reason, "stop_sequence": self._stop_sequence}
        out.append(
            named_event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        )
        out.append(named_event("message_stop", {"type": "message_stop"}))
        return out

    def _detail(self, detail: dict[str, Any]) -> list[bytes]:
        kind = detail.get("type")
        if kind == "reasoning.text":
            out: list[bytes] = []
            if self._kind != "thinking":  # the whole block came at once
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                if text := detail.get("text"):
                    out.append(self._delta({"type": "thinking_delta", "thinking": text}))
            if signature := detail.get("signature"):
                out.append(self._delta({"type": "signature_delta", "signature": signature}))
            return [*out, *self._close()]
        if kind == "reasoning.encrypted":
            block = {"type": "redacted_thinking", "data": detail.get("data") or ""}
            return [*self._open("redacted_thinking", block, force=True), *self._close()]
        return []

    def _call_steps(self, steps: list[CallStep]) -> list[bytes]:
        out: list[bytes] = []
        for step in steps:
            if step.kind == "open":
                block = {"type": "tool_use", "id": step.call_id, "name": step.name, "input": {}}
                out += self._open("tool_use", block, force=True)
                self._tool_blocks[step.index] = self._index
            else:
                delta = {"type": "input_json_delta", "partial_json": step.arguments}
                out.append(self._delta(delta, self._tool_blocks[step.index]))
        return out

    def _open(self, kind: str, block: dict[str, Any], *, force: bool = False) -> list[bytes]:
        """Open a block of `kind` unless one is open already (`force`: always a new one)."""
        if self._kind == kind and not force:
            return []
        out = self._close()
        self._index += 1
        self._kind = kind
        start = {"type": "content_block_start", "index": self._index, "content_block": block}
        out.append(named_event("content_block_start", start))
        if self._index == 0:  # where Anthropic sends its ping
            out.append(named_event("ping", {"type": "ping"}))
        return out

    def _close(self) -> list[bytes]:
        if self._kind is None:
            return []
        self._kind = None
        stop = {"type": "content_block_stop", "index": self._index}
        return [named_event("content_block_stop", stop)]

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        payload = {
            "type": "content_block_delta",
            "index": self._index if index is None else index,
            "delta": delta,
        }
        return named_event("content_block_delta", payload)

    def _error(self, error: dict[str, Any]) -> list[bytes]:
        status = error.get("status") if isinstance(error.get("status"), int) else None
        kind = anthropic_error_type(status) if status else _error_type(error)
        message = str(error.get("message") or "The upstream failed mid-stream.")
        payload = {"type": "error", "error": {"type": kind, "message": message}}
        return [named_event("error", payload)]


def _error_type(error: dict[str, Any]) -> str:
    """Anthropic's type for an OpenAI error envelope carried without its status."""
    code, kind = str(error.get("code") or ""), str(error.get("type") or "")
    if "overload" in code or code in ("upstream_unavailable", "service_unavailable"):
        return "overloaded_error"
    if kind == "rate_limit_error" or "rate_limit" in code:
        return "rate_limit_error"
    if kind == "invalid_request_error":
        return "invalid_request_error"
    return "api_error"


def anthropic_events(
    frames: AsyncIterator[bytes],
    model: str,
    log_id: str,
    input_tokens: int = 0,
    stop_sequences: Sequence[str] | None = None,
) -> AsyncGenerator[bytes, None]:
    """Anthropic's event stream for the pipeline's chat stream `frames`."""
    return translated_events(frames, AnthropicStream(model, log_id, input_tokens, stop_sequences))
