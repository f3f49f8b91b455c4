"""Evaluations: a dataset's rows sent to N models through the gateway, each answer scored.

The runner takes the rows and a `complete` function (one chat request through the gateway),
so it neither knows nor cares how the gateway is reached: the CLI passes one over HTTP.
Every model sees the same rows in the same order; a request that fails counts as an error
with score 0, not as a crash of the evaluation.
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
    cost: float | None


@dataclass(slots=True)
class ModelResult:
    model: str
    rows: list[RowResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        scores = [r.score for r in self.rows]
        latencies = [r.latency_ms for r in self.rows if r.error is None]
        costs = [r.cost for r in self.rows if r.cost is not None]
        return {
            "model": self.model,
            "rows": len(self.rows),
            "score": round(statistics.fmean(scores), 4) if scores else None,
            "errors": sum(1 for r in self.rows if r.error is not None),
            "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "cost": round(sum(costs), 8) if costs else None,
        }


def _answer(response: dict[str, Any]) -> dict[str, Any]:
    choices = response.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    return message if isinstance(message, dict) else {}


def _one(
    row: dict[str, Any],
    model: str,
    complete: Complete,
    scorer: Scorer,
    parameters: dict[str, Any],
) -> RowResult:
    body: dict[str, Any] = {"model": model, "messages": row["messages"], **parameters}
    if row.get("tools"):
        body["tools"] = row["tools"]
    started = time.perf_counter()
    response, error = complete(body)
    latency_ms = (time.perf_counter() - started) * 1000
    answer = _answer(response) if response is not None else {}
    score = scorer(row["output"], answer) if response is not None else 0.0
    usage = (response or {}).get("usage") or {}
    text = answer.get("content")
    return RowResult(
        row_id=row["id"],
        model=model,
        score=score,
        answer=text if isinstance(text, str) else None,
        error=error,
        latency_ms=latency_ms,
        cost=usage.get("cost"),
    )


def evaluate(
    rows: Iterable[dict[str, Any]],
    models: Sequence[str],
    complete: Complete,
    scorer: Scorer,
    *,
    parameters: dict[str, Any] | None = None,
    concurrency: int = 1,
) -> list[ModelResult]:
    """Score every row (the API's row objects) against every model, `concurrency` requests
    at a time; results keep the rows' order. Rows are read as they are needed."""
    results = {model: ModelResult(model) for model in models}
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        window: deque[Future[RowResult]] = deque()
        for row in rows:
            if not isinstance(row.get("output"), dict):
                continue
            for model in models:
                window.append(pool.submit(_one, row, model, complete, scorer, parameters or {}))
            while len(window) >= 4 * max(1, concurrency):
                done = window.popleft().result()
                results[done.model].rows.append(done)
        while window:
            done = window.popleft().result()
            results[done.model].rows.append(done)
    return list(results.values())
