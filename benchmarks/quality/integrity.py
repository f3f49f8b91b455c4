"""Integrity voting and mixture of agents through the gateway, with seeded fake models.

    PYTHONPATH=src .venv/bin/python benchmarks/quality/integrity.py [--questions N]

Each question has a right answer. Its candidates are drawn in advance with a fixed seed: each
is right with probability `--accuracy`; a wrong one is, with probability `--correlation`,
the question's one common wrong answer (errors that agree, as a model's misconceptions do),
else one of several scattered wrong answers. Candidate k is the fake's answer to seed k, and
integrity N asks seeds 0..N-1, so N = 1 is the plain model. Every upstream call takes
`--delay` ms. Reports, per N: accuracy, cost multiplier against N = 1, p95 latency, and the
AUROC of `integrity.agreement` as a confidence score (right answers should agree more).
Mixture of agents (three proposers, an aggregator, fixed fake answers) is measured here only
for its cost multiplier and p95 latency against a single call; mixture.py measures its
accuracy against proposers and layers with a stated fake aggregator.
Writes benchmarks/results/quality_integrity.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scoring import auroc, p95
from served import behaviour, gateway

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "quality_integrity.json"
SEED = 1617
SIZES = (1, 3, 5, 7)


def _candidates(rng: random.Random, q: int, accuracy: float, correlation: float) -> list[str]:
    out = []
    for _ in range(max(SIZES)):
        if rng.random() < accuracy:
            out.append(f"Answer {q}")
        elif rng.random() < correlation:
            out.append(f"Common mistake {q}")
        else:
            out.append(f"Stray guess {q}-{rng.randrange(6)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--accuracy", type=float, default=0.65)
    parser.add_argument("--correlation", type=float, default=0.4)
    parser.add_argument("--delay", type=int, default=20, help="ms per upstream call")
    args = parser.parse_args()
    rng = random.Random(SEED)
    questions = [
        _candidates(rng, q, args.accuracy, args.correlation) for q in range(args.questions)
    ]
    models = {f"q-{q}": behaviour(c, args.delay) for q, c in enumerate(questions)}
    models.update({f"proposer-{k}": behaviour([f"Proposal {k}"], args.delay) for k in range(3)})
    models["aggregator"] = behaviour(["Aggregated answer"], args.delay)
    moa = {"moa": {"proposers": [f"proposer-{k}" for k in range(3)], "aggregator": "aggregator"}}
    rows = []
    with gateway(models, {"moa": moa}) as client:
        base_tokens = 0.0
        for n in SIZES:
            right = 0
            tokens = cost = 0.0
            latencies: list[float] = []
            agreement: list[float] = []
            correct: list[bool] = []
            for q in range(args.questions):
                body = {
                    "model": f"q-{q}",
                    "messages": [{"role": "user", "content": f"Question {q}?"}],
                    **({"integrity": n} if n > 1 else {}),
                }
                started = time.perf_counter()
                response = client.post("/chat/completions", json=body).json()
                latencies.append((time.perf_counter() - started) * 1000)
                text = response["choices"][0]["message"]["content"]
                ok = text == f"Answer {q}"
                right += ok
                tokens += response["usage"]["total_tokens"]
                cost += response["usage"]["cost"]
                if n > 1:
                    agreement.append(response["integrity"]["agreement"])
                    correct.append(ok)
            if n == 1:
                base_tokens = tokens
            rows.append(
                {
                    "setting": f"integrity N={n}",
                    "accuracy": round(right / args.questions, 3),
                    "cost_multiplier": round(tokens / base_tokens, 2),
                    "p95_latency_ms": round(p95(latencies), 1),
                    "agreement_auroc": round(auroc(agreement, correct), 3) if agreement else None,
                }
            )
        latencies = []
        tokens = 0.0
        for q in range(args.questions):
            body = {"model": "moa", "messages": [{"role": "user", "content": f"Question {q}?"}]}
            started = time.perf_counter()
            response = client.post("/chat/completions", json=body).json()
            latencies.append((time.perf_counter() - started) * 1000)
            tokens += response["usage"]["total_tokens"]
        rows.append(
            {
                "setting": "mixture 3+1",
                "accuracy": None,
                "cost_multiplier": round(tokens / base_tokens, 2),
                "p95_latency_ms": round(p95(latencies), 1),
                "agreement_auroc": None,
            }
        )
    print(f"{'setting':<16}{'accuracy':>9}{'cost ×':>8}{'p95 ms':>9}{'agreement AUROC':>17}")
    for r in rows:
        acc = f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "-"
        auc = f"{r['agreement_auroc']:.3f}" if r["agreement_auroc"] is not None else "-"
        print(
            f"{r['setting']:<16}{acc:>9}{r['cost_multiplier']:>8.2f}{r['p95_latency_ms']:>9.1f}{auc:>17}"
        )
    settings = {k: getattr(args, k) for k in ("questions", "accuracy", "correlation", "delay")}
    OUT.write_text(json.dumps({"seed": SEED, **settings, "results": rows}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
