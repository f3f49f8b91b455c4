"""What clients see when upstreams misbehave: success rate, added latency, usage counted once.

One model, `chaos`, has three deployments on the fake OpenAI upstream, each its own
provider so the log names them: `flaky` answers 503 to 30% of requests, `dropper` cuts
10% of its answers after 5 of 20 content chunks (a stream dies mid-answer; a non-streamed
request gets its connection closed), `healthy` never fails. The fake draws the faults from
its own seeded generator (`rate=`, `--seed`); the gateway's own draws (weighted order,
backoff jitter) are not seeded, so runs differ slightly.

Each strategy runs twice with a fresh upstream, gateway and SQLite log: once with these
faults and once with three healthy deployments, the baseline for latency. `weighted` (equal
weights) sends a third of first attempts to each deployment, so every fault is exercised;
`fallback` tries flaky → dropper → healthy in that order. `[routing] retries = 1` with a
10 ms backoff keeps the run short. The circuit breaker's `consecutive_failures` is raised
from 5 to 20 (`--breaker-failures`): at 30% random errors a run of 5 failures in a row
comes every ~600 attempts, and a run of a few seconds then spends the rest of its time
with flaky's circuit open (30 s cooldown), measuring the breaker rather than retries and
failover; `--breaker-failures 5` shows that. The per-deployment table counts attempts,
failed attempts and exclusions (open circuit at planning) from the log.

The client sends `--requests` requests per run with `--concurrency` in flight, alternating
non-streamed and streamed (`stream_options.include_usage`). A stream fails *before its
first byte* when it gets an HTTP error status or an error before any content (the gateway
should fail those over unseen: target 0), *after* it when an error event or a cut follows
content (unavoidable: about 10% of the streams dropper serves). The gateway is then
stopped with SIGTERM, which flushes its log, and the log is reconciled with what clients
received: one record per request, as many successes, and the same total tokens and cost —
no request counted twice however many attempts it took.

Latency is that of successful requests, from sending to the last byte, as the client saw
it. With 8 in flight on 2 cores the machine is saturated and p50 is mostly queueing: a
request asleep in backoff or a stream cut short leaves CPU to the others, so the chaos
run's p50 may come out below the healthy run's. The `retried` series (successes that took
more than one attempt, against all of the healthy run) is the direct price of a retry or a
failover. The client uses aiohttp rather than httpx: httpx spends about three times the
CPU per streamed request, enough to make the client, not the gateway, the bottleneck.

    python benchmarks/chaos.py [--requests 2000] [--concurrency 8] [--strategies weighted,fallback]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from crossroads.testing.server import free_port
from overhead import percentile, pinned, wait_ready

KEY = "sk-bench-0123456789"
RESULTS = Path(__file__).parent / "results"
ANSWER = "fixed+chunks=20"
ERROR_RATE, DROP_RATE = 30, 10
CHAOS = {
    "flaky": f"{ANSWER}+error=503+rate={ERROR_RATE}",
    "dropper": f"{ANSWER}+drop_after=5+rate={DROP_RATE}",
    "healthy": ANSWER,
}
HEALTHY = {"healthy-1": ANSWER, "healthy-2": ANSWER, "healthy-3": ANSWER}
WARMUP_MODEL = "warmup"  # served by its own provider; left out of every count


@dataclass(slots=True)
class Outcome:
    """One request as its client saw it."""

    streamed: bool
    ok: bool
    latency_ms: float
    after_content: bool = False  # a failed stream had already shown content
    usage: dict[str, Any] | None = None
    attempts: list[dict[str, Any]] | None = None  # `routing.attempts`, when present
    error: str | None = None


def write_config(
    workdir: Path,
    port: int,
    upstream: int,
    deployments: dict[str, str],
    strategy: str,
    breaker_failures: int,
) -> Path:
    base_url = f"http://127.0.0.1:{upstream}/v1"
    providers = "".join(
        f'[providers."{name}"]\nbase_url = "{base_url}"\n' for name in [*deployments, WARMUP_MODEL]
    )
    rows = ",\n".join(
        f'  {{ provider = "{name}", model = "{model}", '
        f"price = {{ input = {1.0 + k}, output = {2.0 + 2 * k} }} }}"
        for k, (name, model) in enumerate(deployments.items())
    )
    config = workdir / "crossroads.toml"
    config.write_text(
        f"""
