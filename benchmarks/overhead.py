"""Added latency of the gateway over calling the upstream directly (non-streaming, c=1).

Three processes, as in production: the fake OpenAI upstream, the gateway (`crossroads
serve`, auth on, request log to SQLite on) and this client. The client alternates direct
and through-gateway requests over keep-alive connections, so both series see the same
machine state; the difference of the percentiles is the gateway's overhead. When `taskset`
is available the gateway is pinned to CPU 0 and the upstream and client to CPU 1.

    python benchmarks/overhead.py --requests 2000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crossroads.testing.server import free_port

KEY = "sk-bench-0123456789"
BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": "How fast is this gateway?"}]}
).encode()
RESULTS = Path(__file__).parent / "results"


def pinned(cpu: int, command: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu), *command]
    return command


def wait_ready(port: int, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing answered on port {port}")


def timed_post(connection: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    connection.request("POST", path, body=BODY, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
    return elapsed * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per target")
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()

    upstream_port, gateway_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="crossroads-bench-"))
    config = workdir / "crossroads.toml"
    config.write_text(
        f"""
[server]
port = {gateway_port}
[storage]
database_url = "sqlite+aiosqlite:///{workdir / "log.db"}"
[[keys]]
name = "bench"
key = "{KEY}"
[providers.fake]
base_url = "http://127.0.0.1:{upstream_port}/v1"
[models.bench]
deployments = [{{ provider = "fake", model = "fixed", price = {{ input = 1.0, output = 2.0 }} }}]
"""
    )
    python = sys.executable
    processes = [
        subprocess.Popen(
            pinned(
                1,
                [
                    python,
                    "-m",
                    "crossroads.testing.fake_openai",
                    "--port",
                    str(upstream_port),
                    "--no-record",
                ],
            ),
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            pinned(0, [python, "-m", "crossroads", "serve", "--config", str(config)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    if shutil.which("taskset"):
        subprocess.run(
            ["taskset", "-p", "-c", "1", str(os.getpid())], check=False, capture_output=True
        )
    try:
        wait_ready(upstream_port, "/v1/models")
        wait_ready(gateway_port, "/ready")
        direct = http.client.HTTPConnection("127.0.0.1", upstream_port)
        gateway = http.client.HTTPConnection("127.0.0.1", gateway_port)
        plain = {"Content-Type": "application/json", "x-fake-behaviour": "fixed"}
        authed = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        for _ in range(args.warmup):
            timed_post(direct, "/v1/chat/completions", plain)
            timed_post(gateway, "/v1/chat/completions", authed)
        direct_ms: list[float] = []
        gateway_ms: list[float] = []
        for _ in range(args.requests):
            direct_ms.append(timed_post(direct, "/v1/chat/completions", plain))
            gateway_ms.append(timed_post(gateway, "/v1/chat/completions", authed))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    result: dict[str, Any] = {"requests": args.requests, "concurrency": 1, "series": {}}
    rows = []
    for name, values in (("direct to upstream", direct_ms), ("through gateway", gateway_ms)):
        stats = {
            "p50_ms": round(percentile(values, 50), 3),
            "p99_ms": round(percentile(values, 99), 3),
            "mean_ms": round(statistics.fmean(values), 3),
        }
        result["series"][name] = stats
        rows.append((name, stats["p50_ms"], stats["p99_ms"], stats["mean_ms"]))
    added_p50 = round(percentile(gateway_ms, 50) - percentile(direct_ms, 50), 3)
    added_p99 = round(percentile(gateway_ms, 99) - percentile(direct_ms, 99), 3)
    result["added"] = {"p50_ms": added_p50, "p99_ms": added_p99}
    rows.append(("added by gateway", added_p50, added_p99, None))

    print(f"{'target':<22}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, p50, p99, mean in rows:
        print(f"{name:<22}{p50:>10.3f}{p99:>10.3f}{'' if mean is None else f'{mean:>10.3f}'}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "overhead.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
