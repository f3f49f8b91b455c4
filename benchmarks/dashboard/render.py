"""Dashboard page render times with 1,000,000 request-log rows, on SQLite and PostgreSQL.

For each backend: migrate to the schema before the rollup (0004), bulk-insert the rows
(30 days of traffic from 20 keys, 12 models, 4 providers, 6% errors, streams with TTFT,
router requests with their routing decision, small bodies), time the migration that adds
and backfills the hourly rollup, add feedback and virtual keys, then serve the real app
and time each page over HTTP (sequential GETs, as the master key unless said otherwise).
The baseline, in the same run, is what the overview would cost aggregating raw log rows
(`usage_totals` grouped by model over the same 24 h and 30 d). Screenshots of the main
pages at 1M rows go to benchmarks/results/dashboard/.

    nice -n 10 .venv/bin/python benchmarks/dashboard/render.py [--rows 1000000] [--runs 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crossroads.config import parse_config
from crossroads.server import create_app
from crossroads.server.auth import MASTER_KEY_ENV
from crossroads.storage.database import create_engine
from crossroads.storage.key_store import KeyStore
from crossroads.storage.migrate import alembic_config
from crossroads.storage.schema import feedback, request_log
from crossroads.storage.usage_store import usage_totals
from crossroads.testing.server import serve_in_thread

RESULTS = Path(__file__).resolve().parents[1] / "results"
MASTER = "mk-bench-0123456789abcdef"
READER = "sk-bench-reader-0123456789"
OWN = "sk-bench-own-0123456789"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "crossroads_dashboard_bench"
MODELS = [f"model-{i:02d}" for i in range(11)] + ["router"]
SERVED = [f"model-{i:02d}" for i in range(11)]
PROVIDERS = ["openai", "anthropic", "gemini", "vllm"]
KEYS = [f"key-{i:02d}" for i in range(20)]
FIELDS = [c.name for c in request_log.columns]


def _rows(count: int, now: datetime, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    """`count` log rows spread over the 30 days before `now`, oldest first."""
    rng = random.Random(seed)
    span = 30 * 86400
    for i in range(count):
        at = now - timedelta(seconds=span * (1 - i / count) - rng.random())
        asked = rng.choice(MODELS)
        served = rng.choice(SERVED) if asked == "router" else asked
        provider = rng.choice(PROVIDERS)
        roll = rng.random()
        status = 200 if roll > 0.06 else (429 if roll > 0.03 else rng.choice([500, 502, 503]))
        stream = rng.random() < 0.3
        latency = rng.lognormvariate(6.2, 0.8)
        prompt, completion = rng.randint(10, 2000), rng.randint(1, 800)
        routing = {
            "strategy": "router" if asked == "router" else "fallback",
            "chosen": f"{provider}/{served}",
            "attempts": [{"deployment": f"{provider}/{served}", "status": status}],
        }
        if asked == "router":
            routing["router"] = {
                "willingness_to_pay": 0.01,
                "candidates": [
                    {"model": m, "predicted_quality": rng.random(), "predicted_cost": 1e-4}
                    for m in (served, rng.choice(SERVED))
                ],
                "chosen": served,
            }
        ok = status < 400
        record = {
            "id": f"{int(at.timestamp() * 1000):012x}{i:020x}",
            "created_at": at,
            "model_requested": asked,
            "status_code": status,
            "stream": stream,
            "key_id": KEYS[i % len(KEYS)],
            "model_served": served if ok else None,
            "provider": provider,
            "upstream_model": served,
            "error_code": None if ok else "upstream_error",
            "error_message": None if ok else f"upstream returned {status}",
            "request": {"model": asked, "messages": [{"role": "user", "content": f"q {i}"}]},
            "response": {"routing": routing, "choices": [{"message": {"content": f"a {i}"}}]},
            "prompt_tokens": prompt if ok else None,
            "completion_tokens": completion if ok else None,
            "total_tokens": prompt + completion if ok else None,
            "cached_tokens": None,
            "prompt_characters": prompt * 4,
            "response_characters": completion * 4,
            "cost": (prompt * 2 + completion * 8) / 1e6 if ok else None,
            "latency_ms": round(latency, 3),
            "ttft_ms": round(latency * rng.uniform(0.1, 0.5), 3) if stream else None,
            "user": f"user-{i % 500}",
            "metadata": {"team": f"team-{i % 7}"},
            "session_id": f"s-{i // 10}" if i % 3 == 0 else None,
            "extra": None,
            "tags": ["bench"] if i % 5 == 0 else None,
        }
        yield tuple(record[name] for name in FIELDS)


def _sqlite_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "created_at":
        return f"{value.astimezone(UTC).replace(tzinfo=None):%Y-%m-%d %H:%M:%S.%f}"
    if name in ("request", "response", "metadata", "extra", "tags"):
        return json.dumps(value)
    return value


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


async def _migrate(url: str, revision: str) -> float:
    engine = create_engine(url)
    started = time.perf_counter()
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, revision)
    await engine.dispose()
    return time.perf_counter() - started


def _seed_sqlite(path: Path, count: int, now: datetime) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    quoted = ", ".join(f'"{n}"' for n in FIELDS)
    insert = f"INSERT INTO request_log ({quoted}) VALUES ({', '.join('?' * len(FIELDS))})"
    with connection:
        batch: list[tuple[Any, ...]] = []
        for row in _rows(count, now):
            batch.append(tuple(_sqlite_value(n, v) for n, v in zip(FIELDS, row, strict=True)))
            if len(batch) == 20_000:
                connection.executemany(insert, batch)
                batch.clear()
        connection.executemany(insert, batch)
    # No ANALYZE: the gateway never runs it, so neither does the benchmark.
    connection.close()


async def _seed_postgres(count: int, now: datetime) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{PG_DB}")
    try:
        json_fields = {"request", "response", "metadata", "extra", "tags"}
        batch: list[tuple[Any, ...]] = []
        for row in _rows(count, now):
            batch.append(
                tuple(
                    json.dumps(v) if n in json_fields and v is not None else v
                    for n, v in zip(FIELDS, row, strict=True)
                )
            )
            if len(batch) == 50_000:
                await connection.copy_records_to_table("request_log", records=batch, columns=FIELDS)
                batch.clear()
        await connection.copy_records_to_table("request_log", records=batch, columns=FIELDS)
        await connection.execute("ANALYZE request_log")
    finally:
        await connection.close()


async def _reset_postgres() -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_DB}"'))
        await connection.execute(sa.text(f'CREATE DATABASE "{PG_DB}"'))
    await admin.dispose()


async def _extras(url: str, now: datetime) -> tuple[str, str]:
    """10,000 feedback rows and 20 virtual keys; a router record's and an error's ids."""
    engine = create_engine(url)
    rng = random.Random(2)
    async with engine.connect() as connection:
        ids = (
            await connection.execute(
                sa.select(request_log.c.id)
                .where(request_log.c.created_at >= now - timedelta(days=2))
                .limit(10_000)
            )
        ).scalars()
        ids = list(ids)
        router_id = (
            await connection.execute(
                sa.select(request_log.c.id)
                .where(request_log.c.model_requested == "router")
                .order_by(request_log.c.created_at.desc())
                .limit(1)
            )
        ).scalar_one()
    async with engine.begin() as connection:
        await connection.execute(
            feedback.insert(),
            [
                {
                    "id": f"fb-{i}",
                    "log_id": log_id,
                    "score": rng.random(),
                    "comment": None,
                    "key_id": KEYS[0],
                    "created_at": now - timedelta(seconds=rng.randint(0, 86400)),
                }
                for i, log_id in enumerate(ids)
            ],
        )
    keys = KeyStore(engine)
    for i in range(20):
        await keys.create(name=f"team-{i}", max_budget=100.0, budget_period="monthly")
    await engine.dispose()
    return router_id, ids[-1]


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 1), "p95_ms": round(p95, 1)}


async def _baseline(url: str, now: datetime, runs: int) -> dict[str, dict[str, float]]:
    """The overview's sums from raw log rows, as before the rollup."""
    engine = create_engine(url)
    out = {}
    for name, start in (("24h", now - timedelta(hours=24)), ("30d", now - timedelta(days=30))):
        samples = []
        for _ in range(max(3, runs // 3)):
            started = time.perf_counter()
            await usage_totals(engine, group_by="model", start=start, end=now)
            samples.append(1000 * (time.perf_counter() - started))
        out[f"raw log aggregation, {name}"] = _percentiles(samples)
    await engine.dispose()
    return out


def _pages(router_id: str, log_id: str) -> list[tuple[str, str, str]]:
    """(label, path, key) for each page measured."""
    return [
        ("overview 24h", "/ui", MASTER),
        ("overview 7d", "/ui?range=7d", MASTER),
        ("overview 30d", "/ui?range=30d", MASTER),
        ("overview 24h, own key", "/ui", OWN),
        ("logs table", "/ui/logs", MASTER),
        ("logs table, own key", "/ui/logs", OWN),
        ("logs rows status=error", "/ui/logs/rows?status=error", MASTER),
        ("logs rows model=model-03", "/ui/logs/rows?model=model-03", MASTER),
        ("logs rows user=user-7", "/ui/logs/rows?user=user-7", MASTER),
        ("logs rows page 2", f"/ui/logs/rows?before={log_id}", MASTER),
        ("log detail", f"/ui/logs/{router_id}", MASTER),
        ("cost by model 24h", "/ui/cost", MASTER),
        ("cost by key 30d", "/ui/cost?by=key&range=30d", MASTER),
        ("cost by provider 7d", "/ui/cost?by=provider&range=7d", MASTER),
        ("latency 24h", "/ui/latency", MASTER),
        ("latency 30d", "/ui/latency?range=30d", MASTER),
        ("errors by provider 24h", "/ui/errors?by=provider", MASTER),
        ("keys and budgets", "/ui/keys", MASTER),
        ("router and feedback 24h", "/ui/router", MASTER),
    ]


def _config(url: str) -> Any:
    return parse_config(
        {
            "storage": {"database_url": url},
            "providers": {p: {"base_url": "http://127.0.0.1:9"} for p in PROVIDERS},
            "models": {
                m: {"deployments": [{"provider": p, "model": m} for p in PROVIDERS]} for m in SERVED
            },
            "keys": [
                {"name": "reader", "key": READER, "logs": "all"},
                {"name": KEYS[3], "key": OWN},
            ],
        }
    )


def _measure(
    url: str, router_id: str, log_id: str, runs: int, shots: Path | None
) -> dict[str, Any]:
    os.environ[MASTER_KEY_ENV] = MASTER
    results: dict[str, Any] = {}
    with serve_in_thread(create_app(_config(url)), timeout=120) as served:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            for label, path, key in _pages(router_id, log_id):
                headers = {"authorization": f"Bearer {key}"}
                first = client.get(path, headers=headers)
                if first.status_code != 200:
                    raise SystemExit(f"{path}: {first.status_code} {first.text[:300]}")
                samples = []
                for _ in range(runs):
                    started = time.perf_counter()
                    client.get(path, headers=headers).raise_for_status()
                    samples.append(1000 * (time.perf_counter() - started))
                results[label] = {
                    "path": path,
                    **_percentiles(samples),
                    "bytes": len(first.content),
                }
        if shots is not None:
            _screenshots(served.url, router_id, shots)
    return results


def _screenshots(url: str, router_id: str, folder: Path) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        print(f"no Chromium at {chromium}: no screenshots", file=sys.stderr)
        return
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/ui/login")
        page.fill("input[name=key]", MASTER)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/ui")
        for name, path in (
            ("overview", "/ui?range=7d"),
            ("logs", "/ui/logs"),
            ("detail", f"/ui/logs/{router_id}"),
            ("cost", "/ui/cost?by=provider&range=30d"),
            ("latency", "/ui/latency?range=7d"),
            ("router", "/ui/router"),
        ):
            page.goto(f"{url}{path}")
            page.wait_for_timeout(300)
            page.screenshot(path=folder / f"{name}.png", full_page=False)
        browser.close()


async def _prepare(
    backend: str, url: str, rows: int, now: datetime, sqlite_path: Path | None
) -> dict[str, Any]:
    if backend == "postgresql":
        await _reset_postgres()
    await _migrate(url, "0004")
    started = time.perf_counter()
    if sqlite_path is not None:
        await asyncio.to_thread(_seed_sqlite, sqlite_path, rows, now)
    else:
        await _seed_postgres(rows, now)
    seeded = time.perf_counter() - started
    backfill = await _migrate(url, "head")
    router_id, log_id = await _extras(url, now)
    return {
        "seed_s": round(seeded, 1),
        "backfill_s": round(backfill, 1),
        "ids": (router_id, log_id),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    now = datetime.now(UTC)
    report: dict[str, Any] = {"rows": args.rows, "runs": args.runs, "target_p50_ms": 300}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                path: Path | None = Path(tmp) / "log.db"
                url = f"sqlite+aiosqlite:///{path}"
            else:
                path, url = None, f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
            print(f"{backend}: seeding {args.rows:,} rows …", flush=True)
            prepared = asyncio.run(_prepare(backend, url, args.rows, now, path))
            router_id, log_id = prepared.pop("ids")
            print(f"{backend}: {prepared}", flush=True)
            baseline = asyncio.run(_baseline(url, now, args.runs))
            pages = _measure(url, router_id, log_id, args.runs, RESULTS / "dashboard" / backend)
            report[backend] = {
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                **prepared,
                "baseline": baseline,
                "pages": pages,
            }
            if backend == "postgresql":
                asyncio.run(_drop_postgres())
            _print({**report, "backends": [backend]})
            _save(report)


def _save(report: dict[str, Any]) -> None:
    """Write the JSON, keeping a backend this run did not measure from the previous file."""
    path = RESULTS / "dashboard_render.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    merged = {**report}
    for backend in ("sqlite", "postgresql"):
        same_size = previous.get("rows") == report["rows"]
        if backend not in merged and backend in previous and same_size:
            merged[backend] = previous[backend]
    path.write_text(json.dumps(merged, indent=2) + "\n")


async def _drop_postgres() -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_DB}"'))
    await admin.dispose()


def _print(report: dict[str, Any]) -> None:
    backends = report["backends"]
    print(f"\nDashboard pages at {report['rows']:,} log rows ({report['runs']} GETs each)")
    header = f"{'page':34}" + "".join(f"{b + ' p50/p95 ms':>26}" for b in backends)
    print(header)
    print("-" * len(header))
    labels = list(report[backends[0]]["pages"])
    for label in labels:
        cells = []
        for b in backends:
            page = report[b]["pages"][label]
            flag = "" if page["p50_ms"] <= report["target_p50_ms"] else " !"
            cells.append(f"{page['p50_ms']:>10.1f} / {page['p95_ms']:<8.1f}{flag:2}")
        print(f"{label:34}" + "".join(f"{c:>26}" for c in cells))
    for name in report[backends[0]]["baseline"]:
        timed = [report[b]["baseline"][name] for b in backends]
        cells = [f"{t['p50_ms']:>10.1f} / {t['p95_ms']:<8.1f}  " for t in timed]
        print(f"{'baseline: ' + name:34}" + "".join(f"{c:>26}" for c in cells))
    for b in backends:
        print(
            f"{b}: seeded in {report[b]['seed_s']} s, rollup backfill {report[b]['backfill_s']} s"
        )


if __name__ == "__main__":
    main()
