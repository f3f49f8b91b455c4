"""What guardrails cost through the gateway, and what the stage seam costs when they are off.

Processes, as in production: the fake OpenAI upstream, gateways (`crossroads serve`) and
this client. The *baseline* gateway runs the code of a git revision from before the pipeline
had stages (default: the commit named below, checked out into a temporary worktree and put
first on PYTHONPATH); the *current* gateway runs this checkout. The current gateway has one
model per guardrail setting (`off`, `pii`, `injection`, `policy`, `all`), all on the same
upstream, so every series is measured in the same run on the same machine state.

Latency: requests alternate between the series one by one at concurrency 1 (1 KB prompt);
the p50/p99 differences are what each setting adds.

Throughput, guardrails off: rounds of `--seconds` at `--concurrency` parallel connections
to model `off`, alternating between three kinds of gateway process: the *baseline*; the
current code with nothing configured (*all off*, the same config as the baseline: what the
seam must leave unchanged); and the latency gateway above (*configured elsewhere*: the
other models have guardrails, so their engines are loaded and the stage is selected for
every request). Each kind runs as `--processes` separate processes: one Python process can
run a few percent faster or slower than another running the same code (hash seeds, memory
layout), as much as the difference measured, so each kind's figure is its median over all
its processes' rounds. Each round reports requests per second and the gateway process's CPU
time per request (user + system, from /proc); the ratios current/baseline are the figures.
With `wrk` installed (the default `--load wrk`) every gateway is pinned to CPU 0 and the
upstream and wrk to CPU 1, as in benchmarks/gateway, so requests per second are the
gateway's own; with `--load python` (no wrk) a threaded Python client shares the cores with
them and its own cost moves requests per second, so CPU per request is then the figure to
read.

    python benchmarks/guardrails/gateway_overhead.py --requests 400
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from crossroads.testing.server import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from overhead import cpu_seconds, percentile, pinned, wait_ready  # benchmarks/overhead.py

KEY = "sk-bench-0123456789"
# The last commit before the stage seam: "today" for the issue that asked for it.
BASELINE = "0b29155"
RESULTS = Path(__file__).parents[1] / "results"
REPO = Path(__file__).parents[2]

# A little over 1 KB of ordinary prose with one email address and one phone number in it.
PROMPT = (
    "Please summarise the following support ticket for the on-call engineer. The customer "
    "reports that since the upgrade on Tuesday their nightly export job fails after roughly "
    "forty minutes with a timeout from the storage layer. They run three replicas behind a "
    "load balancer, the job writes about two million rows, and retries make it worse because "
    "each retry starts from the beginning. They have already doubled the connection pool and "
    "moved the job to a quieter hour without any change. Logs show slow queries on the "
    "events table and a lock wait on the audit table just before the failure. They would "
    "like to know whether the new version changed the batch size or the transaction "
    "isolation level, and whether there is a setting to make the export resumable. Contact: "
    "jane.doe@example.com or +1 415 555 0132. Please keep the answer short and list the next "
    "steps in order, with who should own each one and how long it should take. Mention any "
    "risk to the data already exported and whether a restore from backup could be needed."
)
MODELS = {
    "off": None,
    "pii": '{ input = [{ check = "pii", action = "redact" }] }',
    "injection": '{ input = [{ check = "injection", action = "block" }] }',
    "policy": '{ input = [{ check = "policy", action = "block", deny = ["drop table"] }] }',
    "all": (
        '{ input = [{ check = "pii", action = "mask" }, { check = "injection", action = '
        '"block" }, { check = "policy", action = "block", deny = ["drop table"] }], '
        'output = [{ check = "pii", action = "redact" }] }'
    ),
}


def post(connection: http.client.HTTPConnection, model: str) -> float:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"{model}: HTTP {response.status}: {payload[:300]!r}")
    return elapsed * 1000


def config_text(workdir: Path, name: str, port: int, upstream: int, models: dict[str, Any]) -> Path:
    lines = [
        f"[server]\nport = {port}",
        f'[storage]\ndatabase_url = "sqlite+aiosqlite:///{workdir / (name + ".db")}"',
        f'[[keys]]\nname = "bench"\nkey = "{KEY}"',
        f'[providers.fake]\nbase_url = "http://127.0.0.1:{upstream}/v1"',
    ]
    for model, guardrails in models.items():
        lines.append(
            f"[models.{model}]\n"
            'deployments = [{ provider = "fake", model = "fixed", price = '
            "{ input = 1.0, output = 2.0 } }]"
            + (f"\nguardrails = {guardrails}" if guardrails else "")
        )
    path = workdir / f"{name}.toml"
    path.write_text("\n\n".join(lines) + "\n")
    return path


GATEWAY_CPU, LOAD_CPU = 0, 1
THROUGHPUT_KINDS = ("baseline", "all off", "configured elsewhere")


def wrk_throughput(
    port: int, pid: int, model: str, seconds: float, concurrency: int, script: Path
) -> tuple[float, float]:
    """`throughput` measured by wrk (on the load CPU) with the request in `script`."""
    cpu_before = cpu_seconds(pid)
    output = subprocess.run(
        pinned(LOAD_CPU, ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout",
               "30s", "-s", str(script), f"http://127.0.0.1:{port}/v1/chat/completions"]),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"errors under load\n{output}")
    found = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", output)
    if found is None or not int(found.group(1)):
        raise RuntimeError(f"no request completed under load\n{output}")
    requests = int(found.group(1))
    elapsed = float(found.group(2)) / (1000 if found.group(3) == "ms" else 1)
    return requests / elapsed, (cpu_seconds(pid) - cpu_before) / requests * 1e6


def wrk_script(path: Path, model: str) -> Path:
    """wrk's Lua script: the benchmark's chat request to `model`."""
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
    )
    return path


def throughput(
    port: int, pid: int, model: str, seconds: float, concurrency: int
) -> tuple[float, float]:
    """Requests per second over `seconds` with `concurrency` keep-alive connections, and
    the gateway's (process `pid`) CPU microseconds per request."""
    done = [0] * concurrency
    stop = time.monotonic() + seconds

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            post(connection, model)
            done[slot] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    cpu_before = cpu_seconds(pid)
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    requests = sum(done)
    return requests / elapsed, (cpu_seconds(pid) - cpu_before) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per latency series")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--baseline", default=BASELINE, help="git revision before the seam")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--processes", type=int, default=2, help="gateway processes of each kind (throughput)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--load",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") and shutil.which("taskset") else "python",
        help="what drives the throughput rounds (default: wrk when installed)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="crossroads-guard-bench-"))
    baseline_tree = workdir / "baseline"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline_tree), args.baseline],
        check=True,
        capture_output=True,
    )
    upstream, current_port = free_port(), free_port()
    current_config = config_text(workdir, "current", current_port, upstream, MODELS)
    python = sys.executable
    # With wrk, the gateways get CPU 0 and everything else CPU 1 (see the docstring).
    wrk = args.load == "wrk"

    def gateway_cpu(command: list[str]) -> list[str]:
        return pinned(GATEWAY_CPU, command) if wrk else command

    def load_cpu(command: list[str]) -> list[str]:
        return pinned(LOAD_CPU, command) if wrk else command

    baseline_env = {**os.environ, "PYTHONPATH": str(baseline_tree / "src")}
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    fake = [python, "-m", "crossroads.testing.fake_openai", "--port", str(upstream), "--no-record"]
    processes = [subprocess.Popen(load_cpu(fake), **quiet)]

    def gateway(config: Path, env: dict[str, str] | None = None) -> int:
        command = [python, "-m", "crossroads", "serve", "--config", str(config)]
        processes.append(subprocess.Popen(gateway_cpu(command), env=env, **quiet))
        return processes[-1].pid

    # Every gateway process of each kind, as (port, pid); the first "configured elsewhere"
    # one also serves the latency series.
    kinds: dict[str, list[tuple[int, int]]] = {k: [] for k in THROUGHPUT_KINDS}
    kinds["configured elsewhere"].append((current_port, gateway(current_config)))
    for i in range(args.processes):
        port = free_port()
        config = config_text(workdir, f"baseline{i}", port, upstream, {"off": None})
        kinds["baseline"].append((port, gateway(config, baseline_env)))
        port = free_port()
        config = config_text(workdir, f"bare{i}", port, upstream, {"off": None})
        kinds["all off"].append((port, gateway(config)))
        if i:
            port = free_port()
            config = config_text(workdir, f"current{i}", port, upstream, MODELS)
            kinds["configured elsewhere"].append((port, gateway(config)))
    try:
        wait_ready(upstream, "/v1/models", timeout=90)
        for port, _ in (p for ports in kinds.values() for p in ports):
            wait_ready(port, "/ready", timeout=120)
        base_port = kinds["baseline"][0][0]
        series: dict[str, tuple[int, str]] = {"baseline (before stages)": (base_port, "off")}
        series |= {f"current, guardrails {m}": (current_port, m) for m in MODELS}
        connections = {
            name: http.client.HTTPConnection("127.0.0.1", port)
            for name, (port, _) in series.items()
        }
        for _ in range(args.warmup):
            for name, (_, model) in series.items():
                post(connections[name], model)
        latency: dict[str, list[float]] = {name: [] for name in series}
        for _ in range(args.requests):
            for name, (_, model) in series.items():
                latency[name].append(post(connections[name], model))
        for port, _ in kinds["configured elsewhere"][1:]:
            # As loaded as the first: every guardrail engine has run.
            connection = http.client.HTTPConnection("127.0.0.1", port)
            for _ in range(args.warmup):
                for model in MODELS:
                    post(connection, model)
        rates: dict[str, list[float]] = {kind: [] for kind in kinds}
        cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
        script = wrk_script(workdir / "off.lua", "off")
        # One process of each kind in turn, so every kind sees the same drift in machine state.
        order = [
            (kind, gateways[i]) for i in range(args.processes) for kind, gateways in kinds.items()
        ]
        for round_ in range(args.rounds):
            for kind, (port, pid) in order if round_ % 2 == 0 else reversed(order):
                if wrk:
                    rate, cpu_us = wrk_throughput(
                        port, pid, "off", args.seconds, args.concurrency, script
                    )
                else:
                    rate, cpu_us = throughput(port, pid, "off", args.seconds, args.concurrency)
                rates[kind].append(rate)
                cpu[kind].append(cpu_us)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline_tree)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)

    off = latency["current, guardrails off"]
    result: dict[str, Any] = {
        "baseline": args.baseline,
        "prompt_bytes": len(PROMPT.encode()),
        "requests": args.requests,
        "latency": {},
        "throughput": {},
    }
    print(f"{'series':<30}{'p50 ms':>9}{'p99 ms':>9}{'+p50 vs off':>13}")
    for name, values in latency.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        added = p50 - percentile(off, 50)
        result["latency"][name] = {
            "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3),
            "added_p50_vs_off_ms": round(added, 3),
        }
        print(f"{name:<30}{p50:>9.3f}{p99:>9.3f}{added:>13.3f}")
    base_rps = statistics.median(rates["baseline"])
    base_cpu = statistics.median(cpu["baseline"])
    result["throughput"] = {
        "load": args.load,
        "concurrency": args.concurrency,
        "processes_per_kind": args.processes,
        "seconds_per_round": args.seconds,
        "rounds_rps": rates,
        "rounds_cpu_us_per_request": cpu,
    }
    print(
        f"throughput, model off ({args.load}, c={args.concurrency}, {args.processes} processes "
        f"x {args.rounds} rounds of {args.seconds:g} s per kind; medians)"
    )
    print(f"{'gateway':<24}{'rps':>9}{'ratio':>8}{'CPU us/req':>12}{'ratio':>8}")
    for kind in kinds:
        kind_rps, kind_cpu = statistics.median(rates[kind]), statistics.median(cpu[kind])
        result["throughput"][kind] = {
            "rps": round(kind_rps, 1),
            "rps_ratio": round(kind_rps / base_rps, 3),
            "cpu_us_per_request": round(kind_cpu, 1),
            "cpu_ratio": round(kind_cpu / base_cpu, 3),
        }
        print(
            f"{kind:<24}{kind_rps:>9.1f}{kind_rps / base_rps:>8.3f}"
            f"{kind_cpu:>12.0f}{kind_cpu / base_cpu:>8.3f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "guardrails_gateway.json"
    # The machine's load when the run ended: other work on a shared machine inflates every
    # absolute latency, so a figure is only read next to it (ratios from one run less so).
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
