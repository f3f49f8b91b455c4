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


def test_the_first_call_streams_live_the_others_come_whole_at_the_end() -> None:
    sequence = CallSequence()
    steps = _steps(
        sequence, _call(0, "a"), _call(0, arguments="{}"), _call(1, "b"), _call(1, arguments="[]")
    )
    assert steps == [("open", 0, "a"), ("arguments", 0, "{}")]
    assert [(s.kind, s.index, s.call_id or s.arguments) for s in sequence.finish()] == [
        ("open", 1, "b"),
        ("arguments", 1, "[]"),
    ]


def test_interleaved_arguments_stay_with_their_call() -> None:
    sequence = CallSequence()
    steps = _steps(
        sequence,
        _call(0, "a"),
        _call(1, "b"),
        _call(0, arguments="{"),
        _call(1, arguments="[1"),
        _call(0, arguments="}"),
        _call(1, arguments="]"),
    )
    assert steps == [("open", 0, "a"), ("arguments", 0, "{"), ("arguments", 0, "}")]
    assert [(s.kind, s.index, s.call_id or s.arguments) for s in sequence.finish()] == [
        ("open", 1, "b"),
        ("arguments", 1, "[1]"),
    ]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


TEXT_THEN_CALLS = [
    _chunk({"role": "assistant", "content": "Let me "}),
    _chunk({"content": "check."}),
    _chunk({"tool_calls": [_call(0, "a"), _call(1, "b")]}),
    _chunk({"tool_calls": [_call(0, arguments='{"x"'), _call(1, arguments='{"y": 2}')]}),
    _chunk({"tool_calls": [_call(0, arguments=": 1}")]}),
    _chunk({}, "tool_calls"),
    {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}},
]


def _decoded(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in frames:
        name_line, data_line = frame.decode().strip().split("\n")
        out.append((name_line.removeprefix("event: "), orjson.loads(data_line[6:])))
    return out


def test_anthropic_stream_of_text_then_calls() -> None:
    from anthropic.lib.streaming._messages import accumulate_event
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter

    from crossroads.inbound.anthropic_stream import AnthropicStream

    stream = AnthropicStream("m", "0" * 32, input_tokens=5)
    frames = stream.start()
    for chunk in TEXT_THEN_CALLS:
        frames += stream.feed(chunk)
    events = _decoded([*frames, *stream.finish()])
    blocks = [
        (d["index"], n) for n, d in events if n.startswith("content_block_") and "delta" not in n
    ]
    assert blocks == [
        (0, "content_block_start"), (0, "content_block_stop"),
        (1, "content_block_start"), (1, "content_block_stop"),
        (2, "content_block_start"), (2, "content_block_stop"),
    ]  # fmt: skip
    adapter = TypeAdapter(RawMessageStreamEvent)
    snapshot = None
    for name, data in events:
        if name != "ping":
            snapshot = accumulate_event(
                event=adapter.validate_python(data), current_snapshot=snapshot
            )
    assert snapshot is not None
    content = [block.model_dump() for block in snapshot.content]
    assert content[0]["text"] == "Let me check."
    assert [(b["id"], b["input"]) for b in content[1:]] == [("a", {"x": 1}), ("b", {"y": 2})]
    assert snapshot.stop_reason == "tool_use"
    assert snapshot.usage.input_tokens == 9 and snapshot.usage.output_tokens == 4


def test_responses_stream_of_text_then_calls() -> None:
    from openai.types.responses import Response, ResponseStreamEvent
    from pydantic import TypeAdapter

    from crossroads.inbound.responses_answer import ResponseShell
    from crossroads.inbound.responses_request import parse_request
    from crossroads.inbound.responses_stream import ResponsesStream

    stream = ResponsesStream(ResponseShell(parse_request({"model": "m", "input": "x"}), "0"))
    frames = stream.start()
    for chunk in TEXT_THEN_CALLS:
        frames += stream.feed(chunk)
    events = _decoded([*frames, *stream.finish()])
    adapter = TypeAdapter(ResponseStreamEvent)
    for _, data in events:
        adapter.validate_python(data)
    added = [d["output_index"] for n, d in events if n == "response.output_item.added"]
    done = [d["output_index"] for n, d in events if n == "response.output_item.done"]
    assert added == done == [0, 1, 2]  # each item done before the next is added
    names = [n for n, _ in events]
    assert names.index("response.output_item.done") < names.index("response.output_item.added", 3)
    final = Response.model_validate(events[-1][1]["response"])
    assert final.output_text == "Let me check."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, orjson.loads(c.arguments)) for c in calls] == [
        ("a", {"x": 1}),
        ("b", {"y": 2}),
    ]


@pytest.mark.parametrize("api", ["anthropic", "responses"])
async def test_closing_before_the_first_byte_closes_the_pipeline_stream(api: str) -> None:
    """A client that leaves before reading anything still closes the pipeline's stream,
    whose clean-up records the request and releases the key's limits."""
    from crossroads.inbound.anthropic_stream import anthropic_events
    from crossroads.inbound.responses_answer import ResponseShell
    from crossroads.inbound.responses_request import parse_request
    from crossroads.inbound.responses_stream import response_events
    from crossroads.protocol.sse import primed

    closed = []

    async def pipeline() -> AsyncIterator[bytes]:
        try:
            yield b'data: {"choices": []}\n\n'
        finally:
            closed.append(True)

    frames = await primed(pipeline())  # the gateway hands its stream over started
    if api == "anthropic":
        events = await primed(anthropic_events(frames, "m", "0"))
    else:
        shell = ResponseShell(parse_request({"model": "m", "input": "x"}), "0")
        events = await primed(response_events(frames, shell))
    await events.aclose()
    assert closed == [True]
