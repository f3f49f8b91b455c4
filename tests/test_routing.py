"""Routing and reliability end to end: strategies, fallbacks, provider preferences, retries,
circuit breakers, fan-out and stream failover, through the SDK against fake upstreams."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.config import parse_config
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, flush_log, running_gateway

USER = [{"role": "user", "content": "alpha beta gamma"}]
CHEAP = {"input": 1.0, "output": 2.0}
DEAR = {"input": 5.0, "output": 10.0}


def deployments(*specs: tuple[str, str, dict[str, float] | None]) -> list[dict[str, Any]]:
    return [
        {"provider": provider, "model": behaviour, "price": price or CHEAP}
        for provider, behaviour, price in specs
    ]


@pytest.fixture(scope="module")
def routed(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    database: Path = tmp_path_factory.mktemp("routing") / "log.db"
    providers = {
        name: {"base_url": fake_upstream.base_url, "api_key": "sk-upstream", "read_timeout": 5}
        for name in ("alpha", "beta", "gamma", "delta", "flaky", "broken", "lb1", "lb2")
    }
    models: dict[str, Any] = {
        "fallback": {
            "deployments": deployments(("alpha", "error=503", None), ("beta", "fixed", None))
        },
        "debugged": {
            "deployments": deployments(
                ("alpha", "error=503+delay=1", None), ("beta", "fixed", None)
            )
        },
        "pinned-order": {
            "deployments": deployments(
                ("alpha", "error=503+delay=2", None), ("beta", "fixed", None)
            )
        },
        "caller-fault": {
            "deployments": deployments(("alpha", "error=400", None), ("beta", "fixed", None))
        },
        "bad-credentials": {
            "deployments": deployments(("alpha", "error=401", None), ("beta", "echo", None))
        },
        "rate-limited": {
            "deployments": deployments(
                ("alpha", "error=429+retry_after=1", None), ("beta", "fixed", None)
            )
        },
        "long-wait": {
            "deployments": deployments(
                ("alpha", "error=429+retry_after=60", None), ("beta", "fixed", None)
            )
        },
        "all-down": {
            "deployments": deployments(("alpha", "error=503", None), ("beta", "error=502", None))
        },
        "breaking": {
            "deployments": deployments(("broken", "error=500", None), ("gamma", "fixed", None))
        },
        "priced": {
            "strategy": "price",
            "deployments": deployments(
                ("alpha", "reply=dear", DEAR), ("beta", "reply=cheap", CHEAP)
            ),
        },
        "weighted": {
            "strategy": "weighted",
            "deployments": [
                {"provider": "lb1", "model": "fixed", "weight": 3},
                {"provider": "lb2", "model": "fixed", "weight": 1},
            ],
        },
        "fast-slow": {
            "strategy": "perf_avg",
            "deployments": deployments(
                ("alpha", "reply=slow+delay=150", None), ("delta", "reply=fast", None)
            ),
        },
        "many": {
            "deployments": deployments(
                ("alpha", "reply=a", DEAR), ("beta", "reply=b", CHEAP), ("gamma", "reply=c", DEAR)
            )
        },
        "timing-out": {
            "deployments": deployments(
                ("alpha", "reply=late+delay=1500", None), ("beta", "reply=prompt", None)
            )
        },
        "stream-early-drop": {
            "deployments": deployments(("alpha", "drop_after=0", None), ("beta", "echo", None))
        },
        "stream-late-drop": {
            "deployments": deployments(("alpha", "drop_after=2", None), ("beta", "echo", None))
        },
        "echo": {"deployments": deployments(("delta", "echo", None))},
        "fixed": {"deployments": deployments(("delta", "fixed", None))},
        "down": {"deployments": deployments(("flaky", "error=503", None))},
    }
    config = parse_config(
        {
            "storage": {"database_url": f"sqlite+aiosqlite:///{database}", "flush_interval": 0.05},
            "keys": [{"name": "main", "key": API_KEY, "logs": "all"}],
            "providers": providers,
            "models": models,
            "routing": {
                "retries": 1,
                "backoff_initial": 0.01,
                "backoff_max": 0.02,
                "max_retry_after": 5,
                "breaker": {"consecutive_failures": 3, "cooldown": 0.5},
            },
        }
    )
    with running_gateway(config) as served:
        yield served


@pytest.fixture
def sdk(routed: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{routed.url}/v1", api_key=API_KEY, max_retries=0) as client:
        yield client


def routing_of(completion: Any) -> dict[str, Any]:
    routing = completion.model_extra["routing"]
    assert isinstance(routing, dict)
    return routing


def attempts(routing: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [(a["deployment"], a["status"]) for a in routing["attempts"]]


# --- fallbacks and retries ----------------------------------------------------------------


def test_a_transient_failure_is_retried_then_failed_over(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(model="fallback", messages=USER)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.model_extra["provider"] == "beta"
    routing = routing_of(completion)
    assert routing["strategy"] == "fallback"
    assert attempts(routing) == [
        ("alpha/error=503", 503),
        ("alpha/error=503", 503),  # one retry (routing.retries = 1)
        ("beta/fixed", 200),
    ]
    assert routing["chosen"] == "beta/fixed"
    assert [c["deployment"] for c in routing["candidates"]] == ["alpha/error=503", "beta/fixed"]


def test_the_callers_own_fault_is_never_retried_or_failed_over(sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="caller-fault", messages=USER)  # type: ignore[arg-type]


def test_a_deployment_refusing_our_credentials_is_failed_over_without_retry(
    sdk: OpenAI,
) -> None:
    completion = sdk.chat.completions.create(model="bad-credentials", messages=USER)  # type: ignore[arg-type]
    assert attempts(routing_of(completion)) == [("alpha/error=401", 401), ("beta/echo", 200)]


def test_retry_after_is_honoured(sdk: OpenAI) -> None:
    started = time.monotonic()
    completion = sdk.chat.completions.create(model="rate-limited", messages=USER)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert attempts(routing_of(completion))[-1] == ("beta/fixed", 200)
    assert [a[1] for a in attempts(routing_of(completion))] == [429, 429, 200]
    assert elapsed >= 1.0  # waited the upstream's Retry-After before retrying


def test_a_retry_after_beyond_the_limit_fails_over_at_once(sdk: OpenAI) -> None:
    started = time.monotonic()
    completion = sdk.chat.completions.create(model="long-wait", messages=USER)  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.0
    assert [a[1] for a in attempts(routing_of(completion))] == [429, 200]


def test_when_every_deployment_fails_the_last_error_is_returned(
    sdk: OpenAI, routed: ServedApp
) -> None:
    raw = sdk.chat.completions.with_raw_response
    with pytest.raises(openai.APIStatusError) as caught:
        raw.create(model="all-down", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == 502  # beta's 502, after alpha's 503s
    flush_log(routed)
    log_id = caught.value.response.headers["x-crossroads-log-id"]
    record = httpx.get(
        f"{routed.url}/v1/logs/{log_id}", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    assert record["provider"] == "beta" and record["status_code"] == 502
    tried = [(a["deployment"], a["status"]) for a in record["response"]["routing"]["attempts"]]
    # alpha first (its circuit may open on the way, after failures in earlier tests), then
    # beta and its retry.
    assert tried[0] == ("alpha/error=503", 503)
    assert tried[-2:] == [("beta/error=502", 502), ("beta/error=502", 502)]


def test_an_attempt_timeout_fails_over_to_the_next_deployment(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="timing-out",
        messages=USER,  # type: ignore[arg-type]
        extra_headers={"x-crossroads-attempt-timeout": "0.3"},
    )
    assert completion.choices[0].message.content == "prompt"
    routing = routing_of(completion)
    assert routing["attempts"][0]["error"] == "upstream_timeout"
    assert routing["attempts"][0]["latency_ms"] < 1000


def test_the_total_deadline_bounds_every_attempt(sdk: OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="timing-out",
            messages=USER,  # type: ignore[arg-type]
            extra_headers={"x-crossroads-timeout": "0.4"},
        )
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 1.4


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "99999"])
def test_a_bad_timeout_header_is_400(sdk: OpenAI, value: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="fixed",
            messages=USER,  # type: ignore[arg-type]
            extra_headers={"x-crossroads-timeout": value},
        )
    assert caught.value.param == "x-crossroads-timeout"  # type: ignore[attr-defined]


# --- circuit breakers ---------------------------------------------------------------------


def test_a_failing_deployment_is_cut_off_then_probed(sdk: OpenAI, routed: ServedApp) -> None:
    # Three failures in a row (an attempt and its retry, then another attempt) open it.
    sdk.chat.completions.create(model="breaking", messages=USER)  # type: ignore[arg-type]
    sdk.chat.completions.create(model="breaking", messages=USER)  # type: ignore[arg-type]
    completion = sdk.chat.completions.create(model="breaking", messages=USER)  # type: ignore[arg-type]
    routing = routing_of(completion)
    assert attempts(routing) == [("gamma/fixed", 200)]
    excluded = {c["deployment"]: c["excluded"] for c in routing["candidates"]}
    assert excluded["broken/error=500"].startswith("circuit open")
    stats = httpx.get(
        f"{routed.url}/v1/providers/stats", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    broken = stats["deployments"]["broken/error=500"]
    assert broken["breaker"]["state"] == "open"
    assert broken["errors"] >= 3
    assert stats["deployments"]["gamma/fixed"]["breaker"]["state"] == "closed"
    # After the cooldown one probe goes through; it fails, so the circuit opens again.
    time.sleep(0.6)
    probed = routing_of(sdk.chat.completions.create(model="breaking", messages=USER))  # type: ignore[arg-type]
    assert attempts(probed)[0] == ("broken/error=500", 500)
    tried = [a for a in attempts(probed) if a[0].startswith("broken") and a[1] is not None]
    assert len(tried) == 1  # the probe only: its retry finds the circuit open again
    again = routing_of(sdk.chat.completions.create(model="breaking", messages=USER))  # type: ignore[arg-type]
    assert attempts(again) == [("gamma/fixed", 200)]


def test_a_model_whose_only_circuit_is_open_is_503(sdk: OpenAI) -> None:
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            sdk.chat.completions.create(model="down", messages=USER)  # type: ignore[arg-type]
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="down", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == 503
    assert caught.value.code == "no_available_deployment"  # type: ignore[attr-defined]


# --- strategies ---------------------------------------------------------------------------


def test_price_strategy_picks_the_cheapest(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(model="priced", messages=USER)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "cheap"
    assert routing_of(completion)["strategy"] == "price"


def test_weighted_strategy_spreads_by_weight(sdk: OpenAI) -> None:
    chosen = Counter(
        routing_of(sdk.chat.completions.create(model="weighted", messages=USER))["chosen"]  # type: ignore[arg-type]
        for _ in range(80)
    )
    assert set(chosen) == {"lb1/fixed", "lb2/fixed"}
    assert chosen["lb1/fixed"] > chosen["lb2/fixed"]


def test_perf_avg_learns_which_deployment_is_faster(sdk: OpenAI) -> None:
    answers = [
        sdk.chat.completions.create(model="fast-slow", messages=USER).choices[0].message.content  # type: ignore[arg-type]
        for _ in range(6)
    ]
    assert answers[-3:] == ["fast"] * 3


def test_request_routing_overrides_the_model_strategy(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="many",
        messages=USER,  # type: ignore[arg-type]
        extra_body={"routing": "price"},
    )
    assert completion.choices[0].message.content == "b"


# --- request controls ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "answer", "excluded"),
    [
        ({"provider": "gamma"}, "c", "not the requested provider 'gamma'"),
        ({"provider": {"only": ["beta"]}}, "b", "not in provider.only"),
        ({"provider": {"ignore": ["alpha"]}}, "b", "in provider.ignore"),
        ({"provider": {"order": ["gamma", "alpha"]}}, "c", None),
        ({"provider": {"sort": "price"}}, "b", None),
        ({"provider": {"max_price": {"prompt": 2}}}, "b", "prompt price 5.0 > provider."),
    ],
)
def test_provider_preferences(
    sdk: OpenAI, extra: dict[str, Any], answer: str, excluded: str | None
) -> None:
    completion = sdk.chat.completions.create(model="many", messages=USER, extra_body=extra)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == answer
    reasons = [c["excluded"] for c in routing_of(completion)["candidates"] if c["excluded"]]
    if excluded is not None:
        assert any(r.startswith(excluded) for r in reasons), reasons


def test_order_without_fallbacks_tries_only_the_listed_providers(sdk: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="pinned-order",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"provider": {"order": ["alpha"], "allow_fallbacks": False}},
        )
    assert caught.value.status_code == 503


def test_no_deployment_matching_the_preferences_is_400(sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="many",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"provider": {"max_price": {"completion": 0.5}}},
        )
    assert "No deployment of model 'many'" in str(caught.value)


def test_models_is_a_fallback_list_across_model_names(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="all-down",
        messages=USER,  # type: ignore[arg-type]
        extra_body={"models": ["echo"]},
    )
    assert completion.choices[0].message.content == "alpha beta gamma"
    assert routing_of(completion)["chosen"] == "delta/echo"


def test_an_unknown_fallback_model_is_404_naming_it(sdk: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(
            model="fixed",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"models": ["echo", "nope"]},
        )
    assert caught.value.param == "models[1]"  # type: ignore[attr-defined]


def test_route_sort_pools_every_models_deployments(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="many",
        messages=USER,  # type: ignore[arg-type]
        extra_body={"models": ["priced"], "route": "sort", "provider": {"sort": "price"}},
    )
    routing = routing_of(completion)
    assert routing["strategy"] == "price"
    assert len(routing["candidates"]) >= 4  # deployments of both models, in one order


def test_debug_echoes_the_exact_upstream_bodies(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="debugged",
        messages=USER,  # type: ignore[arg-type]
        temperature=0.3,
        extra_body={"debug": {"echo_upstream_body": True}, "session_id": "s-1"},
    )
    bodies = routing_of(completion)["upstream_bodies"]
    assert [b["model"] for b in bodies] == ["error=503+delay=1", "error=503+delay=1", "fixed"]
    assert all(b["temperature"] == 0.3 and "session_id" not in b for b in bodies)
    plain = sdk.chat.completions.create(model="fixed", messages=USER)  # type: ignore[arg-type]
    assert "upstream_bodies" not in routing_of(plain)


# --- streams ------------------------------------------------------------------------------


def stream_events(routed: ServedApp, model: str, **body: Any) -> tuple[int, list[str]]:
    response = httpx.post(
        f"{routed.url}/v1/chat/completions",
        json={"model": model, "messages": USER, "stream": True, **body},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    return response.status_code, [e for e in response.text.split("\n\n") if e]


def test_a_stream_failing_before_its_first_content_fails_over_unseen(
    routed: ServedApp,
) -> None:
    status, events = stream_events(
        routed, "stream-early-drop", stream_options={"include_usage": True}
    )
    assert status == 200
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "alpha beta gamma"
    routing = chunks[-1]["routing"]
    assert [a["deployment"].split("/")[0] for a in routing["attempts"]][-1] == "beta"
    assert routing["attempts"][0]["error"] == "upstream_stream_interrupted"


def test_a_stream_failing_after_content_ends_with_an_error_event(routed: ServedApp) -> None:
    status, events = stream_events(routed, "stream-late-drop")
    assert status == 200
    assert events[-1] != "data: [DONE]"
    assert json.loads(events[-1].removeprefix("data: "))["error"]["code"] == (
        "upstream_stream_interrupted"
    )


# --- fan-out ------------------------------------------------------------------------------


def test_fan_out_answers_one_choice_per_model(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(model="fixed,echo", messages=USER)  # type: ignore[arg-type]
    assert [c.model_extra["model"] for c in completion.choices] == ["fixed", "echo"]
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.choices[1].message.content == "alpha beta gamma"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 12  # both models read the 6-token prompt
    models = completion.model_extra["routing"]["models"]
    assert [m["model"] for m in models] == ["fixed", "echo"]
    assert sum(m["cost"] for m in models) == pytest.approx(usage.model_extra["cost"])


def test_fan_out_survives_a_failing_model(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(model="echo,down,fixed", messages=USER, n=2)  # type: ignore[arg-type]
    choices = completion.choices
    assert [c.index for c in choices] == list(range(6))
    assert [c.model_extra["model"] for c in choices] == ["echo"] * 2 + ["down"] * 2 + ["fixed"] * 2
    failed = choices[2]
    assert failed.finish_reason == "error"  # type: ignore[comparison-overlap]
    assert failed.model_extra["error"]["status"] in (502, 503)
    assert choices[0].message.content == "alpha beta gamma"


def test_fan_out_fails_only_when_every_model_fails(sdk: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError):
        sdk.chat.completions.create(model="down,all-down", messages=USER)  # type: ignore[arg-type]


def test_streamed_fan_out_interleaves_choices_by_model(sdk: OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="echo,down,fixed",
            messages=USER,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    models: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            models[choice.index] = choice.model_extra["model"]
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert texts[0] == "alpha beta gamma"
    assert texts[2] == "Hello from the fake upstream."
    assert models == {0: "echo", 1: "down", 2: "fixed"}
    assert finishes == {0: "stop", 1: "error", 2: "stop"}
    assert len({c.id for c in chunks}) == 1
    final = chunks[-1]
    assert final.usage is not None and final.usage.completion_tokens == 3 + 5


def test_fan_out_with_models_is_400(sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="echo,fixed",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"models": ["many"]},
        )
    assert caught.value.param == "models"  # type: ignore[attr-defined]
