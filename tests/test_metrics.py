"""`/metrics` counts exactly what the request log records: through the SDK, and unit by unit.

The gateway fixture is shared by the module, so every check reads the series before and
after its requests and compares the difference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from crossroads.server.metrics import GatewayMetrics, MeteredSink
from crossroads.storage.records import LogRecord
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, OTHER_KEY, gateway_config, running_gateway

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Count me please"}]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape(gateway: ServedApp, key: str | None = API_KEY) -> Samples:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(f"{gateway.url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return _parse(response.text)


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _series(samples: Samples, prefix: str) -> Samples:
    return {k: v for k, v in samples.items() if k[0].startswith(prefix)}


class Delta:
    """The change in each series between two scrapes."""

    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return _value(self.after, name, **labels) - _value(self.before, name, **labels)


def _scrape_until(
    gateway: ServedApp, before: Samples, ready: Callable[[Delta], bool], timeout: float = 5.0
) -> Delta:
    """Scrape until `ready` holds: a stream's record is submitted after its last event."""
    deadline = time.monotonic() + timeout
    while True:
        delta = Delta(before, _scrape(gateway))
        if ready(delta) or time.monotonic() > deadline:
            return delta
        time.sleep(0.02)


FIXED = {"model": "fixed", "provider": "fake", "key": "main"}


# --- through the gateway ---------------------------------------------------------------------


def test_a_served_request_counts_its_status_tokens_and_cost(
    client: OpenAI, gateway: ServedApp
) -> None:
    before = _scrape(gateway)
    completion = client.chat.completions.create(model="fixed", messages=USER)
    delta = Delta(before, _scrape(gateway))
    usage = completion.usage
    assert usage is not None
    assert delta("crossroads_requests_total", **FIXED, status="200") == 1
    assert _series(delta.after, "crossroads_request_errors") == _series(
        delta.before, "crossroads_request_errors"
    )
    assert delta("crossroads_tokens_total", **FIXED, kind="prompt") == usage.prompt_tokens
    assert delta("crossroads_tokens_total", **FIXED, kind="completion") == usage.completion_tokens
    assert delta("crossroads_tokens_total", **FIXED, kind="cached") == 0
    cost = (usage.model_extra or {})["cost"]
    assert cost > 0
    assert delta("crossroads_cost_usd_total", **FIXED) == pytest.approx(cost, rel=1e-9)
    latency = {"model": "fixed", "provider": "fake"}
    assert delta("crossroads_request_latency_seconds_count", **latency) == 1
    assert delta("crossroads_request_latency_seconds_sum", **latency) > 0
    assert delta("crossroads_time_to_first_token_seconds_count", **latency) == 0


def test_cached_prompt_tokens_are_counted(client: OpenAI, gateway: ServedApp) -> None:
    before = _scrape(gateway)
    completion = client.chat.completions.create(model="cached", messages=USER)
    delta = Delta(before, _scrape(gateway))
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens
    assert cached == 4
    labels = {"model": "cached", "provider": "fake", "key": "main"}
    assert delta("crossroads_tokens_total", **labels, kind="cached") == cached
    assert delta("crossroads_tokens_total", **labels, kind="prompt") == usage.prompt_tokens
    assert delta("crossroads_cost_usd_total", **labels) == pytest.approx(
        (usage.model_extra or {})["cost"], rel=1e-9
    )


def test_an_upstream_503_counts_as_an_error_with_its_code(
    client: OpenAI, gateway: ServedApp
) -> None:
    before = _scrape(gateway)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="error-503", messages=USER)
    assert caught.value.status_code == 503
    code = caught.value.body["code"]  # type: ignore[index]
    assert code == "upstream_error"
    delta = Delta(before, _scrape(gateway))
    labels = {"model": "error-503", "provider": "fake", "key": "main"}
    assert delta("crossroads_requests_total", **labels, status="503") == 1
    assert delta("crossroads_request_errors_total", **labels, code=code) == 1
    assert (
        delta("crossroads_request_latency_seconds_count", model="error-503", provider="fake") == 1
    )
    assert _value(delta.after, "crossroads_tokens_total", **labels, kind="prompt") == 0


