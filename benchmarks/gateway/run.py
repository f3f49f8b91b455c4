"""What a gateway costs on the request path, side by side with a plain proxy and no proxy.

One target at a time (see `targets.py`) sits between the load and a mock OpenAI upstream
(`mock_upstream.py`, about 90k requests/s on one core, far above any gateway): the target is
pinned to CPU 0, the mock, `wrk` and this script to CPU 1, so a target's throughput is what
one core of it can do. Targets, in order: `direct` (the mock itself: the floor), `nginx` (a
keep-alive reverse proxy: the physical limit of a proxy here), `crossroads` as users run it
(auth on, SQLite request log on, usage and cost computed, one worker), the `litellm` proxy
(pinned, own virtualenv, auth by master key, retries and callbacks off, no database, one
worker) and Portkey's open-source gateway `portkey` (pinned, from npm, on node; no client
auth, routed by its `x-portkey-*` request headers). `--targets` picks a subset; `direct` is
always measured, as the others' overheads are taken against it.

Non-streaming load is `wrk` at concurrency 1, 16 and 64, each run repeated and reported as the
median: requests/s, latency p50/p99 and what the target adds over `direct` at the same
concurrency, CPU-seconds per 1,000 requests of the target's processes (utime + stime from
/proc) and their peak RSS (VmHWM). wrk's request timeout is 30 s, not its default 2 s, which a
gateway doing tens of requests/s exceeds at c64 just by queueing. Streaming is a small aiohttp
client: sequential streams of 20 chunks that the mock spaces `--chunk-gap-ms` apart; it
reports time to first chunk (and what the target adds to it) and inter-chunk gaps. Chunk
timing counts as preserved when the median gap stays near the mock's and almost no chunks
arrive back to back, which is what a buffering proxy produces. Both clients send each target's
own extra headers, and before any load each target must answer a few plain and streamed
requests with the mock's own reply (which also warms it up).

    make bench-gateway            # or: .venv/bin/python benchmarks/gateway/run.py
    .venv/bin/python benchmarks/gateway/run.py --targets litellm portkey --duration 3

It installs `wrk` and `nginx-light` with apt-get when they are missing, and matplotlib into the
running virtualenv when it is missing; matplotlib is a benchmark-only tool, not a dependency
of the package. LiteLLM and Portkey install themselves on first use into
`benchmarks/gateway/.tools/` (git-ignored; LiteLLM takes about two minutes and 750 MB) and are
reused afterwards. Results go to `benchmarks/results/gateway.json` and `gateway.png`; a
`--targets` subset writes `gateway-<targets>.json` and `.png` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from mock_upstream import CHUNKS
from targets import KEY, MODEL, TARGETS, Target, wait_ready

from crossroads.testing.server import free_port

HERE = Path(__file__).parent
RESULTS = HERE.parent / "results"
LOAD_CPU = 1
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "How fast is this gateway?"}]}
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
MOCK_REPLY = "The mock answers at once."  # the mock's completion text, as gateways pass it on


def ensure_tools() -> None:
    missing = [package for binary, package in (("wrk", "wrk"), ("nginx", "nginx-light"))
               if shutil.which(binary) is None]  # fmt: skip
    if missing:
        print(f"installing {' '.join(missing)}: apt-get install -y {' '.join(missing)}")
        if subprocess.run(["apt-get", "install", "-y", *missing]).returncode != 0:
            subprocess.run(["apt-get", "update"], check=True)
            subprocess.run(["apt-get", "install", "-y", *missing], check=True)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"installing matplotlib into {sys.prefix} (benchmark-only, not a dependency)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"])


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    total = 0
    for member in process_tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    """Peak resident memory of the process tree (`field="VmRSS"`: resident now)."""
    total = 0
    for member in process_tree(pid):
        status = Path(f"/proc/{member}/status").read_text()
        match = re.search(rf"{field}:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


def memory_growth(target: Target, script: Path, checkpoints: list[int]) -> dict[str, Any]:
    """Resident memory after each checkpoint's number of requests, on a fresh process.

    wrk runs at concurrency 16 in 4-second rounds until each count is passed; a leak shows
    as RSS that keeps climbing between checkpoints once caches and pools have filled.
    """
    served, rss = 0, {}
    for checkpoint in checkpoints:
        while served < checkpoint:
            output = subprocess.run(
                ["taskset", "-c", str(LOAD_CPU), "wrk", "-t2", "-c16", "-d4s", "--timeout",
                 "30s", "-s", str(script), target.url],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            served += int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
        rss[checkpoint] = peak_rss_mib(target.pid, "VmRSS")
        print(f"  after {served:>7} requests: RSS {rss[checkpoint]:.1f} MiB")
    first, last = rss[checkpoints[0]], rss[checkpoints[-1]]
    return {"rss_mib": rss, "growth": last / first - 1}


def write_script(path: Path, headers: dict[str, str]) -> Path:
    """wrk's Lua script: POST the chat body with the common and the target's own headers."""
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
        + "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items())
    )
    return path


def wrk(target: Target, script: Path, concurrency: int, duration: int) -> dict[str, float]:
    threads = 1 if concurrency == 1 else 2
    before = cpu_seconds(target.pid)
    output = subprocess.run(
        ["taskset", "-c", str(LOAD_CPU), "wrk", f"-t{threads}", f"-c{concurrency}",
         f"-d{duration}s", "--timeout", "30s", "--latency", "-s", str(script), target.url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cpu = cpu_seconds(target.pid) - before
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"{target.name}: errors under load\n{output}")
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    if requests == 0:
        raise RuntimeError(f"{target.name}: no request completed under load\n{output}")
    latency = {
        q: float(value) * UNITS[unit]
        for q, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    }
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50_ms": latency["50"],
        "p99_ms": latency["99"],
        "cpu_s_per_1k": cpu / requests * 1000,
    }


async def one_stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[float, list[float]]:
    body = {**BODY, "stream": True}
    arrivals: list[float] = []
    started = time.perf_counter()
    async with session.post(url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.content:
            if line.startswith(b"data:") and b'"content"' in line:
                arrivals.append(time.perf_counter())
    if len(arrivals) < CHUNKS:
        raise RuntimeError(f"{url}: {len(arrivals)} content chunks, expected {CHUNKS}")
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]
    return (arrivals[0] - started) * 1000, gaps


async def streams(
    url: str, headers: dict[str, str], count: int, warmup: int, gap_ms: float
) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        for _ in range(warmup):
            await one_stream(session, url, headers)
        ttfts, gaps = [], []
        for _ in range(count):
            ttft, stream_gaps = await one_stream(session, url, headers)
            ttfts.append(ttft)
            gaps.extend(stream_gaps)
    back_to_back = sum(gap < gap_ms / 5 for gap in gaps) / len(gaps)
    median_gap = statistics.median(gaps)
    return {
        "ttft_p50_ms": statistics.median(ttfts),
        "gap_p50_ms": median_gap,
        "gap_p99_ms": percentile(gaps, 99),
        "back_to_back_share": back_to_back,
        "timing_preserved": abs(median_gap - gap_ms) < gap_ms * 0.3 and back_to_back < 0.02,
    }


async def check(url: str, headers: dict[str, str], count: int) -> None:
    """Sequential requests that must get the mock's own answer: a gateway that fails or
    answers by itself stops the run here, and a cold one (lazy imports, first upstream
    connections: LiteLLM's first request takes over a second) is warm before `wrk` starts."""
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.post(url, json=BODY, headers=headers) as response:
                text = await response.text()
                if response.status != 200 or MOCK_REPLY not in text:
                    raise RuntimeError(f"{url}: {response.status}, not the mock's reply: {text}")
            await one_stream(session, url, headers)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(target: Target, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    headers = {**HEADERS, **target.headers}
    script = write_script(workdir / f"{target.name}.lua", headers)
    asyncio.run(check(target.url, headers, 5))
    wrk(target, script, 16, args.warmup)
    result: dict[str, Any] = {"load": {}}
    for concurrency in args.concurrency:
        runs = [wrk(target, script, concurrency, args.duration) for _ in range(args.repeats)]
        result["load"][concurrency] = {
            key: statistics.median(run[key] for run in runs) for key in runs[0]
        }
        row = result["load"][concurrency]
        print(f"  c{concurrency:<3} {row['rps']:>9.0f} req/s  p50 {row['p50_ms']:.3f} ms  "
              f"p99 {row['p99_ms']:.3f} ms  {row['cpu_s_per_1k']:.4f} CPU-s/1k")  # fmt: skip
    result["stream"] = asyncio.run(streams(target.url, headers, args.streams, 3, args.chunk_gap_ms))
    result["peak_rss_mib"] = peak_rss_mib(target.pid)
    return result


def measure_memory(target: Target, workdir: Path, checkpoints: list[int]) -> dict[str, Any]:
    headers = {**HEADERS, **target.headers}
    script = write_script(workdir / f"{target.name}-memory.lua", headers)
    asyncio.run(check(target.url, headers, 5))
    return memory_growth(target, script, checkpoints)


def verdict(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Crossroads against the issue's targets, as ratios taken from this same run."""
    ours = results.get("crossroads")
    if ours is None:
        return {}
    top = max(ours["load"])
    out: dict[str, Any] = {
        "cpu_us_per_request": ours["load"][top]["cpu_s_per_1k"] * 1000,
        "added_p50_ms_c1": ours["load"].get(1, {}).get("added_p50_ms"),
        "added_p99_ms_c1": ours["load"].get(1, {}).get("added_p99_ms"),
        "ttft_added_ms": ours["stream"]["ttft_added_ms"],
        "timing_preserved": ours["stream"]["timing_preserved"],
    }
    for other in ("portkey", "litellm", "nginx"):
        if other in results:
            theirs = results[other]["load"][top]["rps"]
            out[f"rps_c{top}_vs_{other}"] = ours["load"][top]["rps"] / theirs
    if "memory" in ours:
        out["rss_growth_10k_to_100k"] = ours["memory"]["growth"]
    return out


def add_overheads(results: dict[str, dict[str, Any]]) -> None:
    direct = results["direct"]
    for result in results.values():
        for concurrency, row in result["load"].items():
            base = direct["load"][concurrency]
            row["added_p50_ms"] = row["p50_ms"] - base["p50_ms"]
            row["added_p99_ms"] = row["p99_ms"] - base["p99_ms"]
        stream = result["stream"]
        stream["ttft_added_ms"] = stream["ttft_p50_ms"] - direct["stream"]["ttft_p50_ms"]


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = (f"{'target':<12}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'+p50 ms':>9}{'+p99 ms':>9}{'CPU-s/1k':>10}{'RSS MiB':>9}")  # fmt: skip
    print("\n" + header + "\n" + "-" * len(header))
    for name, result in results.items():
        for concurrency, row in result["load"].items():
            print(f"{name:<12}{concurrency:>5}{row['rps']:>10.0f}{row['p50_ms']:>9.3f}"
                  f"{row['p99_ms']:>9.3f}{row['added_p50_ms']:>9.3f}{row['added_p99_ms']:>9.3f}"
                  f"{row['cpu_s_per_1k']:>10.4f}{result['peak_rss_mib']:>9.1f}")  # fmt: skip
    header = (f"{'streaming':<12}{'TTFT ms':>9}{'+TTFT ms':>10}{'gap p50':>9}{'gap p99':>9}"
              f"{'back-to-back':>14}{'preserved':>11}")  # fmt: skip
    print("\n" + header + "\n" + "-" * len(header))
    for name, result in results.items():
        s = result["stream"]
        preserved = "yes" if s["timing_preserved"] else "NO"
        print(f"{name:<12}{s['ttft_p50_ms']:>9.3f}{s['ttft_added_ms']:>10.3f}"
              f"{s['gap_p50_ms']:>9.3f}{s['gap_p99_ms']:>9.3f}"
              f"{s['back_to_back_share']:>14.1%}{preserved:>11}")  # fmt: skip


def draw(results: dict[str, dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not importable: no chart")
        return
    names = list(results)
    concurrencies = list(results[names[0]]["load"])
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [c + (i - (len(names) - 1) / 2) * width for c in range(len(concurrencies))]
        load = results[name]["load"]
        colour = f"C{i}"  # one colour per target in both panels
        throughput.bar(xs, [load[c]["rps"] for c in concurrencies], width, label=name, color=colour)
        if name != "direct":
            added = [load[c]["added_p50_ms"] for c in concurrencies]
            latency.bar(xs, added, width, label=name, color=colour)
    latency.set_yscale("symlog", linthresh=1)  # 0.1 ms beside 300 ms stays readable
    for axis, title in ((throughput, "requests/s (log)"), (latency, "added p50 latency, ms")):
        axis.set_xticks(range(len(concurrencies)), [f"c{c}" for c in concurrencies])
        axis.set_title(title)
        axis.legend()
    throughput.set_yscale("log")
    figure.suptitle("Gateway on one pinned core, mock upstream")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk before measuring")
    parser.add_argument("--repeats", type=int, default=3, help="runs per point; medians kept")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--streams", type=int, default=30, help="measured streams per target")
    parser.add_argument("--chunk-gap-ms", type=float, default=5.0)
    parser.add_argument("--memory-targets", nargs="*", default=["crossroads"],
                        help="targets whose RSS is read after 10k and 100k requests, each on "
                        "a fresh process (slow for slow gateways)")  # fmt: skip
    parser.add_argument("--memory-checkpoints", type=int, nargs="+", default=[10_000, 100_000])
    names = [t.name for t in TARGETS]
    parser.add_argument("--targets", nargs="+", choices=names, default=names,
                        help="targets to measure (direct always runs: the baseline)")  # fmt: skip
    args = parser.parse_args()
    ensure_tools()

    workdir = Path(tempfile.mkdtemp(prefix="crossroads-bench-gateway-"))
    subprocess.run(["taskset", "-p", "-c", str(LOAD_CPU), str(os.getpid())],
                   check=True, capture_output=True)  # fmt: skip
    upstream_port = free_port()
    mock = subprocess.Popen(
        ["taskset", "-c", str(LOAD_CPU), sys.executable, str(HERE / "mock_upstream.py"),
         "--port", str(upstream_port), "--chunk-gap-ms", str(args.chunk_gap_ms)],
    )  # fmt: skip
    results: dict[str, dict[str, Any]] = {}
    try:
        wait_ready(upstream_port, "/v1/models", mock)
        for target_class in TARGETS:
            if target_class.name not in args.targets and target_class.name != "direct":
                continue
            target = target_class(workdir, upstream_port, mock.pid)
            print(f"{target.name}:")
            target.start()
            try:
                results[target.name] = measure(target, workdir, args)
            finally:
                target.stop()
            if target.name in args.memory_targets:
                print(f"{target.name} (memory, fresh process):")
                target.start()
                try:
                    memory = measure_memory(target, workdir, args.memory_checkpoints)
                    results[target.name]["memory"] = memory
                finally:
                    target.stop()
    finally:
        mock.terminate()
        mock.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)

    add_overheads(results)
    print_table(results)
    summary = verdict(results)
    if summary:
        print("\ncrossroads against the targets (same run):")
        for key, value in summary.items():
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            print(f"  {key:<28} {shown}")
    RESULTS.mkdir(exist_ok=True)
    # A subset run does not replace the full run's results (the README's table).
    stem = "gateway" if set(args.targets) == set(names) else "-".join(["gateway", *args.targets])
    out = RESULTS / f"{stem}.json"
    settings = {k: v for k, v in vars(args).items() if k != "targets"}
    settings["targets"] = list(args.targets)
    document = {"settings": settings, "targets": results, "crossroads_vs_targets": summary}
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {out}")
    draw(results, RESULTS / f"{stem}.png")


if __name__ == "__main__":
    main()
