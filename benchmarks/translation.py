"""What translating to and from each wire dialect costs, per request and per streamed chunk.

For each dialect the same OpenAI-format request (a system prompt, two turns, one tool) and
the same answer (about 60 words, then a usage report) go through exactly what the gateway
runs on the hot path, in one process and one run:

* request: planning the parameters against the provider's capability matrix, building the
  upstream body, the dialect's `map_request`, and serialising the body to bytes;
* response: decoding the upstream's bytes and the dialect's `map_response`;
* chunk: decoding one streamed event and the dialect's stream mapper (`feed`), averaged
  over a whole stream (20 text events plus the framing events each dialect sends).

`openai` is the pass-through baseline: planning, the body copy and serialisation, and
decoding each chunk — no mapping. Figures are medians of per-iteration timings.

    python benchmarks/translation.py [--iterations 20000]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from crossroads.protocol.chat import EXTENSION_FIELDS
from crossroads.providers.anthropic import translate as anthropic
from crossroads.providers.anthropic.parameters import ANTHROPIC_CAPABILITIES
from crossroads.providers.capabilities import Capabilities, plan_parameters
from crossroads.providers.gemini import translate as gemini
from crossroads.providers.gemini.parameters import GEMINI_CAPABILITIES
from crossroads.providers.gemini.schema import SchemaCache
from crossroads.providers.openai.presets import GENERIC_OPENAI

RESULTS = Path(__file__).parent / "results"
WORDS = ("the quick brown fox jumps over the lazy dog " * 7).split()[:60]
TEXT_PIECES = [" ".join(WORDS[i : i + 3]) + " " for i in range(0, 60, 3)]  # 20 pieces

REQUEST: dict[str, Any] = {
    "model": "bench-model",
    "messages": [
        {"role": "system", "content": "You are a terse assistant for a weather service."},
        {"role": "user", "content": "What is the weather in Paris today, and tomorrow?"},
        {"role": "assistant", "content": "Let me check the forecast for you."},
        {"role": "user", "content": "Please be quick, and answer in one paragraph."},
    ],
    "temperature": 0.3,
    "max_completion_tokens": 256,
    "stop": ["\n\n"],
    "user": "user-42",
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather and forecast for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "City name"},
                        "days": {"type": "integer", "minimum": 1, "maximum": 7},
                        "unit": {"type": ["string", "null"], "enum": ["c", "f", None]},
                    },
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        }
    ],
    "tool_choice": "auto",
    "stream": False,
}
ANSWER = " ".join(WORDS)


def openai_response() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1,
            "model": "bench-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ANSWER, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 60, "completion_tokens": 60, "total_tokens": 120},
        }
    )


def openai_stream() -> list[bytes]:
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1}
    head["model"] = "bench-model"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps({**head, "choices": [choice]})

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in TEXT_PIECES]
    events.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 60, "completion_tokens": 60, "total_tokens": 120}
    events.append(orjson.dumps({**head, "choices": [], "usage": usage}))
    return events


def anthropic_response() -> bytes:
    return orjson.dumps(
        {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": "bench-model",
            "content": [{"type": "text", "text": ANSWER}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 40,
                "output_tokens": 60,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 20,
            },
        }
    )


def anthropic_stream() -> list[tuple[str, bytes]]:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": "bench-model",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 40, "output_tokens": 1, "cache_read_input_tokens": 20},
        },
    }
    events: list[dict[str, Any]] = [
        start,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
        for p in TEXT_PIECES
    ]
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 60},
        },
        {"type": "message_stop"},
    ]
    return [(event["type"], orjson.dumps(event)) for event in events]


def gemini_response() -> bytes:
    return orjson.dumps(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": ANSWER}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 60,
                "candidatesTokenCount": 60,
                "totalTokenCount": 120,
            },
            "modelVersion": "bench-model",
            "responseId": "bench",
        }
    )


def gemini_stream() -> list[bytes]:
    def event(piece: str, last: bool = False) -> bytes:
        candidate: dict[str, Any] = {
            "content": {"role": "model", "parts": [{"text": piece}]},
            "index": 0,
        }
        payload: dict[str, Any] = {
            "candidates": [candidate],
            "modelVersion": "bench-model",
            "responseId": "bench",
        }
        if last:
            candidate["finishReason"] = "STOP"
            payload["usageMetadata"] = {
                "promptTokenCount": 60,
                "candidatesTokenCount": 60,
                "totalTokenCount": 120,
            }
        return orjson.dumps(payload)

    return [event(p, last=i == len(TEXT_PIECES) - 1) for i, p in enumerate(TEXT_PIECES)]


def prepare(capabilities: Capabilities, stream: bool) -> dict[str, Any]:
    """What the gateway does to every request before the dialect sees it."""
    body = {**REQUEST, "stream": stream}
    plan = plan_parameters(capabilities, body)
    removed = plan.removed
    upstream = {k: v for k, v in body.items() if k not in EXTENSION_FIELDS and k not in removed}
    upstream["model"] = "bench-model"
    return upstream


def median_us(function: Callable[[], object], iterations: int) -> float:
    for _ in range(min(iterations // 10, 2000)):
        function()  # warm-up
    timings = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(iterations):
            started = clock()
            function()
            timings.append(clock() - started)
    finally:
        gc.enable()
    return statistics.median(timings) / 1000


def measure(iterations: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}

    # openai: pass-through.
    openai_body, openai_events = openai_response(), openai_stream()

    def openai_request() -> None:
        orjson.dumps(prepare(GENERIC_OPENAI, False))

    def openai_chunks() -> None:
        for data in openai_events:
            orjson.loads(data)

    results["openai (pass-through)"] = {
        "request_us": median_us(openai_request, iterations),
        "response_us": median_us(lambda: orjson.loads(openai_body), iterations),
        "chunk_us": median_us(openai_chunks, iterations // 4) / len(openai_events),
        "stream_events": len(openai_events),
    }

    # anthropic
    a_body, a_events = anthropic_response(), anthropic_stream()
    a_request = anthropic.map_request(prepare(ANTHROPIC_CAPABILITIES, False))
    a_stream_request = anthropic.map_request(prepare(ANTHROPIC_CAPABILITIES, True), stream=True)

    def anthropic_request() -> None:
        orjson.dumps(anthropic.map_request(prepare(ANTHROPIC_CAPABILITIES, False)).body)

    def anthropic_chunks() -> None:
        mapper = anthropic.StreamMapper(a_stream_request)
        for name, data in a_events:
            mapper.feed(name, orjson.loads(data))

    results["anthropic"] = {
        "request_us": median_us(anthropic_request, iterations),
        "response_us": median_us(
            lambda: anthropic.map_response(orjson.loads(a_body), a_request), iterations
        ),
        "chunk_us": median_us(anthropic_chunks, iterations // 4) / len(a_events),
        "stream_events": len(a_events),
    }

    # gemini
    g_body, g_events = gemini_response(), gemini_stream()
    schemas = SchemaCache()  # as the provider keeps one: tool schemas repeat across requests
    g_request = gemini.map_request(prepare(GEMINI_CAPABILITIES, False), schemas)

    def gemini_request() -> None:
        orjson.dumps(gemini.map_request(prepare(GEMINI_CAPABILITIES, False), schemas).body)

    def gemini_chunks() -> None:
        mapper = gemini.StreamMapper(g_request)
        for data in g_events:
            mapper.feed(orjson.loads(data))
        mapper.finish()

    results["gemini"] = {
        "request_us": median_us(gemini_request, iterations),
        "response_us": median_us(
            lambda: gemini.map_response(orjson.loads(g_body), g_request), iterations
        ),
        "chunk_us": median_us(gemini_chunks, iterations // 4) / len(g_events),
        "stream_events": len(g_events),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=20000)
    args = parser.parse_args()
    results = measure(args.iterations)
    base = results["openai (pass-through)"]
    print(f"{'dialect':<24}{'request µs':>12}{'response µs':>13}{'chunk µs':>10}{'Δ req':>9}")
    for name, row in results.items():
        added = row["request_us"] + row["response_us"] - base["request_us"] - base["response_us"]
        print(
            f"{name:<24}{row['request_us']:>12.2f}{row['response_us']:>13.2f}"
            f"{row['chunk_us']:>10.2f}{added:>+9.2f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "translation.json"
    payload = {
        "iterations": args.iterations,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
