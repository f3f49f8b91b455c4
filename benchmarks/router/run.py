"""The quality router judged only on prompts it never saw: unseen MMLU subjects, unseen GSM8K rows.

Split (fixed, no tuning): the 42 MMLU subjects sorted by name, subject i in fold i mod 3; the
GSM8K rows shuffled with seed 0, row i of the shuffle in fold i mod 3. For each fold k the router
is trained on the other two folds (MMLU subjects and GSM8K rows together) and judged on fold k,
so every MMLU subject is held out exactly once and never seen by the router that scores it.
APGR and CPT are computed per fold on that fold's held-out MMLU prompts (pooled over its
subjects) and held-out GSM8K rows, next to the random and prompt-length baselines on the same
prompts, and averaged over the three folds. Ablations show each learner of the ensemble alone.

The willingness-to-pay curve pools the held-out predictions of all folds (each prompt scored
by the router that did not see it) at the reference prices in `crossroads.learned.decision`.
Latency is `QualityRouter.predict` on one prompt at a time, one thread; load time is a fresh
Python process importing the package and loading the artifact.

    .venv/bin/python benchmarks/router/run.py [--data ../shared/data/routellm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from crossroads.learned.data import CHARS_PER_TOKEN, LabelledRow, read_rows, score_table
from crossroads.learned.decision import REFERENCE_PRICES
from crossroads.learned.evaluation import cost_matrix
from crossroads.learned.logistic import sigmoid
from crossroads.learned.metrics import (
    apgr,
    cpt,
    length_scores,
    pgr_curve,
    random_baseline,
    wtp_curve,
    wtp_grid,
)
from crossroads.learned.predictor import QualityRouter, train

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "router.json"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
FOLDS = 3
TARGETS = {"mmlu_apgr": 0.62, "mmlu_cpt50": 0.35, "gsm8k_apgr": 0.62}


def folds_of(rows: list[LabelledRow], seed: int) -> dict[str, int]:
    """Each prompt's fold: MMLU by subject (file, fixed), GSM8K by row shuffled with `seed`."""
    subjects = sorted({r.source for r in rows if r.source and r.source.startswith("mmlu_")})
    subject_fold = {s: i % FOLDS for i, s in enumerate(subjects)}
    gsm = sorted({r.prompt for r in rows if r.source == "gsm8k_responses"})
    order = np.random.default_rng(seed).permutation(len(gsm))
    fold = {gsm[j]: i % FOLDS for i, j in enumerate(order)}
    for r in rows:
        if r.source in subject_fold:
            fold[r.prompt] = subject_fold[r.source]
    return fold


def _quality_parts(router: QualityRouter, prompts: list[str]) -> dict[str, np.ndarray]:
    """Strong-minus-weak scores of the ensemble and of each of its learners alone."""
    from crossroads.learned.features import prompt_features

    x = np.array([prompt_features(p) for p in prompts])
    standard = (x - router.feature_mean) / router.feature_scale
    s, w = (router.learners[router.models.index(m)] for m in (STRONG, WEAK))
    linear = sigmoid(s.logistic.logit(standard)) - sigmoid(w.logistic.logit(standard))
    trees = sigmoid(s.trees.logit(x)) - sigmoid(w.trees.logit(x))
    return {"router (ensemble)": (linear + trees) / 2, "logistic only": linear, "trees only": trees}


