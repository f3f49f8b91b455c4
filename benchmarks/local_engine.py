"""The embedded llama.cpp engine through the gateway vs xllamacpp called directly.

Measures, in one run on the same model file and engine settings:
- generation throughput (completion tokens/s), one stream and 4 concurrent streams,
  through the gateway (`crossroads serve`, HTTP + SSE, auth and request log on) and with
  xllamacpp driven directly from Python threads; the ratio is gateway / direct;
- time to first token added by the gateway (p50 over repeated short requests);
- structured-output validity over 200 requests with varied JSON schemas, regexes and
  choice lists (every output must parse and match);
- peak RSS of the gateway process with the default model loaded.

The two sides run one after the other, never at once, so neither steals the other's CPU.

    python benchmarks/local_engine.py [--tokens 128] [--repeats 3] [--structured 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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

import aiohttp
import jsonschema

from crossroads.testing.server import free_port

KEY = "sk-bench-local-0123456789"
RESULTS = Path(__file__).parent / "results"
PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]
THREADS = 2
PARALLEL = 4
CONTEXT = 4096


# --- direct -------------------------------------------------------------------------------------


def direct_server() -> Any:
    import xllamacpp

    from crossroads.providers.llamacpp.provider import default_model_path
    from crossroads.providers.llamacpp.templates import GEMMA3

    params = xllamacpp.CommonParams()
    params.model.path = default_model_path()
    params.n_ctx = CONTEXT
    params.n_parallel = PARALLEL
    params.cpuparams.n_threads = THREADS
    params.cpuparams_batch.n_threads = THREADS
    params.chat_template = GEMMA3
    params.swa_full = True
    params.fit_params = False
    params.verbosity = 0
    return xllamacpp.Server(params)


def direct_stream(server: Any, tokens: int, seed: int) -> tuple[float, float, int]:
    """One streamed request on this thread: (seconds to first token, total seconds, tokens)."""
    started = time.perf_counter()
    first: list[float] = []
    count = [0]

    def on_chunk(chunk: dict[str, Any]) -> bool:
        for choice in chunk.get("choices") or ():
            if (choice.get("delta") or {}).get("content"):
                if not first:
                    first.append(time.perf_counter() - started)
                count[0] += 1
        return False

    server.handle_chat_completions(
        {
            "messages": PROMPT,
            "max_tokens": tokens,
            "ignore_eos": True,
            "temperature": 0.8,
            "seed": seed,
            "stream": True,
        },
        on_chunk,
    )
    return first[0], time.perf_counter() - started, count[0]


def direct_throughput(server: Any, streams: int, tokens: int) -> float:
    results: list[tuple[float, float, int]] = []
    threads = [
        threading.Thread(target=lambda s=s: results.append(direct_stream(server, tokens, s)))
        for s in range(streams)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(r[2] for r in results) / (time.perf_counter() - started)


# --- through the gateway ----------------------------------------------------------------------


async def gateway_stream(
    session: aiohttp.ClientSession, url: str, tokens: int, seed: int
) -> tuple[float, float, int]:
    body = {
        "model": "local",
        "messages": PROMPT,
        "max_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0.8,
        "seed": seed,
        "stream": True,
    }
    started = time.perf_counter()
    first = None
    count = 0
    async with session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    if first is None:
                        first = time.perf_counter() - started
                    count += 1
    assert first is not None
    return first, time.perf_counter() - started, count


async def gateway_throughput(
    session: aiohttp.ClientSession, url: str, streams: int, tokens: int
) -> float:
    started = time.perf_counter()
    results = await asyncio.gather(
        *(gateway_stream(session, url, tokens, s) for s in range(streams))
    )
    return sum(r[2] for r in results) / (time.perf_counter() - started)


# --- structured output --------------------------------------------------------------------------


def structured_cases(count: int, rng: random.Random) -> list[tuple[str, dict[str, Any], Any]]:
    """(kind, extra body, checker spec) for `count` varied constrained requests."""
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "red",
        "green",
        "blue",
        "north",
        "south",
        "yes",
        "no",
    ]
    regexes = [
        r"[A-Z]{3}-[0-9]{3}",
        r"(cat|dog|bird)s?",
        r"[0-9]{1,3}\.[0-9]{2}",
        r"[a-z]+@[a-z]+\.(com|org)",
        r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])",
        r"#[0-9a-f]{6}",
        r"[A-Z][a-z]{2,8} [A-Z][a-z]{2,8}",
        r"(true|false)",
    ]
    cases: list[tuple[str, dict[str, Any], Any]] = []
    for i in range(count):
        kind = ("json", "regex", "choice")[i % 3]
        if kind == "json":
            properties: dict[str, Any] = {}
            for j in range(rng.randint(1, 4)):
                name = f"{rng.choice(words)}_{j}"
                properties[name] = rng.choice(
                    [
                        {"type": "string", "maxLength": rng.randint(3, 12)},
                        {"type": "integer", "minimum": 0, "maximum": rng.randint(5, 500)},
                        {"type": "boolean"},
                        {"enum": rng.sample(words, 3)},
                        {
                            "type": "array",
                            "items": {"type": "integer", "minimum": 0, "maximum": 9},
                            "maxItems": 3,
                        },
                    ]
                )
            schema = {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            }
            if i % 2:
                extra = {
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "s", "schema": schema, "strict": True},
                    }
                }
            else:
                extra = {"guided_json": schema}
            cases.append((kind, extra, schema))
        elif kind == "regex":
            pattern = regexes[i % len(regexes)]
            cases.append((kind, {"guided_regex": pattern}, pattern))
        else:
            options = rng.sample(words, rng.randint(2, 6))
            cases.append((kind, {"guided_choice": options}, options))
    return cases


def valid(kind: str, spec: Any, text: str) -> bool:
    try:
        if kind == "json":
            jsonschema.validate(json.loads(text), spec)
            return True
        if kind == "regex":
            return re.fullmatch(spec, text) is not None
        return text in spec
    except (ValueError, jsonschema.ValidationError):
        return False


async def structured_validity(
    session: aiohttp.ClientSession, url: str, count: int
) -> dict[str, Any]:
    cases = structured_cases(count, random.Random(7))
    semaphore = asyncio.Semaphore(PARALLEL)
    failures: list[dict[str, Any]] = []
    by_kind: dict[str, list[int]] = {}  # kind → [valid, requests, cut by max_tokens]

    async def one(kind: str, extra: dict[str, Any], spec: Any) -> None:
        body = {
            "model": "local",
            "messages": [{"role": "user", "content": "Answer."}],
            "max_tokens": 200,
            **extra,
        }
        async with semaphore, session.post(url, json=body) as response:
            payload = await response.json()
        ok = False
        text = finish = None
        if response.status == 200:
            text = payload["choices"][0]["message"]["content"]
            finish = payload["choices"][0]["finish_reason"]
            ok = valid(kind, spec, text)
        counts = by_kind.setdefault(kind, [0, 0, 0])
        counts[0] += ok
        counts[1] += 1
        counts[2] += finish == "length"
        if not ok:
            failures.append(
                {"kind": kind, "status": response.status, "finish_reason": finish,
                 "text": (text or "")[:120], "spec": spec}
            )  # fmt: skip

    await asyncio.gather(*(one(*case) for case in cases))
    passed = sum(v[0] for v in by_kind.values())
    cut = sum(v[2] for v in by_kind.values())
    finished_invalid = sum(1 for f in failures if f["finish_reason"] != "length")
    return {
        "requests": len(cases),
        "valid": passed,
        "validity": passed / len(cases),
        # Outputs the model ended itself; an invalid one here would be a constraint failure.
        "finished": len(cases) - cut,
        "finished_invalid": finished_invalid,
        "cut_by_max_tokens": cut,
        "by_kind": {
            k: {"valid": v[0], "requests": v[1], "cut_by_max_tokens": v[2]}
            for k, v in by_kind.items()
        },
        "failures": failures[:10],
    }


# --- orchestration --------------------------------------------------------------------------------


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run_gateway_side(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port = free_port()
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
[providers.local]
dialect = "llamacpp"
threads = {THREADS}
parallel = {PARALLEL}
context_size = {CONTEXT}
[models.local]
deployments = [{{ provider = "local" }}]
"""
    )
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
        [sys.executable, "-m", "crossroads", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/v1/chat/completions"
    try:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {KEY}"}, timeout=aiohttp.ClientTimeout(total=600)
        ) as session:
            deadline = time.monotonic() + 180
            while True:
                try:
                    async with session.get(f"{base}/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("the gateway did not become ready")
                await asyncio.sleep(0.2)
            await gateway_stream(session, url, 16, 0)  # warm-up
            ttft = [(await gateway_stream(session, url, 4, s))[0] * 1000 for s in range(args.ttft)]
            single = [
                await gateway_throughput(session, url, 1, args.tokens) for _ in range(args.repeats)
            ]
            quad = [
                await gateway_throughput(session, url, 4, args.tokens) for _ in range(args.repeats)
            ]
            structured = await structured_validity(session, url, args.structured)
        rss = peak_rss_mib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    return {
        "ttft_ms": ttft,
        "tps_1": single,
        "tps_4": quad,
        "structured": structured,
        "peak_rss_mib": rss,
    }


def run_direct_side(args: argparse.Namespace) -> dict[str, Any]:
    server = direct_server()
    direct_stream(server, 16, 0)  # warm-up
    ttft = [direct_stream(server, 4, s)[0] * 1000 for s in range(args.ttft)]
    single = [direct_throughput(server, 1, args.tokens) for _ in range(args.repeats)]
    quad = [direct_throughput(server, 4, args.tokens) for _ in range(args.repeats)]
    del server
    return {"ttft_ms": ttft, "tps_1": single, "tps_4": quad}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="completion tokens per stream")
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs per setting")
    parser.add_argument("--ttft", type=int, default=20, help="requests for the TTFT median")
    parser.add_argument("--structured", type=int, default=200, help="structured-output requests")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crossroads-local-bench-"))
    try:
        # Interleave so that slow phases of the machine hit both sides alike.
        direct = run_direct_side(args)
        gateway = asyncio.run(run_gateway_side(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    median = statistics.median
    result = {
        "settings": {
            "tokens": args.tokens,
            "repeats": args.repeats,
            "threads": THREADS,
            "parallel": PARALLEL,
            "cpus": os.cpu_count(),
        },
        "direct": direct,
        "gateway": {k: v for k, v in gateway.items() if k != "structured"},
        "summary": {
            "tps_1_direct": median(direct["tps_1"]),
            "tps_1_gateway": median(gateway["tps_1"]),
            "tps_1_ratio": median(gateway["tps_1"]) / median(direct["tps_1"]),
            "tps_4_direct": median(direct["tps_4"]),
            "tps_4_gateway": median(gateway["tps_4"]),
            "tps_4_ratio": median(gateway["tps_4"]) / median(direct["tps_4"]),
            "ttft_p50_direct_ms": median(direct["ttft_ms"]),
            "ttft_p50_gateway_ms": median(gateway["ttft_ms"]),
            "ttft_p50_added_ms": median(gateway["ttft_ms"]) - median(direct["ttft_ms"]),
            "structured_validity": gateway["structured"]["validity"],
            "peak_rss_mib": gateway["peak_rss_mib"],
        },
        "structured": gateway["structured"],
    }
    s = result["summary"]
    print(f"{'measure':<38}{'direct':>12}{'gateway':>12}{'ratio':>8}")
    rows = [
        ("tokens/s, 1 stream", s["tps_1_direct"], s["tps_1_gateway"], s["tps_1_ratio"]),
        ("tokens/s, 4 concurrent streams", s["tps_4_direct"], s["tps_4_gateway"], s["tps_4_ratio"]),
    ]
    for label, direct_value, gateway_value, ratio in rows:
        print(f"{label:<38}{direct_value:>12.1f}{gateway_value:>12.1f}{ratio:>8.3f}")
    ttft_d, ttft_g = s["ttft_p50_direct_ms"], s["ttft_p50_gateway_ms"]
    print(f"{'time to first token p50 (ms)':<38}{ttft_d:>12.1f}{ttft_g:>12.1f}")
    print(f"{'TTFT added by the gateway p50 (ms)':<38}{'':>12}{s['ttft_p50_added_ms']:>12.1f}")
    structured = result["structured"]
    valid, total = structured["valid"], structured["requests"]
    print(f"{'structured output valid':<38}{'':>12}{valid:>8}/{total}")
    finished = structured["finished"]
    good = finished - structured["finished_invalid"]
    print(f"{'  valid among outputs that finished':<38}{'':>12}{good:>8}/{finished}")
    print(f"{'  cut by max_tokens (200)':<38}{'':>12}{structured['cut_by_max_tokens']:>12}")
    print(f"{'peak RSS, gateway + model (MiB)':<38}{'':>12}{s['peak_rss_mib']:>12.0f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "local_engine.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
