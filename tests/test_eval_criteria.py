"""`crossroads eval --criteria` against a served gateway with LLM-judge criteria: every row
goes through the gateway asking for the criteria, fake judges answer PASS, FAIL or a score,
and the report has pass rates, mean scores and the judges' cost per model."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from crossroads.cli import app as cli
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY
from tests.quality_gateway import QUESTION, RIGHT, ask, fake, served

__all__ = ["fake", "served"]  # the fixtures this module uses

runner = CliRunner()


def _run(served: ServedApp, *args: str) -> str:
    result = runner.invoke(cli, [*args, "--url", served.url], env={"CROSSROADS_API_KEY": API_KEY})
    assert result.exit_code == 0, result.output
    return result.stdout


def _dataset(served: ServedApp, tmp_path: Path) -> str:
    """Three rows: two with the right answer as their output, one with another answer."""
    lines = [
        {"messages": [*ask(), {"role": "assistant", "content": answer}]}
        for answer in (RIGHT, RIGHT, "Something else.")
    ]
    file = tmp_path / "rows.jsonl"
    file.write_bytes(b"\n".join(orjson.dumps(line) for line in lines))
    created = json.loads(_run(served, "datasets", "create", "judged", "--json"))
    _run(served, "datasets", "add", created["id"], "--file", str(file))
    return str(created["id"])


def test_eval_scores_by_criteria_with_the_judges_cost(
    served: ServedApp, fake: FakeOpenAI, tmp_path: Path
) -> None:
    dataset_id = _dataset(served, tmp_path)
    fake.requests.clear()
    report = json.loads(
        _run(
            served,
            "eval",
            dataset_id,
            "-m",
            "right",
            "-m",
            "broken",
            "--split",
            "all",
            "--criteria",
            "concise,polite,helpful",
            "--json",
        )
    )
    assert report["scorer"] == "criteria"
    assert report["criteria"] == ["concise", "polite", "helpful"]
    by_model = {m["model"]: m for m in report["models"]}
    right = by_model["right"]
    assert right["rows"] == 3 and right["errors"] == 0
    assert right["score"] == pytest.approx(2 / 3, abs=1e-4)  # concise and helpful pass
    assert right["criteria"]["concise"] == {"pass_rate": 1.0, "mean_score": 1.0, "errors": 0}
    assert right["criteria"]["polite"] == {"pass_rate": 0.0, "mean_score": 0.0, "errors": 0}
    assert right["criteria"]["helpful"] == {"pass_rate": 1.0, "mean_score": 0.8, "errors": 0}
    assert right["judge_cost"] > 0 and right["cost"] > right["judge_cost"]
    broken = by_model["broken"]
    assert broken["errors"] == 3 and broken["score"] == 0
    assert broken["criteria"]["concise"] == {"pass_rate": 0.0, "mean_score": None, "errors": 3}
    assert broken["judge_cost"] is None
    rows = [r for r in report["rows"] if r["model"] == "right"]
    assert len(rows) == 3 and all(len(r["criteria_results"]) == 3 for r in rows)
    assert all(r["judge_cost"] > 0 for r in rows)
    # What the judges were asked: the criterion and the answer, for every row of `right`.
    judged = [r["body"] for r in fake.requests if r["body"]["model"].startswith("reply=PASS")]
    assert len(judged) == 3
    assert "The answer is concise." in judged[0]["messages"][0]["content"]
    assert RIGHT in judged[0]["messages"][1]["content"]
    assert QUESTION in judged[0]["messages"][1]["content"]


def test_eval_with_criteria_and_exact_scoring_prints_a_table(
    served: ServedApp, tmp_path: Path
) -> None:
    dataset_id = _dataset(served, tmp_path)
    report = json.loads(
        _run(
            served,
            "eval",
            dataset_id,
            "-m",
            "right",
            "--split",
            "all",
            "--scorer",
            "exact",
            "--criteria",
            "helpful",
            "--json",
        )
    )
    (right,) = report["models"]
    assert right["score"] == pytest.approx(2 / 3, abs=1e-4)  # two rows expect this answer
    assert right["criteria"]["helpful"]["mean_score"] == 0.8
    table = _run(
        served, "eval", dataset_id, "-m", "right", "--split", "all", "--criteria", "concise"
    )
    assert "concise pass/mean" in table and "1.0/1.0" in table and "judge $" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scorer", "criteria"], "needs --criteria"),
        (["--criteria", " , "], "at least one criterion"),
    ],
)
def test_eval_refuses_criteria_misuse(served: ServedApp, args: list[str], message: str) -> None:
    result = runner.invoke(cli, ["eval", "ds_x", "-m", "right", *args, "--url", served.url])
    assert result.exit_code == 2 and message in result.output


def test_eval_reports_an_unknown_criterion_per_row(served: ServedApp, tmp_path: Path) -> None:
    dataset_id = _dataset(served, tmp_path)
    report = json.loads(
        _run(
            served,
            "eval",
            dataset_id,
            "-m",
            "right",
            "--split",
            "all",
            "--criteria",
            "witty",
            "--json",
        )
    )
    (right,) = report["models"]
    assert right["errors"] == 3
    assert "witty" in report["rows"][0]["error"]