def _scores(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> dict[str, float]:
    curve = pgr_curve(scores, weak, strong)
    return {"apgr": apgr(curve), "cpt50": cpt(curve, 0.5), "cpt80": cpt(curve, 0.8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/routellm")
    parser.add_argument("--latency-prompts", type=int, default=1000)
    parser.add_argument(
        "--repeats", type=int, default=3, help="GSM8K row splits (seeds 0…n-1), 3 folds each"
    )
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()

    rows = read_rows([args.data])
    table = score_table(rows)
    weak_col, strong_col = table.column(WEAK), table.column(STRONG)
    is_mmlu = np.array([s.startswith("mmlu_") for s in table.sources])

    per_fold: list[dict[str, Any]] = []
    held_quality = np.zeros((len(table.prompts), 2))
    held_tokens = np.zeros((len(table.prompts), 2))
    latency_router: QualityRouter | None = None
    latency_prompts: list[str] = []
    for seed in range(args.repeats):
        fold = folds_of(rows, seed)
        prompt_fold = np.array([fold[p] for p in table.prompts])
        for k in range(FOLDS):
            train_rows = [r for r in rows if fold[r.prompt] != k]
            router = train(train_rows)
            held = np.flatnonzero(prompt_fold == k)
            prompts = [table.prompts[i] for i in held]
            if latency_router is None:
                latency_router, latency_prompts = router, prompts
            result: dict[str, Any] = {"seed": seed, "fold": k, "train_rows": len(train_rows)}
            result["held_out_subjects"] = sorted({table.sources[i] for i in held if is_mmlu[i]})
            quality, tokens = router.predict_many(prompts)
            if seed == 0:
                order = [router.models.index(WEAK), router.models.index(STRONG)]
                held_quality[held], held_tokens[held] = quality[:, order], tokens[:, order]
            parts = _quality_parts(router, prompts)
            for name, mask in (("mmlu", is_mmlu[held]), ("gsm8k", ~is_mmlu[held])):
                idx = held[mask]
                w, s = weak_col[idx], strong_col[idx]
                entry: dict[str, Any] = {"prompts": len(idx)}
                for router_name, scores in parts.items():
                    entry[router_name] = _scores(scores[mask], w, s)
                entry["prompt length"] = _scores(
                    length_scores([table.prompts[i] for i in idx]), w, s
                )
                r_apgr, r50, r80 = random_baseline(w, s)
                entry["random"] = {"apgr": r_apgr, "cpt50": r50, "cpt80": r80}
                result[name] = entry
            per_fold.append(result)
            console.print(
                f"split {seed}, fold {k}: trained on {len(train_rows)} rows; held-out APGR "
                f"MMLU {result['mmlu']['router (ensemble)']['apgr']:.3f}, "
                f"GSM8K {result['gsm8k']['router (ensemble)']['apgr']:.3f}"
            )

    names = ["router (ensemble)", "logistic only", "trees only", "prompt length", "random"]
    summary: dict[str, Any] = {}
    for task in ("mmlu", "gsm8k"):
        summary[task] = {
            n: {
                metric: statistics.mean(f[task][n][metric] for f in per_fold)
                for metric in ("apgr", "cpt50", "cpt80")
            }
            for n in names
        }

    curves = {}
    for task, mask in (("mmlu", is_mmlu), ("gsm8k", ~is_mmlu)):
        idx = np.flatnonzero(mask)
        pair = [WEAK, STRONG]
        prompt_tokens = np.array([len(table.prompts[i]) / CHARS_PER_TOKEN for i in idx])
        recorded = table.completion_tokens[idx][:, [table.models.index(m) for m in pair]]
        spent = np.where(np.isnan(recorded), held_tokens[idx], recorded)

        predicted = cost_matrix(pair, REFERENCE_PRICES, prompt_tokens, held_tokens[idx])
        actual_cost = cost_matrix(pair, REFERENCE_PRICES, prompt_tokens, spent)
        actual = np.stack([weak_col[idx], strong_col[idx]], axis=1)
        grid = wtp_grid(held_quality[idx], predicted)
        curves[task] = [
            {
                "willingness_to_pay": "inf"
                if np.isinf(p.willingness_to_pay)
                else p.willingness_to_pay,
                "accuracy": p.accuracy,
                "total_cost": p.total_cost,
                "strong_share": p.share[STRONG],
            }
            for p in wtp_curve(pair, held_quality[idx], predicted, actual, actual_cost, grid)
        ]

    assert latency_router is not None
    latency = _latency(latency_router, latency_prompts, args.latency_prompts)
    load = _load_time(latency_router)

    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "split": "MMLU: subjects sorted by name, subject i in fold i mod 3; GSM8K: rows "
        "shuffled (seeds 0..repeats-1), row i in fold i mod 3; train on two folds, judge on "
        "the third; figures are means over every (seed, fold)",
        "prices_per_million_tokens": {
            m: {"input": p.input, "output": p.output} for m, p in REFERENCE_PRICES.items()
        },
        "targets": TARGETS,
        "mean_over_folds": summary,
        "folds": per_fold,
        "willingness_to_pay_curve": curves,
        "latency_ms": latency,
        "load_seconds": load,
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    _print(console, report, names)


def _latency(router: QualityRouter, prompts: list[str], count: int) -> dict[str, float]:
    sample = prompts[:count]
    for p in sample[:50]:
        router.predict(p)
    times = []
    for p in sample:
        t = time.perf_counter()
        router.predict(p)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "p50": round(times[len(times) // 2], 3),
        "p99": round(times[int(len(times) * 0.99)], 3),
        "prompts": len(times),
    }


def _load_time(router: QualityRouter) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "router.npz"
        router.save(path)
        t = time.perf_counter()
        QualityRouter.load(path)
        in_process = time.perf_counter() - t
        code = (
            "import time; t = time.perf_counter(); "
            "from crossroads.learned import QualityRouter; "
            f"QualityRouter.load({str(path)!r}).predict('warm up'); "
            "print(time.perf_counter() - t)"
        )
        fresh = float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        size = path.stat().st_size
    return {
        "in_process": round(in_process, 4),
        "fresh_process_with_imports": round(fresh, 3),
        "artifact_bytes": size,
    }


def _print(console: Console, report: dict[str, Any], names: list[str]) -> None:
    for task, label in (("mmlu", "held-out MMLU subjects"), ("gsm8k", "held-out GSM8K rows")):
        table = Table(
            "router",
            "APGR",
            "CPT(50%)",
            "CPT(80%)",
            "APGR min",
            "APGR max",
            title=f"{label} (mean of {len(report['folds'])} held-out folds)",
        )
        for n in names:
            m = report["mean_over_folds"][task][n]
            table.add_row(
                n,
                f"{m['apgr']:.3f}",
                f"{m['cpt50']:.1%}",
                f"{m['cpt80']:.1%}",
                f"{min(f[task][n]['apgr'] for f in report['folds']):.3f}",
                f"{max(f[task][n]['apgr'] for f in report['folds']):.3f}",
            )
        console.print(table)
    for task, curve in report["willingness_to_pay_curve"].items():
        table = Table(
            "willingness to pay $",
            "accuracy",
            "total cost $",
            "GPT-4 share",
            title=f"{task}: cost/quality on held-out prompts (split 0)",
        )
        for p in curve:
            wtp = p["willingness_to_pay"]
            table.add_row(
                "∞" if wtp == "inf" else f"{wtp:g}",
                f"{p['accuracy']:.3f}",
                f"{p['total_cost']:.3f}",
                f"{p['strong_share']:.1%}",
            )
        console.print(table)
    lat, load = report["latency_ms"], report["load_seconds"]
    console.print(
        f"predict(): p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms over {lat['prompts']} "
        f"prompts; artifact {load['artifact_bytes'] / 1024:.0f} KiB loads in "
        f"{load['in_process'] * 1000:.1f} ms "
        f"({load['fresh_process_with_imports']:.2f} s in a fresh process with imports); "
        f"run took {report['seconds']} s → {RESULTS.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
