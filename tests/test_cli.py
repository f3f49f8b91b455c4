"""The command line: config check, serve's refusal to open up, chat and logs end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from crossroads.cli import app
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import free_port
from tests.conftest import API_KEY, flush_log, gateway_config, interruptible, running_gateway

runner = CliRunner()


def _write_config(path: Path, fake: FakeOpenAI, database: Path, keys: bool = True) -> Path:
    lines = [
        "[storage]",
        f'database_url = "sqlite+aiosqlite:///{database}"',
        "[providers.fake]",
        f'base_url = "{fake.base_url}"',
        'api_key = "sk-upstream"',
        "[models.echo]",
        "deployments = [",
        '  { provider = "fake", model = "echo", price = { input = 1.0, output = 2.0 } },',
        "]",
    ]
    if keys:
        lines += ["[[keys]]", 'name = "main"', f'key = "{API_KEY}"', 'logs = "all"']
    path.write_text("\n".join(lines) + "\n")
    return path


def test_config_check_accepts_a_good_file(fake_upstream: FakeOpenAI, tmp_path: Path) -> None:
    path = _write_config(tmp_path / "c.toml", fake_upstream, tmp_path / "db.sqlite")
    result = runner.invoke(app, ["config", "check", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "OK — 1 provider(s), 1 model(s), 1 deployment(s), 1 key(s)" in result.output


def test_config_check_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[models.m]\ndeployments = [{ provider = "nope" }]\n')
    result = runner.invoke(app, ["config", "check", "--config", str(path)])
    assert result.exit_code == 2
    assert "models.m.deployments[0].provider: unknown provider 'nope'" in result.output


def test_serve_refuses_a_public_bind_without_keys(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    path = _write_config(tmp_path / "c.toml", fake_upstream, tmp_path / "db.sqlite", keys=False)
    result = runner.invoke(app, ["serve", "--config", str(path), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "Refusing to bind 0.0.0.0" in result.output


def test_chat_and_logs_against_a_running_gateway(fake_upstream: FakeOpenAI, tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite"
    path = _write_config(tmp_path / "c.toml", fake_upstream, database)
    with running_gateway(gateway_config(fake_upstream, database)) as served:
        url = f"{served.url}/v1"
        plain = runner.invoke(
            app, ["chat", "hello there", "-m", "echo", "--url", url, "--api-key", API_KEY]
        )
        assert plain.exit_code == 0, plain.output
        assert "hello there" in plain.output
        streamed = runner.invoke(
            app,
            [
                "chat",
                "streamed words",
                "-m",
                "echo",
                "--stream",
                "--url",
                url,
                "--api-key",
                API_KEY,
            ],
        )
        assert streamed.exit_code == 0, streamed.output
        assert "streamed words" in streamed.output
        missing = runner.invoke(
            app, ["chat", "x", "-m", "nope", "--url", url, "--api-key", API_KEY]
        )
        assert missing.exit_code == 1
        assert "HTTP 404" in missing.output
        flush_log(served)
    listed = runner.invoke(app, ["logs", "--config", str(path), "--limit", "5"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("echo") >= 2
    assert "404" in listed.output
    errors = runner.invoke(app, ["logs", "--config", str(path), "--status", "error"])
    assert errors.output.count("model_not_found") == 1


@pytest.mark.engine
def test_serve_without_config_runs_the_embedded_model_and_shuts_down_cleanly(
    tmp_path: Path,
) -> None:
    """`crossroads serve` exactly as the README's first command runs it."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "HOME": str(tmp_path)}
    env.pop("CROSSROADS_CONFIG", None)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "crossroads", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300  # loading is slow on a busy machine
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.1)
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={
                "model": "local",
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 8,
            },
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
        assert reply.json()["provider"] == "local"
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells it.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "loaded gemma-3-270m-q4_k_m.gguf in" in output
    assert list(tmp_path.rglob("crossroads.db")), "the request log was not created"


def test_logs_follow_prints_new_records_as_they_arrive(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    database = tmp_path / "db.sqlite"
    path = _write_config(tmp_path / "c.toml", fake_upstream, database)
    with running_gateway(gateway_config(fake_upstream, database)) as served:
        url = f"{served.url}/v1"
        runner.invoke(app, ["chat", "before", "-m", "echo", "--url", url, "--api-key", API_KEY])
        flush_log(served)
        env = {**os.environ, "COLUMNS": "200"}
        follower = subprocess.Popen(
            [sys.executable, "-m", "crossroads", "logs", "--config", str(path), "--follow"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=interruptible,
        )
        try:
            time.sleep(2.0)  # the first table is printed, then it polls every second
            for _ in range(2):
                runner.invoke(
                    app, ["chat", "after", "-m", "nope", "--url", url, "--api-key", API_KEY]
                )
            flush_log(served)
            time.sleep(2.5)
        finally:
            follower.send_signal(signal.SIGINT)
            try:
                output = follower.communicate(timeout=10)[0].decode()
            finally:
                if follower.poll() is None:  # it must stop on Ctrl-C; never leave it behind
                    follower.kill()
                    follower.communicate()
    assert "echo" in output, output
    assert output.count("model_not_found") == 2, output


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
