"""Hallucination risk through the real server: flag, autocorrect (drop and regenerate), each
method, streams, side calls billed and logged, and the 400s for bad settings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import OpenAI

from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.quality_gateway import RIGHT, WRONG, ask, client, fake, post, record, served

__all__ = ["client", "fake", "served"]  # the fixtures this module uses


def _quality(answer: Any) -> dict[str, Any]:
    found: dict[str, Any] = (answer.model_extra or {})["quality"]
    return found


def test_a_grounded_answer_is_not_flagged(client: OpenAI) -> None:
    answer = client.chat.completions.create(
        model="right",
        messages=ask(),  # type: ignore[arg-type]
        extra_body={"quality_risk_threshold": 0.7},
    )
    quality = _quality(answer)
    assert quality["method"] == "grounding" and quality["threshold"] == 0.7
    assert quality["risk"] < 0.7 and quality["flagged"] is False
    assert quality["autocorrected"] is False


def test_an_ungrounded_answer_is_flagged_with_its_evidence(client: OpenAI) -> None:
    answer = client.chat.completions.create(
        model="wrong",
        messages=ask(),  # type: ignore[arg-type]
        extra_body={"quality_risk_threshold": 0.7},
    )
    quality = _quality(answer)
    assert quality["risk"] > 0.7 and quality["flagged"] is True
    assert "Napoleon" in quality["evidence"]["unsupported_entities"]
    assert answer.choices[0].message.content == WRONG  # flagged, not changed


def test_without_quality_fields_nothing_is_added(client: OpenAI) -> None:
    answer = client.chat.completions.create(model="wrong", messages=ask())  # type: ignore[arg-type]
    assert "quality" not in (answer.model_extra or {})


def test_the_baseline_method_is_selectable(client: OpenAI) -> None:
    answer = client.chat.completions.create(
        model="right",
        messages=ask(),  # type: ignore[arg-type]
        extra_body={"quality": {"method": "overlap"}},
    )
    assert _quality(answer)["method"] == "overlap"


def test_autocorrect_drop_removes_the_unsupported_sentence(client: OpenAI) -> None:
    answer = client.chat.completions.create(
        model="mixed",
        messages=ask(),  # type: ignore[arg-type]
        extra_body={
            "quality_risk_threshold": 0.3,
            "quality": {"action": "autocorrect", "autocorrect": "drop"},
        },
    )
    quality = _quality(answer)
    assert quality["autocorrected"] is True
    assert answer.choices[0].message.content == RIGHT
    fix = quality["evidence"]["autocorrect"]
    assert fix["mode"] == "drop" and fix["removed"] == [WRONG]
    assert fix["risk_before"] > quality["risk"]


def test_autocorrect_regenerates_with_the_claims_named_and_bills_it(
    client: OpenAI, served: ServedApp, fake: FakeOpenAI
) -> None:
    fake.requests.clear()
    raw = client.chat.completions.with_raw_response.create(
        model="wrong-then-right",
        messages=ask(),  # type: ignore[arg-type]
        seed=1,
        extra_body={"quality": {"action": "autocorrect", "threshold": 0.5}},
    )
    answer = raw.parse()
    quality = _quality(answer)
    assert quality["autocorrected"] is True and quality["flagged"] is False
    assert answer.choices[0].message.content == RIGHT
    assert quality["evidence"]["autocorrect"]["original"] == WRONG
    assert len(fake.requests) == 2
    rewrite = fake.requests[1]["body"]["messages"]
    assert rewrite[-2] == {"role": "assistant", "content": WRONG}
    assert WRONG in rewrite[-1]["content"]  # the unsupported claim is named
    usage = answer.usage.model_extra or {}  # type: ignore[union-attr]
    side = usage["quality"]
    assert side["calls"] == 1 and side["cost"] > 0
    logged = record(served, raw.headers["x-crossroads-log-id"])
    assert logged["cost"] == pytest.approx(usage["cost"])
    assert logged["total_tokens"] == answer.usage.total_tokens  # type: ignore[union-attr]
    assert logged["response"]["quality"]["autocorrected"] is True


def test_the_judge_method_uses_the_judge_model(client: OpenAI, fake: FakeOpenAI) -> None:
    fake.requests.clear()
    answer = client.chat.completions.create(
        model="right",
        messages=ask(),  # type: ignore[arg-type]
        extra_body={"quality": {"method": "judge", "judge_model": "judge-low"}},
    )
    quality = _quality(answer)
    assert quality["method"] == "judge" and quality["risk"] == pytest.approx(0.05)
    assert quality["evidence"]["judge_model"] == "judge-low"
    assert fake.requests[-1]["body"]["model"] == "reply=0.05"


def test_sample_consistency_compares_answers_that_differ(client: OpenAI, fake: FakeOpenAI) -> None:
    fake.requests.clear()
    answer = client.chat.completions.create(
        model="wrong-then-right",
        messages=ask(),  # type: ignore[arg-type]
        extra_body={"quality": {"method": "consistency", "samples": 3}},
    )
    quality = _quality(answer)
    assert quality["evidence"]["samples"] == 3
    assert len(fake.requests) == 3  # the answer and two samples, seeds 1 and 2
    assert quality["risk"] > 0.3  # the samples (the right answer, the wrong one) disagree
    usage = answer.usage.model_extra or {}  # type: ignore[union-attr]
    assert usage["quality"]["calls"] == 2


def test_a_stream_carries_quality_in_its_final_chunk(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="wrong",
        messages=ask(),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"quality_risk_threshold": 0.6},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == WRONG  # policy pass: nothing held back
    final = chunks[-1].model_extra or {}
    assert final["quality"]["flagged"] is True


def test_a_stream_is_autocorrected_before_it_is_sent(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="mixed",
        messages=ask(),  # type: ignore[arg-type]
        stream=True,
        extra_body={"quality": {"action": "autocorrect", "autocorrect": "drop", "threshold": 0.3}},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == RIGHT
    assert (chunks[-1].model_extra or {})["quality"]["autocorrected"] is True


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"quality_risk_threshold": 1.5}, "quality_risk_threshold"),
        ({"quality_risk_threshold": -0.1}, "quality_risk_threshold"),
        ({"quality": {"method": "judge", "judge_model": "no-such-model"}}, "quality.judge_model"),
        ({"quality": {"method": "psychic"}}, "quality.method"),
        ({"quality": {"method": "onnx"}}, "quality.method"),
        ({"quality": {"threshold": 2}}, "quality.threshold"),
    ],
)
def test_bad_quality_settings_are_400s_naming_the_field(
    served: ServedApp, extra: dict[str, Any], param: str
) -> None:
    response = post(served, {"model": "right", "messages": ask(), **extra})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param, json.dumps(error)
