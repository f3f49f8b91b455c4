"""`crossroads eval` and `crossroads datasets …` against a served gateway: the commands a
person runs, with the key in $CROSSROADS_API_KEY."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from crossroads.cli import app as cli
from crossroads.datasets.formats import check_openai_chat
from crossroads.datasets.scoring import exact_match, normalised_match
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, gateway_config, running_gateway

runner = CliRunner()
FIXED = "Hello from the fake upstream."


@pytest.fixture(scope="module")
def served(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    with running_gateway(
        gateway_config(fake_upstream, tmp_path_factory.mktemp("eval") / "log.db")
    ) as g:
        yield g


def _run(served: ServedApp, *args: str) -> str:
    result = runner.invoke(cli, [*args, "--url", served.url], env={"CROSSROADS_API_KEY": API_KEY})
    assert result.exit_code == 0, result.output
    return result.stdout


def _dataset_from_file(served: ServedApp, tmp_path: Path) -> str:
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": q}]}
        for q in ("alpha", "beta", "gamma")
    ]
    lines.append(
        {
            "messages": [
                {"role": "user", "content": "delta"},
                {"role": "assistant", "content": FIXED},
            ]
        }
    )
    file = tmp_path / "rows.jsonl"
    file.write_bytes(b"\n".join(orjson.dumps(line) for line in lines))
    created = json.loads(_run(served, "datasets", "create", "cli", "--json", "--prune", "x=delta"))
    _run(served, "datasets", "add", created["id"], "--file", str(file))
    return str(created["id"])


def test_datasets_commands_create_add_export(served: ServedApp, tmp_path: Path) -> None:
    dataset_id = _dataset_from_file(served, tmp_path)
    shown = json.loads(_run(served, "datasets", "show", dataset_id, "--json"))
    assert shown["rows"] == {"train": 4, "test": 0}
    out = tmp_path / "out.jsonl"
    _run(served, "datasets", "export", dataset_id, "-o", str(out))
    exported = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(exported) == 4 and all(check_openai_chat(line) == [] for line in exported)
    assert exported[3]["messages"][0]["content"] == ""  # pruned by the dataset's rule
    listed = json.loads(_run(served, "datasets", "list", "--json"))
    assert dataset_id in [d["id"] for d in listed]
    _run(served, "datasets", "split", dataset_id, "--test-fraction", "0.5", "--seed", "3")
    _run(served, "datasets", "delete", dataset_id)
    result = runner.invoke(
        cli,
        ["datasets", "show", dataset_id, "--url", served.url],
        env={"CROSSROADS_API_KEY": API_KEY},
    )
    assert result.exit_code == 1 and "No dataset" in result.output


def test_eval_scores_models_by_exact_match(served: ServedApp, tmp_path: Path) -> None:
    dataset_id = _dataset_from_file(served, tmp_path)
    report = json.loads(
        _run(
            served,
            "eval",
            dataset_id,
            "-m",
            "echo",
            "-m",
            "fixed",
            "-m",
            "error-500",
            "--split",
            "all",
            "--json",
        )
    )
    by_model = {m["model"]: m for m in report["models"]}
    assert by_model["echo"]["score"] == 0.75 and by_model["echo"]["errors"] == 0
    assert by_model["fixed"]["score"] == 0.25
    assert by_model["error-500"]["errors"] == 4 and by_model["error-500"]["score"] == 0
    assert len(report["rows"]) == 12
    table = _run(served, "eval", dataset_id, "-m", "echo", "--split", "all")
    assert "echo" in table and "0.75" in table


def test_eval_refuses_an_unknown_scorer(served: ServedApp) -> None:
    result = runner.invoke(
        cli, ["eval", "ds_x", "-m", "echo", "--scorer", "judge", "--url", served.url]
    )
    assert result.exit_code == 2 and "Unknown scorer" in result.output


def test_scorers_compare_text_and_tool_calls() -> None:
    call = {"type": "function", "id": "1", "function": {"name": "f", "arguments": '{"a": 1}'}}
    spaced = {**call, "function": {"name": "f", "arguments": '{ "a" : 1 }'}}
    assert exact_match({"tool_calls": [call]}, {"tool_calls": [spaced]}) == 1.0
    assert exact_match({"tool_calls": [call]}, {"content": "f"}) == 0.0
    assert exact_match({"content": " Yes "}, {"content": "Yes"}) == 1.0
    assert exact_match({"content": "Yes"}, {"content": "yes"}) == 0.0
    assert normalised_match({"content": "Yes  sir"}, {"content": "yes sir"}) == 1.0
