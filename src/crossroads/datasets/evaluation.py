"""Evaluations: a dataset's rows sent to N models through the gateway, each answer scored.

The runner takes the rows and a `complete` function (one chat request through the gateway),
so it neither knows nor cares how the gateway is reached: the CLI passes one over HTTP.
Every model sees the same rows in the same order; a request that fails counts as an error
with score 0, not as a crash of the evaluation.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
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


def evaluate(
    rows: Iterable[dict[str, Any]],
    models: Sequence[str],
    complete: Complete,
    scorer: Scorer,
    *,
    parameters: dict[str, Any] | None = None,
) -> list[ModelResult]:
    """Score every row (the API's row objects) against every model."""
    results = [ModelResult(model) for model in models]
    for row in rows:
        expected = row.get("output")
        if not isinstance(expected, dict):
            continue
        for result in results:
            body: dict[str, Any] = {
                "model": result.model,
                "messages": row["messages"],
                **(parameters or {}),
            }
            if row.get("tools"):
                body["tools"] = row["tools"]
            started = time.perf_counter()
            response, error = complete(body)
            latency_ms = (time.perf_counter() - started) * 1000
            answer = _answer(response) if response is not None else {}
            score = scorer(expected, answer) if response is not None else 0.0
            usage = (response or {}).get("usage") or {}
            text = answer.get("content")
            result.rows.append(
                RowResult(
                    row_id=row["id"],
                    model=result.model,
                    score=score,
                    answer=text if isinstance(text, str) else None,
                    error=error,
                    latency_ms=latency_ms,
                    cost=usage.get("cost"),
                )
            )
    return results
