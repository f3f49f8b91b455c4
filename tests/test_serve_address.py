"""Where `crossroads serve` listens: --port/--host, $CROSSROADS_PORT/$CROSSROADS_HOST and
`make serve ARGS=…`; an address it cannot use ends it with one line, never a traceback.

Each test runs the command as users do, in a child process, against a config whose only
provider is a closed port (nothing here needs an upstream to answer).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from crossroads.testing.server import free_port

ROOT = Path(__file__).parents[1]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "crossroads.toml"
    path.write_text(
        "[storage]\n"
        f'database_url = "sqlite+aiosqlite:///{tmp_path / "log.db"}"\n'
        "[providers.up]\n"
        'base_url = "http://127.0.0.1:9/v1"\n'
        "[models.m]\n"
        'deployments = [{ provider = "up", model = "m" }]\n'
    )
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSROADS_")}
    return {**env, "COLUMNS": "80", **extra}


def _serve_fails(config: Path, *args: str, **env: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "crossroads", "serve", "--config", str(config), *args],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stderr.strip().splitlines()


@contextmanager
def _serving(config: Path, *args: str, **env: str) -> Iterator[list[str]]:
    """The gateway running; yields the lines it has printed so far (read once it is up)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "crossroads", "serve", "--config", str(config), *args],
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if "Application startup complete" in line:
                break
            assert time.monotonic() < deadline, lines
        assert process.poll() is None, lines
        yield lines
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()


def test_a_taken_port_fails_with_one_line_and_status_1(config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for how in (("--port", str(port)), ()):
            status, lines = _serve_fails(config, *how, CROSSROADS_PORT=str(port))
            assert status == 1, lines
            assert len(lines) == 1, lines
            assert lines[0].startswith(f"Cannot listen on 127.0.0.1:{port}: port {port} is ")
            assert "already in use" in lines[0]
            assert 'make serve ARGS="--port 8080"' in lines[0]
            assert "CROSSROADS_PORT" in lines[0]


def test_port_and_host_come_from_the_environment(config: Path) -> None:
    port = free_port()
    with _serving(config, CROSSROADS_PORT=str(port), CROSSROADS_HOST="127.0.0.1") as lines:
        assert any(f"Crossroads on http://127.0.0.1:{port}/v1 — models: m" in x for x in lines)
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    # --port wins over the variable, as an option given on the command line should.
    other = free_port()
    with _serving(config, "--port", str(other), CROSSROADS_PORT=str(port)):
        assert httpx.get(f"http://127.0.0.1:{other}/health").status_code == 200


def test_an_ipv6_address_is_bracketed_in_the_url_it_prints(config: Path) -> None:
    with _serving(config, "--host", "::1", "--port", "0") as lines:
        started = next(x for x in lines if "Crossroads on http://" in x)
        url = started.split("Crossroads on ")[1].split(" ")[0]
        assert url.startswith("http://[::1]:")
        assert httpx.get(url.removesuffix("/v1") + "/health").status_code == 200


@pytest.mark.parametrize(("host", "shown"), [("0.0.0.0", "0.0.0.0:8123"), ("::", "[::]:8123")])
def test_refusing_a_public_bind_shows_the_config_to_add(
    config: Path, host: str, shown: str
) -> None:
    status, lines = _serve_fails(config, "--host", host, "--port", "8123")
    assert status == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Refusing to bind {shown}: no API keys are configured")
    assert "Add [[keys]] to the config, set CROSSROADS_MASTER_KEY" in lines[0]


def test_make_serve_passes_args_to_serve() -> None:
    done = subprocess.run(
        [
            "make",
            "-n",
            "--no-print-directory",
            "serve",
            "ARGS=--port 9000 --host 127.0.0.1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        # Under `make test` the parent make's flags (-w) would add
        # "Entering/Leaving directory" lines; this test reads only the recipe.
        env={k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}},
    )
    assert done.stdout.strip().splitlines()[-1] == (
        ".venv/bin/crossroads serve --port 9000 --host 127.0.0.1"
    )
