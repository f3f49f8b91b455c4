"""Sample consistency against grounding and overlap, on synthetic samples of HaluEval QA.

    PYTHONPATH=src .venv/bin/python benchmarks/quality/consistency.py [--rows N]

The samples are synthetic: HaluEval has one right and one hallucinated answer per question,
not a model's repeated samples, so a seeded draw makes them up, with the premise the
`consistency` method rests on built in — right answers are mostly stable across samples,
hallucinated ones mostly vary. For a right answer, each further sample is the same answer
with probability `--stable`, else the question's hallucinated answer (the model sometimes
errs). For a hallucinated answer, each further sample is the same hallucination with
probability `--repeat` (a confident misconception), else the right answer or another
question's hallucinated answer (a different confabulation), half and half. The figures say
how well each method reads the variation the draw put in, not how a real model varies.

Items are held-out HaluEval QA rows (both answers of each question, never seen by the
grounding model). Every item is asked through the gateway three times, once per method
(`quality: {method, samples}`), in the same run: the caller's seed 0 gets the graded
answer, the consistency method's extra calls (seeds 1..samples-1) get the samples.
Reports AUROC and balanced accuracy at 0.5 of `quality.risk` (hallucinated answers should
score higher) and the extra cost of each method's side calls against the answers' own.
Writes benchmarks/results/quality_consistency.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from halueval import load_split
from scoring import auroc, balanced_accuracy
from served import behaviour, gateway

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "quality_consistency.json"
SEED = 1619
METHODS = ("overlap", "grounding", "consistency")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=600, help="test rows (2 answers each)")
    parser.add_argument("--samples", type=int, default=5, help="answers compared (2-10)")
    parser.add_argument("--stable", type=float, default=0.8, help="right answers repeated")
    parser.add_argument("--repeat", type=float, default=0.3, help="hallucinations repeated")
    args = parser.parse_args()
    rng = random.Random(SEED)
    examples = load_split("qa", "test", args.rows)
    pairs = [(examples[i], examples[i + 1]) for i in range(0, len(examples) - 1, 2)]
    items = []  # (model name, the pair's right example, hallucinated?, alternatives)
    for k, (right, wrong) in enumerate(pairs):
        for hallucinated in (False, True):
            answer = wrong.answer if hallucinated else right.answer
            samples = [answer]
            for _ in range(args.samples - 1):
                if not hallucinated:
                    samples.append(right.answer if rng.random() < args.stable else wrong.answer)
                elif rng.random() < args.repeat:
                    samples.append(wrong.answer)
                elif rng.random() < 0.5:
                    samples.append(right.answer)
                else:
                    samples.append(rng.choice(pairs)[1].answer)
            items.append((f"item-{k}-{int(hallucinated)}", right, hallucinated, samples))
    models = {name: behaviour(samples) for name, _, _, samples in items}
    labels = [hallucinated for _, _, hallucinated, _ in items]
    results = []
    with gateway(models) as client:
        for method in METHODS:
            risks: list[float] = []
            base_cost = extra_cost = 0.0
            started = time.perf_counter()
            for name, right, _, _ in items:
                body = {
                    "model": name,
                    "seed": 0,
                    "messages": [
                        {
                            "role": "system",
                            "content": f"Answer from this knowledge: {right.context[0]}",
                        },
                        {"role": "user", "content": right.question},
                    ],
                    "quality": {"method": method, "samples": args.samples},
                }
                response = client.post("/chat/completions", json=body)
                response.raise_for_status()
                answer = response.json()
                risks.append(float(answer["quality"]["risk"]))
                usage = answer["usage"]
                extra = (usage.get("quality") or {}).get("cost", 0.0)
                base_cost += usage["cost"] - extra
                extra_cost += extra
            results.append(
                {
                    "method": method,
                    "answers": len(risks),
                    "auroc": round(auroc(risks, labels), 3),
                    "balanced_accuracy_0_5": round(balanced_accuracy(risks, labels, 0.5), 3),
                    "extra_cost_share": round(extra_cost / base_cost, 3) if base_cost else 0.0,
                    "ms_per_answer": round((time.perf_counter() - started) / len(risks) * 1e3, 2),
                }
            )
    print(f"{'method':<13}{'AUROC':>8}{'bal.acc@0.5':>13}{'extra cost':>12}{'ms/answer':>11}")
    for r in results:
        print(
            f"{r['method']:<13}{r['auroc']:>8.3f}{r['balanced_accuracy_0_5']:>13.3f}"
            f"{r['extra_cost_share']:>11.1%}{r['ms_per_answer']:>11.2f}"
        )
    settings = {k: getattr(args, k) for k in ("rows", "samples", "stable", "repeat")}
    note = "synthetic samples drawn from HaluEval QA answers; see the script's docstring"
    OUT.write_text(
        json.dumps({"seed": SEED, **settings, "data": note, "results": results}, indent=2) + "\n"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