[server]
port = {port}
[storage]
database_url = "sqlite+aiosqlite:///{workdir / "log.db"}"
[[keys]]
name = "bench"
key = "{KEY}"
[routing]
retries = 1
backoff_initial = 0.01
[routing.breaker]
consecutive_failures = {breaker_failures}
{providers}
[models.chaos]
strategy = "{strategy}"
deployments = [
{rows}
]
[models.{WARMUP_MODEL}]
deployments = [{{ provider = "{WARMUP_MODEL}", model = "{ANSWER}" }}]
"""
    )
    return config


def body(k: int, model: str = "chaos") -> dict[str, Any]:
    # Prompts of varied length, so that token and cost totals tell requests apart.
    content = f"Request {k}: " + "word " * (k % 13)
    request: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    if k % 2:
        request.update(stream=True, stream_options={"include_usage": True})
    return request


async def send(session: aiohttp.ClientSession, request: dict[str, Any]) -> Outcome:
    streamed = bool(request.get("stream"))
    started = time.perf_counter()

    def done(ok: bool, **fields: Any) -> Outcome:
        latency_ms = (time.perf_counter() - started) * 1000
        return Outcome(streamed, ok, latency_ms, **fields)

    content = finished = False
    usage: dict[str, Any] | None = None
    attempts: list[dict[str, Any]] | None = None
    try:
        async with session.post("/v1/chat/completions", json=request) as response:
            if response.status != 200:
                await response.read()
                return done(False, error=f"HTTP {response.status}")
            if not streamed:
                answer = orjson.loads(await response.read())
                routing = answer.get("routing") or {}
                return done(True, usage=answer.get("usage"), attempts=routing.get("attempts"))
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                if line.rstrip() == b"data: [DONE]":
                    finished = True
                    continue
                chunk = orjson.loads(line[len(b"data: ") :])
                if "error" in chunk:
                    return done(False, after_content=content, error="error event")
                if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()):
                    content = True
                if chunk.get("usage"):
                    usage = chunk["usage"]
                    attempts = (chunk.get("routing") or {}).get("attempts")
    except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
        return done(False, after_content=content, error=type(exc).__name__)
    if not finished:
        return done(False, after_content=content, error="ended without [DONE]")
    return done(True, usage=usage, attempts=attempts)


async def drive(port: int, requests: range, concurrency: int, warmup: int) -> list[Outcome]:
    async with aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {KEY}"},
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=60),
    ) as session:
        for k in range(warmup):
            await send(session, body(k, WARMUP_MODEL))
        outcomes: dict[int, Outcome] = {}
        queue = iter(requests)

        async def worker() -> None:
            for k in queue:  # one shared iterator: each request is sent once
                outcomes[k] = await send(session, body(k))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [outcomes[k] for k in requests]


def read_log(database: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            "SELECT status_code, stream, total_tokens, cost, response FROM request_log "
            "WHERE model_requested = 'chaos'"
        ).fetchall()
    logged = []
    for row in rows:
        response = json.loads(row["response"]) if row["response"] else {}
        routing = response.get("routing") if isinstance(response, dict) else None
        logged.append({**dict(row), "routing": routing if isinstance(routing, dict) else None})
    return logged


def run(deployments: dict[str, str], strategy: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run on a fresh upstream, gateway and log: what clients saw, and what was logged."""
    upstream_port, gateway_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="crossroads-chaos-"))
    config = write_config(
        workdir, gateway_port, upstream_port, deployments, strategy, args.breaker_failures
    )
    python = sys.executable
    fake_command = [python, "-m", "crossroads.testing.fake_openai", "--port", str(upstream_port)]
    fake = subprocess.Popen(
        pinned(1, [*fake_command, "--no-record", "--seed", str(args.seed)]),
        stdout=subprocess.DEVNULL,
    )
    gateway_log = (workdir / "gateway.log").open("wb")
    gateway = subprocess.Popen(
        pinned(0, [python, "-m", "crossroads", "serve", "--config", str(config)]),
        stdout=gateway_log,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            wait_ready(upstream_port, "/v1/models")
            wait_ready(gateway_port, "/ready")
        except TimeoutError:
            sys.stderr.write((workdir / "gateway.log").read_text()[-4000:])
            raise
        started = time.perf_counter()
        outcomes = asyncio.run(
            drive(gateway_port, range(args.requests), args.concurrency, args.warmup)
        )
        elapsed = time.perf_counter() - started
        gateway.send_signal(signal.SIGTERM)  # shutting down flushes the request log
        # uvicorn re-raises the SIGTERM it handled; anything else (the log could not be
        # written, say) deserves the gateway's own words.
        if gateway.wait(timeout=60) not in (0, -signal.SIGTERM):
            sys.stderr.write((workdir / "gateway.log").read_text()[-4000:])
        logged = read_log(workdir / "log.db")
    finally:
        for process in (gateway, fake):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
        gateway_log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"outcomes": outcomes, "logged": logged, "seconds": elapsed}