def test_an_unknown_model_is_counted_without_the_callers_name(
    client: OpenAI, gateway: ServedApp
) -> None:
    before = _scrape(gateway)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="made-up-by-the-caller", messages=USER)
    delta = Delta(before, _scrape(gateway))
    labels = {"model": "", "provider": "", "key": "main"}
    assert delta("crossroads_requests_total", **labels, status="404") == 1
    assert delta("crossroads_request_errors_total", **labels, code="model_not_found") == 1
    assert not any(
        "made-up-by-the-caller" in value for _, labels_ in delta.after for _, value in labels_
    )


def test_a_stream_records_time_to_first_token(client: OpenAI, gateway: ServedApp) -> None:
    before = _scrape(gateway)
    chunks = list(
        client.chat.completions.create(
            model="fixed",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    delta = _scrape_until(
        gateway, before, lambda d: d("crossroads_requests_total", **FIXED, status="200") >= 1
    )
    assert delta("crossroads_requests_total", **FIXED, status="200") == 1
    timing = {"model": "fixed", "provider": "fake"}
    assert delta("crossroads_time_to_first_token_seconds_count", **timing) == 1
    ttft = delta("crossroads_time_to_first_token_seconds_sum", **timing)
    assert 0 < ttft <= delta("crossroads_request_latency_seconds_sum", **timing)
    assert delta("crossroads_tokens_total", **FIXED, kind="completion") == usage.completion_tokens
    assert delta("crossroads_cost_usd_total", **FIXED) == pytest.approx(
        (usage.model_extra or {})["cost"], rel=1e-9
    )


def test_a_request_refused_at_authentication_is_not_counted(gateway: ServedApp) -> None:
    """The chat route refuses a bad key before a log record exists, so metrics skip it too."""
    before = _scrape(gateway)
    with OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-wrong-key-000000", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError):
            sdk.chat.completions.create(model="fixed", messages=USER)
    after = _scrape(gateway)
    for prefix in ("crossroads_requests", "crossroads_request_errors"):
        assert _series(after, prefix) == _series(before, prefix)


def test_metrics_need_a_key_that_may_read_every_record(gateway: ServedApp) -> None:
    url = f"{gateway.url}/metrics"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer sk-wrong-key-000000"})
    assert wrong.status_code == 401
    own_only = httpx.get(url, headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert own_only.status_code == 403
    assert own_only.json()["error"]["code"] == "permission_denied"
    assert httpx.get(url, headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200


def test_openapi_lists_metrics(gateway: ServedApp) -> None:
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    operation = document["paths"]["/metrics"]["get"]
    assert operation["operationId"] == "metrics"
    assert "security" not in operation  # the document's default: a bearer key


def test_loopback_only_mode_serves_metrics_without_a_key(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    config = gateway_config(fake_upstream, tmp_path / "open.db", keys=False)
    with running_gateway(config) as served:
        with OpenAI(base_url=f"{served.url}/v1", api_key="anything", max_retries=0) as sdk:
            sdk.chat.completions.create(model="fixed", messages=USER)
        samples = _scrape(served, key=None)
    labels = {"model": "fixed", "provider": "fake", "key": "", "status": "200"}
    assert _value(samples, "crossroads_requests_total", **labels) == 1


# --- GatewayMetrics on its own ----------------------------------------------------------------


def _record(**fields: Any) -> LogRecord:
    fields.setdefault("model_requested", "gpt-test")
    fields.setdefault("status_code", 200)
    return LogRecord(id="r1", created_at=datetime.now(UTC), **fields)


def _rendered(metrics: GatewayMetrics) -> Samples:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return _parse(body.decode())


def test_observe_counts_a_served_record() -> None:
    metrics = GatewayMetrics(models=["gpt-test"])
    metrics.observe(
        _record(
            model_served="gpt-test",
            provider="openai",
            key_id="team-a",
            prompt_tokens=12,
            completion_tokens=30,
            cached_tokens=5,
            cost=0.00125,
            latency_ms=840.0,
        )
    )
    metrics.observe(_record(model_served="gpt-test", provider="openai", key_id="team-a", cost=0.5))
    samples = _rendered(metrics)
    labels = {"model": "gpt-test", "provider": "openai", "key": "team-a"}
    assert _value(samples, "crossroads_requests_total", **labels, status="200") == 2
    assert _value(samples, "crossroads_tokens_total", **labels, kind="prompt") == 12
    assert _value(samples, "crossroads_tokens_total", **labels, kind="completion") == 30
    assert _value(samples, "crossroads_tokens_total", **labels, kind="cached") == 5
    assert _value(samples, "crossroads_cost_usd_total", **labels) == pytest.approx(0.50125)
    timing = {"model": "gpt-test", "provider": "openai"}
    assert _value(samples, "crossroads_request_latency_seconds_count", **timing) == 1
    assert _value(samples, "crossroads_request_latency_seconds_sum", **timing) == 0.84
    assert _value(samples, "crossroads_request_latency_seconds_bucket", **timing, le="0.5") == 0
    assert _value(samples, "crossroads_request_latency_seconds_bucket", **timing, le="1.0") == 1
    assert _value(samples, "crossroads_request_latency_seconds_bucket", **timing, le="120.0") == 1
    assert _value(samples, "crossroads_time_to_first_token_seconds_count", **timing) == 0
    assert not _series(samples, "crossroads_request_errors_total")


def test_observe_records_ttft_for_streams() -> None:
    metrics = GatewayMetrics()
    metrics.observe(
        _record(model_served="m", provider="p", stream=True, latency_ms=2000.0, ttft_ms=150.0)
    )
    samples = _rendered(metrics)
    timing = {"model": "m", "provider": "p"}
    assert _value(samples, "crossroads_time_to_first_token_seconds_count", **timing) == 1
    assert _value(samples, "crossroads_time_to_first_token_seconds_sum", **timing) == 0.15
    assert _value(samples, "crossroads_time_to_first_token_seconds_bucket", **timing, le="0.1") == 0
    assert (
        _value(samples, "crossroads_time_to_first_token_seconds_bucket", **timing, le="0.25") == 1
    )


def test_observe_counts_failures_with_empty_labels_for_what_is_missing() -> None:
    metrics = GatewayMetrics(models=["known"])
    metrics.observe(_record(model_requested="known", status_code=400, error_code="invalid_value"))
    metrics.observe(_record(model_requested="whatever-a-caller-sent", status_code=404, key_id="k"))
    samples = _rendered(metrics)
    assert (
        _value(
            samples,
            "crossroads_request_errors_total",
            model="known",
            provider="",
            key="",
            code="invalid_value",
        )
        == 1
    )
    assert (
        _value(samples, "crossroads_request_errors_total", model="", provider="", key="k", code="")
        == 1
    )
    assert (
        _value(samples, "crossroads_requests_total", model="", provider="", key="k", status="404")
        == 1
    )
    label_values = {value for _, labels in samples for _, value in labels}
    assert "None" not in label_values
    assert "whatever-a-caller-sent" not in label_values


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    first.observe(_record(model_served="m", provider="p"))
    assert (
        _value(
            _rendered(first),
            "crossroads_requests_total",
            model="m",
            provider="p",
            key="",
            status="200",
        )
        == 1
    )
    assert not _series(_rendered(second), "crossroads_requests_total")


class ListSink:
    def __init__(self) -> None:
        self.records: list[LogRecord] = []

    def submit(self, record: LogRecord) -> None:
        self.records.append(record)


def test_metered_sink_counts_then_hands_every_record_on(caplog: pytest.LogCaptureFixture) -> None:
    sink, metrics = ListSink(), GatewayMetrics()
    metered = MeteredSink(sink, metrics)
    good = _record(model_served="m", provider="p")
    broken = _record(model_served="m", provider="p", latency_ms="soon")
    with caplog.at_level(logging.ERROR, logger="crossroads.metrics"):
        metered.submit(good)
        metered.submit(broken)
    assert sink.records == [good, broken]  # the log never loses a record to the metrics
    assert "could not count" in caplog.text
    samples = _rendered(metrics)
    labels = {"model": "m", "provider": "p", "key": ""}
    assert _value(samples, "crossroads_requests_total", **labels, status="200") == 2
