"""Autocorrect through the gateway on a seeded set where the wrong answers are known.

    PYTHONPATH=src .venv/bin/python benchmarks/quality/autocorrect.py [--rows N]

Items are held-out HaluEval QA rows (never seen by the grounding model). A seeded draw makes
the upstream's first answer the hallucinated one for `--wrong` of the items, and decides
whether the model, asked to rewrite with its unsupported claims named, gets it right
(`--fixable` of the wrong ones; a right answer stays right). The caller's request uses seed 1
(the first answer); the regeneration, sent without a seed, gets alternative 0 — the
rewrite. What the gateway does with that is real: the grounding risk against the row's
knowledge decides what is flagged, `regenerate` asks again, and the new answer is kept only
if its risk is lower; `drop` removes unsupported sentences without a call. Reports the error
rate (answers delivered that are the hallucinated one) before and after, abstentions, the
share flagged, and the extra cost of the side calls against the answers' own.
Writes benchmarks/results/quality_autocorrect.json.
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
from served import behaviour, gateway

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "quality_autocorrect.json"
SEED = 1616


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=600, help="test rows (2 answers each)")
    parser.add_argument("--wrong", type=float, default=0.45, help="share answered wrong first")
    parser.add_argument("--fixable", type=float, default=0.7, help="share a rewrite fixes")
    args = parser.parse_args()
    rng = random.Random(SEED)
    examples = load_split("qa", "test", args.rows)
    items = []
    for i in range(0, len(examples), 2):
        right, wrong = examples[i], examples[i + 1]
        first_wrong = rng.random() < args.wrong
        fixed = rng.random() < args.fixable
        first = wrong.answer if first_wrong else right.answer
        rewrite = right.answer if (not first_wrong or fixed) else wrong.answer
        items.append((right, wrong, first, rewrite))
    models = {f"item-{k}": behaviour([rw, first]) for k, (_, _, first, rw) in enumerate(items)}
    runs = []
    with gateway(models) as client:
        settings = [
            ("flag only", {"action": "flag"}),
            ("regenerate @0.7", {"action": "autocorrect", "autocorrect": "regenerate"}),
            ("regenerate @0.5", {"action": "autocorrect", "threshold": 0.5}),
            ("regenerate @0.3", {"action": "autocorrect", "threshold": 0.3}),
            ("drop @0.5", {"action": "autocorrect", "autocorrect": "drop", "threshold": 0.5}),
        ]
        for label, quality in settings:
            before = after = abstained = flagged = 0
            base_cost = extra_cost = 0.0
            started = time.perf_counter()
            for k, (right, wrong, first, _) in enumerate(items):
                body = {
                    "model": f"item-{k}",
                    "seed": 1,
                    "messages": [
                        {
                            "role": "system",
                            "content": f"Answer from this knowledge: {right.context[0]}",
                        },
                        {"role": "user", "content": right.question},
                    ],
                    "quality": quality,
                }
                response = client.post("/chat/completions", json=body).json()
                text = response["choices"][0]["message"]["content"]
                report = response["quality"]
                usage = response["usage"]
                extra = (usage.get("quality") or {}).get("cost", 0.0)
                base_cost += usage["cost"] - extra
                extra_cost += extra
                before += first == wrong.answer
                after += text.strip() == wrong.answer.strip()
                abstained += text.startswith("I cannot answer")
                flagged += report["flagged"] or report["autocorrected"]
            n = len(items)
            run = {
                "setting": label,
                "items": n,
                "error_before": round(before / n, 3),
                "error_after": round(after / n, 3),
                "abstained": round(abstained / n, 3),
                "flagged_or_fixed": round(flagged / n, 3),
                "extra_cost_share": round(extra_cost / base_cost, 3) if base_cost else 0.0,
                "seconds": round(time.perf_counter() - started, 2),
            }
            runs.append(run)
    print(
        f"{'setting':<18}{'error before':>13}{'error after':>12}{'abstained':>10}"
        f"{'flagged':>9}{'extra cost':>11}"
    )
    for r in runs:
        print(
            f"{r['setting']:<18}{r['error_before']:>13.3f}{r['error_after']:>12.3f}"
            f"{r['abstained']:>10.3f}{r['flagged_or_fixed']:>9.3f}{r['extra_cost_share']:>10.1%}"
        )
    OUT.write_text(
        json.dumps(
            {"seed": SEED, "wrong": args.wrong, "fixable": args.fixable, "runs": runs}, indent=2
        )
        + "\n"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
