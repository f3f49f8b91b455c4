"""Config validation: errors name the dotted path; secrets resolve from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossroads.config import ConfigError, find_config_file, load_config, parse_config

PROVIDER = {"base_url": "http://127.0.0.1:9999/v1"}


def problems(data: dict) -> list[str]:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


def test_a_minimal_config_is_valid() -> None:
    config = parse_config(
        {"providers": {"p": PROVIDER}, "models": {"m": {"deployments": [{"provider": "p"}]}}}
    )
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8000
    assert config.server.max_body_bytes == 10 * 1024 * 1024
    assert config.models["m"].deployments[0].model is None
    assert config.serves_loopback_only


def test_errors_name_the_dotted_path() -> None:
    found = problems(
        {
            "providers": {"p": PROVIDER},
            "models": {
                "gpt-4o": {
                    "deployments": [
                        {"provider": "p"},
                        {"provider": "p", "price": {"input": -1}},
                    ]
                }
            },
        }
    )
    assert found == [
        "models.gpt-4o.deployments[1].price.input: Input should be greater than or equal to 0"
    ]


def test_unknown_settings_and_providers_are_named() -> None:
    found = problems(
        {
            "server": {"prot": 80},
            "providers": {"p": PROVIDER},
            "models": {"m": {"deployments": [{"provider": "q"}]}},
        }
    )
    assert "server.prot: unknown setting" in found
    found = problems(
        {"providers": {"p": PROVIDER}, "models": {"m": {"deployments": [{"provider": "q"}]}}}
    )
    assert found == ["models.m.deployments[0].provider: unknown provider 'q' (known: p)"]


def test_dotted_names_are_quoted_in_paths() -> None:
    found = problems({"providers": {"p": PROVIDER}, "models": {"llama-3.1": {"deployments": []}}})
    assert found[0].startswith('models."llama-3.1".deployments:')


@pytest.mark.parametrize("name", ["a,b", "router", " spaced"])
def test_reserved_or_ambiguous_model_names_are_rejected(name: str) -> None:
    found = problems(
        {"providers": {"p": PROVIDER}, "models": {name: {"deployments": [{"provider": "p"}]}}}
    )
    assert found[0].startswith("models:")


def test_bad_urls_ports_and_duplicate_keys() -> None:
    found = problems(
        {
            "server": {"port": 70000},
            "providers": {"p": {"base_url": "ftp://x"}},
            "keys": [{"name": "a", "key": "k1"}, {"name": "a", "key": "k2"}],
        }
    )
    assert any(p.startswith("server.port:") for p in found)
    assert any(p.startswith("providers.p.base_url: must start with http") for p in found)
    found = problems({"keys": [{"name": "a", "key": "k1"}, {"name": "a", "key": "k2"}]})
    assert found == ["keys[1].name: duplicate key name 'a'"]


def test_secret_references_resolve_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CR_TEST_KEY", "sk-from-env")
    config = parse_config(
        {
            "keys": [{"name": "a", "key": "env:CR_TEST_KEY"}],
            "providers": {"p": {**PROVIDER, "api_key": "env:CR_TEST_KEY"}},
        }
    )
    assert config.keys[0].key == "sk-from-env"
    assert config.providers["p"].api_key == "sk-from-env"
    monkeypatch.delenv("CR_TEST_KEY")
    found = problems({"providers": {"p": {**PROVIDER, "api_key": "env:CR_TEST_KEY"}}})
    assert found == ["providers.p.api_key: environment variable CR_TEST_KEY is not set"]


def test_toml_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "crossroads.toml"
    path.write_text("[server\nport = 1")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "not valid TOML" in caught.value.problems[0]
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_config_file_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CROSSROADS_CONFIG", raising=False)
    assert find_config_file() is None
    (tmp_path / "crossroads.toml").write_text("")
    assert find_config_file() == tmp_path / "crossroads.toml"
    monkeypatch.setenv("CROSSROADS_CONFIG", "/elsewhere.toml")
    assert find_config_file() == Path("/elsewhere.toml")
    assert find_config_file("given.toml") == Path("given.toml")


def test_optional_tables_are_validated_by_their_own_models() -> None:
    """`guardrails` and `cache` are validated by models imported only when a file has them
    (start-up time); what a config holds is still those models, shorthand included."""
    from crossroads.cache.config import CacheConfig
    from crossroads.config import Config
    from crossroads.guardrails.config import GuardrailSet

    config = parse_config(
        {
            "guardrails": ["pii"],
            "cache": {"mode": "exact"},
            "providers": {"up": {"base_url": "http://127.0.0.1:9/v1"}},
            "models": {"m": {"deployments": [{"provider": "up"}], "guardrails": None}},
            "keys": [{"name": "a", "key": "k", "guardrails": {"on_error": "allow"}}],
        }
    )
    assert isinstance(config.guardrails, GuardrailSet)
    assert config.guardrails == GuardrailSet.model_validate(["pii"])
    assert isinstance(config.cache, CacheConfig)
    assert config.cache.mode == "exact"
    assert config.models["m"].guardrails is None
    assert isinstance(config.keys[0].guardrails, GuardrailSet)
    assert Config(cache=config.cache, guardrails=config.guardrails).cache is config.cache
    assert parse_config({}).guardrails is None
    assert parse_config({}).cache is None
