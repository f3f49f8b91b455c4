"""Messages `stop_sequences`: an answer that stopped on one says `stop_reason:
"stop_sequence"` and which one, by the rule in inbound/stop_sequences.py. The official
`anthropic` SDK is the client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from crossroads.inbound.stop_sequences import matched_stop
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY
from tests.inbound_gateway import inbound_gateway
from tests.test_inbound_messages import raw_events

__all__ = ["inbound_gateway"]

USER: Any = [{"role": "user", "content": "alpha beta gamma delta"}]


@pytest.fixture
def claude(inbound_gateway: ServedApp) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=inbound_gateway.url, api_key=API_KEY, max_retries=0
    ) as client:
        yield client


ONES_THAT_SAY = ["claude-echo", "claude-chunked", "gpt-says-stop", "gpt-says-stop-chunked"]


@pytest.mark.parametrize("model", ONES_THAT_SAY)
def test_an_upstream_that_says_which_sequence(claude: anthropic.Anthropic, model: str) -> None:
    message = claude.messages.create(
        model=model, max_tokens=50, messages=USER, stop_sequences=["zeta", "gamma"]
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "gamma"
    assert message.content[0].type == "text"
    assert message.content[0].text.strip() == "alpha beta"


@pytest.mark.parametrize("model", ONES_THAT_SAY)
def test_streamed_stop_sequence(inbound_gateway: ServedApp, model: str) -> None:
    body = {"model": model, "max_tokens": 50, "messages": USER, "stop_sequences": ["gamma"]}
    events = raw_events(inbound_gateway, body)
    delta = next(data for name, data in events if name == "message_delta")["delta"]
    assert delta == {"stop_reason": "stop_sequence", "stop_sequence": "gamma"}


def test_streamed_through_the_sdk(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="claude-chunked", max_tokens=50, messages=USER, stop_sequences=["delta"]
    ) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "delta")


@pytest.mark.parametrize("model", ["claude-echo", "gpt-echo", "gpt-says-stop"])
def test_a_natural_end_is_end_turn(claude: anthropic.Anthropic, model: str) -> None:
    message = claude.messages.create(
        model=model, max_tokens=50, messages=USER, stop_sequences=["zeta"]
    )
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


def test_an_upstream_that_does_not_say_is_end_turn(claude: anthropic.Anthropic) -> None:
    """The openai-dialect fake strips the stop string and reports only "stop": which
    sequence (or whether any) cannot be told, so the answer does not claim one."""
    message = claude.messages.create(
        model="gpt-echo", max_tokens=50, messages=USER, stop_sequences=["gamma"]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text.strip() == "alpha beta"
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


def test_the_rule() -> None:
    stops = ["END", "###"]
    stop = {"finish_reason": "stop"}
    # 1. reported by the upstream (vLLM's field, or the anthropic dialect's carried one)
    assert matched_stop({**stop, "stop_reason": "###"}, "text", stops) == "###"
    assert matched_stop({**stop, "stop_reason": "other"}, "text", stops) is None
    assert matched_stop({**stop, "stop_reason": 2}, "text", stops) is None  # a token id
    # 2. kept at the end of the text
    assert matched_stop(stop, "the text END", stops) == "END"
    # 3. otherwise unknown; and never for another finish reason or without sequences
    assert matched_stop(stop, "the text", stops) is None
    assert matched_stop({"finish_reason": "length"}, "the text END", stops) is None
    assert matched_stop(stop, "the text END", None) is None
