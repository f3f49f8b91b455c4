"""`crossroads router train` and `eval` end to end on a small generated RouteLLM-layout dir."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossroads.cli import app
from tests.test_router_predictor import STRONG, WEAK, synthetic_rows

runner = CliRunner()
PRICES = ["--price", f"{WEAK}=0.6,0.6", "--price", f"{STRONG}=10,30"]


def _routellm_dir(root: Path, seed: int, numeric: bool = False) -> Path:
    """Two 'subjects' as CSV files in RouteLLM's layout (+ a contamination list one level up)."""
    rows = synthetic_rows(400, seed=seed)
    by_prompt: dict[str, dict[str, float]] = {}
    for row in rows:
        by_prompt.setdefault(row.prompt, {})[row.model] = row.score
    prompts = list(by_prompt)
    data = root / "data"
    data.mkdir(parents=True)
    (root / "x_contaminated_prompts.jsonl").write_text(json.dumps({"eval_prompt": prompts[0]}))
    for part, chunk in (("mmlu_a", prompts[::2]), ("mmlu_b", prompts[1::2])):
        with (data / f"{part}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["prompt", WEAK, STRONG, f"{STRONG}_response"])
            for prompt in chunk:
                scores = [by_prompt[prompt][m] for m in (WEAK, STRONG)]
                cells = [f"{s:.2f}" if numeric else str(bool(s)) for s in scores]
                writer.writerow([prompt, *cells, "x" * 40])
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    out = root / "router.npz"
    result = runner.invoke(
        app, ["router", "train", "--data", str(_routellm_dir(root, seed=0)), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert STRONG in result.output and "399 prompts" in result.output
    return out


@pytest.mark.parametrize("numeric", [False, True])
def test_eval_prints_scores_and_the_cost_curve(
    trained: Path, tmp_path: Path, numeric: bool
) -> None:
    data = _routellm_dir(tmp_path, seed=5, numeric=numeric)
    result = runner.invoke(
        app,
        ["router", "eval", "--router", str(trained), "--data", str(data), *PRICES],
    )
    assert result.exit_code == 0, result.output
    for text in ("APGR", "CPT(50%)", "prompt length", "random", "willingness to pay", "∞"):
        assert text in result.output


def test_eval_json_shape(trained: Path, tmp_path: Path) -> None:
    data = _routellm_dir(tmp_path, seed=5)
    result = runner.invoke(
        app,
        ["router", "eval", "--router", str(trained), "--data", str(data), "--json", *PRICES],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stderr warns: the synthetic sets share prompts
    assert report["prompts"] == 399  # one contaminated prompt dropped
    assert (report["strong"], report["weak"]) == (STRONG, WEAK)
    assert set(report["routers"]) == {"router", "prompt length", "random"}
    assert set(report["routers"]["router"]) == {"apgr", "cpt50", "cpt80"}
    assert report["routers"]["router"]["apgr"] > report["routers"]["random"]["apgr"]
    curve = report["willingness_to_pay_curve"]
    assert curve[0]["willingness_to_pay"] == 0 and curve[-1]["willingness_to_pay"] == "inf"
    assert curve[0]["share"][STRONG] == 0
    assert curve[-1]["total_cost"] > curve[0]["total_cost"]
    assert report["prices_per_million_tokens"][STRONG] == {"input": 10.0, "output": 30.0}


def test_eval_without_prices_still_scores(trained: Path, tmp_path: Path) -> None:
    data = _routellm_dir(tmp_path, seed=5)
    result = runner.invoke(
        app, ["router", "eval", "--router", str(trained), "--data", str(data), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stderr warns: the synthetic sets share prompts
    assert report["willingness_to_pay_curve"] == []
    assert "--price" in report["note"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strong", "nobody"], "--strong 'nobody' must be a model"),
        (["--price", "oops"], "expected MODEL=INPUT,OUTPUT"),
    ],
)
def test_eval_bad_options(trained: Path, tmp_path: Path, args: list[str], message: str) -> None:
    data = _routellm_dir(tmp_path, seed=5)
    result = runner.invoke(
        app, ["router", "eval", "--router", str(trained), "--data", str(data), *args]
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_files_end_in_one_clear_line(tmp_path: Path) -> None:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("question,m\nq,1\n")
    out = tmp_path / "r.npz"
    result = runner.invoke(app, ["router", "train", "--data", str(bad_csv), "--out", str(out)])
    assert result.exit_code == 2
    assert "no 'prompt' column" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)

    not_router = tmp_path / "not_router.npz"
    not_router.write_text("hello")
    result = runner.invoke(
        app, ["router", "eval", "--router", str(not_router), "--data", str(bad_csv)]
    )
    assert result.exit_code == 2
    assert "not a router artifact" in result.output
