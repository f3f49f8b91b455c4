"""`crossroads config check`: exit statuses as its --help documents them, every problem at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossroads.cli import app

runner = CliRunner()

GOOD = """\
[providers.up]
base_url = "http://127.0.0.1:9/v1"
api_key = "env:CHECK_UP_KEY"

[models.m]
deployments = [{ provider = "up", model = "m" }]
"""

THREE_SECRETS = """\
[[keys]]
name = "main"
key = "env:CHECK_MAIN_KEY"

[providers.a]
base_url = "http://127.0.0.1:9/v1"
api_key = "env:CHECK_A_KEY"

[providers.b]
base_url = "http://127.0.0.1:9/v1"
api_key = "env:CHECK_B_KEY"
proxy = "env:CHECK_B_PROXY"
"""


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CROSSROADS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./crossroads.toml
    for name in ("CHECK_UP_KEY", "CHECK_MAIN_KEY", "CHECK_A_KEY", "CHECK_B_KEY", "CHECK_B_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _documented_statuses() -> dict[int, str]:
    """The `Exit status:` lines of `config check --help`: status → what it says."""
    result = runner.invoke(app, ["config", "check", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    section = result.output.split("Exit status:")[1]
    return {int(m[1]): m[2] for m in re.finditer(r"^\s+(\d)\s+(.+)$", section, re.MULTILINE)}


def _check(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["config", "check", *args], env=env)
    return result.exit_code, result.output


def test_every_exit_status_is_the_one_its_help_documents(tmp_path: Path) -> None:
    documented = _documented_statuses()
    assert set(documented) == {0, 1, 2}
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.m]\ndeployments = [{ provider = "nope" }]\n')
    not_toml = tmp_path / "broken.toml"
    not_toml.write_text("[models.m\n")

    status, output = _check("--config", str(good), env={"CHECK_UP_KEY": "k"})
    assert status == 0, output
    assert "valid" in documented[0]
    status, output = _check()
    assert status == 1, output
    assert "no config file" in documented[1]
    assert "No config file given or found" in output
    for path in (bad, not_toml, tmp_path / "missing.toml"):
        status, output = _check("--config", str(path))
        assert status == 2, output
    assert "invalid" in documented[2]
    assert "cannot be read" in documented[2]


def test_every_missing_environment_variable_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(THREE_SECRETS)
    status, output = _check("--config", str(path), env={"CHECK_A_KEY": "set"})
    assert status == 2
    lines = [line.strip() for line in output.splitlines()]
    assert "- keys[0].key: environment variable CHECK_MAIN_KEY is not set" in lines
    assert "- providers.b.api_key: environment variable CHECK_B_KEY is not set" in lines
    assert "- providers.b.proxy: environment variable CHECK_B_PROXY is not set" in lines
    assert "CHECK_A_KEY" not in output

    env = {"CHECK_MAIN_KEY": "k", "CHECK_A_KEY": "k", "CHECK_B_KEY": "k"}
    env["CHECK_B_PROXY"] = "http://127.0.0.1:3128"
    status, output = _check("--config", str(path), env=env)
    assert status == 0, output
