"""Folds a stream of chunks back into the `chat.completion` it stands for.

Streams are relayed as they arrive, but the request log, usage accounting and (later) the
cache need the whole answer. `StreamAssembler.add` is called once per chunk, does a few
dict operations, and never holds anything but the growing text.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StreamAssembler"]


class _Choice:
    __slots__ = (
        "content",
        "details",
        "finish_reason",
        "logprobs",
        "reasoning",
        "refusal",
        "role",
        "tools",
    )

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.details: list[Any] = []  # `reasoning_details` entries, each whole in its chunk
        self.refusal: list[str] = []
        self.tools: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.logprobs: list[Any] = []


class StreamAssembler:
    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}
        self.id: str | None = None
        self.model: str | None = None
        self.created: int | None = None
        self.system_fingerprint: str | None = None
        self.usage: dict[str, Any] | None = None
        self.saw_content = False

    def add(self, chunk: dict[str, Any]) -> None:
        if self.id is None:
            self.id = chunk.get("id")
            self.model = chunk.get("model")
            self.created = chunk.get("created")
        if fingerprint := chunk.get("system_fingerprint"):
            self.system_fingerprint = fingerprint
        if usage := chunk.get("usage"):
            self.usage = usage
        for choice in chunk.get("choices") or ():
            state = self._choices.get(choice.get("index", 0))
            if state is None:
                state = self._choices[choice.get("index", 0)] = _Choice()
            delta = choice.get("delta") or {}
            if role := delta.get("role"):
                state.role = role
            if content := delta.get("content"):
                state.content.append(content)
                self.saw_content = True
            if reasoning := delta.get("reasoning_content"):
                state.reasoning.append(reasoning)
                self.saw_content = True
            if details := delta.get("reasoning_details"):
                state.details.extend(details)
            if refusal := delta.get("refusal"):
                state.refusal.append(refusal)
            for call in delta.get("tool_calls") or ():
                self._add_tool_call(state, call)
            if logprobs := choice.get("logprobs"):
                state.logprobs.extend(logprobs.get("content") or ())
            if finish := choice.get("finish_reason"):
                state.finish_reason = finish

    def _add_tool_call(self, state: _Choice, call: dict[str, Any]) -> None:
        self.saw_content = True
        slot = state.tools.setdefault(
            call.get("index", len(state.tools)),
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if call.get("id"):
            slot["id"] = call["id"]
        if extra := call.get("extra_content"):  # e.g. Gemini's thought signature
            slot["extra_content"] = extra
        function = call.get("function") or {}
        if function.get("name"):
            slot["function"]["name"] += function["name"]
        if function.get("arguments"):
            slot["function"]["arguments"] += function["arguments"]

    @property
    def pieces(self) -> int:
        """Content and tool-call deltas seen over all choices (one per token on most engines)."""
        return sum(len(s.content) + len(s.reasoning) + len(s.tools) for s in self._choices.values())

    def choices(self) -> list[dict[str, Any]]:
        """Choices in `chat.completion` form, ordered by index."""
        out = []
        for index in sorted(self._choices):
            state = self._choices[index]
            message: dict[str, Any] = {
                "role": state.role,
                "content": "".join(state.content) if state.content or not state.tools else None,
                "refusal": "".join(state.refusal) or None,
            }
            if state.reasoning:
                message["reasoning_content"] = "".join(state.reasoning)
            if state.details:
                message["reasoning_details"] = state.details
            if state.tools:
                message["tool_calls"] = [state.tools[i] for i in sorted(state.tools)]
            out.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": {"content": state.logprobs} if state.logprobs else None,
                    "finish_reason": state.finish_reason,
                }
            )
        return out

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        """A new chunk of this stream (same id, model, …): for chunks the relay adds itself."""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": choices,
            **extra,
        }

    def completion(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": self.choices(),
            "usage": self.usage,
            "system_fingerprint": self.system_fingerprint,
        }
