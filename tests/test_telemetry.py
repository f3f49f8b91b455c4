"""OpenTelemetry: GenAI-convention spans (request, attempts, stages) and metrics, read from
the in-memory exporter and from a loopback OTLP/HTTP receiver decoding the protobuf; and
nothing at all when it is off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from crossroads.config import Config, parse_config
from crossroads.server import create_app
from crossroads.telemetry.config import TelemetryConfig
from crossroads.telemetry.emit import Telemetry
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.otlp_receiver import OtlpReceiver
from crossroads.testing.server import ServedApp, serve_in_thread
from tests.conftest import API_KEY, flush_log, gateway_config

PRUNING = {"rules": [{"name": "hi", "pattern": "Hi. "}], "models": {"echo": ["hi"]}}


def _config(fake: FakeOpenAI, database: Path, **extra: Any) -> Config:
    base = gateway_config(fake, database).model_dump(mode="json", exclude_none=True)
    return parse_config({**base, "pruning": PRUNING, **extra})


def _ask(served: ServedApp, model: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{served.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Hi. one two"}], **body},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )


@pytest.fixture
def in_memory(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> Iterator[tuple[ServedApp, InMemorySpanExporter, InMemoryMetricReader]]:
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        TelemetryConfig(enabled=True),
        span_processor=SimpleSpanProcessor(exporter),
        metric_readers=[reader],
    )
    app = create_app(_config(fake_upstream, tmp_path / "log.db"), telemetry=telemetry)
    with serve_in_thread(app) as served:
        yield served, exporter, reader


def test_one_span_per_request_with_attempt_and_stage_children(
    in_memory: tuple[ServedApp, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    served, exporter, reader = in_memory
    response = _ask(served, "echo", temperature=0.5, max_tokens=20)
    assert response.status_code == 200, response.text
    flush_log(served)
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "chat echo" and root.kind == SpanKind.SERVER
    attributes = dict(root.attributes or {})
    usage = response.json()["usage"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "echo"
    assert attributes["gen_ai.response.model"] == "echo"  # the upstream model id
    assert attributes["gen_ai.provider.name"] == "fake"
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.request.max_tokens"] == 20
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["crossroads.log_id"] == response.headers["x-crossroads-log-id"]
    children = [s for s in spans if s.parent is not None]
    assert {s.parent.span_id for s in children if s.parent} == {root.context.span_id}
    (attempt,) = [s for s in children if s.kind == SpanKind.CLIENT]
    assert attempt.attributes and attempt.attributes["http.response.status_code"] == 200
    assert attempt.name == "chat " + str(attempt.attributes["crossroads.deployment"])
    assert attempt.attributes["gen_ai.provider.name"] == "fake"
    (stage,) = [s for s in children if s.name == "stage pruning"]
    assert stage.attributes and stage.attributes["crossroads.stage.phase"] == "request"
    assert root.start_time is not None and root.end_time is not None
    assert root.start_time <= stage.start_time <= attempt.start_time  # type: ignore[operator]
    assert attempt.end_time <= root.end_time  # type: ignore[operator]

    metrics = {
        m.name: m
        for rm in reader.get_metrics_data().resource_metrics  # type: ignore[union-attr]
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    tokens = metrics["gen_ai.client.token.usage"]
    points: list[Any] = list(tokens.data.data_points)
    by_type = {p.attributes["gen_ai.token.type"]: p.sum for p in points}
    assert by_type == {"input": usage["prompt_tokens"], "output": usage["completion_tokens"]}
    assert metrics["gen_ai.client.operation.duration"].unit == "s"


def test_failed_request_and_failover_attempts(
    in_memory: tuple[ServedApp, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    served, exporter, _ = in_memory
    assert _ask(served, "error-400").status_code == 400
    flush_log(served)
    (root,) = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert root.status.status_code == StatusCode.ERROR
    assert root.attributes and root.attributes["http.response.status_code"] == 400
    assert "error.type" in root.attributes
    attempts = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert attempts and attempts[0].attributes
    assert attempts[0].attributes["http.response.status_code"] == 400


def test_exports_to_an_otlp_http_receiver(fake_upstream: FakeOpenAI, tmp_path: Path) -> None:
    with OtlpReceiver().running() as receiver:
        telemetry = {"enabled": True, "endpoint": receiver.url, "export_interval": 0.2}
        config = _config(fake_upstream, tmp_path / "log.db", telemetry=telemetry)
        with serve_in_thread(create_app(config)) as served:
            assert _ask(served, "echo").status_code == 200
            flush_log(served)
            receiver.wait_for(lambda r: any(s.name == "chat echo" for s in r.spans))
            receiver.wait_for(
                lambda r: any(m.name == "gen_ai.client.token.usage" for m in r.metrics)
            )
        root = next(s for s in receiver.spans if s.name == "chat echo")
        attributes = {a.key: a.value for a in root.attributes}
        assert attributes["gen_ai.request.model"].string_value == "echo"
        assert attributes["gen_ai.usage.input_tokens"].int_value > 0
        children = [s for s in receiver.spans if s.parent_span_id == root.span_id]
        assert {s.name for s in children} >= {"stage pruning"}
        assert any(s.kind == 3 for s in children)  # SPAN_KIND_CLIENT: the attempt


def test_off_by_default_and_costs_no_import(fake_upstream: FakeOpenAI, tmp_path: Path) -> None:
    assert TelemetryConfig().enabled is False
    with serve_in_thread(create_app(_config(fake_upstream, tmp_path / "log.db"))) as served:
        assert served.app.state.crossroads.gateway.telemetry is None
        assert _ask(served, "echo").status_code == 200
    code = (
        "import sys, crossroads.server.app, crossroads.cli; "
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_stream_is_one_span_when_it_ends(
    in_memory: tuple[ServedApp, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    served, exporter, _ = in_memory
    response = _ask(served, "echo", stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200 and "[DONE]" in response.text
    flush_log(served)
    (root,) = [s for s in exporter.get_finished_spans() if s.parent is None]
    attributes = dict(root.attributes or {})
    assert attributes["crossroads.stream"] is True
    assert isinstance(attributes["gen_ai.usage.output_tokens"], int)
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert [s.kind for s in exporter.get_finished_spans() if s.parent].count(SpanKind.CLIENT) == 1


def test_sampling_keeps_metrics_for_every_request() -> None:
    from datetime import UTC, datetime

    from crossroads.storage.records import LogRecord

    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        TelemetryConfig(enabled=True, sample_ratio=0.0),
        span_processor=SimpleSpanProcessor(exporter),
        metric_readers=[reader],
    )
    for i in range(5):
        telemetry.begin(str(i))
        telemetry.emit(
            LogRecord(
                id=str(i),
                created_at=datetime.now(UTC),
                model_requested="m",
                status_code=200,
                prompt_tokens=3,
                completion_tokens=2,
                latency_ms=1.0,
            )
        )
    assert exporter.get_finished_spans() == ()
    data = reader.get_metrics_data()
    assert data is not None
    (duration,) = [
        m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "gen_ai.client.operation.duration"
    ]
    points: list[Any] = list(duration.data.data_points)
    assert points[0].count == 5
    telemetry.shutdown()


def test_header_secrets_are_resolved_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from crossroads.config import ConfigError
    from crossroads.telemetry.setup import telemetry_from_config

    assert telemetry_from_config(TelemetryConfig()) is None
    monkeypatch.setenv("OTEL_TEST_KEY", "s3cret")
    config = TelemetryConfig(enabled=True, headers={"x-key": "env:OTEL_TEST_KEY"})
    telemetry = telemetry_from_config(config)
    assert telemetry is not None and telemetry.config.headers == {"x-key": "s3cret"}
    telemetry.shutdown()
    monkeypatch.delenv("OTEL_TEST_KEY")
    with pytest.raises(ConfigError, match=r"telemetry\.headers\.x-key"):
        telemetry_from_config(config)


def test_enabling_it_without_the_extra_is_a_config_error(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "class NoOtel:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'opentelemetry':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoOtel())\n"
        "from crossroads.config import ConfigError, parse_config\n"
        "try:\n"
        "    parse_config({'telemetry': {'enabled': True}})\n"
        "except ConfigError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "telemetry.enabled" in result.stdout and "crossroads[otel]" in result.stdout


REDACT = [{"check": "pii", "action": "redact"}]
TEXT = "Write to ann@example.com today. The sky is blue. Grass is green."


def _guarded_stream(
    fake: FakeOpenAI,
    database: Path,
    behaviour: str,
    output: list[dict[str, Any]] = REDACT,
    text: str = TEXT,
) -> tuple[httpx.Response, list[Any], Any]:
    """A traced stream through a per-sentence output guardrail, a quality check that holds
    the choice and the cache's store: the response, its stage spans on the stream, its span."""
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(
        TelemetryConfig(enabled=True),
        span_processor=SimpleSpanProcessor(exporter),
        metric_readers=[InMemoryMetricReader()],
    )
    guarded = {
        "deployments": [{"provider": "fake", "model": behaviour}],
        "guardrails": {"output": output, "stream": "sentence"},
    }
    base = gateway_config(fake, database).model_dump(mode="json", exclude_none=True)
    config = parse_config({**base, "models": {**base["models"], "guarded": guarded}})
    with serve_in_thread(create_app(config, telemetry=telemetry)) as served:
        response = httpx.post(
            f"{served.url}/v1/chat/completions",
            json={
                "model": "guarded",
                "messages": [{"role": "user", "content": text}],
                "stream": True,
                "quality": {"action": "autocorrect"},
                "quality_risk_threshold": 1.0,
                "cache": {"mode": "exact"},
            },
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )
        flush_log(served)
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.parent is None]
    children = [s for s in spans if s.parent is not None]
    assert all(s.parent and s.parent.span_id == root.context.span_id for s in children)
    on_stream = [
        s for s in children if (s.attributes or {}).get("crossroads.stage.phase") == "response"
    ]
    return response, on_stream, root


