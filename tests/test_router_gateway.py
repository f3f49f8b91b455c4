"""`model: "router"` end to end: ranking by predicted quality and cost, `max_cost`,
`willingness_to_pay`, whitelists, rules, priors and profiles, fallback along the ranking,
the `routing.router` report, and retraining from rated traffic."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI
from typer.testing import CliRunner

from crossroads.catalog import Catalog
from crossroads.cli import app as cli_app
from crossroads.config import ConfigError, RouterConfig, parse_config
from crossroads.learned import (
    LabelledRow,
    QualityRouter,
    RouterArtifactError,
    classify,
    train,
)
from crossroads.learned import retrain as retrain_module
from crossroads.learned.retrain import Retrainer, train_in_child
from crossroads.learned.serve import LearnedRouter, load_router
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, running_gateway

EASY = [{"role": "user", "content": "Say hello to my friend Sam."}]
CODE = [{"role": "user", "content": "Write a Python function that reverses a linked list."}]
STRONG_PRICE = {"input": 10.0, "output": 30.0}
WEAK_PRICE = {"input": 0.6, "output": 0.6}


def _model(
    behaviour: str, price: dict[str, float], provider: str = "up", **extra: Any
) -> dict[str, Any]:
    deployment = {"provider": provider, "model": behaviour, "price": price}
    return {"deployments": [deployment], **extra}


def router_config(fake: FakeOpenAI, database: Path, **router: Any) -> dict[str, Any]:
    return {
        "storage": {"database_url": f"sqlite+aiosqlite:///{database}"},
        "keys": [{"name": "main", "key": API_KEY, "logs": "all"}],
        "providers": {
            "up": {"base_url": fake.base_url, "api_key": "sk-upstream", "read_timeout": 5},
            "other": {"base_url": fake.base_url, "api_key": "sk-upstream", "read_timeout": 5},
        },
        "routing": {"retries": 0},
        "models": {
            "strong": _model("fixed", STRONG_PRICE, routable=True, quality=0.9),
            "weak": _model("echo", WEAK_PRICE, routable=True, quality=0.6),
            "coder": _model("fixed", STRONG_PRICE, quality=0.5),
            "broken": _model("error=503", {"input": 0.1, "output": 0.1}, quality=0.7),
            "gpt4": _model("fixed", STRONG_PRICE, router_profile="gpt-4-1106-preview"),
            "unrated": _model("fixed", WEAK_PRICE),
            "elsewhere": _model("echo", WEAK_PRICE, provider="other", quality=0.95),
        },
        "router": {"rules": [{"query_type": "code", "model": "coder"}], **router},
    }


@pytest.fixture(scope="module")
def served(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    database = tmp_path_factory.mktemp("router") / "log.db"
    with running_gateway(parse_config(router_config(fake_upstream, database))) as app:
        yield app


@pytest.fixture
def sdk(served: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0) as client:
        yield client


def routed(sdk: OpenAI, messages: list[dict[str, Any]] = EASY, **extra: Any) -> dict[str, Any]:
    answer = sdk.chat.completions.create(
        model="router",
        messages=messages,  # type: ignore[arg-type]
        extra_body=extra,
    )
    return answer.model_dump()


def test_nothing_to_pay_for_quality_picks_the_cheapest(sdk: OpenAI) -> None:
    answer = routed(sdk, willingness_to_pay=0)
    router = answer["routing"]["router"]
    assert router["chosen"] == "weak"
    assert router["ranking"] == ["weak", "strong"]
    assert answer["routing"]["chosen"] == "up/echo"  # the weak model's deployment served
    by_model = {c["model"]: c for c in router["candidates"]}
    assert by_model["strong"]["predicted_quality"] == 0.9
    assert by_model["strong"]["source"] == "prior"
    assert by_model["strong"]["predicted_cost"] > by_model["weak"]["predicted_cost"] > 0
    assert router["willingness_to_pay"] == 0
    assert router["query_type"] == classify(EASY[0]["content"])


def test_a_high_willingness_to_pay_picks_the_best(sdk: OpenAI) -> None:
    router = routed(sdk, willingness_to_pay=1000)["routing"]["router"]
    assert router["ranking"] == ["strong", "weak"]
    strong, weak = (
        next(c for c in router["candidates"] if c["model"] == m) for m in ("strong", "weak")
    )
    # The ranking follows quality × (wtp / 0.10) − cost.
    assert strong["score"] == pytest.approx(0.9 * 1000 / 0.1 - strong["predicted_cost"])
    assert strong["score"] > weak["score"]


def test_the_configured_default_willingness_to_pay_applies(sdk: OpenAI) -> None:
    router = routed(sdk)["routing"]["router"]
    assert router["willingness_to_pay"] == 0.003


def test_max_cost_excludes_what_it_would_exceed(sdk: OpenAI) -> None:
    probe = routed(sdk, willingness_to_pay=1000)["routing"]["router"]
    costs = {c["model"]: c["predicted_cost"] for c in probe["candidates"]}
    limit = (costs["strong"] + costs["weak"]) / 2
    router = routed(sdk, willingness_to_pay=1000, max_cost=limit)["routing"]["router"]
    assert router["chosen"] == "weak"
    strong = next(c for c in router["candidates"] if c["model"] == "strong")
    assert strong["excluded"].startswith("predicted cost")
    assert router["max_cost"] == limit


def test_nothing_within_max_cost_is_a_400_naming_each_exclusion(sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        routed(sdk, max_cost=1e-12)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "no_router_candidate"
    assert (
        "strong: predicted cost" in error["message"] and "weak: predicted cost" in error["message"]
    )


def test_a_models_whitelist_replaces_the_routable_set(sdk: OpenAI) -> None:
    router = routed(sdk, models=["strong", "unrated"], willingness_to_pay=0)["routing"]["router"]
    assert [c["model"] for c in router["candidates"]] == ["strong", "unrated"]
    assert router["ranking"] == ["strong"]
    unrated = router["candidates"][1]
    assert unrated["excluded"].startswith("no quality estimate")


def test_a_trained_profile_predicts_a_mapped_model(sdk: OpenAI) -> None:
    router = routed(sdk, models=["gpt4", "weak"])["routing"]["router"]
    gpt4 = router["candidates"][0]
    assert gpt4["source"] == "profile:gpt-4-1106-preview"
    assert 0 <= gpt4["predicted_quality"] <= 1


def test_a_rule_for_the_query_type_goes_first(sdk: OpenAI) -> None:
    assert classify(CODE[0]["content"]) == "code"
    router = routed(sdk, CODE, models=["weak", "coder"], willingness_to_pay=0)["routing"]["router"]
    assert router["query_type"] == "code"
    assert router["ranking"] == ["coder", "weak"]
    assert router["rule"] == "code -> coder"
    # A rule only reorders candidates: without `coder` among them it does not apply.
    router = routed(sdk, CODE, models=["weak", "strong"], willingness_to_pay=0)
    assert router["routing"]["router"]["rule"] is None


def test_a_failing_choice_falls_back_along_the_ranking(sdk: OpenAI) -> None:
    answer = routed(sdk, models=["broken", "weak", "strong"], willingness_to_pay=0)
    routing = answer["routing"]
    assert routing["router"]["ranking"][0] == "broken"
    assert routing["router"]["chosen"] == "broken"
    assert [a["status"] for a in routing["attempts"]] == [503, 200]
    assert routing["chosen"] == "up/echo"
    assert routing["router"]["served"] == "weak"


def test_a_model_without_a_usable_deployment_leaves_the_ranking(sdk: OpenAI) -> None:
    # `elsewhere` would win (best prior, cheap) but the caller ignores its only provider.
    answer = routed(
        sdk,
        models=["elsewhere", "weak"],
        willingness_to_pay=0.01,
        provider={"ignore": ["other"]},
    )
    router = answer["routing"]["router"]
    assert router["ranking"] == ["weak"]
    assert router["served"] == "weak"
    elsewhere = router["candidates"][0]
    assert elsewhere["excluded"] == "no deployment can serve it: other/echo: in provider.ignore"


def test_models_sharing_an_upstream_stay_ranked(sdk: OpenAI) -> None:
    # `coder` and `strong` are one upstream: planned once, under the first; not "no route".
    router = routed(sdk, models=["strong", "coder"], willingness_to_pay=1)["routing"]["router"]
    assert router["ranking"] == ["strong", "coder"]
    assert all(c["excluded"] is None for c in router["candidates"])


def test_a_huge_willingness_to_pay_picks_the_best_without_overflowing(sdk: OpenAI) -> None:
    router = routed(sdk, willingness_to_pay=1e308)["routing"]["router"]
    assert router["ranking"] == ["strong", "weak"]
    assert [c["score"] for c in router["candidates"]] == [None, None]  # inf: not JSON


def test_a_repeated_whitelist_entry_is_one_candidate(sdk: OpenAI) -> None:
    router = routed(sdk, models=["weak", "weak"])["routing"]["router"]
    assert [c["model"] for c in router["candidates"]] == ["weak"]


def test_streams_carry_the_router_report(sdk: OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="router",
        messages=EASY,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"willingness_to_pay": 0},
    )
    chunks = [chunk.model_dump() for chunk in stream]
    reports = [c["routing"]["router"] for c in chunks if c.get("routing")]
    assert reports and reports[-1]["chosen"] == "weak"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"model": "strong", "willingness_to_pay": 1}, "willingness_to_pay"),
        ({"model": "strong", "max_cost": 1}, "max_cost"),
        ({"model": "router", "max_cost": -1}, "max_cost"),
        ({"model": "router", "willingness_to_pay": -0.5}, "willingness_to_pay"),
        ({"model": "router", "models": ["nope"]}, "models[0]"),
        ({"model": "router", "models": ["weak", "router"]}, "models[1]"),
        ({"model": "router", "route": "sort"}, "route"),
    ],
)
def test_bad_router_requests_are_refused_with_the_field(
    sdk: OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as caught:
        sdk.chat.completions.create(
            model=extra.pop("model"),
            messages=EASY,  # type: ignore[arg-type]
            extra_body=extra,
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param


def test_the_router_is_not_a_fan_out_member(sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="cannot be one of a comma-separated"):
        sdk.chat.completions.create(model="weak,router", messages=EASY)  # type: ignore[arg-type]


# --- configuration ------------------------------------------------------------------------


def test_rules_must_name_configured_models(fake_upstream: FakeOpenAI, tmp_path: Path) -> None:
    data = router_config(fake_upstream, tmp_path / "log.db")
    data["router"]["rules"] = [{"query_type": "math", "model": "calculator"}]
    with pytest.raises(ConfigError, match=r"router.rules\[0\].model: unknown model 'calculator'"):
        parse_config(data)


def test_one_rule_per_query_type(fake_upstream: FakeOpenAI, tmp_path: Path) -> None:
    data = router_config(fake_upstream, tmp_path / "log.db")
    data["router"]["rules"].append({"query_type": "code", "model": "strong"})
    with pytest.raises(ConfigError, match=r"router.rules\[1\].query_type: 'code' already has a"):
        parse_config(data)


def test_quality_priors_are_probabilities(fake_upstream: FakeOpenAI, tmp_path: Path) -> None:
    data = router_config(fake_upstream, tmp_path / "log.db")
    data["models"]["weak"]["quality"] = 1.5
    with pytest.raises(ConfigError, match="quality"):
        parse_config(data)


def test_a_profile_missing_from_the_artifact_is_refused(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    data = router_config(fake_upstream, tmp_path / "log.db")
    data["models"]["gpt4"]["router_profile"] = "gpt-5"
    config = parse_config(data)
    with pytest.raises(ValueError, match=r"no profile for models\.gpt4\.router_profile = 'gpt-5'"):
        LearnedRouter(
            QualityRouter.load_default(), Catalog.from_config(config), config.models, config.router
        )


_CHECKED = """
[providers.up]
base_url = "http://127.0.0.1:9/v1"
[models.weak]
routable = true
quality = 0.6
deployments = [{ provider = "up", model = "echo" }]
"""


@pytest.mark.parametrize(
    ("toml", "status", "message"),
    [
        ("", 0, "OK"),
        (
            '[models.gpt4]\nrouter_profile = "gpt-5"\ndeployments = [{ provider = "up" }]\n',
            2,
            "router: the router artifact has no profile for models.gpt4.router_profile = 'gpt-5'",
        ),
        ('[router]\nartifact = "/nonexistent/router.npz"\n', 2, "no such file"),
        (
            '[router]\nretrain_data = ["/nonexistent/routellm"]\n',
            2,
            "retrain_data[0] = '/nonexistent/routellm': no such file or directory",
        ),
        (
            '[models.mystery]\nroutable = true\ndeployments = [{ provider = "up" }]\n',
            0,
            "models.mystery is routable but the artifact has no profile for it and it sets "
            'neither `quality` nor `router_profile`: model "router" will always exclude it',
        ),
    ],
)
def test_config_check_loads_the_router_as_serving_would(
    tmp_path: Path, toml: str, status: int, message: str
) -> None:
    path = tmp_path / "crossroads.toml"
    path.write_text(_CHECKED + toml)
    result = CliRunner().invoke(cli_app, ["config", "check", "--config", str(path)])
    assert result.exit_code == status, result.output
    assert message in " ".join(result.output.split())


def test_an_artifact_retrained_into_its_own_path_starts_from_the_packaged_one(
    tmp_path: Path,
) -> None:
    own = str(tmp_path / "router.npz")
    config = RouterConfig(artifact=own, retrain_out=own)
    assert load_router(config).models == QualityRouter.load_default().models
    with pytest.raises(ValueError, match="no such file"):
        load_router(RouterConfig(artifact=own))


# --- retraining ---------------------------------------------------------------------------


def _rows(model: str, good_at_math: bool) -> list[LabelledRow]:
    prompts = [f"What is {i} plus {i + 3}? Show the steps." for i in range(15)]
    prompts += [f"Tell me a short story about a cat named {i}." for i in range(15)]
    return [
        LabelledRow(prompt, model, float(good_at_math or "story" in prompt)) for prompt in prompts
    ]


async def test_retraining_swaps_in_a_router_learned_from_rated_traffic(
    fake_upstream: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "retrained.npz"
    data = router_config(
        fake_upstream, tmp_path / "log.db", retrain_interval=3600, retrain_out=str(out)
    )
    data["router"]["retrain_min_rows"] = 40
    config = parse_config(data)
    learned = LearnedRouter(
        QualityRouter.load_default(), Catalog.from_config(config), config.models, config.router
    )

    async def rated(_engine: Any, *, since: Any = None) -> list[LabelledRow]:
        # `gpt4` is mapped to the packaged profile, which its rows must train.
        return _rows("strong", True) + _rows("weak", False) + _rows("gpt4", True)

    monkeypatch.setattr(retrain_module, "feedback_rows", rated)
    retrainer = Retrainer(learned, engine=None, config=config.router, models=config.models)  # type: ignore[arg-type]
    trained = await retrainer.retrain_once()
    assert trained is not None and learned.predictor is trained
    assert set(trained.models) == {"strong", "weak", "gpt-4-1106-preview"}
    assert QualityRouter.load(out).models == trained.models
    prediction = trained.predict("What is 12 plus 15? Show the steps.")
    assert prediction.quality["strong"] > prediction.quality["weak"]


async def test_too_few_rated_rows_keep_the_current_router(
    fake_upstream: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config(router_config(fake_upstream, tmp_path / "log.db", retrain_interval=60))
    before = QualityRouter.load_default()
    learned = LearnedRouter(before, Catalog.from_config(config), config.models, config.router)

    async def rated(_engine: Any, *, since: Any = None) -> list[LabelledRow]:
        return _rows("strong", True)[:5]

    monkeypatch.setattr(retrain_module, "feedback_rows", rated)
    retrainer = Retrainer(learned, engine=None, config=config.router, models=config.models)  # type: ignore[arg-type]
    assert await retrainer.retrain_once() is None
    assert learned.predictor is before


async def test_models_with_too_few_rows_sit_out_a_retraining(
    fake_upstream: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config(router_config(fake_upstream, tmp_path / "log.db", retrain_interval=60))
    learned = LearnedRouter(
        QualityRouter.load_default(), Catalog.from_config(config), config.models, config.router
    )

    async def rated(_engine: Any, *, since: Any = None) -> list[LabelledRow]:
        few = _rows("coder", True)[:3]  # rated three times: too few to learn from
        return _rows("strong", True) + _rows("weak", False) + _rows("gpt4", True) + few

    monkeypatch.setattr(retrain_module, "feedback_rows", rated)
    retrainer = Retrainer(learned, engine=None, config=config.router, models=config.models)  # type: ignore[arg-type]
    trained = await retrainer.retrain_once()
    assert trained is not None and learned.predictor is trained
    assert set(trained.models) == {"strong", "weak", "gpt-4-1106-preview"}


async def test_a_retrained_router_losing_a_profile_in_use_is_refused(
    fake_upstream: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "retrained.npz"
    data = router_config(fake_upstream, tmp_path / "log.db", retrain_out=str(out))
    config = parse_config(data)
    serving = train(
        _rows("strong", True) + _rows("weak", False) + _rows("gpt-4-1106-preview", True)
    )
    learned = LearnedRouter(serving, Catalog.from_config(config), config.models, config.router)

    async def rated(_engine: Any, *, since: Any = None) -> list[LabelledRow]:
        return _rows("weak", False) + _rows("gpt4", True)  # nothing rated for `strong`

    monkeypatch.setattr(retrain_module, "feedback_rows", rated)
    retrainer = Retrainer(learned, engine=None, config=config.router, models=config.models)  # type: ignore[arg-type]
    with pytest.raises(RouterArtifactError, match=r"models\.strong \(predicted by its own name\)"):
        await retrainer.retrain_once()
    assert learned.predictor is serving
    assert not out.exists()  # a restart would have refused it


async def test_training_runs_in_a_child_whose_failure_is_reported() -> None:
    with pytest.raises(RuntimeError, match=r"training exited with status 1: .*at least 10"):
        await train_in_child(_rows("strong", True)[:3])


async def test_the_schedule_outlives_a_failed_round(
    fake_upstream: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = router_config(fake_upstream, tmp_path / "log.db", retrain_interval=0.01)
    config = parse_config(data)
    learned = LearnedRouter(
        QualityRouter.load_default(), Catalog.from_config(config), config.models, config.router
    )
    calls = 0

    async def rated(_engine: Any, *, since: Any = None) -> list[LabelledRow]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database is locked")
        return _rows("strong", True) + _rows("weak", False) + _rows("gpt4", True)

    monkeypatch.setattr(retrain_module, "feedback_rows", rated)
    retrainer = Retrainer(learned, engine=None, config=config.router, models=config.models)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="crossroads.learned"):
        retrainer.start()
        try:
            for _ in range(3000):  # 30 s at most
                if retrainer.rounds:
                    break
                await asyncio.sleep(0.01)
        finally:
            await retrainer.aclose()
    assert "retraining failed; the current router stays" in caplog.text
    assert "strong" in learned.predictor.models


@pytest.mark.parametrize("interval", [None, 0])
async def test_without_a_retrain_interval_no_schedule_starts(
    fake_upstream: FakeOpenAI, tmp_path: Path, interval: float | None
) -> None:
    config = parse_config(
        router_config(fake_upstream, tmp_path / "log.db", retrain_interval=interval)
    )
    learned = LearnedRouter(
        QualityRouter.load_default(), Catalog.from_config(config), config.models, config.router
    )
    retrainer = Retrainer(learned, engine=None, config=config.router, models=config.models)  # type: ignore[arg-type]
    assert not retrainer.enabled
    retrainer.start()
    assert "router-retrainer" not in {task.get_name() for task in asyncio.all_tasks()}
    await retrainer.aclose()


def test_the_gateway_retrains_on_schedule_and_routes_with_the_result(
    fake_upstream: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = tmp_path / "router.npz"  # not there yet: the packaged router serves first
    data = router_config(
        fake_upstream,
        tmp_path / "log.db",
        artifact=str(artifact),
        retrain_out=str(artifact),
        retrain_interval=0.2,
        retrain_min_rows=40,
    )

    async def rated(_engine: Any, *, since: Any = None) -> list[LabelledRow]:
        return _rows("strong", True) + _rows("weak", False) + _rows("gpt4", True)

    monkeypatch.setattr(retrain_module, "feedback_rows", rated)
    with (
        running_gateway(parse_config(data)) as app,
        OpenAI(base_url=f"{app.url}/v1", api_key=API_KEY, max_retries=0) as client,
    ):
        sources = [c["source"] for c in routed(client)["routing"]["router"]["candidates"]]
        assert sources == ["prior", "prior"]
        deadline = time.monotonic() + 30
        while sources != ["profile:strong", "profile:weak"] and time.monotonic() < deadline:
            time.sleep(0.05)
            sources = [c["source"] for c in routed(client)["routing"]["router"]["candidates"]]
        assert sources == ["profile:strong", "profile:weak"]
    assert set(QualityRouter.load(artifact).models) == {"strong", "weak", "gpt-4-1106-preview"}