def latency(outcomes: list[Outcome]) -> dict[str, dict[str, Any]]:
    """p50/p99 of successful requests: all, by kind, and those that took more than one attempt."""
    ok = [o for o in outcomes if o.ok]
    series: dict[str, list[float] | None] = {
        "all": [o.latency_ms for o in ok],
        "non-streamed": [o.latency_ms for o in ok if not o.streamed],
        "streamed": [o.latency_ms for o in ok if o.streamed],
        "retried": [o.latency_ms for o in ok if o.attempts and len(real(o.attempts)) > 1],
    }
    if not any(o.attempts is not None for o in ok):
        series["retried"] = None  # unknown: no response carried `routing`
    return {
        name: {
            "requests": None if values is None else len(values),
            "p50_ms": round(percentile(values, 50), 3) if values else None,
            "p99_ms": round(percentile(values, 99), 3) if values else None,
        }
        for name, values in series.items()
    }


def real(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attempts that reached an upstream (a skipped open circuit is listed, but is none)."""
    return [a for a in attempts if a.get("error") != "circuit_open"]


def summarise(run_: dict[str, Any], deployments: dict[str, str]) -> dict[str, Any]:
    outcomes: list[Outcome] = run_["outcomes"]
    logged: list[dict[str, Any]] = run_["logged"]
    plain = [o for o in outcomes if not o.streamed]
    streams = [o for o in outcomes if o.streamed]
    ok = [o for o in outcomes if o.ok]
    failed_streams = [o for o in streams if not o.ok]

    logged_ok = [r for r in logged if r["status_code"] == 200]
    client_tokens = sum(int((o.usage or {}).get("total_tokens") or 0) for o in ok)
    client_cost = sum(float((o.usage or {}).get("cost") or 0.0) for o in ok)
    logged_tokens = sum(int(r["total_tokens"] or 0) for r in logged_ok)
    logged_cost = sum(float(r["cost"] or 0.0) for r in logged_ok)
    usage = {
        "requests_sent": len(outcomes),
        "records_logged": len(logged),
        "successes_seen": len(ok),
        "successes_logged": len(logged_ok),
        "successes_without_usage": sum(1 for o in ok if not o.usage),
        "total_tokens_seen": client_tokens,
        "total_tokens_logged": logged_tokens,
        "cost_seen": round(client_cost, 12),
        "cost_logged": round(logged_cost, 12),
    }
    usage["reconciled"] = (
        len(logged) == len(outcomes)
        and len(logged_ok) == len(ok)
        and client_tokens == logged_tokens
        and abs(client_cost - logged_cost) <= 1e-9
    )

    # Attempts: as responses report them to clients, and as the log keeps them for every
    # request (failed ones too). Either is "unknown" when no response carries `routing`.
    seen = [o.attempts for o in ok if o.attempts is not None]
    by_deployment: dict[str, Counter[str]] = {name: Counter() for name in deployments}
    chosen: Counter[str] = Counter()
    routed = [r for r in logged if r["routing"] is not None]
    for record in routed:
        for candidate in record["routing"].get("candidates") or ():
            if candidate.get("excluded"):  # here: an open circuit, at planning
                name = str(candidate.get("deployment", "")).split("/", 1)[0]
                by_deployment.setdefault(name, Counter())["excluded"] += 1
        for attempt in record["routing"].get("attempts") or ():
            name = str(attempt.get("deployment", "")).split("/", 1)[0]
            counts = by_deployment.setdefault(name, Counter())
            if attempt.get("error") == "circuit_open":
                counts["skipped_open_circuit"] += 1
            else:
                counts["attempts"] += 1
                counts["failed"] += attempt.get("status") != 200
        if record["stream"] and record["routing"].get("chosen"):
            chosen[str(record["routing"]["chosen"]).split("/", 1)[0]] += 1
    attempts = {
        "seen_by_successful_clients": sum(len(real(a)) for a in seen) if seen else None,
        "logged_for_all_requests": (
            sum(len(real(r["routing"].get("attempts") or [])) for r in routed) if routed else None
        ),
        "by_deployment": {name: dict(c) for name, c in by_deployment.items()} if routed else None,
    }
    streams_on_dropper = chosen.get("dropper", 0)
    return {
        "seconds": round(run_["seconds"], 2),
        "non_streamed": {
            "requests": len(plain),
            "ok": sum(o.ok for o in plain),
            "success_rate": round(sum(o.ok for o in plain) / max(len(plain), 1), 4),
            "errors": dict(Counter(o.error for o in plain if not o.ok)),
        },
        "streamed": {
            "requests": len(streams),
            "ok": sum(o.ok for o in streams),
            "success_rate": round(sum(o.ok for o in streams) / max(len(streams), 1), 4),
            "failed_before_first_byte": sum(not o.after_content for o in failed_streams),
            "failed_after_first_byte": sum(o.after_content for o in failed_streams),
            # What mid-answer drops alone would give: DROP_RATE% of the streams dropper
            # answered (from the log; None without `routing`).
            "expected_after_first_byte": (
                round(streams_on_dropper * DROP_RATE / 100, 1) if routed else None
            ),
            "errors": dict(Counter(o.error for o in failed_streams)),
        },
        "latency": latency(outcomes),
        "usage": usage,
        "attempts": attempts,
    }


def added(chaos: dict[str, Any], healthy: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Chaos minus healthy, series by series; retried requests are compared with all healthy ones
    (a healthy run retries nothing)."""
    out: dict[str, dict[str, float | None]] = {}
    for series, values in chaos["latency"].items():
        base = healthy["latency"]["all" if series == "retried" else series]
        out[series] = {
            q: None if values[q] is None or base[q] is None else round(values[q] - base[q], 3)
            for q in ("p50_ms", "p99_ms")
        }
    return out


def show(result: dict[str, Any]) -> None:
    def cell(value: Any, width: int, digits: int = 1, missing: str = "-") -> str:
        if value is None:
            return f"{missing:>{width}}"
        if isinstance(value, float):
            return f"{value:>{width}.{digits}f}"
        return f"{value!s:>{width}}"

    print(
        f"{'run':<18}{'plain ok %':>11}{'stream ok %':>12}{'pre-byte':>9}{'mid-stream':>11}"
        f"{'(expect)':>9}{'attempts':>9}{'usage':>7}{'s':>6}"
    )
    for name, run_ in result["runs"].items():
        plain, streams = run_["non_streamed"], run_["streamed"]
        print(
            f"{name:<18}{cell(plain['success_rate'] * 100, 11, 2)}"
            f"{cell(streams['success_rate'] * 100, 12, 2)}"
            f"{cell(streams['failed_before_first_byte'], 9)}"
            f"{cell(streams['failed_after_first_byte'], 11)}"
            f"{cell(streams['expected_after_first_byte'], 9, missing='unknown')}"
            f"{cell(run_['attempts']['logged_for_all_requests'], 9, missing='unknown')}"
            f"{cell('ok' if run_['usage']['reconciled'] else 'WRONG', 7)}"
            f"{cell(run_['seconds'], 6)}"
        )
    print()
    print(
        f"{'latency of successes':<30}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'+p50 ms':>9}{'+p99 ms':>9}"
    )
    for name, run_ in result["runs"].items():
        for series, values in run_["latency"].items():
            extra = run_.get("added_over_healthy", {}).get(series, {})
            print(
                f"{name + ' ' + series:<30}{cell(values['requests'], 6, missing='unknown')}"
                f"{cell(values['p50_ms'], 9, 2)}{cell(values['p99_ms'], 9, 2)}"
                f"{'' if not extra else cell(extra['p50_ms'], 9, 2)}"
                f"{'' if not extra else cell(extra['p99_ms'], 9, 2)}"
            )
    print()
    print(
        f"{'attempts by deployment':<30}{'attempts':>9}{'failed':>9}{'excluded':>9}{'skipped':>9}"
    )
    for name, run_ in result["runs"].items():
        by_deployment = run_["attempts"]["by_deployment"]
        if by_deployment is None:
            print(f"{name:<30}{'unknown (no routing field)':>36}")
        for deployment, counts in (by_deployment or {}).items():
            print(
                f"{name + ' ' + deployment:<30}{counts.get('attempts', 0):>9}"
                f"{counts.get('failed', 0):>9}{counts.get('excluded', 0):>9}"
                f"{counts.get('skipped_open_circuit', 0):>9}"
            )
    for name, run_ in result["runs"].items():
        usage = run_["usage"]
        if not usage["reconciled"]:
            print(f"\n{name}: usage does not reconcile: {json.dumps(usage)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests per run")
    parser.add_argument("--strategies", default="weighted,fallback", help="comma-separated")
    parser.add_argument("--seed", type=int, default=1, help="the fake upstream's fault draws")
    parser.add_argument(
        "--breaker-failures",
        type=int,
        default=20,
        help="routing.breaker.consecutive_failures (the gateway's default is 5)",
    )
    args = parser.parse_args()

    result: dict[str, Any] = {
        "settings": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "seed": args.seed,
            "deployments": CHAOS,
            "routing": {
                "retries": 1,
                "backoff_initial": 0.01,
                "breaker": {"consecutive_failures": args.breaker_failures},
            },
        },
        "runs": {},
    }
    for strategy in args.strategies.split(","):
        healthy = summarise(run(HEALTHY, strategy, args), HEALTHY)
        chaos = summarise(run(CHAOS, strategy, args), CHAOS)
        chaos["added_over_healthy"] = added(chaos, healthy)
        result["runs"][f"{strategy} healthy"] = healthy
        result["runs"][f"{strategy} chaos"] = chaos
    show(result)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "chaos.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
