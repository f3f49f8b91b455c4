"""Exporting a 100k-row dataset: time and peak memory, streamed against buffered.

Fills a dataset with `--rows` rows (a system prompt, a user turn of ~300 characters, an
answer of ~200, one tool on every tenth row) on SQLite and on a fresh PostgreSQL database,
then exports it as chat SFT JSONL to a file two ways, in the same run:

- streamed: `export_lines`, what `GET /v1/datasets/{id}/export` and the CLI use — rows read
  page by page, each line written as it is made;
- buffered (baseline): every row read into a list, every line made, then written at once.

Time is measured in a pass without tracing; peak memory is tracemalloc's peak (Python
allocations) in a second pass, above what was allocated before the export started.

    python benchmarks/datasets/export_memory.py --rows 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from crossroads.datasets.export import export_lines
from crossroads.datasets.pruning import Pruner
from crossroads.datasets.rows import RowInput
from crossroads.storage.database import create_engine
from crossroads.storage.dataset_store import DatasetStore, Owner
from crossroads.storage.log_store import LogStore

RESULTS = Path(__file__).parents[1] / "results"
PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


def row(i: int) -> RowInput:
    question = f"Question {i}: " + "how do I rotate the credentials of the export job? " * 6
    return RowInput(
        messages=[
            {"role": "system", "content": "You are the support assistant. Be brief."},
            {"role": "user", "content": question},
        ],
        output={"role": "assistant", "content": f"Answer {i}: " + "rotate them in settings. " * 8},
        tools=[TOOL] if i % 10 == 0 else None,
    )


async def fill(store: DatasetStore, rows: int) -> str:
    dataset = await store.create("bench", Owner(None))
    batch = 5000
    for start in range(0, rows, batch):
        await store.add_rows(dataset, [row(i) for i in range(start, min(rows, start + batch))])
    return dataset.id


async def streamed(store: DatasetStore, dataset_id: str, out: Path) -> int:
    count = 0
    with out.open("wb") as sink:
        async for line in export_lines(store, dataset_id, "openai", Pruner([])):
            sink.write(line)
            count += 1
    return count


async def buffered(store: DatasetStore, dataset_id: str, out: Path) -> int:
    rows = [r async for r in store.rows(dataset_id)]
    lines = [
        orjson.dumps(
            {"messages": [*r.messages, r.output], **({"tools": r.tools} if r.tools else {})}
        )
        + b"\n"
        for r in rows
    ]
    out.write_bytes(b"".join(lines))  # noqa: ASYNC240 - the baseline writes at once, on purpose
    return len(lines)


async def measure(
    run: Callable[[DatasetStore, str, Path], Awaitable[int]],
    store: DatasetStore,
    dataset_id: str,
    out: Path,
) -> dict[str, Any]:
    started = time.perf_counter()
    lines = await run(store, dataset_id, out)
    seconds = time.perf_counter() - started
    size = out.stat().st_size  # noqa: ASYNC240 - after the timed part
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    await run(store, dataset_id, out)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "lines": lines,
        "seconds": round(seconds, 2),
        "rows_per_s": round(lines / seconds),
        "peak_mb": round((peak - before) / 1e6, 1),
        "file_mb": round(size / 1e6, 1),
    }


async def backend(name: str, url: str, rows: int, workdir: Path) -> dict[str, Any]:
    engine = create_engine(url)
    await LogStore(engine).open()
    store = DatasetStore(engine)
    started = time.perf_counter()
    dataset_id = await fill(store, rows)
    fill_s = time.perf_counter() - started
    out = workdir / f"{name}.jsonl"
    result = {
        "fill_seconds": round(fill_s, 1),
        "streamed": await measure(streamed, store, dataset_id, out),
        "buffered": await measure(buffered, store, dataset_id, out),
    }
    await engine.dispose()
    return result


async def pg_database() -> str:
    name = f"bench_export_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return name


async def drop(name: str) -> None:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    await admin.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crossroads-export-bench-"))
    results: dict[str, Any] = {"rows": args.rows, "cpus": os.cpu_count(), "backends": {}}
    for name in args.backends.split(","):
        if name == "sqlite":
            url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
            results["backends"][name] = await backend(name, url, args.rows, workdir)
        else:
            database = await pg_database()
            try:
                url = PG_URL.rsplit("/", 1)[0] + f"/{database}"
                results["backends"][name] = await backend(name, url, args.rows, workdir)
            finally:
                await drop(database)
    print(f"export of {args.rows:,} rows as chat SFT JSONL")
    print(f"{'backend':<11} {'mode':<9} {'seconds':>8} {'rows/s':>8} {'peak MB':>8} {'file MB':>8}")
    for name, result in results["backends"].items():
        for mode in ("streamed", "buffered"):
            r = result[mode]
            print(
                f"{name:<11} {mode:<9} {r['seconds']:>8} {r['rows_per_s']:>8} "
                f"{r['peak_mb']:>8} {r['file_mb']:>8}"
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "datasets_export.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
