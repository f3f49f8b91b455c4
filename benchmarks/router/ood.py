"""The quality router out of distribution: judged on datasets and prompt kinds it never saw.

Splits (fixed, no tuning inside a run):
- `MMLU → GSM8K`: trained on all 42 MMLU subjects, judged on GSM8K word problems.
- `GSM8K → MMLU`: trained on GSM8K, judged on all MMLU subjects.
- `MMLU subjects k`: the 42 subjects sorted by name, subject i in fold i mod 3; trained on the
  other two folds' subjects plus GSM8K, judged on fold k's subjects (every subject once).
- `MMLU+GSM8K → chat`: trained on everything (the packaged artifact's data), judged on the
  open-ended chat set `data/mt_bench_chat.jsonl` (MT-Bench: writing, roleplay, coding,
  multi-turn; scores are a GPT-4 judge's 1–10 ratings / 10; see `make_chat_set.py`).

On each split, on the same prompts: the router as shipped (learned models blended with their
priors by familiarity), its learned models alone (no fallback), its priors alone, the
prompt-length baseline and a random router (mean of 200 seeded orders). APGR and CPT(50%)
per split; targets: router ≥ prompt length on every split, ≥ 0.62 APGR on held-out MMLU
subjects (mean of the three folds). Writes `benchmarks/results/router_ood.json`.

    nice -n 10 .venv/bin/python benchmarks/router/ood.py [--data ../shared/data/routellm]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from crossroads.learned.data import LabelledRow, read_jsonl, read_rows, score_table
from crossroads.learned.features import prompt_features
from crossroads.learned.metrics import apgr, cpt, length_scores, pgr_curve, random_baseline
from crossroads.learned.predictor import QualityRouter, train
from crossroads.learned.priors import prior_inputs
from crossroads.learned.querytype import classify

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "router_ood.json"
CHAT = Path(__file__).resolve().parent / "data" / "mt_bench_chat.jsonl"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
FOLDS = 3
TARGET_SUBJECTS_APGR = 0.62


Split = tuple[list[LabelledRow], list[LabelledRow]]


def splits(rows: list[LabelledRow], chat: list[LabelledRow]) -> dict[str, Split]:
    mmlu = [r for r in rows if (r.source or "").startswith("mmlu_")]
    gsm8k = [r for r in rows if r.source == "gsm8k_responses"]
    subjects = sorted({r.source or "" for r in mmlu})
    fold = {s: i % FOLDS for i, s in enumerate(subjects)}
    result = {"MMLU → GSM8K": (mmlu, gsm8k), "GSM8K → MMLU": (gsm8k, mmlu)}
    for k in range(FOLDS):
        held = [r for r in mmlu if fold[r.source or ""] == k]
        result[f"MMLU subjects {k}"] = (
            [r for r in mmlu if fold[r.source or ""] != k] + gsm8k,
            held,
        )
    result["MMLU+GSM8K → chat"] = (rows, chat)
    return result


def router_scores(router: QualityRouter, prompts: list[str]) -> dict[str, np.ndarray]:
    """Strong-minus-weak scores: as shipped, learned models alone, priors alone."""
    s, w = router.models.index(STRONG), router.models.index(WEAK)
    quality, _, confidence = router.predict_detailed(prompts)
    types = [classify(p) for p in prompts]
    x = np.array([prompt_features(p, t) for p, t in zip(prompts, types, strict=True)])
    learned = router.learned_quality(x)
    assert router.priors is not None
    standard = (x - router.feature_mean) / router.feature_scale
    prior = router.priors.quality(router.models, prior_inputs(standard, types), types)
    return {
        "router": quality[:, s] - quality[:, w],
        "learned only": learned[:, s] - learned[:, w],
        "priors only": prior[:, s] - prior[:, w],
        "prompt length": length_scores(prompts),
        "_confidence": confidence,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/routellm")
    parser.add_argument("--chat", type=Path, default=CHAT)
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()
    rows, chat = read_rows([args.data]), read_jsonl(args.chat)

    results: dict[str, Any] = {}
    for name, (train_rows, test_rows) in splits(rows, chat).items():
        router = train(train_rows, models=[STRONG, WEAK])
        table = score_table(test_rows)
        w, s = table.column(WEAK), table.column(STRONG)
        scores = router_scores(router, table.prompts)
        confidence = scores.pop("_confidence")
        entry: dict[str, Any] = {
            "train_prompts": router.summary["prompts"],
            "prompts": len(table.prompts),
            "mean_confidence": round(float(confidence.mean()), 4),
            "weak_accuracy": round(float(w.mean()), 4),
            "strong_accuracy": round(float(s.mean()), 4),
        }
        for label, values in scores.items():
            curve = pgr_curve(values, w, s)
            entry[label] = {"apgr": round(apgr(curve), 4), "cpt50": round(cpt(curve, 0.5), 4)}
        r_apgr, r50, _ = random_baseline(w, s)
        entry["random"] = {"apgr": round(r_apgr, 4), "cpt50": round(r50, 4)}
        results[name] = entry
        console.print(f"{name}: done ({time.perf_counter() - started:.0f} s)")

    subject_names = [f"MMLU subjects {k}" for k in range(FOLDS)]
    subjects_apgr = float(np.mean([results[n]["router"]["apgr"] for n in subject_names]))
    length_beaten = {
        n: results[n]["router"]["apgr"] >= results[n]["prompt length"]["apgr"] for n in results
    }
    show = Table("held out", "prompts", "confidence", "router", "APGR", "CPT(50%)")
    for name, entry in results.items():
        first = True
        for label in ("router", "learned only", "priors only", "prompt length", "random"):
            show.add_row(
                name if first else "",
                str(entry["prompts"]) if first else "",
                f"{entry['mean_confidence']:.2f}" if first else "",
                label,
                f"{entry[label]['apgr']:.3f}",
                f"{entry[label]['cpt50']:.1%}",
            )
            first = False
    console.print(show)
    console.print(
        f"held-out MMLU subjects, mean router APGR {subjects_apgr:.3f} "
        f"(target ≥ {TARGET_SUBJECTS_APGR}); router ≥ prompt length on "
        f"{sum(length_beaten.values())}/{len(length_beaten)} splits"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "router out of distribution (benchmarks/router/ood.py)",
                "machine": f"{platform.machine()} {platform.system()}, {platform.python_version()}",
                "weak": WEAK,
                "strong": STRONG,
                "splits": results,
                "mmlu_subjects_mean_router_apgr": round(subjects_apgr, 4),
                "targets": {
                    "mmlu_subjects_apgr": TARGET_SUBJECTS_APGR,
                    "met_mmlu_subjects": subjects_apgr >= TARGET_SUBJECTS_APGR,
                    "router_at_least_length": length_beaten,
                },
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    console.print(f"→ {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
