"""The chat-completions stream → the Responses API's streaming events.

The sequence the OpenAI SDK's stream helper rebuilds a response from: `response.created`,
`response.in_progress`, then per output item `response.output_item.added`, its parts and
deltas (`content_part.added`, `output_text.delta`/`.done`, `content_part.done` for the
message; `function_call_arguments.delta`/`.done` for a call) and
`response.output_item.done`, and last `response.completed` (or `.incomplete`) with the
whole response. A call to a custom tool is a `custom_tool_call` item whose input streams
in `custom_tool_call_input.delta` events and `.done`: upstream it is a function call whose
arguments are JSON around the text (inbound/custom_tools.py), decoded as they come
(inbound/custom_input.py). Every event carries a `sequence_number`. As for Anthropic's
stream, an item opens when the kind of delta changes and the open one is closed first, so
items never interleave. An error after the stream began is an `error` event then `response.failed`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from crossroads.inbound.custom_input import InputDecoder
from crossroads.inbound.custom_tools import call_input
from crossroads.inbound.events import named_event, translated_events
from crossroads.inbound.responses_answer import (
    INCOMPLETE,
    ResponseShell,
    custom_tool_call_item,
    function_call_item,
    message_item,
    reasoning_item,
    response_usage,
)
from crossroads.inbound.tool_calls import CallSequence, CallStep

__all__ = ["ResponsesStream", "response_events"]


class ResponsesStream:
    """One streamed response's events; `start`, `feed` each chat chunk, then `finish`."""

    def __init__(self, shell: ResponseShell) -> None:
        self._shell = shell
        self._sequence = 0
        self._output: list[dict[str, Any]] = []  # finished items
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._text = ""  # its text, arguments or reasoning so far
        self._calls = CallSequence()
        self._calls_at: dict[int, int] = {}  # chat tool-call index → its item's output index
        self._input = InputDecoder()  # the open custom tool call's input, decoded so far
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    def _event(self, event_type: str, /, **payload: Any) -> bytes:
        event = {"type": event_type, "sequence_number": self._sequence, **payload}
        self._sequence += 1
        return named_event(event_type, event)

    def start(self) -> list[bytes]:
        snapshot = self._shell.body(status="in_progress", output=[])
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        if (error := chunk.get("error")) is not None:
            return self._failed(error)
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        out: list[bytes] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one answer per message: a fan-out's other choices have no place
            delta = choice.get("delta") or {}
            if reasoning := delta.get("reasoning_content"):
                if self._kind != "reasoning":
                    out += self._add(reasoning_item(self._shell.item_id("rs"), None))
                self._text += reasoning
            if text := delta.get("content"):
                out += self._text_delta(text)
            for call in delta.get("tool_calls") or ():
                out += self._call_steps(self._calls.feed(call))
            if finish := choice.get("finish_reason"):
                self._finish = finish
        return out

    def finish(self) -> list[bytes]:
        out = [*self._call_steps(self._calls.finish()), *self._close()]
        if not self._output:  # an empty answer is still one (empty) message
            out += self._add(message_item(self._shell.item_id("msg"), "", "in_progress"))
            out += self._text_part_added()
            out += self._close()
        incomplete = INCOMPLETE.get(self._finish or "")
        final = self._shell.body(
            status="incomplete" if incomplete else "completed",
            output=self._output,
            usage=response_usage(self._usage),
            incomplete=incomplete,
        )
        name = "response.incomplete" if incomplete else "response.completed"
        return [*out, self._event(name, response=final)]

    @property
    def _kind(self) -> str | None:
        return None if self._open is None else self._open["type"]

    @property
    def _index(self) -> int:
        return len(self._output)

    def _add(self, item: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self._open, self._text = item, ""
        added = self._event("response.output_item.added", output_index=self._index, item=item)
        return [*out, added]

    def _text_part_added(self) -> list[bytes]:
        assert self._open is not None
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            self._event(
                "response.content_part.added",
                item_id=self._open["id"],
                output_index=self._index,
                content_index=0,
                part=part,
            )
        ]

    def _text_delta(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._kind != "message":
            item_id = self._shell.item_id("msg")
            out += self._add(message_item(item_id, "", "in_progress"))
            out += self._text_part_added()
        assert self._open is not None
        self._text += text
        out.append(
            self._event(
                "response.output_text.delta",
                item_id=self._open["id"],
                output_index=self._index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return out

    def _call_steps(self, steps: list[CallStep]) -> list[bytes]:
        out: list[bytes] = []
        for step in steps:
            if step.kind == "open":
                if step.name in self._shell.custom_tools:
                    item_id = self._shell.item_id("ctc", step.index)
                    item = custom_tool_call_item(item_id, step.call_id, step.name, "")
                    self._input = InputDecoder()
                else:
                    item_id = self._shell.item_id("fc", step.index)
                    item = function_call_item(item_id, step.call_id, step.name, "", "in_progress")
                out += self._add(item)
                self._calls_at[step.index] = self._index
                continue
            index = self._calls_at[step.index]
            if index != self._index or self._open is None:
                continue  # the item was closed: interleaved upstream output, rare
            self._text += step.arguments
            if self._open["type"] == "custom_tool_call":
                if text := self._input.feed(step.arguments):
                    out.append(
                        self._event(
                            "response.custom_tool_call_input.delta",
                            item_id=self._open["id"],
                            output_index=index,
                            delta=text,
                        )
                    )
                continue
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=self._open["id"],
                    output_index=index,
                    delta=step.arguments,
                )
            )
        return out

    def _close(self) -> list[bytes]:
        item, text, index = self._open, self._text, self._index
        if item is None:
            return []
        self._open, self._text = None, ""
        out: list[bytes] = []
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out.append(self._event("response.output_text.done", **ids, text=text, logprobs=[]))
            out.append(self._event("response.content_part.done", **ids, part=part))
            item = message_item(item["id"], text)
        elif item["type"] == "function_call":
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=text,
                )
            )
            item = {**item, "arguments": text, "status": "completed"}
        elif item["type"] == "custom_tool_call":
            text, given = call_input(text), self._input.text
            ids = {"item_id": item["id"], "output_index": index}
            # What the live decoding could not give (all of it, for arguments that were not
            # `{"input": ...}`); `.done` has the whole input whatever the deltas said.
            if text.startswith(given) and (rest := text[len(given) :]):
                out.append(self._event("response.custom_tool_call_input.delta", **ids, delta=rest))
            out.append(self._event("response.custom_tool_call_input.done", **ids, input=text))
            item = {**item, "input": text}
        else:
            item = reasoning_item(item["id"], text)
        self._output.append(item)
        out.append(self._event("response.output_item.done", output_index=index, item=item))
        return out

    def _failed(self, error: dict[str, Any]) -> list[bytes]:
        message = str(error.get("message") or "The upstream failed mid-stream.")
        code = error.get("code")
        failure = {"code": "server_error", "message": message}
        failed = self._shell.body(status="failed", output=self._output, error=failure)
        return [
            self._event(
                "error", code=code if isinstance(code, str) else None, message=message, param=None
            ),
            self._event("response.failed", response=failed),
        ]


def response_events(
    frames: AsyncIterator[bytes], shell: ResponseShell
) -> AsyncGenerator[bytes, None]:
    """The Responses API's event stream for the pipeline's chat stream `frames`."""
    return translated_events(frames, ResponsesStream(shell))
