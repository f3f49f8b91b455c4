"""Fuzz the whole gateway with mutated bodies and check that shared state survives.

The real gateway (uvicorn, SQLite log, admin API) runs in this process with one fake
upstream per wire dialect and two kinds of caller key: a static key from the config and a
virtual key with every limit set. `--bodies` cases are drawn from `--seed` (case *i* depends
on the seed and *i* only): three in four are chat requests — a valid body, then one or two
mutations among wrong types for every parameter, nesting to 5,000 levels in known and
unknown fields, NUL/surrogate/non-latin-1 text in strings and headers, huge strings and
arrays, odd numbers (1e309, -0.0, 2**64, NaN), and timeout headers such as
`x-crossroads-timeout: 1e-9` — and the rest go to `/v1/logs`, `/v1/usage`, `/v1/feedback`
and `/admin/keys` with hostile queries and bodies (see `crossroads.testing.fuzz`).

Printed: answers per endpoint and status, per mutation family, every failure (a 5xx, an
`internal_error` event in a started stream, no answer, or an error that is not OpenAI's
envelope) with its index, then the post-run checks: log written and readable, no leaked
parallel slot or budget reservation, no breaker charged, admin API working. Results go to
`benchmarks/results/fuzz_bodies.json`. The exit status is 1 when anything failed.

    python benchmarks/fuzz_bodies.py [--bodies 20000] [--seed 1] [--concurrency 4]
    python benchmarks/fuzz_bodies.py --seed 1 --replay 4711   # send case 4711 alone, show it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from crossroads.testing.fuzz.cases import ALL_FAMILIES, make_case
from crossroads.testing.fuzz.report import FuzzReport, run_fuzz
from crossroads.testing.fuzz.runner import send
from crossroads.testing.fuzz.stage import fuzz_stage

RESULTS = Path(__file__).parent / "results" / "fuzz_bodies.json"


def _table(title: str, rows: dict[str, dict[str, int]]) -> None:
    outcomes = sorted({o for counts in rows.values() for o in counts}, key=lambda o: (len(o), o))
    width = max(len(title), *(len(r) for r in rows))
    print(f"\n{title:<{width}}  " + "  ".join(f"{o:>7}" for o in outcomes) + "    total")
    for name, counts in rows.items():
        cells = "  ".join(f"{counts.get(o, 0):>{max(7, len(o))}}" for o in outcomes)
        print(f"{name:<{width}}  {cells}  {sum(counts.values()):>7}")


def _print(report: FuzzReport) -> None:
    data = report.as_json()
    print(
        f"\n{data['bodies']} bodies, seed {data['seed']}, {data['seconds']} s "
        f"({data['requests_per_s']} req/s); 5xx: {data['server_errors']}"
    )
    _table("endpoint", data["by_endpoint"])
    _table("family", data["by_family"])
    failures = data["failures"]
    print(f"\nfailures: {len(failures)}")
    for failure in failures[:40]:
        print(
            f"  #{failure['index']:<6} {failure['endpoint']:<28} {failure['family']:<24} "
            f"{failure['outcome']:<16} {failure['detail'][:100]!r}"
        )
    if len(failures) > 40:
        print(f"  … {len(failures) - 40} more in {RESULTS}")
    print("\nchecks:")
    for name, check in data["checks"].items():
        print(f"  {'ok  ' if check['ok'] else 'FAIL'} {name:<9} {check['detail']}")


def _replay(seed: int, index: int) -> int:
    case = make_case(seed, index)
    print(f"case {index} of seed {seed}: {case.family}")
    print(f"{case.method} {case.target[:300]!r}")
    for name, value in case.headers:
        print(f"{name[:80]!r}: {value[:200]!r}")
    body = case.body or b""
    print(f"body ({len(body)} bytes): {body[:1500]!r}")
    with fuzz_stage() as stage:
        reply = asyncio.run(send(stage, case))
    print(f"\n-> {reply.status or reply.transport_error}")
    print(reply.body[:3000].decode("utf-8", "replace"))
    return 0 if 0 < reply.status < 500 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bodies", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--first", type=int, default=0, help="start at case I (default 0)")
    parser.add_argument("--replay", type=int, default=None, help="send case I alone and show it")
    parser.add_argument(
        "--families",
        default=",".join(ALL_FAMILIES),
        help=f"comma-separated subset of: {', '.join(ALL_FAMILIES)}",
    )
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="default: results/fuzz_bodies.json, or fuzz_bodies_postgresql.json with a "
        "PostgreSQL --database-url",
    )
    args = parser.parse_args()
    if args.replay is not None:
        return _replay(args.seed, args.replay)
    families = tuple(f for f in args.families.split(",") if f)
    unknown = set(families) - set(ALL_FAMILIES)
    if unknown:
        parser.error(f"unknown families: {', '.join(sorted(unknown))}")
    report = run_fuzz(
        args.bodies,
        args.seed,
        families=families,
        concurrency=args.concurrency,
        database_url=args.database_url,
        progress=True,
        first=args.first,
    )
    _print(report)
    output = args.output or (
        RESULTS.with_name("fuzz_bodies_postgresql.json")
        if (args.database_url or "").startswith("postgres")
        else RESULTS
    )
    output.parent.mkdir(exist_ok=True)
    output.write_text(json.dumps(report.as_json(), indent=1, ensure_ascii=False) + "\n")
    print(f"\nwrote {output}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
