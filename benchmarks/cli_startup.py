"""How long each `crossroads` command takes from the shell, start to exit.

The command line is run as users run it: a fresh `crossroads` process per call, against a
config file whose request log is a SQLite file that already exists (migrated by a first
call). Commands that need a running gateway (`keys list`, `chat`) are pointed at a closed
port, so they measure everything up to the connection attempt. Each command runs
`--runs` times; the table gives the fastest and the median wall time, and how many
modules the process had imported (`python -X importtime`), which is what start-up time
is made of.

    python benchmarks/cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
CROSSROADS = Path(sys.executable).parent / "crossroads"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(directory: Path) -> Path:
    path = directory / "crossroads.toml"
    path.write_text(
        "[storage]\n"
        f'database_url = "sqlite+aiosqlite:///{directory / "log.db"}"\n'
        "[providers.upstream]\n"
        'base_url = "http://127.0.0.1:9/v1"\n'
        "[models.echo]\n"
        'deployments = [{ provider = "upstream", model = "echo" }]\n'
    )
    return path


def _commands(config: Path) -> dict[str, list[str]]:
    closed = f"http://127.0.0.1:{_closed_port()}"
    return {
        "--help": ["--help"],
        "logs --help": ["logs", "--help"],
        "config check": ["config", "check", "--config", str(config)],
        "logs": ["logs", "--config", str(config), "--limit", "5"],
        "usage --json": ["usage", "--config", str(config), "--json"],
        "providers list": ["providers", "list"],
        "keys list (no gateway)": ["keys", "list", "--url", closed, "--master-key", "mk"],
        "chat (no gateway)": ["chat", "hi", "--url", f"{closed}/v1"],
    }


def _modules(args: list[str], env: dict[str, str]) -> int:
    """How many modules a run imports, from `-X importtime`'s report on stderr."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "crossroads", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return sum(1 for line in done.stderr.splitlines() if line.startswith("import time:")) - 1


def measure(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config = _config(directory)
        env = {**os.environ, "HOME": tmp, "XDG_DATA_HOME": tmp, "NO_COLOR": "1"}
        env.pop("CROSSROADS_CONFIG", None)
        subprocess.run(  # the first call creates and migrates the request log
            [str(CROSSROADS), "logs", "--config", str(config)], env=env, capture_output=True
        )
        rows = {}
        for name, args in _commands(config).items():
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                subprocess.run([str(CROSSROADS), *args], env=env, capture_output=True)
                times.append(time.perf_counter() - started)
            rows[name] = {
                "min_s": round(min(times), 3),
                "median_s": round(statistics.median(times), 3),
                "modules": _modules(args, env),
            }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "cli_startup.json")
    args = parser.parse_args()
    rows = measure(args.runs)
    print(f"{'command':<26} {'min s':>7} {'median s':>9} {'modules':>8}")
    for name, row in rows.items():
        print(f"{name:<26} {row['min_s']:>7.3f} {row['median_s']:>9.3f} {row['modules']:>8}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "runs": args.runs,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "commands": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