def test_stream_checks_have_one_span_per_stage_with_segments_and_outcome(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    response, on_stream, root = _guarded_stream(fake_upstream, tmp_path / "log.db", "echo")
    assert response.status_code == 200 and "[DONE]" in response.text
    assert "ann@example.com" not in response.text
    stages = {s.name: dict(s.attributes or {}) for s in on_stream}
    assert len(stages) == len(on_stream) == 3
    guard = stages["stage guardrails"]
    assert guard["crossroads.stage.stream_policy"] == "sentence"
    assert guard["crossroads.stage.segments"] == 3  # one check per sentence
    assert guard["crossroads.stage.outcome"] == "rewritten"  # the address was redacted
    quality = stages["stage quality"]
    assert quality["crossroads.stage.stream_policy"] == "hold"
    assert quality["crossroads.stage.segments"] == 1  # the whole choice, at its end
    assert quality["crossroads.stage.outcome"] == "passed"
    cache = stages["stage cache"]  # stores the answer at the end: nothing checked on the way
    assert cache["crossroads.stage.stream_policy"] == "pass"
    assert cache["crossroads.stage.segments"] == 0
    # Each lasts the time spent checking, not the stream: within the request's span.
    for span in on_stream:
        if span.name in stages:
            assert span.start_time is not None and span.end_time is not None
            assert root.start_time is not None and root.end_time is not None
            assert root.start_time <= span.start_time <= span.end_time <= root.end_time


def test_a_stream_that_fails_midway_still_has_its_check_spans(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    # The upstream drops the connection after a few chunks: the guardrail checked what came,
    # the quality check (holding the choice for its end) and the cache store never ran.
    response, on_stream, _ = _guarded_stream(
        fake_upstream, tmp_path / "log.db", "echo+drop_after=8"
    )
    assert response.status_code == 200 and "[DONE]" not in response.text
    (guard,) = on_stream
    attributes = dict(guard.attributes or {})
    assert guard.name == "stage guardrails"
    assert attributes["crossroads.stage.finished"] is False
    assert attributes["crossroads.stage.segments"] >= 1


def test_a_refusing_stream_check_says_so(fake_upstream: FakeOpenAI, tmp_path: Path) -> None:
    deny = [{"check": "policy", "action": "block", "deny": ["drop table"]}]
    text = "First a fine sentence. Then drop table users. And more after it."
    response, on_stream, _ = _guarded_stream(
        fake_upstream, tmp_path / "log.db", "echo", output=deny, text=text
    )
    assert response.status_code == 200 and "content_filter" in response.text
    stages = {s.name: dict(s.attributes or {}) for s in on_stream}
    guard = stages["stage guardrails"]
    assert guard["crossroads.stage.outcome"] == "refused"
    assert guard["crossroads.stage.segments"] == 2  # nothing checked after the refusal
