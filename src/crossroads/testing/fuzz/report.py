"""One fuzz run, start to finish: a stage, N cases, the checks, and what to print."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from crossroads.testing.fuzz.cases import ALL_FAMILIES, make_case
from crossroads.testing.fuzz.checks import Check, run_checks
from crossroads.testing.fuzz.runner import Tally, send_all
from crossroads.testing.fuzz.stage import fuzz_stage

__all__ = ["FuzzReport", "run_fuzz"]


@dataclass(slots=True)
class FuzzReport:
    seed: int
    bodies: int
    tally: Tally
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return not self.tally.failures and all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        tally = self.tally
        return {
            "seed": self.seed,
            "bodies": self.bodies,
            "seconds": round(tally.seconds, 1),
            "requests_per_s": round(tally.sent / tally.seconds, 1) if tally.seconds else None,
            "server_errors": tally.server_errors,
            "by_endpoint": {
                k: dict(sorted(v.items())) for k, v in sorted(tally.by_endpoint.items())
            },
            "by_family": {k: dict(sorted(v.items())) for k, v in sorted(tally.by_family.items())},
            "failures": [f.as_json() for f in tally.failures],
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
            "ok": self.ok,
        }


def run_fuzz(
    bodies: int,
    seed: int,
    *,
    families: tuple[str, ...] = ALL_FAMILIES,
    concurrency: int = 4,
    database_url: str | None = None,
    progress: bool = False,
    first: int = 0,
) -> FuzzReport:
    """Start a stage, send `bodies` cases of the run `seed` (from case `first` on: a
    stretch of a long run can be run again alone), check, tear down."""
    with fuzz_stage(database_url) as stage:

        async def run() -> FuzzReport:
            cases = (make_case(seed, i, families) for i in range(first, first + bodies))
            tally = await send_all(stage, cases, concurrency=concurrency, progress=progress)
            checks = await run_checks(stage, tally.last_log_id)
            return FuzzReport(seed, bodies, tally, checks)

        return asyncio.run(run())
