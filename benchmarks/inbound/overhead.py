"""What each inbound API's translation adds over chat completions (non-streaming and
streamed, concurrency 1).

Three processes, as in production: the fake OpenAI upstream, the gateway (`crossroads
serve`, auth on, request log to SQLite on) and this client. The client sends the same
conversation as a chat completion (the baseline, in the same run), an Anthropic Messages
request, a Responses API request and a legacy completion, one after the other in turn over
keep-alive connections, each round starting at another series, so every series sees the
same machine state; the difference of the medians is what the translation costs. Streams
are timed to their last byte. When `taskset` is available the gateway is pinned to CPU 0
and the upstream and client to CPU 1.

    python benchmarks/inbound/overhead.py --requests 1000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crossroads.testing.server import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from overhead import percentile, pinned, wait_ready  # benchmarks/overhead.py

KEY = "sk-bench-0123456789"
RESULTS = Path(__file__).parents[1] / "results"
TEXT = "How fast is this gateway when it speaks another API?"

# (series, path, body): the same conversation in each API.
APIS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "chat completions (baseline)",
        "/v1/chat/completions",
        {"model": "bench", "max_tokens": 64, "messages": [{"role": "user", "content": TEXT}]},
    ),
    (
        "anthropic messages",
        "/v1/messages",
        {"model": "bench", "max_tokens": 64, "messages": [{"role": "user", "content": TEXT}]},
    ),
    ("responses", "/v1/responses", {"model": "bench", "max_output_tokens": 64, "input": TEXT}),
    ("legacy completions", "/v1/completions", {"model": "bench", "max_tokens": 64, "prompt": TEXT}),
]


def timed_post(connection: http.client.HTTPConnection, path: str, body: bytes) -> float:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    started = time.perf_counter()
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}: {payload[:200]!r}")
    return elapsed * 1000


def translation_us(rounds: int = 20000) -> dict[str, float]:
    """In-process µs per call of each translation step (p50 of `rounds`), free of the HTTP
    noise a busy machine adds to the series above."""
    from crossroads.inbound import anthropic_request, responses_request
    from crossroads.inbound.anthropic_answer import anthropic_message
    from crossroads.inbound.anthropic_stream import AnthropicStream
    from crossroads.inbound.responses_answer import ResponseShell
    from crossroads.inbound.responses_stream import ResponsesStream

    completion = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22},
    }
    chunk = {"choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}]}
    messages_body, responses_body = APIS[1][2], APIS[2][2]
    parsed = responses_request.parse_request(responses_body)
    shell = ResponseShell(parsed, "0" * 32)
    anthropic_stream = AnthropicStream("bench", "0" * 32)
    responses_stream = ResponsesStream(shell)
    steps = {
        "messages: request → chat body": lambda: anthropic_request.chat_body(
            anthropic_request.parse_request(messages_body)
        ),
        "messages: completion → message": lambda: anthropic_message(completion, "bench", "0"),
        "messages: one stream chunk": lambda: anthropic_stream.feed(chunk),
        "responses: request → chat body": lambda: responses_request.chat_body(
            responses_request.parse_request(responses_body), []
        ),
        "responses: completion → response": lambda: shell.completed(completion),
        "responses: one stream chunk": lambda: responses_stream.feed(chunk),
    }
    out = {}
    for name, step in steps.items():
        times = []
        for _ in range(rounds):
            started = time.perf_counter_ns()
            step()
            times.append(time.perf_counter_ns() - started)
        out[name] = round(percentile([t / 1000 for t in times], 50), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per series")
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    upstream_port, gateway_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="crossroads-bench-"))
    config = workdir / "crossroads.toml"
    config.write_text(
        f"""
[server]
port = {gateway_port}
[storage]
database_url = "sqlite+aiosqlite:///{workdir / "log.db"}"
[[keys]]
name = "bench"
key = "{KEY}"
[providers.fake]
base_url = "http://127.0.0.1:{upstream_port}/v1"
[models.bench]
deployments = [{{ provider = "fake", model = "fixed", price = {{ input = 1.0, output = 2.0 }} }}]
"""
    )
    python = sys.executable
    upstream = [python, "-m", "crossroads.testing.fake_openai", "--port", str(upstream_port)]
    processes = [
        subprocess.Popen(pinned(1, [*upstream, "--no-record"]), stdout=subprocess.DEVNULL),
        subprocess.Popen(
            pinned(0, [python, "-m", "crossroads", "serve", "--config", str(config)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    if shutil.which("taskset"):
        subprocess.run(
            ["taskset", "-p", "-c", "1", str(os.getpid())], check=False, capture_output=True
        )
    series: dict[str, list[float]] = {}
    try:
        wait_ready(upstream_port, "/v1/models")
        wait_ready(gateway_port, "/ready")
        gateway = http.client.HTTPConnection("127.0.0.1", gateway_port)
        runs = [
            (f"{name}{' stream' if stream else ''}", path, json.dumps({**body, "stream": stream}))
            for stream in (False, True)
            for name, path, body in APIS
        ]
        for _ in range(args.warmup):
            for _name, path, body in runs:
                timed_post(gateway, path, body.encode())
        for round_ in range(args.requests):
            # Each round starts at another series, so none always follows the same one.
            shift = round_ % len(runs)
            for name, path, body in runs[shift:] + runs[:shift]:
                series.setdefault(name, []).append(timed_post(gateway, path, body.encode()))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    result: dict[str, Any] = {"requests": args.requests, "concurrency": 1, "series": {}}
    print(f"{'series':<36}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'+p50 vs chat':>14}")
    for name, values in series.items():
        baseline = series[APIS[0][0] + (" stream" if name.endswith(" stream") else "")]
        stats = {
            "p50_ms": round(percentile(values, 50), 3),
            "p99_ms": round(percentile(values, 99), 3),
            "mean_ms": round(statistics.fmean(values), 3),
            "added_p50_ms": round(percentile(values, 50) - percentile(baseline, 50), 3),
        }
        result["series"][name] = stats
        print(
            f"{name:<36}{stats['p50_ms']:>9.3f}{stats['p99_ms']:>9.3f}{stats['mean_ms']:>9.3f}"
            f"{stats['added_p50_ms']:>14.3f}"
        )
    result["translation_us_p50"] = steps = translation_us()
    print(f"\n{'translation step, in process':<40}{'µs p50':>9}")
    for name, micros in steps.items():
        print(f"{name:<40}{micros:>9.2f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "inbound_overhead.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
