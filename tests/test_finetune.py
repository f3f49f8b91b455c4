"""Fine-tuning jobs end to end: a dataset exported through the gateway, uploaded to a fake
fine-tuning upstream (a real HTTP server on 127.0.0.1 that checks every line), the job
tracked until it ends, the model registered in the database and as config."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from crossroads.cli import app as cli
from crossroads.config import load_config, parse_config
from crossroads.datasets.formats import check_openai_chat, check_openai_dpo
from crossroads.testing.fake_finetune import FakeFineTuning
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, running_gateway

runner = CliRunner()
ENV = {"CROSSROADS_API_KEY": API_KEY}


@pytest.fixture(scope="module")
def fake_ft() -> Iterator[FakeFineTuning]:
    with FakeFineTuning(api_key="sk-ft").running_in_thread() as fake:
        yield fake


@pytest.fixture(scope="module")
def setup(
    fake_upstream: FakeOpenAI, fake_ft: FakeFineTuning, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedApp, Path]]:
    directory = tmp_path_factory.mktemp("ft")
    config = directory / "crossroads.toml"
    config.write_text(
        f"""
[storage]
database_url = "sqlite+aiosqlite:///{directory / "log.db"}"
flush_interval = 0.05

[[keys]]
name = "main"
key = "{API_KEY}"

[providers.fake]
base_url = "{fake_upstream.base_url}"
api_key = "sk-upstream"

[providers.ft]
base_url = "{fake_ft.base_url}"
api_key = "sk-ft"

[models.echo]
deployments = [{{ provider = "fake", model = "echo" }}]
"""
    )
    with running_gateway(load_config(config)) as served:
        yield served, config


def _dataset(served: ServedApp, lines: list[dict[str, Any]], **body: Any) -> str:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    created = httpx.post(
        f"{served.url}/v1/datasets", json={"name": "ft", **body}, headers=headers
    ).json()
    added = httpx.post(
        f"{served.url}/v1/datasets/{created['id']}/rows",
        content=b"\n".join(orjson.dumps(line) for line in lines),
        headers={**headers, "content-type": "application/jsonl"},
    )
    assert added.status_code == 200, added.text
    return str(created["id"])


def _cli(served: ServedApp, config: Path, *args: str) -> Any:
    return runner.invoke(cli, [*args, "--config", str(config), "--url", served.url], env=ENV)


SFT = [
    {
        "messages": [
            {"role": "system", "content": "You are Acme's assistant. Be brief."},
            {"role": "user", "content": f"q{i}"},
            {"role": "assistant", "content": f"a{i}"},
        ]
    }
    for i in range(5)
]
PAIR = {
    "input": {"messages": [{"role": "user", "content": "pick"}]},
    "preferred_output": [{"role": "assistant", "content": "good"}],
    "non_preferred_output": [{"role": "assistant", "content": "bad"}],
}


def test_supervised_job_runs_and_its_model_is_registered(
    setup: tuple[ServedApp, Path], fake_ft: FakeFineTuning
) -> None:
    served, config = setup
    rules = [{"name": "acme", "pattern": "You are Acme's assistant. "}]
    dataset_id = _dataset(served, SFT, pruning=rules)
    submitted = _cli(
        served,
        config,
        "finetune",
        "submit",
        dataset_id,
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
    assert submitted.exit_code == 0, submitted.output
    job = json.loads(submitted.stdout)
    uploaded = fake_ft.files[job["training_file"]].splitlines()
    assert len(uploaded) == 5
    for line in uploaded:
        parsed = orjson.loads(line)
        assert check_openai_chat(parsed) == []
        assert parsed["messages"][0]["content"] == "Be brief."  # pruned before upload
    status = _cli(
        served,
        config,
        "finetune",
        "status",
        job["id"],
        "--wait",
        "--interval",
        "0.01",
        "--register",
        "acme-ft",
    )
    assert status.exit_code == 0, status.output
    snippet = tomllib.loads(status.stdout)
    model = snippet["models"]["acme-ft"]["deployments"][0]["model"]
    assert model.startswith("ft:gpt-4o-mini:crossroads:acme:")
    assert snippet["pruning"]["models"] == {"acme-ft": ["acme"]}
    # the snippet is valid config: with the provider, it parses and prunes that model
    merged = {"providers": {"ft": {"base_url": fake_ft.base_url}}, **snippet}
    assert parse_config(merged).pruning.rules_for("acme-ft")[0].pattern == rules[0]["pattern"]
    listed = runner.invoke(cli, ["finetune", "list", "--json", "--config", str(config)])
    (recorded,) = [j for j in json.loads(listed.stdout) if j["id"] == job["id"]]
    assert recorded["status"] == "succeeded" and recorded["fine_tuned_model"] == model
    assert recorded["registered_as"] == "acme-ft"
    assert recorded["pruning"] == [{**rules[0], "regex": False}]


def test_dpo_job_uploads_preference_pairs(
    setup: tuple[ServedApp, Path], fake_ft: FakeFineTuning
) -> None:
    served, config = setup
    dataset_id = _dataset(served, [PAIR])
    submitted = _cli(
        served,
        config,
        "finetune",
        "submit",
        dataset_id,
        "--provider",
        "ft",
        "--model",
        "gpt-4o-mini",
        "--method",
        "dpo",
        "--split",
        "all",
        "--json",
    )
    assert submitted.exit_code == 0, submitted.output
    job = json.loads(submitted.stdout)
    assert job["method"] == {"type": "dpo"}
    (line,) = fake_ft.files[job["training_file"]].splitlines()
    assert check_openai_dpo(orjson.loads(line)) == []


def test_a_failed_job_and_bad_requests_say_why(setup: tuple[ServedApp, Path]) -> None:
    served, config = setup
    dataset_id = _dataset(served, SFT)
    unknown = _cli(
        served, config, "finetune", "submit", dataset_id, "--provider", "nope", "--model", "m"
    )
    assert unknown.exit_code == 2 and "No provider 'nope'" in unknown.output
    empty = _cli(
        served,
        config,
        "finetune",
        "submit",
        dataset_id,
        "--provider",
        "ft",
        "--model",
        "m",
        "--method",
        "dpo",
        "--split",
        "all",
    )
    assert empty.exit_code == 1 and "no dpo rows" in empty.output
    with FakeFineTuning(api_key="sk-ft", fail_jobs=True).running_in_thread() as failing:
        text = config.read_text()
        broken = config.with_name("failing.toml")
        broken.write_text(
            text.replace(
                text.split("[providers.ft]")[1].split("\n")[1], f'base_url = "{failing.base_url}"'
            )
        )
        submitted = _cli(
            served,
            broken,
            "finetune",
            "submit",
            dataset_id,
            "--provider",
            "ft",
            "--model",
            "m",
            "--split",
            "all",
            "--json",
        )
        assert submitted.exit_code == 0, submitted.output
        job = json.loads(submitted.stdout)
        status = _cli(
            served, broken, "finetune", "status", job["id"], "--wait", "--interval", "0.01"
        )
        assert status.exit_code == 1 and "fake failure" in status.output
    rejected = _cli(served, config, "finetune", "status", "ftjob-missing")
    assert rejected.exit_code == 1 and "No fine-tuning job" in rejected.output
