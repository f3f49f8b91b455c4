"""A registered fine-tuned model is served from the gateway's next start: submitted, waited
for and registered against a fake fine-tuning upstream, then asked through the official
OpenAI SDK — the upstream gets the fine-tuned id, pruned like the training rows, billed at
the base model's price."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from openai import OpenAI
from typer.testing import CliRunner

from crossroads.cli import app as cli
from crossroads.config import load_config, parse_config
from crossroads.finetune.serving import serve_registered
from crossroads.storage.fine_tune_store import FineTuneJob
from crossroads.testing.fake_finetune import FakeFineTuning
from tests.conftest import API_KEY, running_gateway

runner = CliRunner()
ENV = {"CROSSROADS_API_KEY": API_KEY}
SYSTEM = "You are Acme's assistant. "


@pytest.fixture
def fake_ft() -> Iterator[FakeFineTuning]:
    with FakeFineTuning(api_key="sk-ft").running_in_thread() as fake:
        yield fake


def _config(directory: Path, fake_ft: FakeFineTuning) -> Path:
    config = directory / "crossroads.toml"
    config.write_text(
        f"""
[storage]
database_url = "sqlite+aiosqlite:///{directory / "log.db"}"
flush_interval = 0.05

[[keys]]
name = "main"
key = "{API_KEY}"

[providers.ft]
base_url = "{fake_ft.base_url}"
api_key = "sk-ft"

[models.mini]
capabilities = ["tools"]
[[models.mini.deployments]]
provider = "ft"
model = "gpt-4o-mini"
price = {{ input = 2.0, output = 8.0 }}
"""
    )
    return config


def _cli(url: str, config: Path, *args: str) -> Any:
    result = runner.invoke(cli, [*args, "--config", str(config), "--url", url], env=ENV)
    assert result.exit_code == 0, result.output
    return result


def _train_and_register(url: str, config: Path, name: str) -> str:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    created = httpx.post(
        f"{url}/v1/datasets",
        json={"name": "ft", "pruning": [{"name": "acme", "pattern": SYSTEM}]},
        headers=headers,
    ).json()
    lines = [
        {
            "messages": [
                {"role": "system", "content": f"{SYSTEM}Be brief."},
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
        for i in range(3)
    ]
    httpx.post(
        f"{url}/v1/datasets/{created['id']}/rows",
        content=b"\n".join(orjson.dumps(line) for line in lines),
        headers={**headers, "content-type": "application/jsonl"},
    ).raise_for_status()
    submitted = _cli(
        url,
        config,
        "finetune",
        "submit",
        created["id"],
        "--provider",
        "ft",
        "--model",
        "gpt-4o-mini",
        "--suffix",
        "acme",
        "--split",
        "all",
        "--json",
    )
    job_id = json.loads(submitted.stdout)["id"]
    _cli(
        url,
        config,
        "finetune",
        "status",
        job_id,
        "--wait",
        "--interval",
        "0.01",
        "--register",
        name,
    )
    return str(job_id)


def test_a_registered_model_is_served_after_a_restart(
    fake_ft: FakeFineTuning, tmp_path: Path
) -> None:
    config = _config(tmp_path, fake_ft)
    with running_gateway(load_config(config)) as served:
        job_id = _train_and_register(served.url, config, "acme-ft")
        with OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0) as sdk:
            assert "acme-ft" not in [m.id for m in sdk.models.list()]  # not before a restart
    fine_tuned = fake_ft.jobs[job_id]["fine_tuned_model"]
    assert fine_tuned.startswith("ft:gpt-4o-mini:crossroads:acme:")
    with (
        running_gateway(load_config(config)) as served,
        OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0) as sdk,
    ):
        assert "acme-ft" in [m.id for m in sdk.models.list()]
        answer = sdk.chat.completions.create(
            model="acme-ft",
            messages=[
                {"role": "system", "content": f"{SYSTEM}Be brief."},
                {"role": "user", "content": "q9"},
            ],
        )
        assert answer.choices[0].message.content == f"Answered by {fine_tuned}."
        sent = fake_ft.chats[-1]
        assert sent["model"] == fine_tuned
        assert sent["messages"][0]["content"] == "Be brief."  # pruned like its training rows
        assert answer.usage is not None
        usage = answer.usage.model_extra or {}
        assert usage["cost"] == pytest.approx((10 * 2.0 + 5 * 8.0) / 1e6)  # the base's price


def _job(name: str, model: str, *, provider: str = "ft", **extra: Any) -> FineTuneJob:
    now = datetime.now(UTC)
    return FineTuneJob(
        id=f"ftjob-{model}",
        dataset_id="ds_1",
        provider=provider,
        base_model="gpt-4o-mini",
        method="supervised",
        status="succeeded",
        file_id="file-1",
        fine_tuned_model=model,
        key_id=None,
        created_at=now,
        updated_at=now,
        registered_as=name,
        **extra,
    )


def test_the_config_wins_over_a_registration() -> None:
    config = parse_config(
        {
            "providers": {"ft": {"base_url": "http://127.0.0.1:9/v1"}},
            "models": {
                "mini": {
                    "context_window": 128000,
                    "deployments": [
                        {"provider": "ft", "model": "gpt-4o-mini", "price": {"input": 1}}
                    ],
                },
                "pinned": {"deployments": [{"provider": "ft", "model": "ft:configured"}]},
            },
        }
    )
    served = serve_registered(
        config,
        [
            _job("pinned", "ft:registered"),
            _job("new", "ft:one"),
            _job("new", "ft:two", pruning=[{"name": "a", "pattern": "x"}]),  # later wins
            _job("orphan", "ft:gone", provider="removed"),
        ],
    )
    assert served.models["pinned"].deployments[0].model == "ft:configured"
    (deployment,) = served.models["new"].deployments
    assert deployment.model == "ft:two" and deployment.price.input == 1
    assert served.models["new"].context_window == 128000
    assert "orphan" not in served.models
    assert [r.pattern for r in served.pruning.rules_for("new")] == ["x"]
    assert serve_registered(config, []) is config
