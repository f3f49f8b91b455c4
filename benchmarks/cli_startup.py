"""How long each `crossroads` command takes from the shell, start to exit.

The command line is run as users run it: a fresh `crossroads` process per call, against a
config file whose request log is a SQLite file that already exists (migrated by a first
call). Commands that need a running gateway (`keys list`, `chat`) are pointed at a closed
port, so they measure everything up to the connection attempt. `logs` and `usage` run
twice: piped (tab-separated lines, JSON) and on a terminal (a pseudo-terminal; they draw
tables with rich, which adds its import). Each command runs
`--runs` times; the table gives the fastest and the median wall time, the median CPU time
(user + system: what the command costs, nearly the same on a machine busy with other work,
where the wall time also counts waiting for a core), and how many modules the process had
imported (`python -X importtime`), which is what start-up time is made of. Bytecode is
compiled once before timing (into a temporary `PYTHONPYCACHEPREFIX`), as it is for an
installed package; a run that compiled the sources each time would time the compiler.

With `--baseline SRC` (another checkout's `src` directory, e.g. from `git archive`) every
command is also run from that source tree, the two runs of each command alternating so both
see the same machine load, and the table gives the ratio of medians (this tree / baseline).
The floor is a Python that imports nothing: no command can start faster.

    python benchmarks/cli_startup.py [--runs 7] [--baseline /tmp/before/src]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import pty
import resource
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


def _commands(config: Path) -> dict[str, tuple[list[str], bool]]:
    """Each command's arguments, and whether it runs on a terminal."""
    closed = f"http://127.0.0.1:{_closed_port()}"
    logs = ["logs", "--config", str(config), "--limit", "5"]
    usage = ["usage", "--config", str(config)]
    return {
        "--help": (["--help"], False),
        "logs --help": (["logs", "--help"], False),
        "config check": (["config", "check", "--config", str(config)], False),
        "logs": (logs, False),
        "logs (terminal)": (logs, True),
        "usage --json": ([*usage, "--json"], False),
        "usage (terminal)": (usage, True),
        "providers list": (["providers", "list"], False),
        "keys list (no gateway)": (["keys", "list", "--url", closed, "--master-key", "mk"], False),
        "chat (no gateway)": (["chat", "hi", "--url", f"{closed}/v1"], False),
    }


def _run(argv: list[str], env: dict[str, str], terminal: bool) -> str:
    """Run `argv` to its end, its stdout piped or a pseudo-terminal; its stderr."""
    if not terminal:
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=False).stderr
    leader, follower = pty.openpty()
    with subprocess.Popen(argv, env=env, stdout=follower, stderr=subprocess.PIPE) as child:
        os.close(follower)
        with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
            while os.read(leader, 65536):
                pass
        os.close(leader)
        assert child.stderr is not None
        return child.stderr.read().decode()


def _modules(args: list[str], env: dict[str, str], terminal: bool) -> int:
    """How many modules a run imports, from `-X importtime`'s report on stderr."""
    stderr = _run([sys.executable, "-X", "importtime", "-m", "crossroads", *args], env, terminal)
    return sum(1 for line in stderr.splitlines() if line.startswith("import time:")) - 1


def _timed(argv: list[str], env: dict[str, str], terminal: bool = False) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of the child: on a machine busy with
    other work the wall time includes waiting for a core, the CPU time hardly changes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    _run(argv, env, terminal)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _row(times: list[tuple[float, float]], modules: int) -> dict[str, Any]:
    walls = [wall for wall, _ in times]
    return {
        "min_s": round(min(walls), 3),
        "median_s": round(statistics.median(walls), 3),
        "cpu_median_s": round(statistics.median(cpu for _, cpu in times), 3),
        "modules": modules,
    }


def measure(runs: int, baseline: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config = _config(directory)
        env = {**os.environ, "HOME": tmp, "XDG_DATA_HOME": tmp, "NO_COLOR": "1"}
        env.pop("CROSSROADS_CONFIG", None)
        # Compiled bytecode, as an installed package has it: without it (this repository's
        # CI sets PYTHONDONTWRITEBYTECODE) every run would compile the sources it imports.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(directory / "pycache")
        variants = {"this": env}
        if baseline is not None:
            variants["baseline"] = {**env, "PYTHONPATH": str(baseline)}
        for variant in variants.values():  # the first call creates and migrates the log
            subprocess.run(
                [str(CROSSROADS), "logs", "--config", str(config)], env=variant, capture_output=True
            )
        for variant in variants.values():  # each command once, to compile its bytecode
            for args, terminal in _commands(config).values():
                _run([str(CROSSROADS), *args], variant, terminal)
        floor = [_timed([sys.executable, "-c", "pass"], env) for _ in range(runs)]
        rows: dict[str, Any] = {"(python, nothing imported)": {"this": _row(floor, 0)}}
        for name, (args, terminal) in _commands(config).items():
            times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
            for _ in range(runs):
                for variant, variant_env in variants.items():
                    times[variant].append(_timed([str(CROSSROADS), *args], variant_env, terminal))
            rows[name] = {
                variant: _row(times[variant], _modules(args, variants[variant], terminal))
                for variant in variants
            }
            if baseline is not None:
                rows[name]["ratio_median"] = round(
                    rows[name]["this"]["median_s"] / rows[name]["baseline"]["median_s"], 2
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="a src/ directory to compare with")
    parser.add_argument("--out", type=Path, default=RESULTS / "cli_startup.json")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = measure(args.runs, args.baseline)
    print(
        f"{'command':<28} {'min s':>7} {'median s':>9} {'cpu s':>7} {'modules':>8}"
        + (
            f" {'base median':>12} {'base cpu':>9} {'base mods':>10} {'ratio':>6}"
            if args.baseline
            else ""
        )
    )
    for name, row in rows.items():
        this = row["this"]
        line = (
            f"{name:<28} {this['min_s']:>7.3f} {this['median_s']:>9.3f} "
            f"{this['cpu_median_s']:>7.3f} {this['modules']:>8}"
        )
        if "baseline" in row:
            base = row["baseline"]
            line += (
                f" {base['median_s']:>12.3f} {base['cpu_median_s']:>9.3f} {base['modules']:>10}"
                f" {row['ratio_median']:>6.2f}"
            )
        print(line)
    print(f"load average (1 min) before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "runs": args.runs,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "baseline": str(args.baseline) if args.baseline else None,
                "commands": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
