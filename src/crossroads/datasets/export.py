"""Export: a dataset's rows as fine-tuning JSONL, one line at a time.

Lines are made as rows are read (the store pages through them), so an export of any size
holds one page of rows and one preference group in memory (benchmarks/datasets/ measures it).

Formats:
- `openai`: chat SFT lines, `{"messages": input + [answer], "tools"?}`.
- `openai-dpo` (also `together-dpo`: Together takes OpenAI's preference format as is) and
  `trl-dpo`: preference pairs. A pair is an answer and one it was preferred over: a row's
  `rejected` answers (a fan-out's other choices, or an uploaded pair), and, among rows with
  the same input, the best-scored answer against the worst when their feedback scores differ.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from crossroads.datasets.pruning import Pruner
from crossroads.storage.dataset_store import DatasetRow, DatasetStore

__all__ = ["EXPORT_FORMATS", "ExportFormat", "Pair", "export_lines", "preference_pairs"]

ExportFormat = Literal["openai", "openai-dpo", "together-dpo", "trl-dpo"]
EXPORT_FORMATS: tuple[str, ...] = ("openai", "openai-dpo", "together-dpo", "trl-dpo")


@dataclass(frozen=True, slots=True)
class Pair:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    preferred: dict[str, Any]
    rejected: dict[str, Any]


def _sft(row: DatasetRow, pruner: Pruner) -> dict[str, Any] | None:
    if row.output is None:
        return None
    line: dict[str, Any] = {"messages": pruner.prune_messages([*row.messages, row.output])}
    if row.tools:
        line["tools"] = row.tools
    return line


def _openai_dpo(pair: Pair) -> dict[str, Any]:
    given: dict[str, Any] = {"messages": pair.messages}
    if pair.tools:
        given["tools"] = pair.tools
    return {
        "input": given,
        "preferred_output": [pair.preferred],
        "non_preferred_output": [pair.rejected],
    }


def _trl_dpo(pair: Pair) -> dict[str, Any]:
    return {"prompt": pair.messages, "chosen": [pair.preferred], "rejected": [pair.rejected]}


def _pairs_of_group(group: list[DatasetRow], pruner: Pruner) -> list[Pair]:
    pairs: list[Pair] = []
    first = group[0]
    messages = pruner.prune_messages(first.messages)
    for row in group:
        if row.output is None:
            continue
        for other in row.rejected or ():
            if other != row.output:
                pairs.append(
                    Pair(
                        messages,
                        first.tools,
                        pruner.prune_message(row.output),
                        pruner.prune_message(other),
                    )
                )
    scored = [r for r in group if r.score is not None and r.output is not None]
    if len(scored) >= 2:
        best = max(scored, key=lambda r: (r.score, r.id))
        worst = min(scored, key=lambda r: (r.score, r.id))
        assert best.output is not None and worst.output is not None
        if best.score != worst.score and best.output != worst.output:
            pairs.append(
                Pair(
                    messages,
                    first.tools,
                    pruner.prune_message(best.output),
                    pruner.prune_message(worst.output),
                )
            )
    return pairs


async def preference_pairs(
    store: DatasetStore, dataset_id: str, pruner: Pruner, *, split: str | None = None
) -> AsyncIterator[Pair]:
    """Pairs, one input's rows at a time (rows come grouped by prompt)."""
    group: list[DatasetRow] = []
    async for row in store.rows(dataset_id, split=split, by_prompt=True):
        if group and row.prompt_hash != group[0].prompt_hash:
            for pair in _pairs_of_group(group, pruner):
                yield pair
            group = []
        group.append(row)
    if group:
        for pair in _pairs_of_group(group, pruner):
            yield pair


async def export_lines(
    store: DatasetStore,
    dataset_id: str,
    format: str,
    pruner: Pruner,
    *,
    split: str | None = None,
) -> AsyncIterator[bytes]:
    """The dataset as JSONL in `format`, line by line (each ends with a newline)."""
    if format == "openai":
        async for row in store.rows(dataset_id, split=split):
            if (line := _sft(row, pruner)) is not None:
                yield orjson.dumps(line) + b"\n"
        return
    shape = _trl_dpo if format == "trl-dpo" else _openai_dpo
    async for pair in preference_pairs(store, dataset_id, pruner, split=split):
        yield orjson.dumps(shape(pair)) + b"\n"
