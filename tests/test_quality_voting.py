"""Integrity voting (plain, judged, streamed), mixtures of agents and criteria through the real
server: what the caller gets, what the upstreams were asked, usage billed, the log record."""

from __future__ import annotations

from typing import Any

import pytest
from openai import OpenAI

from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.quality_gateway import ask, client, fake, post, record, served

__all__ = ["client", "fake", "served"]  # the fixtures this module uses


def _extra(obj: Any) -> dict[str, Any]:
    found: dict[str, Any] = obj.model_extra or {}
    return found


def test_integrity_votes_and_returns_the_most_common_answer(
    client: OpenAI, served: ServedApp, fake: FakeOpenAI
) -> None:
    fake.requests.clear()
    raw = client.chat.completions.with_raw_response.create(
        model="voter",
        messages=ask("Capital of France?"),  # type: ignore[arg-type]
        extra_body={"integrity": 3},
    )
    answer = raw.parse()
    assert [c.message.content for c in answer.choices] == ["Paris"]
    integrity = _extra(answer)["integrity"]
    assert integrity["votes"] == 2 and integrity["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    assert integrity["candidates"] == [
        {"content": "Paris", "votes": 2},
        {"content": "Lyon", "votes": 1},
    ]
    assert sorted(r["body"]["seed"] for r in fake.requests) == [0, 1, 2]
    single = client.chat.completions.create(model="voter", messages=ask("Capital of France?"))  # type: ignore[arg-type]
    assert answer.usage.total_tokens == 3 * single.usage.total_tokens  # type: ignore[union-attr]
    logged = record(served, raw.headers["x-crossroads-log-id"])
    assert logged["response"]["integrity"]["votes"] == 2
    assert logged["cost"] == pytest.approx(_extra(answer.usage)["cost"])


def test_integrity_streams_the_winner(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="voter",
        messages=ask("Capital of France?"),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"integrity": 5},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris"
    final = _extra(chunks[-1])
    assert final["integrity"]["votes"] == 3 and final["integrity"]["answered"] == 5
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_integrity_model_picks_among_the_candidates(client: OpenAI, fake: FakeOpenAI) -> None:
    fake.requests.clear()
    answer = client.chat.completions.create(
        model="voter",
        messages=ask("Capital of France?"),  # type: ignore[arg-type]
        extra_body={"integrity": 3, "integrity_model": "picker"},
    )
    assert answer.choices[0].message.content == "Lyon"  # the picker says "2"
    integrity = _extra(answer)["integrity"]
    assert integrity["method"] == "model" and integrity["chosen"] == 1
    assert "[2] Lyon" in fake.requests[-1]["body"]["messages"][-1]["content"]
    assert _extra(answer.usage)["integrity"]["calls"] == 1


def test_mixture_of_agents_asks_the_proposers_then_the_aggregator(
    client: OpenAI, served: ServedApp, fake: FakeOpenAI
) -> None:
    fake.requests.clear()
    raw = client.chat.completions.with_raw_response.create(
        model="moa",
        messages=ask("Capital of France?"),  # type: ignore[arg-type]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "Paris."
    mixture = _extra(answer)["mixture"]
    assert [p["model"] for p in mixture["proposals"]] == ["proposer-a", "proposer-b"]
    aggregated = fake.requests[-1]["body"]
    assert aggregated["model"] == "reply=Paris."
    system = aggregated["messages"][0]["content"]
    assert "Paris is the capital." in system and "The capital is Paris." in system
    usage = _extra(answer.usage)
    assert usage["mixture"]["calls"] == 2 and usage["cost"] > usage["mixture"]["cost"]
    logged = record(served, raw.headers["x-crossroads-log-id"])
    assert logged["model_requested"] == "moa"
    assert logged["cost"] == pytest.approx(usage["cost"])


def test_mixture_layers_and_streams(client: OpenAI, fake: FakeOpenAI) -> None:
    fake.requests.clear()
    stream = client.chat.completions.create(
        model="deep-moa",
        messages=ask("Capital of France?"),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris."
    assert len(fake.requests) == 5  # two layers of two proposers, then the aggregator
    assert "improve yours" in fake.requests[2]["body"]["messages"][0]["content"]
    assert _extra(chunks[-1].usage)["mixture"]["calls"] == 4


def test_criteria_results_per_choice_and_their_cost(client: OpenAI, served: ServedApp) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="right",
        messages=ask(),  # type: ignore[arg-type]
        extra_body={"criteria": ["concise", "polite", "helpful", "flaky"]},
    )
    answer = raw.parse()
    results = {r["name"]: r for r in _extra(answer.choices[0])["criteria_results"]}
    assert results["concise"]["status"] == "pass" and results["concise"]["score"] == 1.0
    assert results["polite"]["status"] == "fail"
    assert results["helpful"]["status"] == "pass" and results["helpful"]["score"] == 0.8
    assert results["flaky"]["status"] == "error"
    usage = _extra(answer.usage)
    assert usage["criteria"]["calls"] == 3 and usage["criteria"]["cost"] > 0
    logged = record(served, raw.headers["x-crossroads-log-id"])
    assert logged["response"]["choices"][0]["criteria_results"][0]["name"] == "concise"
    assert logged["cost"] == pytest.approx(usage["cost"])


def test_criteria_on_a_stream_come_with_the_choice(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="right",
        messages=ask(),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"criteria": ["concise"]},
    )
    chunks = list(stream)
    fields = [_extra(c.choices[0]) for c in chunks if c.choices]
    assert any(f.get("criteria_results") for f in fields)
    assert _extra(chunks[-1].usage)["criteria"]["calls"] == 1


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"integrity": 0}, "integrity"),
        ({"integrity": 8}, "integrity"),
        ({"integrity": 99}, "integrity"),
        ({"integrity": 3, "n": 2}, "n"),
        ({"integrity_model": "picker"}, "integrity_model"),
        ({"integrity": 3, "integrity_model": "nobody"}, "integrity_model"),
        ({"criteria": ["concise", "witty"]}, "criteria[1]"),
        ({"criteria": []}, "criteria"),
    ],
)
def test_bad_voting_and_criteria_settings_are_400s(
    served: ServedApp, extra: dict[str, Any], param: str
) -> None:
    response = post(served, {"model": "voter", "messages": ask(), **extra})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param, response.text


def test_integrity_with_a_fan_out_is_refused(served: ServedApp) -> None:
    response = post(served, {"model": "right,wrong", "messages": ask(), "integrity": 2})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "integrity"


def test_integrity_model_on_a_stream_sends_its_pick(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="voter",
        messages=ask("Capital of France?"),  # type: ignore[arg-type]
        stream=True,
        extra_body={"integrity": 3, "integrity_model": "picker"},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Lyon"
    assert _extra(chunks[-1])["integrity"]["method"] == "model"


def test_a_fan_out_gets_a_risk_per_choice(client: OpenAI) -> None:
    answer = client.chat.completions.create(
        model="right,wrong",
        messages=ask(),  # type: ignore[arg-type]
        extra_body={"quality_risk_threshold": 0.7},
    )
    quality = _extra(answer)["quality"]
    assert [c["flagged"] for c in quality["choices"]] == [False, True]
    assert quality["flagged"] is True and quality["index"] == 1  # the worst choice on top
