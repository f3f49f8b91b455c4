"""Streamed tool calls in the order Anthropic's and the Responses API's streams need.

Both APIs stream one content block (output item) at a time: a call opens, its arguments
follow, it closes, then the next opens. OpenAI's chunks need not: an upstream may open
several calls in one chunk and send their arguments after. `CallSequence` turns chat
tool-call deltas into `open` and `arguments` steps in block order: the first call opens at
once, a later one is held until its arguments start (then it takes over), and any still
held at the end opens then. Arguments for a call already taken over (truly interleaved
upstream output) still go to that call's block, by index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CallSequence", "CallStep"]


@dataclass(slots=True)
class CallStep:
    kind: Literal["open", "arguments"]
    index: int  # the chat tool-call index
    call_id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(slots=True)
class _Held:
    call_id: str
    name: str
    arguments: list[str] = field(default_factory=list)


class CallSequence:
    def __init__(self) -> None:
        self._current: int | None = None
        self._held: dict[int, _Held] = {}
        self._seen: set[int] = set()

    def feed(self, call: dict[str, Any]) -> list[CallStep]:
        k = call.get("index", 0)
        function = call.get("function") or {}
        arguments = function.get("arguments") or ""
        if k not in self._seen:
            self._seen.add(k)
            self._held[k] = _Held(call.get("id") or "", function.get("name") or "")
        held = self._held.get(k)
        if held is None:  # open already
            return [CallStep("arguments", k, arguments=arguments)] if arguments else []
        if arguments:
            held.arguments.append(arguments)
        if self._current is not None and not arguments:
            return []
        return self._open(k)

    def finish(self) -> list[CallStep]:
        """Steps for the calls still held (whose arguments never came)."""
        steps: list[CallStep] = []
        for k in sorted(self._held):
            steps += self._open(k)
        return steps

    def _open(self, k: int) -> list[CallStep]:
        held = self._held.pop(k)
        self._current = k
        steps = [CallStep("open", k, call_id=held.call_id, name=held.name)]
        if held.arguments:
            steps.append(CallStep("arguments", k, arguments="".join(held.arguments)))
        return steps
