"""Tables the command line prints are whole when piped or redirected: rich assumes 80
columns without a terminal and would end cells with '…', losing URLs and names."""

from __future__ import annotations

import os
import subprocess
import sys


def _crossroads(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "CROSSROADS_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "crossroads", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_providers_list_piped_is_not_cut_short() -> None:
    done = _crossroads("providers", "list")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("│")}
    assert "https://openrouter.ai/api/v1" in rows["openrouter"]
    assert 'preset = "openrouter"' in rows["openrouter"]
    assert "OPENROUTER_API_KEY" in rows["openrouter"]
    assert "https://generativelanguage.googleapis.com" in rows["gemini"]


def test_providers_matrix_names_every_unknown_provider() -> None:
    done = _crossroads("providers", "matrix", "openai", "nope", "other")
    assert done.returncode == 2
    assert done.stderr.startswith("unknown providers 'nope', 'other' (known: openai, ")
    assert len(done.stderr.strip().splitlines()) == 1
