"""Streamed tool calls in the order Anthropic's and the Responses API's streams need.

Both APIs stream one content block (output item) at a time: a call opens, its arguments
follow, it closes, then the next opens; nothing can be added to a block once it closed.
OpenAI's chunks promise no such order: an upstream may open several calls in one chunk and
send their arguments after, even interleaved. `CallSequence` turns chat tool-call deltas
into `open` and `arguments` steps that are valid whatever the upstream did: the first call
streams live, every later one is held and given whole at the end of the answer, when no
more of any call's arguments can come.

The one design decision: correctness over liveness for the second and later calls of a
parallel tool use. Which call an argument delta belongs to is known, but not when a call
is complete until the answer is; clients run tools once the message ends, so holding them
costs nothing a client can see but the order the deltas arrive in.
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
        self._live: int | None = None  # the call streaming live
        self._held: dict[int, _Held] = {}

    def feed(self, call: dict[str, Any]) -> list[CallStep]:
        k = call.get("index", 0)
        function = call.get("function") or {}
        arguments = function.get("arguments") or ""
        if self._live is None:
            self._live = k
            steps = [CallStep("open", k, call.get("id") or "", function.get("name") or "")]
            if arguments:
                steps.append(CallStep("arguments", k, arguments=arguments))
            return steps
        if k == self._live:
            return [CallStep("arguments", k, arguments=arguments)] if arguments else []
        held = self._held.get(k)
        if held is None:
            held = self._held[k] = _Held(call.get("id") or "", function.get("name") or "")
        if arguments:
            held.arguments.append(arguments)
        return []

    def finish(self) -> list[CallStep]:
        """Steps for the held calls, whole, in index order."""
        steps: list[CallStep] = []
        for k in sorted(self._held):
            held = self._held.pop(k)
            steps.append(CallStep("open", k, call_id=held.call_id, name=held.name))
            if held.arguments:
                steps.append(CallStep("arguments", k, arguments="".join(held.arguments)))
        return steps
