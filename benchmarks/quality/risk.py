"""Hallucination risk on held-out HaluEval: the grounding model against token overlap.

    PYTHONPATH=src .venv/bin/python benchmarks/quality/risk.py [--rows N]

For every split (QA, dialogue, summarization) and method, the AUROC of `risk` (hallucinated
answers should score higher) and the balanced accuracy at the default threshold 0.7 and at
0.5; the baseline is the share of the answer's tokens absent from the context, measured in
the same run on the same rows. Only the test half of the rows is used (halueval.py), never
the half `train_grounding.py` fitted on. Writes benchmarks/results/quality_risk.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from halueval import SPLITS, load_split
from scoring import auroc, balanced_accuracy

from crossroads.stages.grounding import (
    Support,
    grounding_features,
    load_grounding_model,
    overlap_risk,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "quality_risk.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2000, help="test rows per split")
    args = parser.parse_args()
    model = load_grounding_model()
    results = []
    print(
        f"{'split':<14}{'method':<12}{'AUROC':>8}{'bal.acc@0.7':>13}{'bal.acc@0.5':>13}{'µs/answer':>11}"
    )
    for split in SPLITS:
        examples = load_split(split, "test", args.rows)
        labels = [e.hallucinated for e in examples]
        scores: dict[str, list[float]] = {"overlap": [], "grounding": []}
        timing = {"overlap": 0.0, "grounding": 0.0}
        for e in examples:
            t0 = time.perf_counter()
            support = Support.of(e.context, e.question)
            scores["overlap"].append(overlap_risk(support, e.answer))
            t1 = time.perf_counter()
            scores["grounding"].append(model.risk(grounding_features(support, e.answer)))
            t2 = time.perf_counter()
            timing["overlap"] += t1 - t0
            timing["grounding"] += (t2 - t1) + (t1 - t0)
        for method, values in scores.items():
            row = {
                "split": split,
                "method": method,
                "answers": len(values),
                "auroc": round(auroc(values, labels), 3),
                "balanced_accuracy_0_7": round(balanced_accuracy(values, labels, 0.7), 3),
                "balanced_accuracy_0_5": round(balanced_accuracy(values, labels, 0.5), 3),
                "us_per_answer": round(timing[method] / len(values) * 1e6, 1),
            }
            results.append(row)
            print(
                f"{split:<14}{method:<12}{row['auroc']:>8.3f}{row['balanced_accuracy_0_7']:>13.3f}"
                f"{row['balanced_accuracy_0_5']:>13.3f}{row['us_per_answer']:>11.1f}"
            )
    verdict = {
        split: {
            "beats_baseline": next(
                r["auroc"] for r in results if r["split"] == split and r["method"] == "grounding"
            )
            > next(r["auroc"] for r in results if r["split"] == split and r["method"] == "overlap")
        }
        for split in SPLITS
    }
    OUT.write_text(
        json.dumps({"rows_per_split": args.rows, "results": results, "verdict": verdict}, indent=2)
        + "\n"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
