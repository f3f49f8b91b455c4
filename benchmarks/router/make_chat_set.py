"""Build the held-out open-ended chat set (`data/mt_bench_chat.jsonl`) from MT-Bench judgements.

Usage: python benchmarks/router/make_chat_set.py PATH/TO/routellm/evals/mt_bench

MT-Bench's 80 questions (writing, roleplay, extraction, reasoning, math, coding, STEM,
humanities) were answered by both RouteLLM models and each answer rated 1–10 by a GPT-4 judge;
the files are RouteLLM's `routellm/evals/mt_bench/` (Apache-2.0), the questions FastChat's
(Apache-2.0). Each question gives two rows per model, in the router's JSON Lines layout:
the first turn alone, and the two user turns joined by a blank line (what the gateway's
`request_prompt` reads from a two-turn request), each scored judge rating / 10. Questions
listed in `contaminated_prompts.jsonl` (leaked into RouteLLM's training sets) are dropped.
The router never trains on these prompts: they are only for judging it out of distribution.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folder: Path, out: Path) -> None:
    questions = [json.loads(line) for line in (folder / "question.jsonl").open()]
    leaked = {
        json.loads(line)["eval_prompt"]
        for line in (folder / "contaminated_prompts.jsonl").open()
        if line.strip()
    }
    scores: dict[tuple[int, str, int], float] = {}
    for line in (folder / "judgements.jsonl").open():
        item = json.loads(line)
        scores[(item["question_id"], item["model"], item["turn"])] = float(item["score"])
    models = sorted({m for _, m, _ in scores})
    rows = []
    for question in questions:
        turns = question["turns"]
        if any(t in leaked for t in turns):
            continue
        for turn, prompt in ((1, turns[0]), (2, "\n\n".join(turns[:2]))):
            got = [scores.get((question["question_id"], m, turn), -1.0) for m in models]
            if any(g < 0 for g in got):
                continue  # an unrated answer (missing, or -1: the judge failed): no row
            for model, score in zip(models, got, strict=True):
                rows.append({"prompt": prompt, "model": model, "score": score / 10})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} rows, {len(rows) // len(models)} prompts -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).parent / "data" / "mt_bench_chat.jsonl")
