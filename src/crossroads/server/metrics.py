"""Prometheus metrics, derived from the request log's records.

Every request the gateway answers, served or failed, ends as one `LogRecord` handed to a
`LogSink`. `MeteredSink` sits in front of the log writer and counts each record as it
passes, so the metrics and the log are two views of the same records and cannot disagree:
a request the log does not hold (one refused at authentication, for instance) is not
counted either. Counting is a handful of in-memory updates at `submit` time; the
exposition text is only built when `/metrics` is scraped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from crossroads.pipeline import LogSink
from crossroads.storage.records import LogRecord

__all__ = ["GatewayMetrics", "MeteredSink"]

_log = logging.getLogger("crossroads.metrics")

# From a cache hit or a short local call to a long reasoning answer.
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
)


class GatewayMetrics:
    """Prometheus series for the gateway, in a registry of its own (one per app).

    Label values come from config, so the number of series is bounded by it: `model` is a
    configured model name (the one that answered, else the one asked for when it exists,
    else ""), `provider` a configured provider, `key` a configured key's name ("" in
    loopback-only mode). `code` is the gateway's error code, or an upstream's own code
    for the client errors it passes on. A missing value is always "", never "None".
    """

    def __init__(self, *, models: Iterable[str] = ()) -> None:
        # Asked-for names outside this set are any string a caller sent: never labels.
        self._models = frozenset(models)
        self._registry = CollectorRegistry()
        self._series_cache: dict[tuple[object, tuple[str, ...]], Any] = {}
        self._requests = Counter(
            "crossroads_requests",
            "Requests answered, by HTTP status (the status the request log records).",
            ("model", "provider", "key", "status"),
            registry=self._registry,
        )
        self._errors = Counter(
            "crossroads_request_errors",
            "Requests that ended with a status of 400 or more, by error code.",
            ("model", "provider", "key", "code"),
            registry=self._registry,
        )
        self._latency = Histogram(
            "crossroads_request_latency_seconds",
            "Time from the request's arrival until its whole answer, or its error, was ready.",
            ("model", "provider"),
            buckets=_LATENCY_BUCKETS,
            registry=self._registry,
        )
        self._ttft = Histogram(
            "crossroads_time_to_first_token_seconds",
            "Time from a streamed request's arrival to its first content.",
            ("model", "provider"),
            buckets=_LATENCY_BUCKETS,
            registry=self._registry,
        )
        self._tokens = Counter(
            "crossroads_tokens",
            "Tokens as the upstream counted them; kind is prompt, completion or cached "
            "(cached prompt tokens, a part of prompt).",
            ("model", "provider", "key", "kind"),
            registry=self._registry,
        )
        self._cost = Counter(
            "crossroads_cost_usd",
            "Cost in US dollars, priced from the deployment that served the request.",
            ("model", "provider", "key"),
            registry=self._registry,
        )

    def observe(self, record: LogRecord) -> None:
        """Count one finished request."""
        model = record.model_served or (
            record.model_requested if record.model_requested in self._models else ""
        )
        provider = record.provider or ""
        key = record.key_id or ""
        self._series(self._requests, model, provider, key, str(record.status_code)).inc()
        if record.status_code >= 400:
            self._series(self._errors, model, provider, key, record.error_code or "").inc()
        if record.latency_ms is not None:
            self._series(self._latency, model, provider).observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            self._series(self._ttft, model, provider).observe(record.ttft_ms / 1000)
        for kind, count in (
            ("prompt", record.prompt_tokens),
            ("completion", record.completion_tokens),
            ("cached", record.cached_tokens),
        ):
            if count is not None and count >= 0:
                self._series(self._tokens, model, provider, key, kind).inc(count)
        if record.cost is not None and record.cost >= 0:
            self._series(self._cost, model, provider, key).inc(record.cost)

    def _series(self, metric: Counter | Histogram, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: prometheus-client validates the labels and
        takes a lock on every lookup, which made counting a request cost twice as much."""
        key = (metric, labels)
        series = self._series_cache.get(key)
        if series is None:
            series = self._series_cache[key] = metric.labels(*labels)
        return series

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every series, and its content type."""
        return generate_latest(self._registry), CONTENT_TYPE_LATEST


class MeteredSink:
    """A LogSink that feeds metrics from each record, then hands it on to the wrapped sink."""

    def __init__(self, sink: LogSink, metrics: GatewayMetrics) -> None:
        self._sink = sink
        self._metrics = metrics

    def submit(self, record: LogRecord) -> None:
        try:
            self._metrics.observe(record)
        except Exception:
            # A record the metrics cannot take must still reach the log, and the caller.
            _log.exception("metrics: could not count request log record %s", record.id)
        self._sink.submit(record)
