"""What keeping the dashboard's rollup costs the request-log writer.

The same records are written through `LogWriter` twice per round, alternating, into fresh
databases: without the `on_written` hook (the writer before the dashboard, the baseline)
and with `Rollups.add` (as the gateway runs it; the time includes writing the summed rows
at the end). Reported: records stored per second
(median of the rounds) and the ratio, on SQLite and PostgreSQL.

    nice -n 10 .venv/bin/python benchmarks/dashboard/rollup_hook.py [--records 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from crossroads.storage.dashboard_store import Rollups
from crossroads.storage.database import create_engine
from crossroads.storage.log_store import LogStore
from crossroads.storage.records import LogRecord, new_log_id
from crossroads.storage.writer import LogWriter

RESULTS = Path(__file__).resolve().parents[1] / "results"
PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _records(count: int) -> list[LogRecord]:
    rng = random.Random(5)
    now = datetime.now(UTC)
    return [
        LogRecord(
            id=new_log_id(),
            created_at=now - timedelta(seconds=count - i),
            model_requested=rng.choice(["a", "b", "c", "router"]),
            status_code=rng.choice([200] * 15 + [429, 500]),
            key_id=f"key-{i % 20}",
            model_served=rng.choice(["a", "b", "c"]),
            provider=rng.choice(["p1", "p2"]),
            request={"messages": [{"role": "user", "content": f"question {i}"}]},
            response={"choices": [{"message": {"content": f"answer {i}"}}]},
            prompt_tokens=rng.randint(1, 900),
            completion_tokens=rng.randint(1, 300),
            cost=rng.random() / 1000,
            latency_ms=rng.lognormvariate(6, 0.7),
            ttft_ms=rng.choice([None, 80.0]),
        )
        for i in range(count)
    ]


async def _engine(backend: str, folder: Path) -> tuple[Any, Any]:
    if backend == "sqlite":
        return create_engine(f"sqlite+aiosqlite:///{folder / f'{uuid.uuid4().hex}.db'}"), None
    schema = f"bench_rollup_{uuid.uuid4().hex}"
    admin = create_engine(PG)
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(PG, connect_args={"server_settings": {"search_path": schema}})
    return engine, (admin, schema)


async def _drop(cleanup: Any) -> None:
    if cleanup is None:
        return
    admin, schema = cleanup
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    await admin.dispose()


async def _round(backend: str, records: list[LogRecord], hook: bool, folder: Path) -> float:
    engine, cleanup = await _engine(backend, folder)
    store = LogStore(engine)
    await store.open()
    rollups = Rollups(engine)
    writer = LogWriter(store, on_written=rollups.add if hook else None)
    for record in records:
        writer.submit(record)
    started = time.perf_counter()
    await writer.flush()
    await rollups.aclose()  # counted: the sums written at the end, as at shutdown
    elapsed = time.perf_counter() - started
    await store.close()
    await _drop(cleanup)
    return len(records) / elapsed


async def _run(backends: list[str], count: int, rounds: int) -> dict[str, Any]:
    records = _records(count)
    report: dict[str, Any] = {"records": count, "rounds": rounds, "batch": 500}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            plain, hooked = [], []
            for _ in range(rounds):
                plain.append(await _round(backend, records, False, Path(tmp)))
                hooked.append(await _round(backend, records, True, Path(tmp)))
            report[backend] = {
                "records_per_s_without_hook": round(statistics.median(plain)),
                "records_per_s_with_rollup": round(statistics.median(hooked)),
                "ratio": round(statistics.median(hooked) / statistics.median(plain), 3),
            }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    report = asyncio.run(_run(args.backends.split(","), args.records, args.rounds))
    print(f"Log writer, {args.records:,} records in batches of 500 (median of {args.rounds})")
    print(f"{'backend':12}{'without hook /s':>18}{'with rollup /s':>18}{'ratio':>8}")
    for backend in args.backends.split(","):
        row = report[backend]
        print(
            f"{backend:12}{row['records_per_s_without_hook']:>18,}"
            f"{row['records_per_s_with_rollup']:>18,}{row['ratio']:>8.3f}"
        )
    (RESULTS / "dashboard_rollup_hook.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
