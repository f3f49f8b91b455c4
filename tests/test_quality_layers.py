"""Answer-quality settings per model and per key (config keys and virtual keys), their
precedence (request > key > model > `[quality]`), and a mixture of agents' permissions,
through the real server and the official SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.config import ConfigError, parse_config
from crossroads.server.app import create_app
from crossroads.server.auth import MASTER_KEY_ENV
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp, serve_in_thread
from tests.conftest import API_KEY
from tests.quality_gateway import MODELS, PRICE, WRONG, ask, fake

__all__ = ["fake"]  # the fixture this module uses

MASTER = "mk-quality-layers-0123456789"
STRICT_KEY = "sk-strict-key"
QUIET_KEY = "sk-quiet-key"


def _config(fake: FakeOpenAI, database: Path) -> dict[str, Any]:
    models: dict[str, Any] = {
        name: {
            "deployments": [{"provider": "fake", "model": spec.replace(" ", "_"), "price": PRICE}]
        }
        for name, spec in MODELS.items()
    }
    checked = {"provider": "fake", "model": f"reply={WRONG}".replace(" ", "_"), "price": PRICE}
    models["checked"] = {
        "deployments": [checked],
        "answer_quality": {"threshold": 0.3, "criteria": ["concise"]},
    }
    return {
        "storage": {"database_url": f"sqlite+aiosqlite:///{database}", "flush_interval": 0.05},
        "providers": {"fake": {"base_url": fake.base_url, "api_key": "sk-upstream"}},
        "keys": [
            {"name": "main", "key": API_KEY, "logs": "all"},
            {
                "name": "strict",
                "key": STRICT_KEY,
                "answer_quality": {"threshold": 0.05, "criteria": ["polite"]},
            },
            {"name": "quiet", "key": QUIET_KEY, "answer_quality": {"enabled": False}},
        ],
        "models": models,
        "quality": {
            "criteria": {
                "concise": {"prompt": "The answer is concise.", "model": "pass-judge"},
                "polite": {"prompt": "The answer is polite.", "model": "fail-judge"},
            },
            "moa": {"moa": {"proposers": ["proposer-a", "proposer-b"], "aggregator": "aggregator"}},
        },
    }


@pytest.fixture(scope="module")
def served(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    database = Path(tmp_path_factory.mktemp("quality-layers")) / "log.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MASTER_KEY_ENV, MASTER)
        with serve_in_thread(create_app(parse_config(_config(fake, database)))) as app:
            yield app


def sdk(served: ServedApp, key: str = API_KEY) -> OpenAI:
    return OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0)


def virtual_key(served: ServedApp, **settings: Any) -> httpx.Response:
    return httpx.post(
        f"{served.url}/admin/keys",
        json={"name": "layered", **settings},
        headers={"Authorization": f"Bearer {MASTER}"},
    )


def new_key(served: ServedApp, **settings: Any) -> str:
    response = virtual_key(served, **settings)
    assert response.status_code == 200, response.text
    secret: str = response.json()["key"]
    return secret


def _quality(answer: Any) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (answer.model_extra or {}).get("quality")
    return found


def _criteria(answer: Any) -> list[str]:
    results = (answer.choices[0].model_extra or {}).get("criteria_results") or []
    return [r["name"] for r in results]


def test_a_models_settings_check_every_answer_for_it(served: ServedApp) -> None:
    answer = sdk(served).chat.completions.create(model="checked", messages=ask())  # type: ignore[arg-type]
    quality = _quality(answer)
    assert quality is not None and quality["threshold"] == 0.3 and quality["flagged"] is True
    assert _criteria(answer) == ["concise"]
    other = sdk(served).chat.completions.create(model="wrong", messages=ask())  # type: ignore[arg-type]
    assert _quality(other) is None and _criteria(other) == []


def test_a_keys_settings_win_over_the_models(served: ServedApp) -> None:
    strict = sdk(served, STRICT_KEY)
    answer = strict.chat.completions.create(model="checked", messages=ask())  # type: ignore[arg-type]
    quality = _quality(answer)
    assert quality is not None and quality["threshold"] == 0.05
    assert _criteria(answer) == ["polite"]
    # The key's layer turns checking on for a model that has none of its own.
    plain = strict.chat.completions.create(model="wrong", messages=ask())  # type: ignore[arg-type]
    assert (_quality(plain) or {}).get("threshold") == 0.05


def test_a_key_can_turn_its_models_check_off(served: ServedApp) -> None:
    answer = sdk(served, QUIET_KEY).chat.completions.create(model="checked", messages=ask())  # type: ignore[arg-type]
    assert _quality(answer) is None
    # …and the request can still ask for one.
    asked = sdk(served, QUIET_KEY).chat.completions.create(
        model="checked",
        messages=ask(),  # type: ignore[arg-type]
        extra_body={"quality": {"method": "overlap"}},
    )
    quality = _quality(asked)
    assert quality is not None and quality["method"] == "overlap"
    assert quality["threshold"] == 0.3  # the model's, since the key's layer does not set it


def test_the_request_wins_over_the_key(served: ServedApp) -> None:
    answer = sdk(served, STRICT_KEY).chat.completions.create(
        model="checked",
        messages=ask(),  # type: ignore[arg-type]
        extra_body={"quality_risk_threshold": 0.97, "criteria": ["concise"]},
    )
    quality = _quality(answer)
    assert quality is not None and quality["threshold"] == 0.97 and quality["flagged"] is False
    assert _criteria(answer) == ["concise"]


def test_a_virtual_keys_settings_live_in_its_metadata(served: ServedApp) -> None:
    key = new_key(
        served,
        metadata={"team_note": "kept", "answer_quality": {"threshold": 0.2, "method": "overlap"}},
    )
    answer = sdk(served, key).chat.completions.create(model="checked", messages=ask())  # type: ignore[arg-type]
    quality = _quality(answer)
    assert quality is not None
    assert quality["threshold"] == 0.2 and quality["method"] == "overlap"
    assert _criteria(answer) == ["concise"]  # the key sets none: the model's


def test_bad_settings_are_refused_where_they_are_given(
    served: ServedApp, fake: FakeOpenAI, tmp_path: Path
) -> None:
    response = virtual_key(served, metadata={"answer_quality": {"threshold": 3}})
    assert response.status_code == 400, response.text
    assert "answer_quality" in response.json()["error"]["message"]
    response = virtual_key(served, metadata={"answer_quality": {"criteria": ["nope"]}})
    assert response.status_code == 400, response.text
    assert "unknown criterion 'nope'" in response.json()["error"]["message"]
    data = _config(fake, tmp_path / "log.db")
    data["models"]["checked"]["answer_quality"]["criteria"] = ["missing"]
    data["keys"][1]["answer_quality"]["judge_model"] = "nowhere"
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    problems = str(caught.value)
    assert "models.checked.answer_quality.criteria[0]: unknown criterion 'missing'" in problems
    assert "keys[1].answer_quality.judge_model: unknown model 'nowhere'" in problems


def test_a_key_allowed_the_mixture_may_use_it_whole(served: ServedApp, fake: FakeOpenAI) -> None:
    fake.requests.clear()
    client = sdk(served, new_key(served, models=["moa"]))
    answer = client.chat.completions.create(model="moa", messages=ask("Capital?"))  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Paris."
    asked = sorted(r["body"]["model"] for r in fake.requests)
    members = ("aggregator", "proposer-a", "proposer-b")
    assert asked == sorted(MODELS[m].replace(" ", "_") for m in members)  # their upstream ids
    # Its members are not allowed by their own names.
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="aggregator", messages=ask("Capital?"))  # type: ignore[arg-type]
    assert "'aggregator'" in caught.value.message


def test_a_key_lacking_the_mixture_is_told_its_name(served: ServedApp) -> None:
    members = new_key(served, models=["aggregator", "proposer-a", "proposer-b"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk(served, members).chat.completions.create(model="moa", messages=ask("Capital?"))  # type: ignore[arg-type]
    assert caught.value.code == "model_not_allowed"
    assert "may not use model 'moa'" in caught.value.message


def test_a_mixture_answer_can_be_checked_by_sampling_its_aggregator(served: ServedApp) -> None:
    client = sdk(served, new_key(served, models=["moa"]))
    answer = client.chat.completions.create(
        model="moa",
        messages=ask("Capital?"),  # type: ignore[arg-type]
        extra_body={"quality": {"method": "consistency", "samples": 2}},
    )
    quality = _quality(answer)
    assert quality is not None and "error" not in quality["evidence"], quality
    assert quality["evidence"]["samples"] == 2


def test_a_models_settings_apply_to_its_streams(served: ServedApp) -> None:
    stream = sdk(served).chat.completions.create(  # type: ignore[call-overload]
        model="checked",
        messages=ask(),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == WRONG
    quality = next(q for c in chunks if (q := (c.model_extra or {}).get("quality")))
    assert quality["threshold"] == 0.3 and quality["flagged"] is True
    results = [
        r["name"]
        for c in chunks
        for choice in c.choices
        for r in (choice.model_extra or {}).get("criteria_results") or ()
    ]
    assert results == ["concise"]
