"""Train the shipped grounding model: src/crossroads/stages/grounding_model.npz.

    PYTHONPATH=src .venv/bin/python benchmarks/quality/train_grounding.py [--rows N]

A logistic regression over `grounding_features` (src/crossroads/stages/grounding.py), fitted
on the training half of every HaluEval split at once (halueval.py: rows shuffled with a fixed
seed; the benchmark `risk.py` evaluates only the other half). One model serves every kind of
answer, since the gateway cannot tell a QA answer from a chat reply.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from halueval import SPLITS, load_split

from crossroads.learned.logistic import fit_logistic
from crossroads.stages.grounding import GroundingModel, Support, grounding_features

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "src" / "crossroads" / "stages" / "grounding_model.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=3000, help="training rows per split")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    started = time.perf_counter()
    rows, labels = [], []
    for split in SPLITS:
        for ex in load_split(split, "train", args.rows):
            rows.append(grounding_features(Support.of(ex.context, ex.question), ex.answer))
            labels.append(float(ex.hallucinated))
    x = np.asarray(rows)
    y = np.asarray(labels)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    model = fit_logistic((x - mean) / scale, y, l2=1.0)
    grounding = GroundingModel(mean, scale, model.coef)
    grounding.save(args.out)
    print(f"trained on {len(y)} answers in {time.perf_counter() - started:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
