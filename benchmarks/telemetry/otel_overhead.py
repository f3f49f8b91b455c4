"""What OpenTelemetry costs through the gateway, and that it costs nothing when off.

Processes, as in production: the fake OpenAI upstream, three gateways (`crossroads serve`)
and this client, which also runs a loopback OTLP/HTTP receiver (crossroads.testing) that
the traced gateway exports to for real. The *baseline* gateway runs main's code from before
the telemetry hooks (default: the commit named below, its `src` extracted with `git archive`
into a temporary directory and put first on PYTHONPATH); *off* and *on* run this
checkout, `[telemetry]` off and on (every request sampled, exported each second).

Latency: requests alternate between the three one by one at concurrency 1; p50/p99.
Throughput: rounds of `--seconds` at `--concurrency` connections, alternating; requests/s,
and CPU time of the gateway process per request (from /proc), whose on-minus-off
difference is the cost of a traced request.

    python benchmarks/telemetry/otel_overhead.py --requests 600 --rounds 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from crossroads.testing.otlp_receiver import OtlpReceiver
from crossroads.testing.server import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from overhead import cpu_seconds, percentile, wait_ready  # benchmarks/overhead.py

KEY = "sk-bench-0123456789"
BASELINE = "cfcde4d"  # main before the telemetry hooks
RESULTS = Path(__file__).parents[1] / "results"
REPO = Path(__file__).parents[2]
PROMPT = "Summarise the incident report in three bullet points. " * 8


def post(connection: http.client.HTTPConnection) -> float:
    body = json.dumps(
        {"model": "fixed", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
    return (time.perf_counter() - started) * 1000


def config(workdir: Path, name: str, port: int, upstream: int, telemetry: str | None) -> Path:
    text = (
        f"[server]\nport = {port}\n\n"
        f'[storage]\ndatabase_url = "sqlite+aiosqlite:///{workdir / (name + ".db")}"\n\n'
        f'[[keys]]\nname = "bench"\nkey = "{KEY}"\n\n'
        f'[providers.fake]\nbase_url = "http://127.0.0.1:{upstream}/v1"\n\n'
        '[models.fixed]\ndeployments = [{ provider = "fake", model = "fixed", '
        "price = { input = 1.0, output = 2.0 } }]\n"
    )
    if telemetry:
        text += f"\n[telemetry]\n{telemetry}\n"
    path = workdir / f"{name}.toml"
    path.write_text(text)
    return path


def throughput(port: int, seconds: float, concurrency: int) -> int:
    done = [0] * concurrency
    stop = time.monotonic() + seconds

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            post(connection)
            done[slot] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600, help="per latency series")
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="crossroads-otel-bench-"))
    baseline_tree = workdir / "baseline"
    baseline_tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", args.baseline, "src"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(baseline_tree)], input=archive.stdout, check=True)
    receiver = OtlpReceiver()
    with receiver.running():
        upstream = free_port()
        ports = {"baseline (main)": free_port(), "otel off": free_port(), "otel on": free_port()}
        on = f'enabled = true\nendpoint = "{receiver.url}"\nexport_interval = 1.0'
        configs = {
            "baseline (main)": config(
                workdir, "baseline", ports["baseline (main)"], upstream, None
            ),
            "otel off": config(workdir, "off", ports["otel off"], upstream, None),
            "otel on": config(workdir, "on", ports["otel on"], upstream, on),
        }
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        python = sys.executable
        fake = subprocess.Popen(
            [
                python,
                "-m",
                "crossroads.testing.fake_openai",
                "--port",
                str(upstream),
                "--no-record",
            ],
            **quiet,
        )
        gateways: dict[str, subprocess.Popen[bytes]] = {}
        for name, path in configs.items():
            env = dict(os.environ)
            if name.startswith("baseline"):
                env["PYTHONPATH"] = str(baseline_tree / "src")
            gateways[name] = subprocess.Popen(
                [python, "-m", "crossroads", "serve", "--config", str(path)], env=env, **quiet
            )
        try:
            wait_ready(upstream, "/v1/models", timeout=90)
            for port in ports.values():
                wait_ready(port, "/ready", timeout=90)
            connections = {n: http.client.HTTPConnection("127.0.0.1", p) for n, p in ports.items()}
            for _ in range(50):
                for name in ports:
                    post(connections[name])
            latencies: dict[str, list[float]] = {name: [] for name in ports}
            for _ in range(args.requests):
                for name in ports:
                    latencies[name].append(post(connections[name]))
            rates: dict[str, list[float]] = {name: [] for name in ports}
            cpu: dict[str, list[float]] = {name: [] for name in ports}
            names = list(ports)
            for round_ in range(args.rounds):
                # Rotate who goes first; after the traced gateway's turn, let its exporter
                # finish what it queued, so it does not take CPU from the next one's round.
                for name in names[round_ % 3 :] + names[: round_ % 3]:
                    port = ports[name]
                    pid = gateways[name].pid
                    before, started = cpu_seconds(pid), time.monotonic()
                    count = throughput(port, args.seconds, args.concurrency)
                    elapsed = time.monotonic() - started
                    rates[name].append(count / elapsed)
                    if name == "otel on":
                        time.sleep(2.5)
                    cpu[name].append((cpu_seconds(pid) - before) / count * 1e6)
            receiver.wait_for(lambda r: len(r.spans) > 0, timeout=10)
            spans = len(receiver.spans)
        finally:
            for process in [fake, *gateways.values()]:
                process.send_signal(signal.SIGINT)
            for process in [fake, *gateways.values()]:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
    rows = {
        name: {
            "p50_ms": round(statistics.median(latencies[name]), 3),
            "p99_ms": round(percentile(latencies[name], 99), 3),
            "rps_median": round(statistics.median(rates[name]), 1),
            "rps_rounds": [round(r, 1) for r in rates[name]],
            "cpu_us_per_request": round(statistics.median(cpu[name]), 1),
        }
        for name in ports
    }
    off, on, base = rows["otel off"], rows["otel on"], rows["baseline (main)"]
    summary = {
        "throughput_off_vs_main": round(off["rps_median"] / base["rps_median"], 3),
        "throughput_on_vs_off": round(on["rps_median"] / off["rps_median"], 3),
        "p50_added_on_ms": round(on["p50_ms"] - off["p50_ms"], 3),
        "cpu_us_per_request_added_on": round(
            on["cpu_us_per_request"] - off["cpu_us_per_request"], 1
        ),
        "spans_received": spans,
    }
    print(f"{'gateway':<16} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'CPU µs/req':>11}")
    for name, r in rows.items():
        print(
            f"{name:<16} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['rps_median']:>8} "
            f"{r['cpu_us_per_request']:>11}"
        )
    for key, value in summary.items():
        print(f"{key}: {value}")
    RESULTS.mkdir(exist_ok=True)
    output = {
        "baseline": args.baseline,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "requests": args.requests,
        "cpus": os.cpu_count(),
        "gateways": rows,
        "summary": summary,
    }
    (RESULTS / "telemetry_overhead.json").write_text(json.dumps(output, indent=2) + "\n")


if __name__ == "__main__":
    main()
