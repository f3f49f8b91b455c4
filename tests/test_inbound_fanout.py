"""A fan-out `model` ("a,b") on the APIs with room for one answer is refused, naming
`model`, rather than answered by its first model alone."""

from __future__ import annotations

import anthropic
import openai
import pytest

from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY
from tests.inbound_gateway import inbound_gateway

__all__ = ["inbound_gateway"]

USER = [{"role": "user", "content": "alpha"}]


def test_messages_refuse_a_fan_out(inbound_gateway: ServedApp) -> None:
    with anthropic.Anthropic(base_url=inbound_gateway.url, api_key=API_KEY, max_retries=0) as c:
        fan_out = "claude-echo,gpt-echo"
        for stream in (False, True):
            with pytest.raises(anthropic.BadRequestError) as caught:
                c.messages.create(model=fan_out, max_tokens=10, messages=USER, stream=stream)  # type: ignore[arg-type]
            error = caught.value.body["error"]  # type: ignore[index]
            assert error["type"] == "invalid_request_error"
            assert "'model'" in error["message"]
            assert "/v1/chat/completions" in error["message"]
        with pytest.raises(anthropic.BadRequestError):
            c.messages.count_tokens(model=fan_out, messages=USER)  # type: ignore[arg-type]
        # One model is served as before.
        answer = c.messages.create(model="claude-echo", max_tokens=10, messages=USER)  # type: ignore[arg-type]
        assert answer.content[0].type == "text"


@pytest.mark.parametrize("stream", [False, True])
def test_responses_refuse_a_fan_out(inbound_gateway: ServedApp, stream: bool) -> None:
    with openai.OpenAI(
        base_url=f"{inbound_gateway.url}/v1", api_key=API_KEY, max_retries=0
    ) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="gpt-echo,claude-echo", input="alpha", stream=stream)
    assert caught.value.param == "model"
    assert "fan-out" in caught.value.message


def test_chat_completions_still_fan_out(inbound_gateway: ServedApp) -> None:
    with openai.OpenAI(
        base_url=f"{inbound_gateway.url}/v1", api_key=API_KEY, max_retries=0
    ) as client:
        answer = client.chat.completions.create(
            model="gpt-echo,claude-echo",
            messages=[{"role": "user", "content": "alpha"}],
        )
    assert len(answer.choices) == 2


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_completions_serve_a_fan_out(inbound_gateway: ServedApp, stream: bool) -> None:
    """Legacy completions have a choice per answer: every model of a fan-out answers."""
    with openai.OpenAI(
        base_url=f"{inbound_gateway.url}/v1", api_key=API_KEY, max_retries=0
    ) as client:
        if stream:
            texts: dict[int, str] = {}
            for chunk in client.completions.create(
                model="gpt-echo,claude-echo", prompt="alpha beta", stream=True
            ):
                for choice in chunk.choices:
                    texts[choice.index] = texts.get(choice.index, "") + choice.text
            assert sorted(texts) == [0, 1]
            assert all(text.strip() == "alpha beta" for text in texts.values())
        else:
            answer = client.completions.create(model="gpt-echo,claude-echo", prompt="alpha beta")
            assert sorted(choice.index for choice in answer.choices) == [0, 1]
            assert all(choice.text.strip() == "alpha beta" for choice in answer.choices)
