"""The capability matrix in action: dropped parameters, `require_parameters`, preset rewrites
and bring-your-own-key, through the official SDK against the fake OpenAI upstream."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import OpenAI

from crossroads.providers.capabilities import Capabilities, matrix, plan_parameters
from crossroads.providers.openai.presets import GENERIC_OPENAI, PRESETS
from crossroads.testing.fake_openai import FakeOpenAI

USER = [{"role": "user", "content": "alpha beta"}]


def upstream_body(fake: FakeOpenAI) -> dict[str, Any]:
    body = fake.requests[-1]["body"]
    assert isinstance(body, dict)
    return body


# --- planning -------------------------------------------------------------------------------


def test_plan_drops_unsupported_reports_only_what_asks_for_something() -> None:
    capabilities = Capabilities(
        parameters=matrix(native=("temperature",), unsupported=("n", "seed", "logprobs")),
        unknown="unsupported",
    )
    body = {
        "model": "m",
        "messages": USER,
        "stream": True,
        "temperature": 0.5,
        "n": 1,  # the default: removed quietly
        "logprobs": False,  # the default: removed quietly
        "seed": 7,
        "frobnicate": True,  # unknown, and this provider drops unknowns
        "session_id": "s",  # the gateway's own field: not the provider's business
        "top_p": None,  # unset
    }
    plan = plan_parameters(capabilities, body)
    assert plan.dropped == ["seed", "frobnicate"]
    assert plan.removed == ["n", "logprobs", "seed", "frobnicate"]


def test_generic_openai_passes_extras_and_drops_crossroads_decoding_extensions() -> None:
    plan = plan_parameters(GENERIC_OPENAI, {"repetition_penalty": 1.1, "top_k": 5, "n": 2})
    assert plan.dropped == ["top_k"]


def test_every_preset_names_every_matrix_parameter() -> None:
    from crossroads.providers.capabilities import MATRIX_PARAMETERS

    for name, preset in PRESETS.items():
        missing = [p for p in MATRIX_PARAMETERS if p not in preset.capabilities.parameters]
        assert not missing, (name, missing)
        for rewritten in preset.rewrites:
            assert preset.capabilities.support(rewritten) == "translated", (name, rewritten)


# --- dropped_params -------------------------------------------------------------------------


def test_unsupported_parameters_are_dropped_and_listed(
    client: OpenAI, fake_upstream: FakeOpenAI
) -> None:
    completion = client.chat.completions.create(
        model="echo",
        messages=USER,  # type: ignore[arg-type]
        temperature=0.2,
        extra_body={"top_k": 5, "guided_regex": "[a-z]+", "repetition_penalty": 1.1},
    )
    assert completion.model_extra["dropped_params"] == ["top_k", "guided_regex"]
    sent = upstream_body(fake_upstream)
    assert "top_k" not in sent and "guided_regex" not in sent
    assert sent["temperature"] == 0.2
    assert sent["repetition_penalty"] == 1.1  # an extra, passed through on a generic upstream


def test_nothing_dropped_means_no_dropped_params_field(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="echo", messages=USER)  # type: ignore[arg-type]
    assert "dropped_params" not in (completion.model_extra or {})


def test_a_stream_reports_dropped_params_first_and_last(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="echo",
            messages=USER,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"min_p": 0.1},
        )
    )
    assert chunks[0].model_extra["dropped_params"] == ["min_p"]
    assert "dropped_params" not in (chunks[1].model_extra or {})
    assert chunks[-1].usage is not None
    assert chunks[-1].model_extra["dropped_params"] == ["min_p"]


def test_require_parameters_skips_deployments_that_would_drop(
    client: OpenAI, fake_upstream: FakeOpenAI
) -> None:
    # Without it the first deployment (Mistral preset) serves and drops top_k.
    loose = client.chat.completions.create(model="picky", messages=USER, extra_body={"top_k": 3})  # type: ignore[arg-type]
    assert loose.provider == "mistral"  # type: ignore[attr-defined]
    assert loose.model_extra["dropped_params"] == ["top_k"]
    strict = client.chat.completions.create(
        model="picky",
        messages=USER,  # type: ignore[arg-type]
        extra_body={"top_k": 3, "provider": {"require_parameters": True}},
    )
    assert strict.provider == "sampler"  # type: ignore[attr-defined]
    assert "dropped_params" not in (strict.model_extra or {})
    assert upstream_body(fake_upstream)["top_k"] == 3


def test_require_parameters_with_no_capable_deployment_is_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="picky",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"guided_grammar": "root ::= 'a'", "provider": {"require_parameters": True}},
        )
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "guided_grammar"
    message = str(caught.value)
    assert "mistral" in message and "sampler" in message


# --- presets --------------------------------------------------------------------------------


def test_mistral_preset_renames_seed_and_drops_what_mistral_rejects(
    client: OpenAI, fake_upstream: FakeOpenAI
) -> None:
    completion = client.chat.completions.create(
        model="on-mistral",
        messages=USER,  # type: ignore[arg-type]
        seed=11,
        max_completion_tokens=5,
        logprobs=True,
        user="u-1",
        metadata={"team": "a"},
        extra_body={"frobnicate": 1},
    )
    sent = upstream_body(fake_upstream)
    assert sent["random_seed"] == 11 and "seed" not in sent
    assert sent["max_tokens"] == 5 and "max_completion_tokens" not in sent
    for name in ("logprobs", "user", "metadata", "frobnicate"):
        assert name not in sent
    # metadata is kept in the gateway's log, so it is not reported as dropped.
    assert completion.model_extra["dropped_params"] == ["logprobs", "user", "frobnicate"]


def test_vllm_preset_sends_guided_decoding_as_structured_outputs(
    client: OpenAI, fake_upstream: FakeOpenAI
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    client.chat.completions.create(
        model="on-vllm",
        messages=USER,  # type: ignore[arg-type]
        extra_body={"guided_json": schema, "top_k": 4},
    )
    sent = upstream_body(fake_upstream)
    assert sent["structured_outputs"] == {"json": schema}
    assert sent["top_k"] == 4
    assert "guided_json" not in sent


def test_a_preset_supplies_its_base_url() -> None:
    from crossroads.config import parse_config

    config = parse_config({"providers": {"g": {"preset": "groq", "api_key": "k"}}})
    assert config.providers["g"].base_url == "https://api.groq.com/openai/v1"  # type: ignore[union-attr]


def test_an_unknown_preset_is_a_config_error() -> None:
    from crossroads.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config({"providers": {"g": {"preset": "grok"}}})
    assert "providers.g" in str(caught.value) and "unknown preset 'grok'" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config({"providers": {"g": {"api_key": "k"}}})
    assert "needs `base_url`" in str(caught.value)


# --- bring your own key ---------------------------------------------------------------------


def test_openai_api_key_is_used_for_that_request_only(
    client: OpenAI, fake_upstream: FakeOpenAI
) -> None:
    completion = client.chat.completions.create(
        model="byok",
        messages=USER,  # type: ignore[arg-type]
        extra_body={"openai_api_key": "sk-upstream"},
    )
    assert completion.choices[0].message.content
    seen = fake_upstream.requests[-1]
    assert seen["headers"]["authorization"] == "Bearer sk-upstream"
    assert "openai_api_key" not in seen["body"]
    # The next request without it has no key: the upstream refuses the gateway.
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="byok", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth_error"  # type: ignore[attr-defined]


def test_a_caller_key_with_a_line_break_is_refused_before_any_call(
    client: OpenAI, fake_upstream: FakeOpenAI
) -> None:
    before = len(fake_upstream.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="byok",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"openai_api_key": "sk-upstream\r\nX-Injected: 1"},
        )
    assert caught.value.param == "openai_api_key"  # type: ignore[attr-defined]
    assert len(fake_upstream.requests) == before


def test_a_refused_caller_key_is_the_callers_401(client: OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(
            model="byok",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"openai_api_key": "sk-wrong"},
        )
    assert caught.value.param == "openai_api_key"  # type: ignore[attr-defined]
    assert caught.value.code == "invalid_api_key"  # type: ignore[attr-defined]
    assert "sk-wrong" not in str(caught.value)


def test_openai_api_key_overrides_the_configured_key(
    client: OpenAI, fake_upstream: FakeOpenAI
) -> None:
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="fixed",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"openai_api_key": "sk-not-the-configured-one"},
        )
    assert fake_upstream.requests[-1]["headers"]["authorization"] == (
        "Bearer sk-not-the-configured-one"
    )
