"""Mixture of agents through the gateway, with seeded fake proposers and a fake aggregator.

    PYTHONPATH=src .venv/bin/python benchmarks/quality/mixture.py [--questions N]

What this measures is the gateway's mixture plumbing and the arithmetic of combining
answers whose errors agree — not any real model's accuracy. Each question has a right answer.
Every proposer (up to five) and the aggregator is its own fake model with one answer drawn in
advance with a fixed seed: right with probability `--accuracy`; a wrong one is, with
probability `--correlation`, the question's one common wrong answer, else a scattered guess.
The aggregator (fake upstream directive `aggregate`, crossroads.testing.fake_aggregate)
answers the proposal it was shown at least twice and more often than any other, else its
own drawn answer; second-layer proposers do the same with the first layer's proposals. The
baseline, in the same run, is one proposer asked directly. Every upstream call takes
`--delay` ms. Reports, per proposers × layers: accuracy, cost multiplier (tokens against the
baseline's), p95 latency. Writes benchmarks/results/quality_mixture.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scoring import p95
from served import behaviour, gateway

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "quality_mixture.json"
SEED = 1618
PROPOSERS = (1, 3, 5)
LAYERS = (1, 2)


def _draw(rng: random.Random, q: int, accuracy: float, correlation: float) -> str:
    if rng.random() < accuracy:
        return f"Answer {q}"
    if rng.random() < correlation:
        return f"Common mistake {q}"
    return f"Stray guess {q}-{rng.randrange(6)}"


def _setup(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, Any]]:
    rng = random.Random(SEED)
    models: dict[str, str] = {}
    moa: dict[str, Any] = {}
    for q in range(args.questions):
        for k in range(max(PROPOSERS)):
            answer = _draw(rng, q, args.accuracy, args.correlation)
            models[f"q{q}-p{k}"] = behaviour([answer], args.delay) + "+aggregate"
        own = _draw(rng, q, args.accuracy, args.correlation)
        models[f"q{q}-agg"] = behaviour([own], args.delay) + "+aggregate"
        for size in PROPOSERS:
            for layers in LAYERS:
                moa[f"moa-{q}-{size}-{layers}"] = {
                    "proposers": [f"q{q}-p{k}" for k in range(size)],
                    "aggregator": f"q{q}-agg",
                    "layers": layers,
                }
    return models, moa


def _run(client: Any, questions: int, model: Any) -> tuple[float, float, list[float]]:
    """(accuracy, total tokens, latencies ms) asking `model(q)` every question."""
    right = 0
    tokens = 0.0
    latencies: list[float] = []
    for q in range(questions):
        body = {"model": model(q), "messages": [{"role": "user", "content": f"Question {q}?"}]}
        started = time.perf_counter()
        response = client.post("/chat/completions", json=body)
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        answer = response.json()
        right += answer["choices"][0]["message"]["content"] == f"Answer {q}"
        tokens += answer["usage"]["total_tokens"]
    return right / questions, tokens, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--accuracy", type=float, default=0.65)
    parser.add_argument("--correlation", type=float, default=0.4)
    parser.add_argument("--delay", type=int, default=20, help="ms per upstream call")
    args = parser.parse_args()
    models, moa = _setup(args)
    rows = []
    with gateway(models, {"moa": moa}) as client:
        accuracy, base_tokens, latencies = _run(client, args.questions, lambda q: f"q{q}-p0")
        rows.append(
            {
                "setting": "single proposer",
                "proposers": 1,
                "layers": 0,
                "accuracy": round(accuracy, 3),
                "cost_multiplier": 1.0,
                "p95_latency_ms": round(p95(latencies), 1),
            }
        )
        for size in PROPOSERS:
            for layers in LAYERS:
                accuracy, tokens, latencies = _run(
                    client, args.questions, lambda q, s=size, n=layers: f"moa-{q}-{s}-{n}"
                )
                rows.append(
                    {
                        "setting": f"moa {size}+1 × {layers}",
                        "proposers": size,
                        "layers": layers,
                        "accuracy": round(accuracy, 3),
                        "cost_multiplier": round(tokens / base_tokens, 2),
                        "p95_latency_ms": round(p95(latencies), 1),
                    }
                )
    print(f"{'setting':<18}{'accuracy':>9}{'cost ×':>8}{'p95 ms':>9}")
    for r in rows:
        print(
            f"{r['setting']:<18}{r['accuracy']:>9.3f}{r['cost_multiplier']:>8.2f}"
            f"{r['p95_latency_ms']:>9.1f}"
        )
    settings = {k: getattr(args, k) for k in ("questions", "accuracy", "correlation", "delay")}
    aggregator = (
        "fake: answers a proposal shown at least twice and more often than any other, "
        "else its own seeded answer (crossroads.testing.fake_aggregate); not a real model"
    )
    OUT.write_text(
        json.dumps({"seed": SEED, **settings, "aggregator": aggregator, "results": rows}, indent=2)
        + "\n"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
