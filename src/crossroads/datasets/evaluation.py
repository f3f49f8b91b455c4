"""Evaluations: a dataset's rows sent to N models through the gateway, each answer scored.

The runner takes the rows and a `complete` function (one chat request through the gateway),
so it neither knows nor cares how the gateway is reached: the CLI passes one over HTTP.
Every model sees the same rows in the same order; a request that fails counts as an error
with score 0, not as a crash of the evaluation. With `criteria`, every request asks the
gateway to judge its answer on those named criteria (`[quality.criteria]`): each row keeps
the judges' verdicts and their cost, and each model's summary has a pass rate and mean
score per criterion.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from crossroads.datasets.scoring import Scorer

__all__ = ["ModelResult", "RowResult", "evaluate"]

# (body) -> (the response body, or None on failure; an error message or None)
Complete = Callable[[dict[str, Any]], tuple[dict[str, Any] | None, str | None]]


@dataclass(slots=True)
class RowResult:
    row_id: str
    model: str
    score: float
    answer: str | None
    error: str | None
    latency_ms: float
    cost: float | None  # the whole request's, the judges' included
    # The answer's `criteria_results` and what the judges cost (`usage.criteria.cost`).
    criteria: list[dict[str, Any]] = field(default_factory=list)
    judge_cost: float | None = None


def _criteria_summary(rows: list[RowResult], names: Sequence[str]) -> dict[str, Any]:
    """Per criterion: pass rate over every row (a failed request or judge counts as a
    fail), mean score over the rows judged, and how many rows had no verdict."""
    out: dict[str, Any] = {}
    for name in names:
        verdicts = [next((c for c in r.criteria if c.get("name") == name), None) for r in rows]
        scores = [v["score"] for v in verdicts if v and isinstance(v.get("score"), int | float)]
        passed = sum(1 for v in verdicts if v and v.get("status") == "pass")
        out[name] = {
            "pass_rate": round(passed / len(rows), 4) if rows else None,
            "mean_score": round(statistics.fmean(scores), 4) if scores else None,
            "errors": sum(1 for v in verdicts if v is None or v.get("status") == "error"),
        }
    return out


@dataclass(slots=True)
class ModelResult:
    model: str
    rows: list[RowResult] = field(default_factory=list)
    criteria: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        scores = [r.score for r in self.rows]
        latencies = [r.latency_ms for r in self.rows if r.error is None]
        costs = [r.cost for r in self.rows if r.cost is not None]
        summary = {
            "model": self.model,
            "rows": len(self.rows),
            "score": round(statistics.fmean(scores), 4) if scores else None,
            "errors": sum(1 for r in self.rows if r.error is not None),
            "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "cost": round(sum(costs), 8) if costs else None,
        }
        if self.criteria:
            judged = [r.judge_cost for r in self.rows if r.judge_cost is not None]
            summary["criteria"] = _criteria_summary(self.rows, self.criteria)
            summary["judge_cost"] = round(sum(judged), 8) if judged else None
        return summary


def _answer(response: dict[str, Any]) -> dict[str, Any]:
    """The first choice's message, with the choice's `criteria_results` when it has them."""
    choices = response.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    answer = dict(message) if isinstance(message, dict) else {}
    if isinstance(choice.get("criteria_results"), list):
        answer["criteria_results"] = choice["criteria_results"]
    return answer


def _one(
    row: dict[str, Any],
    model: str,
    complete: Complete,
    scorer: Scorer,
    parameters: dict[str, Any],
    criteria: Sequence[str],
) -> RowResult:
    body: dict[str, Any] = {"model": model, "messages": row["messages"], **parameters}
    if row.get("tools"):
        body["tools"] = row["tools"]
    if criteria:
        body["criteria"] = list(criteria)
    started = time.perf_counter()
    response, error = complete(body)
    latency_ms = (time.perf_counter() - started) * 1000
    answer = _answer(response) if response is not None else {}
    output = row.get("output")
    expected: dict[str, Any] = output if isinstance(output, dict) else {}
    score = scorer(expected, answer) if response is not None else 0.0
    usage = (response or {}).get("usage") or {}
    spent = usage.get("criteria")
    judges: dict[str, Any] = spent if isinstance(spent, dict) else {}
    text = answer.get("content")
    return RowResult(
        row_id=row["id"],
        model=model,
        score=score,
        answer=text if isinstance(text, str) else None,
        error=error,
        latency_ms=latency_ms,
        cost=usage.get("cost"),
        criteria=answer.get("criteria_results") or [],
        judge_cost=judges.get("cost"),
    )


def evaluate(
    rows: Iterable[dict[str, Any]],
    models: Sequence[str],
    complete: Complete,
    scorer: Scorer,
    *,
    parameters: dict[str, Any] | None = None,
    concurrency: int = 1,
    criteria: Sequence[str] = (),
) -> list[ModelResult]:
    """Score every row (the API's row objects) against every model, `concurrency` requests
    at a time; results keep the rows' order. Rows are read as they are needed. Without
    `criteria` a row with no expected output is skipped (there is nothing to match)."""
    names = tuple(criteria)
    results = {model: ModelResult(model, criteria=names) for model in models}
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        window: deque[Future[RowResult]] = deque()
        for row in rows:
            if not names and not isinstance(row.get("output"), dict):
                continue
            for model in models:
                window.append(
                    pool.submit(_one, row, model, complete, scorer, parameters or {}, names)
                )
            while len(window) >= 4 * max(1, concurrency):
                done = window.popleft().result()
                results[done.model].rows.append(done)
        while window:
            done = window.popleft().result()
            results[done.model].rows.append(done)
    return list(results.values())
