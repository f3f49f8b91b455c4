"""The small pure parts of answer quality: answer normalisation and the vote, reading a judge's
probability, unsupported claims, the side-call bill."""

from __future__ import annotations

import pytest

from crossroads.config import ConfigError, parse_config
from crossroads.pipeline.side_calls import SideBill
from crossroads.pipeline.vote import normalize_answer, tally
from crossroads.stages.grounding import Support, unsupported_claims
from crossroads.stages.quality_risk import parse_probability


def test_answers_are_compared_normalised() -> None:
    assert normalize_answer("The answer is: Paris!") == "paris"
    assert normalize_answer("  PARIS. ") == normalize_answer("paris")
    assert tally(["Paris", "Lyon", "paris.", "Lyon", "Nice"])[0] == ("paris", [0, 2])
    # a tie goes to the answer seen first
    assert tally(["Lyon", "Paris", "Paris", "Lyon"])[0][0] == "lyon"


def test_a_judges_probability_is_read_in_any_common_form() -> None:
    assert parse_probability("0.85\n- claim") == 0.85
    assert parse_probability("80%") == 0.8
    assert parse_probability("Risk: 35") == 0.35
    assert parse_probability("no idea") is None


def test_unsupported_claims_are_the_sentences_the_context_lacks() -> None:
    support = Support.of(["Paris is the capital of France."], "What is the capital?")
    answer = "Paris is the capital of France. It was founded by Julius Caesar in 52 BC."
    assert unsupported_claims(support, answer) == ["It was founded by Julius Caesar in 52 BC."]


def test_the_bill_adds_each_purpose_to_usage_once() -> None:
    bill = SideBill()
    bill.add(
        "criteria", {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cost": 0.5}
    )
    bill.add(
        "criteria", {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6, "cost": 0.25}
    )
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120, "cost": 1.0}
    bill.charge(usage)
    bill.charge(usage)
    assert usage["total_tokens"] == 138 and usage["cost"] == 1.75
    assert usage["criteria"] == {
        "prompt_tokens": 15,
        "completion_tokens": 3,
        "total_tokens": 18,
        "cost": 0.75,
        "calls": 2,
    }


def test_the_config_names_an_unknown_quality_model_by_its_path() -> None:
    data = {
        "providers": {"fake": {"base_url": "http://127.0.0.1:9"}},
        "models": {"known": {"deployments": [{"provider": "fake"}]}},
        "quality": {
            "judge_model": "known",
            "criteria": {"concise": {"prompt": "Short.", "model": "ghost"}},
            "moa": {"moa": {"proposers": ["known", "phantom"], "aggregator": "known"}},
        },
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    problems = "\n".join(caught.value.problems)
    assert "quality.criteria.concise.model: unknown model 'ghost'" in problems
    assert "quality.moa.moa.proposers[1]: unknown model 'phantom'" in problems
    assert "judge_model" not in problems
