"""What the dashboard's templates are given: time ranges, chart series, a record's parts.

Everything a template shows passes through here, so this is where secrets are kept out:
request and response bodies are shown with any secret-named field replaced (`redacted`),
keys are shown by id, name and prefix only, and PII the guardrails masked before the record
was stored stays masked, since only the stored record is ever read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.server.state import AppState
from crossroads.storage.dashboard_store import GroupTotals, HourPoint
from crossroads.storage.records import LogRecord

__all__ = [
    "RANGES",
    "TimeRange",
    "breaker_rows",
    "chart",
    "record_sections",
    "redacted",
    "time_range",
]

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
_SECRET_NAMES = frozenset(
    {
        "api_key",
        "openai_api_key",
        "authorization",
        "key",
        "key_hash",
        "secret",
        "password",
        "token",
        "x-api-key",
    }
)
REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class TimeRange:
    name: str
    start: datetime
    end: datetime

    @property
    def daily(self) -> bool:
        """Charts of more than a day plot one point per day."""
        return self.end - self.start > timedelta(days=1)

    def points(self) -> list[datetime]:
        """The start of each hour (or day) the charts plot."""
        if self.daily:
            first = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
            step = timedelta(days=1)
        else:
            first = self.start.replace(minute=0, second=0, microsecond=0)
            step = timedelta(hours=1)
        count = int((self.end - first) / step) + 1
        return [first + i * step for i in range(count)]


def time_range(value: str | None, now: datetime | None = None) -> TimeRange:
    """`range=24h|7d|30d` (24h when absent) ending now, or a 400 naming the choices."""
    name = value or "24h"
    if name not in RANGES:
        raise bad_request(
            f"'range' must be one of {', '.join(RANGES)}; got {name[:32]!r}.",
            param="range",
            code="invalid_value",
        )
    end = now or datetime.now(UTC)
    return TimeRange(name, end - RANGES[name], end)


def check_names(params: Any, known: Sequence[str]) -> None:
    """A 400 for a query parameter this page does not take."""
    for name in params:
        if name not in known:
            raise GatewayError(
                400,
                f"Unknown query parameter {name[:64]!r}; this page takes "
                f"{', '.join(repr(k) for k in known)}.",
                param=name[:64],
                code="unknown_parameter",
            )


def redacted(value: Any) -> Any:
    """`value` with every secret-named field's value replaced, at any depth."""
    if isinstance(value, dict):
        return {
            k: REDACTED
            if isinstance(k, str) and k.lower() in _SECRET_NAMES and v is not None
            else redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def pretty(value: Any) -> str:
    return orjson.dumps(redacted(value), option=orjson.OPT_INDENT_2).decode()


def record_sections(record: LogRecord) -> dict[str, Any]:
    """The parts of a record the detail view shows, each None when the record has none."""
    response = record.response if isinstance(record.response, dict) else {}
    routing = response.get("routing") if isinstance(response.get("routing"), dict) else None
    found = response.get("choices")
    choices: list[Any] = found if isinstance(found, list) else []
    filters = [
        {"index": c.get("index", i), "results": c["content_filter_results"]}
        for i, c in enumerate(choices)
        if isinstance(c, dict) and c.get("content_filter_results")
    ]
    guardrails = {
        name: response[name]
        for name in ("guardrails", "prompt_filter_results")
        if response.get(name) is not None
    }
    if filters:
        guardrails["content_filter_results"] = filters
    attempts = routing.get("attempts") if routing else None
    shown_routing = None
    if routing is not None:
        shown_routing = {k: v for k, v in routing.items() if k not in ("attempts",)}
    return {
        "routing": None if shown_routing is None else pretty(shown_routing),
        "attempts": [a for a in attempts if isinstance(a, dict)]
        if isinstance(attempts, list)
        else [],
        "guardrails": pretty(guardrails) if guardrails else None,
        "quality": None if response.get("quality") is None else pretty(response["quality"]),
        "request": None if record.request is None else pretty(record.request),
        "response": None if record.response is None else pretty(record.response),
        "metadata": None if record.metadata is None else pretty(record.metadata),
        "extra": None if record.extra is None else pretty(record.extra),
    }


def breaker_rows(state: AppState) -> list[dict[str, Any]]:
    """Every configured deployment's live circuit breaker, worst first."""
    route_state = state.gateway.route_state
    rows: dict[str, dict[str, Any]] = {}
    for entry in state.catalog:
        for deployment in entry.deployments:
            row = rows.get(deployment.key)
            if row is None:
                rows[deployment.key] = row = {
                    "deployment": deployment.key,
                    "models": [],
                    **route_state.breakers.get(deployment.key).snapshot(),
                }
            row["models"].append(deployment.model)
    order = {"open": 0, "half_open": 1, "closed": 2}
    return sorted(rows.values(), key=lambda r: (order.get(r["state"], 1), r["deployment"]))


_PALETTE = (
    "#2563eb",
    "#dc2626",
    "#16a34a",
    "#d97706",
    "#7c3aed",
    "#0891b2",
    "#db2777",
    "#65a30d",
    "#475569",
)
_MAX_SERIES = 8  # series in one chart; the rest are summed as "other"


def chart(
    span: TimeRange,
    points: Sequence[HourPoint],
    value: str,
    *,
    kind: str = "line",
    stacked: bool = False,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A Chart.js chart of `value` per hour (per day past 24 h), one series per group.

    `value` is a `GroupTotals` attribute, or `p50`/`p95` of latency, `ttft50`/`ttft95`.
    """
    hours = span.points()
    index = {hour: i for i, hour in enumerate(hours)}
    if names is None:
        totals: dict[str, float] = {}
        for point in points:
            totals[point.name] = totals.get(point.name, 0.0) + _value(point.totals, value)
        names = sorted(totals, key=lambda n: -totals[n])
    shown = list(names[:_MAX_SERIES])
    series = {name: [0.0] * len(hours) for name in shown}
    for point in points:
        i = index.get(point.hour)
        if i is None:
            continue
        name = point.name if point.name in series else "other"
        if name not in series:
            series[name] = [0.0] * len(hours)
        series[name][i] += _value(point.totals, value)
    return {
        "type": kind,
        "stacked": stacked,
        "labels": [f"{h:%m-%d}" if span.daily else f"{h:%m-%d %H}h" for h in hours],
        "datasets": [
            {"label": name or "(none)", "data": [round(v, 6) for v in data], "color": color}
            for (name, data), color in zip(series.items(), _cycle(len(series)), strict=True)
        ],
    }


def _cycle(n: int) -> list[str]:
    return [_PALETTE[i % len(_PALETTE)] for i in range(n)]


def _value(totals: GroupTotals, value: str) -> float:
    if value == "p50":
        return totals.latency_ms(0.5) or 0.0
    if value == "p95":
        return totals.latency_ms(0.95) or 0.0
    if value == "ttft50":
        return totals.ttft_ms(0.5) or 0.0
    if value == "ttft95":
        return totals.ttft_ms(0.95) or 0.0
    if value == "error_rate":
        return 100.0 * totals.error_rate
    return float(getattr(totals, value))
