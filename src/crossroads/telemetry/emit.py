"""Spans and metrics from finished requests, by the OpenTelemetry GenAI semantic conventions.

One span per request (kind SERVER, `chat {model}`), a child per upstream attempt (kind
CLIENT, `chat {deployment}`) and per pipeline stage (`stage {name}`), each with the times the
request recorded (telemetry/trace.py). A response stage on a stream has one span for the
whole stream, lasting the time spent in its checks, with `crossroads.stage.segments` and
`crossroads.stage.outcome` (pipeline/traced_check.py). Attributes follow the GenAI conventions:
`gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.response.model`,
`gen_ai.provider.name`, `gen_ai.usage.input_tokens` / `output_tokens`,
`gen_ai.response.finish_reasons`, `gen_ai.request.temperature` …, plus `error.type` and
the gateway's own under `crossroads.*`. Metrics: `gen_ai.client.token.usage` and
`gen_ai.client.operation.duration` histograms, for every request whatever the sampling.

The SDK is imported here only, and this module only when `[telemetry] enabled = true`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from crossroads.pipeline.ledger import LogSink
from crossroads.storage.records import LogRecord
from crossroads.telemetry.config import TelemetryConfig
from crossroads.telemetry.trace import RequestTrace

__all__ = ["Telemetry", "TracedSink"]

_log = logging.getLogger("crossroads.telemetry")

# The GenAI conventions' recommended buckets (seconds; tokens).
_DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
_TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
_REQUEST_PARAMETERS = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
)
# Requests whose record has not been submitted yet; past this many, the oldest are dropped
# (a record is always submitted, so only a defect would reach it).
_MAX_OPEN = 100_000


def _ns(record: LogRecord) -> int:
    return int(record.created_at.timestamp() * 1e9)


def _request_attributes(record: LogRecord) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": record.model_requested,
        "http.response.status_code": record.status_code,
        "crossroads.log_id": record.id,
        "crossroads.stream": record.stream,
    }
    optional = (
        ("gen_ai.response.model", record.upstream_model),
        ("gen_ai.provider.name", record.provider),
        ("gen_ai.usage.input_tokens", record.prompt_tokens),
        ("gen_ai.usage.output_tokens", record.completion_tokens),
        ("gen_ai.conversation.id", record.session_id),
        ("crossroads.model_served", record.model_served),
        ("crossroads.key_id", record.key_id),
        ("crossroads.cost_usd", record.cost),
        ("crossroads.ttft_ms", record.ttft_ms),
    )
    attributes.update({name: value for name, value in optional if value is not None})
    if record.status_code >= 400:
        attributes["error.type"] = record.error_code or str(record.status_code)
    request = record.request if isinstance(record.request, dict) else {}
    for field, name in _REQUEST_PARAMETERS:
        value = request.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    response = record.response if isinstance(record.response, dict) else {}
    if isinstance(response.get("id"), str):
        attributes["gen_ai.response.id"] = response["id"]
    choices = response.get("choices")
    if isinstance(choices, list):
        reasons = [
            c["finish_reason"]
            for c in choices
            if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
        ]
        if reasons:
            attributes["gen_ai.response.finish_reasons"] = reasons
    return attributes


def _stream_check_spans(
    trace: RequestTrace,
) -> list[tuple[str, str, int, int, str | None, dict[str, Any]]]:
    return [span for check in trace.stream_checks if (span := check.span()) is not None]


class Telemetry:
    """The app's tracer and meter providers, and the traces of requests in flight."""

    def __init__(
        self,
        config: TelemetryConfig,
        *,
        span_exporter: SpanExporter | None = None,
        span_processor: SpanProcessor | None = None,
        metric_readers: Sequence[MetricReader] | None = None,
    ) -> None:
        self.config = config
        resource = Resource.create({"service.name": config.service_name})
        self.tracer_provider = TracerProvider(resource=resource)
        if span_processor is None:
            if span_exporter is None:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                span_exporter = OTLPSpanExporter(
                    endpoint=config.endpoint.rstrip("/") + "/v1/traces", headers=config.headers
                )
            span_processor = BatchSpanProcessor(
                span_exporter, schedule_delay_millis=config.export_interval * 1000
            )
        self.tracer_provider.add_span_processor(span_processor)
        if metric_readers is None:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            metric_readers = [
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(
                        endpoint=config.endpoint.rstrip("/") + "/v1/metrics",
                        headers=config.headers,
                    ),
                    export_interval_millis=config.export_interval * 1000,
                )
            ]
        self.meter_provider = MeterProvider(resource=resource, metric_readers=list(metric_readers))
        self.tracer = self.tracer_provider.get_tracer("crossroads")
        meter = self.meter_provider.get_meter("crossroads")
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used per request, by gen_ai.token.type (input, output).",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Duration of each chat request through the gateway.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._open: dict[str, RequestTrace] = {}
        self._random = random.Random()

    def begin(self, log_id: str) -> RequestTrace:
        """A trace for the request whose log record will have id `log_id`."""
        if len(self._open) >= _MAX_OPEN:
            self._open.pop(next(iter(self._open)))
        trace = self._open[log_id] = RequestTrace()
        return trace

    def sink(self, sink: LogSink) -> TracedSink:
        return TracedSink(sink, self)

    def emit(self, record: LogRecord) -> None:
        """Spans (when sampled) and metrics for a finished request."""
        trace = self._open.pop(record.id, None)
        attributes = _request_attributes(record)
        self._metrics(record, attributes)
        ratio = self.config.sample_ratio
        if ratio < 1 and self._random.random() >= ratio:
            return
        start = _ns(record)
        end = (
            start + int(record.latency_ms * 1e6)
            if record.latency_ms is not None
            else time.time_ns()
        )
        model = record.model_requested
        span = self.tracer.start_span(
            f"chat {model}", kind=SpanKind.SERVER, start_time=start, attributes=attributes
        )
        if record.status_code >= 400:
            span.set_status(Status(StatusCode.ERROR, record.error_message or None))
        context = otel_trace.set_span_in_context(span)
        for entry, ended in trace.attempts if trace is not None else ():
            self._attempt(entry, ended, context)
        stages = [] if trace is None else [*trace.stages, *_stream_check_spans(trace)]
        for name, phase, started, ended, error, extra in stages:
            stage_attributes = {"crossroads.stage.name": name, "crossroads.stage.phase": phase}
            child = self.tracer.start_span(
                f"stage {name}",
                context=context,
                start_time=started,
                attributes={**stage_attributes, **extra} if extra else stage_attributes,
            )
            if error is not None:
                child.set_attribute("error.type", error)
                child.set_status(Status(StatusCode.ERROR))
            child.end(end_time=ended)
        # A stream's last checks (cache store, quality's report) run after its latency was
        # taken: the request's span still covers them.
        span.end(end_time=max(end, start, *(stage[3] for stage in stages)))

    def _attempt(self, entry: dict[str, Any], ended: int, context: Any) -> None:
        latency_ns = int((entry.get("latency_ms") or 0.0) * 1e6)
        deployment = str(entry.get("deployment"))
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": str(entry.get("provider")),
            "crossroads.deployment": deployment,
        }
        status = entry.get("status")
        if status is not None:
            attributes["http.response.status_code"] = status
        error = entry.get("error")
        if error is not None:
            attributes["error.type"] = str(error)
        span = self.tracer.start_span(
            f"chat {deployment}",
            kind=SpanKind.CLIENT,
            context=context,
            start_time=ended - latency_ns,
            attributes=attributes,
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=ended)

    def _metrics(self, record: LogRecord, attributes: dict[str, Any]) -> None:
        common: dict[str, Any] = {
            k: attributes[k]
            for k in (
                "gen_ai.operation.name",
                "gen_ai.request.model",
                "gen_ai.response.model",
                "gen_ai.provider.name",
                "error.type",
            )
            if k in attributes
        }
        if record.latency_ms is not None:
            self.duration.record(record.latency_ms / 1000, common)
        if record.prompt_tokens is not None:
            self.token_usage.record(record.prompt_tokens, {**common, "gen_ai.token.type": "input"})
        if record.completion_tokens is not None:
            self.token_usage.record(
                record.completion_tokens, {**common, "gen_ai.token.type": "output"}
            )

    def shutdown(self) -> None:
        """Export what is pending and stop (the app's lifespan end)."""
        try:
            self.tracer_provider.shutdown()
            self.meter_provider.shutdown()
        except Exception:
            _log.exception("telemetry: shutdown failed")


class TracedSink:
    """A LogSink that hands each record on, and makes its spans and metrics just after.

    A record is submitted before its answer is sent; the spans (about 110 µs of CPU for a
    request with one attempt) are made in a callback the event loop runs once the request's
    task has written its answer, so they add nothing to the caller's latency.
    """

    def __init__(self, sink: LogSink, telemetry: Telemetry) -> None:
        self._sink = sink
        self._telemetry = telemetry

    def submit(self, record: LogRecord) -> None:
        self._sink.submit(record)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._emit(record)
        else:
            loop.call_soon(self._emit, record)

    def _emit(self, record: LogRecord) -> None:
        try:
            self._telemetry.emit(record)
        except Exception:
            _log.exception("telemetry: could not trace request %s", record.id)
