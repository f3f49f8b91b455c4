"""What authentication and per-key limits add to a request: in-memory vs Redis counters.

One process, one event loop, the gateway's own objects: a virtual key is created in a
SQLite key store, then each iteration does what the request path does for it —
authenticate the bearer key (a cache hit after the first), admit the request against rpm,
tpm, a parallel-request limit and a budget, and settle it afterwards. Timed separately:
authentication, admission (before the upstream call, on the latency path) and settlement
(after the answer, off the latency path). Redis at 127.0.0.1:6379 is required for its row.

    python benchmarks/limits.py [--iterations 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from crossroads.counters import build_state
from crossroads.limits import KeyLimits
from crossroads.server.auth import KeyRing
from crossroads.server.key_cache import KeyCache
from crossroads.storage.database import create_engine
from crossroads.storage.key_store import KeyStore
from crossroads.storage.log_store import LogStore

RESULTS = Path(__file__).parent / "results"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": round(statistics.median(ordered), 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99) - 1], 1),
    }


async def measure(backend: str, iterations: int, folder: Path) -> dict[str, Any]:
    engine = create_engine(f"sqlite+aiosqlite:///{folder / f'{backend}.db'}")
    log_store = LogStore(engine)
    await log_store.open()
    store = KeyStore(engine)
    _, secret = await store.create(
        name="bench",
        rpm_limit=2**31 - 1,
        tpm_limit=2**31 - 1,
        max_parallel_requests=1000,
        max_budget=10**6,
    )
    ring = KeyRing([], master_key="mk-bench", virtual_keys=KeyCache(store))
    state = build_state(None if backend == "memory" else "redis://127.0.0.1:6379/0")
    limits = KeyLimits(state, lease_s=600)
    header = f"Bearer {secret}"
    auth, admit, settle = [], [], []
    clock = time.perf_counter
    try:
        for i in range(iterations + 200):
            t0 = clock()
            caller = await ring.authenticate(header, "127.0.0.1")
            t1 = clock()
            assert caller.virtual_key is not None
            ticket = await limits.admit(caller.virtual_key, tokens=300, cost=0.001)
            t2 = clock()
            await limits.settle(ticket, tokens=250, cost=0.0008)
            t3 = clock()
            if i >= 200:  # warm-up: caches, connections, scripts loaded
                auth.append((t1 - t0) * 1e6)
                admit.append((t2 - t1) * 1e6)
                settle.append((t3 - t2) * 1e6)
    finally:
        await state.aclose()
        await log_store.close()
    return {
        "authenticate": percentiles(auth),
        "admit": percentiles(admit),
        "auth_plus_admit": percentiles([a + b for a, b in zip(auth, admit, strict=True)]),
        "settle": percentiles(settle),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = {
            backend: asyncio.run(measure(backend, args.iterations, Path(folder)))
            for backend in ("memory", "redis")
        }
    print(f"{'state':<8}{'step':<18}{'p50 µs':>10}{'p99 µs':>10}")
    for backend, steps in results.items():
        for step, figures in steps.items():
            print(f"{backend:<8}{step:<18}{figures['p50_us']:>10}{figures['p99_us']:>10}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "limits.json"
    out.write_text(json.dumps({"iterations": args.iterations, "results": results}, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
