"""Labelled rows for the router: who was asked what, and how well they answered.

Everything the router learns from or is judged on is a plain `LabelledRow` (prompt, model,
score in [0, 1], optional cost and completion tokens), so any source — the shared RouteLLM
files, the gateway's log joined with feedback — feeds the same `train()`.

Two file layouts are read:
- RouteLLM's CSV: a `prompt` column, one boolean or numeric score column per model, and
  optionally `<model>_response` text columns (used only to estimate completion tokens). A
  `*_contaminated_prompts.jsonl` beside the file, or one directory up, lists prompts to drop.
- JSON Lines: one `{"prompt", "model", "score"[, "cost"][, "completion_tokens"]}` per line.

Bad input raises `RouterDataError` with the file, the line or column, and what to fix.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "LabelledRow",
    "RouterDataError",
    "ScoreTable",
    "contaminated_prompts",
    "read_csv",
    "read_jsonl",
    "read_rows",
    "score_table",
]

RESPONSE_SUFFIX = "_response"
CHARS_PER_TOKEN = 4.0
_TRUE = {"true", "yes"}
_FALSE = {"false", "no"}
_INDEX_COLUMNS = {"", "id", "idx", "index", "unnamed: 0", "subject", "category", "split"}


class RouterDataError(ValueError):
    """A data file the router cannot use; the message says which file and what to fix."""


@dataclass(frozen=True, slots=True)
class LabelledRow:
    """One model's answer to one prompt, scored in [0, 1] (1 = correct or best).

    `source` names where the row came from (the CSV file's stem, e.g. `mmlu_virology`), so
    evaluations can split by subject rather than by row.
    """

    prompt: str
    model: str
    score: float
    cost: float | None = None
    completion_tokens: float | None = None
    source: str | None = None


def read_rows(paths: Iterable[Path | str]) -> list[LabelledRow]:
    """Rows from files and directories (searched recursively for `.csv` and `.jsonl`)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in {".csv", ".jsonl"} and not _is_contamination_list(p)
            )
            if not found:
                raise RouterDataError(f"{path}: no .csv or .jsonl files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise RouterDataError(f"{path}: no such file or directory")
    rows: list[LabelledRow] = []
    for file in files:
        if file.suffix == ".jsonl":
            rows.extend(read_jsonl(file))
        elif file.suffix == ".csv":
            rows.extend(read_csv(file))
        else:
            raise RouterDataError(f"{file}: expected a .csv (RouteLLM layout) or .jsonl file")
    if not rows:
        raise RouterDataError("no labelled rows in " + ", ".join(str(p) for p in files))
    return rows


def _is_contamination_list(path: Path) -> bool:
    return path.name.endswith("contaminated_prompts.jsonl")


def contaminated_prompts(csv_path: Path) -> set[str]:
    """Prompts listed in `*contaminated_prompts.jsonl` beside `csv_path` or one level up."""
    found: set[str] = set()
    for directory in {csv_path.parent, csv_path.parent.parent}:
        for listing in sorted(directory.glob("*contaminated_prompts.jsonl")):
            for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    prompt = entry.get("eval_prompt", entry.get("prompt"))
                except (json.JSONDecodeError, AttributeError):
                    raise RouterDataError(
                        f"{listing}:{number}: not a JSON object with an 'eval_prompt' field"
                    ) from None
                if isinstance(prompt, str):
                    found.add(prompt)
    return found


def _score_cell(text: str) -> float | None:
    """A CSV score: a boolean or a number; None for an empty cell; NaN when neither."""
    value = text.strip()
    if not value:
        return None
    lowered = value.lower()
    if lowered in _TRUE:
        return 1.0
    if lowered in _FALSE:
        return 0.0
    try:
        return float(value)
    except ValueError:
        return math.nan


def read_csv(path: Path | str) -> list[LabelledRow]:
    """Rows from one RouteLLM-layout CSV file (contaminated prompts dropped)."""
    path = Path(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
            header = list(records[0]) if records else []
    except UnicodeDecodeError:
        raise RouterDataError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise RouterDataError(f"{path}: not a readable CSV file ({exc})") from None
    if not records:
        raise RouterDataError(f"{path}: no rows (expected a header line and one row per prompt)")
    if "prompt" not in header:
        raise RouterDataError(
            f"{path}: no 'prompt' column; the columns are {', '.join(header)}. Expected "
            "'prompt' and one boolean or numeric score column per model"
        )
    models = _score_columns(path, header, records)
    dropped = contaminated_prompts(path)
    rows = []
    for record in records:
        prompt = record["prompt"]
        if not prompt or prompt in dropped:
            continue
        for model in models:
            score = _score_cell(record[model] or "")
            if score is None:
                continue  # this model was not asked this prompt
            response = record.get(model + RESPONSE_SUFFIX)
            tokens = len(response) / CHARS_PER_TOKEN if response else None
            rows.append(
                LabelledRow(prompt, model, score, completion_tokens=tokens, source=path.stem)
            )
    return rows


def _score_columns(path: Path, header: list[str], records: list[dict[str, str]]) -> list[str]:
    """Columns that hold scores: all but the prompt, response texts, index-like columns and
    columns of plain text (metadata such as a subject name)."""
    models = []
    for column in header:
        if (
            column == "prompt"
            or column.endswith(RESPONSE_SUFFIX)
            or column.strip().lower() in _INDEX_COLUMNS
        ):
            continue
        cells = [(n, _score_cell(r[column] or "")) for n, r in enumerate(records, 2)]
        given = [(n, v) for n, v in cells if v is not None]
        if given and all(math.isnan(v) for _, v in given):
            continue  # a text column: not a model's score
        for number, score in given:
            if not 0.0 <= score <= 1.0:
                raise RouterDataError(
                    f"{path}:{number}: column {column!r} holds {records[number - 2][column]!r};"
                    " a model's score must be True/False or a number in [0, 1] (rescale the "
                    f"column, or name a response-text column '{column}{RESPONSE_SUFFIX}')"
                )
        models.append(column)
    if not models:
        raise RouterDataError(
            f"{path}: no score columns; expected one boolean or numeric column per model "
            "beside 'prompt'"
        )
    return models


def read_jsonl(path: Path | str) -> list[LabelledRow]:
    """Rows from JSON Lines: `{"prompt", "model", "score"[, "cost"][, "completion_tokens"]}`."""
    path = Path(path)
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise RouterDataError(f"{path}: not UTF-8 text") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RouterDataError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise RouterDataError(f"{where}: expected a JSON object per line")
        prompt, model, score = item.get("prompt"), item.get("model"), item.get("score")
        if not isinstance(prompt, str) or not prompt:
            raise RouterDataError(f"{where}: 'prompt' must be a non-empty string")
        if not isinstance(model, str) or not model:
            raise RouterDataError(f"{where}: 'model' must be a non-empty string")
        if isinstance(score, bool):
            score = float(score)
        if not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
            raise RouterDataError(f"{where}: 'score' must be a number in [0, 1] or a boolean")
        cost = _optional_number(item, "cost", where)
        tokens = _optional_number(item, "completion_tokens", where)
        rows.append(LabelledRow(prompt, model, float(score), cost, tokens, source=path.stem))
    return rows


def _optional_number(item: dict[str, object], field: str, where: str) -> float | None:
    value = item.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise RouterDataError(f"{where}: {field!r} must be a non-negative number when given")
    return float(value)


@dataclass(frozen=True, slots=True)
class ScoreTable:
    """Rows pivoted to prompts × models; NaN where a model was not scored on a prompt."""

    prompts: list[str]
    models: list[str]
    scores: npt.NDArray[np.float64]
    completion_tokens: npt.NDArray[np.float64]
    sources: list[str]

    def column(self, model: str) -> npt.NDArray[np.float64]:
        return self.scores[:, self.models.index(model)]

    def subset(self, keep: Sequence[int] | npt.NDArray[np.intp]) -> ScoreTable:
        index = np.asarray(keep, dtype=np.intp)
        return ScoreTable(
            [self.prompts[i] for i in index],
            self.models,
            self.scores[index],
            self.completion_tokens[index],
            [self.sources[i] for i in index],
        )


def score_table(rows: Iterable[LabelledRow]) -> ScoreTable:
    """Pivot rows to a table; a model scored twice on one prompt gets the mean."""
    prompt_index: dict[str, int] = {}
    model_index: dict[str, int] = {}
    sources: list[str] = []
    cells: list[tuple[int, int, float, float | None]] = []
    for row in rows:
        if row.prompt not in prompt_index:
            prompt_index[row.prompt] = len(prompt_index)
            sources.append(row.source or "")
        model_index.setdefault(row.model, len(model_index))
        cells.append(
            (prompt_index[row.prompt], model_index[row.model], row.score, row.completion_tokens)
        )
    shape = (len(prompt_index), len(model_index))
    total, count = np.zeros(shape), np.zeros(shape)
    token_total, token_count = np.zeros(shape), np.zeros(shape)
    for p, m, score, tokens in cells:
        total[p, m] += score
        count[p, m] += 1
        if tokens is not None:
            token_total[p, m] += tokens
            token_count[p, m] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(count > 0, total / count, np.nan)
        tokens_mean = np.where(token_count > 0, token_total / token_count, np.nan)
    return ScoreTable(list(prompt_index), list(model_index), scores, tokens_mean, sources)
