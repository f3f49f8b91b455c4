"""The embedded llama.cpp engine through the real gateway, with the OpenAI SDK as client.

One gateway serves the default Gemma 3 270M twice: `local` (4 slots, as users get it) and
`local-1` (1 slot, to show that a client hanging up frees its slot; answers capped at 6
tokens unless a request says otherwise).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI

from crossroads.config import parse_config
from crossroads.server import create_app
from crossroads.testing.server import ServedApp, serve_in_thread
from tests.conftest import API_KEY

pytestmark = pytest.mark.engine

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


def _wait_ready(served: ServedApp, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{served.url}/ready").status_code != 200:
        assert time.monotonic() < deadline, httpx.get(f"{served.url}/ready").text
        time.sleep(0.1)


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    database = tmp_path_factory.mktemp("local") / "log.db"
    config = parse_config(
        {
            "storage": {"database_url": f"sqlite+aiosqlite:///{database}", "flush_interval": 0.05},
            "keys": [{"name": "main", "key": API_KEY, "logs": "all"}],
            "providers": {
                "local": {"dialect": "llamacpp", "threads": 2},
                "local-1": {
                    "dialect": "llamacpp",
                    "threads": 2,
                    "parallel": 1,
                    "context_size": 2048,
                    "default_max_tokens": 6,
                },
            },
            "models": {
                "local": {"deployments": [{"provider": "local"}]},
                "local-1": {"deployments": [{"provider": "local-1"}]},
            },
        }
    )
    with serve_in_thread(create_app(config)) as served:
        _wait_ready(served)
        yield served


@pytest.fixture
def sdk(local_gateway: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(
        base_url=f"{local_gateway.url}/v1", api_key=API_KEY, max_retries=0, timeout=300
    ) as client:
        yield client


def chat(sdk: OpenAI, **kwargs: Any) -> Any:
    kwargs.setdefault("model", "local")
    kwargs.setdefault("messages", HELLO)
    kwargs.setdefault("max_tokens", 24)
    return sdk.chat.completions.create(**kwargs)


def text_of(completion: Any, index: int = 0) -> str:
    return str(completion.choices[index].message.content)


# --- basics --------------------------------------------------------------------------------------


def test_completion_with_usage_and_provider(sdk: OpenAI) -> None:
    completion = chat(sdk, temperature=0)
    assert completion.object == "chat.completion"
    assert text_of(completion)
    assert completion.usage.completion_tokens <= 24
    assert completion.usage.prompt_tokens > 5
    extra = completion.usage.model_extra
    assert extra["cost"] == 0.0
    assert extra["response_characters"] == len(text_of(completion))
    assert completion.model_extra["provider"] == "local"


def test_stream_with_usage(sdk: OpenAI) -> None:
    chunks = list(chat(sdk, temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == text_of(chat(sdk, temperature=0))
    assert chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].model_extra["provider"] == "local"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3  # streamed


def test_models_lists_local(sdk: OpenAI) -> None:
    assert "local" in {m.id for m in sdk.models.list().data}


# --- sampling controls ---------------------------------------------------------------------------


def test_same_seed_same_output_and_different_seed_differs(sdk: OpenAI) -> None:
    a = text_of(chat(sdk, temperature=1.3, seed=11, max_tokens=32))
    b = text_of(chat(sdk, temperature=1.3, seed=11, max_tokens=32))
    c = text_of(chat(sdk, temperature=1.3, seed=12, max_tokens=32))
    assert a == b
    assert a != c


@pytest.mark.parametrize("narrowing", [{"top_k": 1}, {"top_p": 1e-6}, {"min_p": 0.999}])
def test_truncation_samplers_at_high_temperature_reduce_to_greedy(
    sdk: OpenAI, narrowing: dict[str, Any]
) -> None:
    greedy = text_of(chat(sdk, temperature=0))
    narrowed = text_of(chat(sdk, temperature=2.0, seed=3, extra_body=narrowing))
    assert narrowed == greedy


def test_penalties_change_greedy_output(sdk: OpenAI) -> None:
    messages = [{"role": "user", "content": "Repeat after me: the the the the the the"}]
    plain = text_of(chat(sdk, messages=messages, temperature=0, max_tokens=30))
    penalised = text_of(
        chat(
            sdk,
            messages=messages,
            temperature=0,
            max_tokens=30,
            frequency_penalty=2.0,
            presence_penalty=2.0,
        )
    )
    assert plain != penalised


def test_logit_bias_bans_and_forces_tokens(sdk: OpenAI) -> None:
    first = chat(sdk, temperature=0, max_tokens=1, logprobs=True)
    token = first.choices[0].logprobs.content[0]
    token_id = str(token.model_extra["id"])
    banned = chat(sdk, temperature=0, max_tokens=1, logprobs=True, logit_bias={token_id: -100})
    assert banned.choices[0].logprobs.content[0].token != token.token
    forced = chat(sdk, temperature=0, max_tokens=3, logit_bias={"9259": 100})
    assert len(set(text_of(forced).split())) <= 1


def test_stop_and_max_tokens(sdk: OpenAI) -> None:
    full = text_of(chat(sdk, temperature=0, max_tokens=24))
    words = full.split()
    assert len(words) > 3
    stop_word = words[2]
    stopped = chat(sdk, temperature=0, max_tokens=24, stop=[stop_word])
    assert stop_word not in text_of(stopped)
    assert stopped.choices[0].finish_reason == "stop"
    limited = chat(sdk, temperature=0, max_tokens=5)
    assert limited.choices[0].finish_reason == "length"
    assert limited.usage.completion_tokens == 5
    assert text_of(chat(sdk, temperature=0, max_completion_tokens=5)) == text_of(limited)


def test_n_choices_and_the_slot_limit(sdk: OpenAI) -> None:
    completion = chat(sdk, temperature=1.0, n=3, seed=5)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert completion.usage.completion_tokens >= sum(
        1 for c in completion.choices if c.message.content
    )
    with pytest.raises(openai.BadRequestError) as caught:
        chat(sdk, n=5)
    assert caught.value.param == "n"


def test_logprobs_in_openai_format(sdk: OpenAI) -> None:
    completion = chat(sdk, temperature=0, max_tokens=4, logprobs=True, top_logprobs=3)
    content = completion.choices[0].logprobs.content
    assert len(content) == 4
    assert "".join(t.token for t in content) == text_of(completion)
    for token in content:
        assert token.logprob <= 0
        assert len(token.top_logprobs) == 3
        assert token.top_logprobs[0].logprob >= token.top_logprobs[-1].logprob
        assert bytes(token.bytes).decode(errors="replace")
    bare = chat(sdk, temperature=0, max_tokens=2, logprobs=True)
    assert all(t.top_logprobs == [] for t in bare.choices[0].logprobs.content)


# --- structured output ---------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user"]},
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}


def test_json_schema_response_format(sdk: OpenAI) -> None:
    completion = chat(
        sdk,
        max_tokens=80,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
    )
    jsonschema.validate(json.loads(text_of(completion)), PERSON)


def test_json_object_and_guided_json(sdk: OpenAI) -> None:
    obj = chat(
        sdk,
        max_tokens=60,
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Give a JSON object with a key a."}],
    )
    if obj.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text_of(obj)), dict)
    guided = chat(sdk, max_tokens=80, extra_body={"guided_json": PERSON})
    jsonschema.validate(json.loads(text_of(guided)), PERSON)


def test_guided_regex_and_choice_stream_too(sdk: OpenAI) -> None:
    import re

    regex = chat(sdk, max_tokens=20, extra_body={"guided_regex": "[A-Z]{3}-[0-9]{3}"})
    assert re.fullmatch("[A-Z]{3}-[0-9]{3}", text_of(regex))
    choices = ["red", "green", 'say "blue"']
    picked = chat(sdk, max_tokens=10, extra_body={"guided_choice": choices})
    assert text_of(picked) in choices
    streamed = chat(sdk, max_tokens=10, stream=True, extra_body={"guided_choice": choices})
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) in choices


def test_guided_grammar(sdk: OpenAI) -> None:
    import re

    grammar = 'root ::= ("yes" | "no") ", because " [a-z ]{3,20} "."'
    completion = chat(sdk, max_tokens=30, extra_body={"guided_grammar": grammar})
    assert re.fullmatch(r"(yes|no), because [a-z ]{3,20}\.", text_of(completion))


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"guided_regex": "(?<=a)b"}, "guided_regex"),
        ({"guided_regex": "(unclosed"}, "guided_regex"),
        ({"guided_grammar": "root ::= foo"}, "guided_grammar"),
        ({"guided_json": {"type": "nonsense"}}, "guided_json"),
        ({"guided_choice": ["a"], "guided_regex": "a"}, None),
    ],
)
def test_invalid_constraints_are_400_naming_the_problem(
    sdk: OpenAI, extra: dict[str, Any], param: str | None
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(sdk, extra_body=extra)
    if param:
        assert caught.value.param == param
    assert len(caught.value.message) > 20


# --- tools ---------------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"enum": ["C", "F"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_forced_tool_calls_match_the_schema(sdk: OpenAI, choice: Any) -> None:
    completion = chat(sdk, messages=ASK, tools=[WEATHER], tool_choice=choice, max_tokens=80)
    assert completion.choices[0].finish_reason == "tool_calls"
    calls = completion.choices[0].message.tool_calls
    assert calls
    for call in calls:
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


def test_auto_tool_choice_gives_either_a_valid_call_or_text(sdk: OpenAI) -> None:
    for seed in (1, 2, 3):
        completion = chat(
            sdk, messages=ASK, tools=[WEATHER], tool_choice="auto", max_tokens=60, seed=seed
        )
        choice = completion.choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls"
            for call in choice.message.tool_calls:
                jsonschema.validate(
                    json.loads(call.function.arguments), WEATHER["function"]["parameters"]
                )
        else:
            assert choice.message.content
            # An unfinished call (cut by max_tokens) stays content; a finished one never does.
            if choice.message.content.lstrip().startswith("<tool_call>"):
                assert choice.finish_reason == "length"


def test_tool_calls_stream_as_deltas(sdk: OpenAI) -> None:
    chunks = list(
        chat(sdk, messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=80, stream=True)
    )
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert deltas and deltas[0].function.name == "get_weather"
    json.loads("".join(d.function.arguments or "" for d in deltas if d.index == 0))
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_multi_turn_tool_conversation(sdk: OpenAI) -> None:
    first = chat(sdk, messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=80)
    call = first.choices[0].message.tool_calls[0]
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18, "sky": "clear"}'},
    ]
    answer = chat(sdk, messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=30)
    assert answer.choices[0].message.tool_calls is None
    assert text_of(answer)


# --- beam search ---------------------------------------------------------------------------------


def test_beam_search_returns_n_ranked_beams(sdk: OpenAI) -> None:
    completion = chat(sdk, n=2, max_tokens=8, extra_body={"use_beam_search": True, "beam_size": 3})
    assert len(completion.choices) == 2
    assert text_of(completion, 0) != text_of(completion, 1)
    one = chat(sdk, max_tokens=8, extra_body={"beam_size": 1})
    assert text_of(one) == text_of(chat(sdk, temperature=0, max_tokens=8))


# --- what the engine cannot do -------------------------------------------------------------------


def test_what_the_engine_cannot_honour_is_dropped_and_listed(sdk: OpenAI) -> None:
    completion = chat(sdk, reasoning_effort="low", extra_body={"reasoning": {"effort": "low"}})
    assert completion.model_extra["dropped_params"] == ["reasoning_effort", "reasoning"]
    assert text_of(completion)
    with pytest.raises(openai.BadRequestError) as caught:
        chat(
            sdk,
            reasoning_effort="low",
            extra_body={"provider": {"require_parameters": True}},
        )
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "reasoning_effort"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_what_the_engine_cannot_take_in_a_message_is_400_unsupported(
    sdk: OpenAI, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(sdk, **kwargs)
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == param


def test_every_part_the_engine_cannot_take_is_named_at_once(sdk: OpenAI) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    text = {"type": "text", "text": "What is this?"}
    messages = [
        {"role": "user", "content": [text, image]},
        {"role": "assistant", "content": "A picture."},
        {"role": "user", "content": [image, text, image]},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        chat(sdk, messages=messages)
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "messages[0].content[1]"
    message = caught.value.response.json()["error"]["message"]
    for path in ("messages[0].content[1]", "messages[2].content[0]", "messages[2].content[2]"):
        assert f"'{path}'" in message, message
    assert "messages[2].content[1]" not in message


def test_an_answer_without_max_tokens_stops_at_the_default_cap(sdk: OpenAI) -> None:
    """A request without max_tokens gets `default_max_tokens` (256 unless configured), not
    an answer that runs until the context is full."""
    never_stops = {"ignore_eos": True}  # a llama.cpp option: the model never ends on its own
    capped = sdk.chat.completions.create(model="local", messages=HELLO, extra_body=never_stops)
    assert capped.usage.completion_tokens == 256
    assert capped.choices[0].finish_reason == "length"
    configured = sdk.chat.completions.create(
        model="local-1", messages=HELLO, extra_body=never_stops
    )
    assert configured.usage.completion_tokens == 6
    streamed = list(
        sdk.chat.completions.create(
            model="local-1",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=never_stops,
        )
    )
    assert streamed[-1].usage.completion_tokens == 6
    for limit in ({"max_tokens": 9}, {"max_completion_tokens": 9}):  # the caller's own wins
        asked = sdk.chat.completions.create(
            model="local-1", messages=HELLO, extra_body={**never_stops, **limit}
        )
        assert asked.usage.completion_tokens == 9


def test_a_client_that_hangs_up_frees_its_slot(local_gateway: ServedApp, sdk: OpenAI) -> None:
    """The only slot is free again at once: the next request does not wait for the abandoned
    tokens. Both durations are measured on this machine as it is, so a busy machine slows
    them alike and the comparison still holds."""
    abandoned = 900
    body = {
        "model": "local-1",
        "messages": HELLO,
        "max_tokens": abandoned,
        "stream": True,
        "ignore_eos": True,  # a llama.cpp option, passed through: never stop early
    }
    with httpx.stream(
        "POST",
        f"{local_gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json=body,
        timeout=120,
    ) as response:
        chunks = response.iter_lines()
        while not next(chunks).startswith("data: "):
            pass
        started = time.monotonic()
        streamed = 0
        while streamed < 10:  # the generation's pace now, on this machine
            streamed += next(chunks).startswith("data: ")
        per_token = (time.monotonic() - started) / 10
    started = time.monotonic()
    chat(sdk, model="local-1", max_tokens=4)
    elapsed = time.monotonic() - started
    # Waiting for the rest would take (900 - 11) tokens' time; a free slot takes a few.
    assert elapsed < (abandoned - 11) * per_token / 4, (elapsed, per_token)


def test_a_model_that_fails_to_load_is_not_ready_and_answers_503(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    config = parse_config(
        {
            "storage": {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'log.db'}"},
            "providers": {"bad": {"dialect": "llamacpp", "model_path": str(broken)}},
            "models": {"bad": {"deployments": [{"provider": "bad"}]}},
        }
    )
    with serve_in_thread(create_app(config)) as served:
        deadline = time.monotonic() + 30
        while "failed to load" not in httpx.get(f"{served.url}/ready").text:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ready = httpx.get(f"{served.url}/ready")
        assert ready.status_code == 503
        reply = httpx.post(
            f"{served.url}/v1/chat/completions", json={"model": "bad", "messages": HELLO}
        )
        assert reply.status_code == 503
        assert reply.json()["error"]["code"] == "model_not_ready"
