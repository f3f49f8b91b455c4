"""Every TOML example in README.md is a config that `crossroads config check` accepts.

A reader copies these blocks into crossroads.toml, so each one must be complete (every
provider it names is defined in it) and valid TOML 1.0 (no inline table spread over lines).
The `env:NAME` variables a block names are set to dummy values, and the files it names (TLS
certificates, a GGUF) are made in a temporary directory and put at their place in the
block, because the check opens them; nothing else is changed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trustme
from typer.testing import CliRunner

from crossroads.cli import app

README = Path(__file__).parents[1] / "README.md"
_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_ENV = re.compile(r'"env:([A-Za-z_][A-Za-z0-9_]*)"')
_PATH_SETTINGS = re.compile(
    r'^(\s*(?:ca_bundle|client_cert|client_key|model_path)\s*=\s*)"[^"]*"', re.MULTILINE
)


def _blocks() -> list[tuple[int, str]]:
    """(line in README.md, block) for every ```toml block."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def _with_real_files(block: str, directory: Path) -> str:
    """The block with each file it names replaced by one that exists and can be loaded."""
    ca = trustme.CA()
    client = ca.issue_cert("crossroads.client.example")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    client.cert_chain_pems[0].write_to_path(str(directory / "client.pem"))
    client.private_key_pem.write_to_path(str(directory / "client.key"))
    (directory / "model.gguf").write_bytes(b"GGUF")
    files = {
        "ca_bundle": directory / "ca.pem",
        "client_cert": directory / "client.pem",
        "client_key": directory / "client.key",
        "model_path": directory / "model.gguf",
    }

    def replace(match: re.Match[str]) -> str:
        setting = match.group(1).split("=")[0].strip()
        return f'{match.group(1)}"{files[setting]}"'

    return _PATH_SETTINGS.sub(replace, block)


def test_the_readme_has_config_examples() -> None:
    assert len(_blocks()) >= 8


@pytest.mark.parametrize(
    ("line", "block"), [pytest.param(n, b, id=f"README.md:{n}") for n, b in _blocks()]
)
def test_readme_config_example_passes_config_check(line: int, block: str, tmp_path: Path) -> None:
    path = tmp_path / "crossroads.toml"
    path.write_text(_with_real_files(block, tmp_path), encoding="utf-8")
    env = {name: f"dummy-{name.lower()}" for name in _ENV.findall(block)}
    result = CliRunner().invoke(app, ["config", "check", "--config", str(path)], env=env)
    assert result.exit_code == 0, f"README.md line {line}:\n{result.output}"
    assert ": OK — " in result.output
