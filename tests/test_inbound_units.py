"""The inbound translations' pure parts: frames split anywhere, tool calls put in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from crossroads.inbound.events import chat_chunks
from crossroads.inbound.tool_calls import CallSequence

CHUNKS = [{"n": 1}, {"n": 2, "text": "a\\n\\nb"}, {"n": 3}]


async def _frames(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
async def test_frames_split_anywhere_decode_the_same(size: int) -> None:
    data = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in CHUNKS)
    data += b"data: [DONE]\n\n" + b'data: {"after": "done"}\n\n'
    got = [chunk async for chunk in chat_chunks(_frames(data, size))]
    assert got == CHUNKS


def _call(k: int, call_id: str | None = None, arguments: str = "") -> dict[str, Any]:
    call: dict[str, Any] = {"index": k, "function": {"arguments": arguments}}
    if call_id:
        call["id"] = call_id
        call["function"]["name"] = "f"
    return call


def _steps(sequence: CallSequence, *calls: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [
        (step.kind, step.index, step.call_id or step.arguments)
        for call in calls
        for step in sequence.feed(call)
    ]


def test_sequential_calls_stream_live() -> None:
    sequence = CallSequence()
    assert _steps(
        sequence, _call(0, "a"), _call(0, arguments="{}"), _call(1, "b"), _call(1, arguments="[]")
    ) == [("open", 0, "a"), ("arguments", 0, "{}"), ("open", 1, "b"), ("arguments", 1, "[]")]
    assert sequence.finish() == []


def test_calls_opened_together_are_put_in_order() -> None:
    sequence = CallSequence()
    steps = _steps(
        sequence, _call(0, "a"), _call(1, "b"), _call(0, arguments="{"), _call(0, arguments="}")
    )
    assert steps == [("open", 0, "a"), ("arguments", 0, "{"), ("arguments", 0, "}")]
    assert _steps(sequence, _call(1, arguments="{}")) == [("open", 1, "b"), ("arguments", 1, "{}")]


def test_held_calls_open_at_the_end() -> None:
    sequence = CallSequence()
    _steps(sequence, _call(0, "a"), _call(1, "b"), _call(2, "c"))
    assert [(s.kind, s.index) for s in sequence.finish()] == [("open", 1), ("open", 2)]
