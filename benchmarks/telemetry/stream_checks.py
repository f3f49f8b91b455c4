"""What the spans of response stages on a stream cost per chunk, and that off costs nothing.

A streamed answer of `--chunks` chunks (a sentence every ten) goes through the response
stages' checks as the relay runs them (`StagePlan.stream_checks`, then `StreamStages.chunk`
for every chunk, `end` and `finish`): one stage checking sentence by sentence and one
holding the whole choice, each doing a trivial rewrite so that the checks themselves cost
next to nothing and what is measured is the machinery around them. Three variants, each in
its own process, alternating by round:

- *baseline*: main before stream-stage spans (`--baseline`'s `src`, extracted with
  `git archive`), no trace;
- *off*: this checkout, no trace (telemetry off);
- *on*: this checkout with a request trace (telemetry on), the checks timed.

Prints µs per stream and per chunk (medians of rounds, and the fastest round) and writes
benchmarks/results/stream_checks.json.

    python benchmarks/telemetry/stream_checks.py --streams 300 --rounds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

BASELINE = "bdece4f"  # main before stream-stage spans
RESULTS = Path(__file__).parents[1] / "results"
REPO = Path(__file__).parents[2]
VARIANTS = ("baseline", "off", "on")


def _chunks(count: int) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    for i in range(count):
        text = "Done with this one. " if i % 10 == 9 else f"word{i} @ "
        chunks.append(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            }
        )
    chunks[-1]["choices"][0]["finish_reason"] = "stop"
    return chunks


async def _measure(variant: str, streams: int, count: int) -> float:
    """Seconds for `streams` streams of `count` chunks through the checks."""
    from crossroads.pipeline.stages import Stage, StagePlan, StreamCheck, StreamPolicy
    from crossroads.pipeline.stream_stages import StreamStages
    from crossroads.telemetry.trace import RequestTrace

    class _Check(StreamCheck):
        def __init__(self, policy: StreamPolicy) -> None:
            self.policy = policy

        async def check(self, index: int, text: str) -> str:
            return text.replace("@", "at")

    class _Stage(Stage):
        def __init__(self, name: str, policy: StreamPolicy) -> None:
            self.name = name
            self.policy: StreamPolicy = policy

        def stream(self, chat: Any) -> StreamCheck | None:
            return _Check(self.policy)

    plan = StagePlan([], [_Stage("guardrails", "sentence"), _Stage("quality", "hold")])
    chunks = _chunks(count)
    completion = {"choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}]}
    started = time.perf_counter()
    for _ in range(streams):
        chat: Any = SimpleNamespace(trace=RequestTrace() if variant == "on" else None)
        stages = StreamStages(chat, plan.stream_checks(chat))
        for chunk in chunks:
            await stages.chunk(chunk)
        await stages.end(chunks[-1])
        stages.finish(completion)
    return time.perf_counter() - started


def _child(variant: str, streams: int, count: int) -> None:
    asyncio.run(_measure(variant, max(streams // 10, 1), count))  # warm up
    print(json.dumps(asyncio.run(_measure(variant, streams, count))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=300, help="per variant and round")
    parser.add_argument("--chunks", type=int, default=200, help="per stream")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.streams, args.chunks)
        return

    # Both trees copied alike into one temporary directory, so that neither runs with
    # byte-code or a file system the other lacks.
    workdir = Path(tempfile.mkdtemp(prefix="crossroads-stream-bench-"))
    (workdir / "baseline").mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", args.baseline, "src"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(workdir / "baseline")], input=archive.stdout, check=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "src", workdir / "checkout" / "src", ignore=ignore)
    checkout = workdir / "checkout" / "src"
    sources = {"baseline": workdir / "baseline" / "src", "off": checkout, "on": checkout}
    seconds: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            env = {**os.environ, "PYTHONPATH": str(sources[variant])}
            sizes = ["--streams", str(args.streams), "--chunks", str(args.chunks)]
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant, *sizes],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
            seconds[variant].append(float(out.stdout))
    results: dict[str, Any] = {
        "streams": args.streams,
        "chunks": args.chunks,
        "rounds": args.rounds,
        "baseline": args.baseline,
        "variants": {},
    }
    print(f"{args.streams} streams × {args.chunks} chunks, median of {args.rounds} rounds")
    # The fastest round too: on a shared machine it is the least disturbed one.
    print(
        f"{'variant':<10} {'µs/stream':>10} {'µs/chunk':>9} {'vs baseline':>12}"
        f" {'best µs/chunk':>14} {'vs baseline':>12}"
    )
    base = statistics.median(seconds["baseline"])
    best_base = min(seconds["baseline"])
    for variant in VARIANTS:
        median = statistics.median(seconds[variant])
        best = min(seconds[variant])
        per_chunk = median / args.streams / args.chunks * 1e6
        best_per_chunk = best / args.streams / args.chunks * 1e6
        change = (median / base - 1) * 100
        best_change = (best / best_base - 1) * 100
        results["variants"][variant] = {
            "us_per_stream": round(median / args.streams * 1e6, 2),
            "us_per_chunk": round(per_chunk, 4),
            "vs_baseline_percent": round(change, 2),
            "best_us_per_chunk": round(best_per_chunk, 4),
            "best_vs_baseline_percent": round(best_change, 2),
            "rounds_seconds": [round(s, 4) for s in seconds[variant]],
        }
        print(
            f"{variant:<10} {median / args.streams * 1e6:>10.1f} {per_chunk:>9.3f}"
            f" {change:>+11.1f}% {best_per_chunk:>14.3f} {best_change:>+11.1f}%"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stream_checks.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
