"""`Periodic`, the loop behind the gateway's background chores."""

from __future__ import annotations

import asyncio
import logging

import pytest

from crossroads.periodic import Periodic

_log = logging.getLogger("crossroads.test-periodic")


async def test_runs_at_once_or_after_an_interval_and_survives_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[str] = []

    async def flaky() -> None:
        runs.append("run")
        if len(runs) == 2:
            raise RuntimeError("second run fails")

    now = Periodic(flaky, 0.05, name="now", logger=_log, failure="chore failed", immediately=True)
    with caplog.at_level(logging.ERROR, logger=_log.name):
        now.start()
        now.start()  # a second start is a no-op, not a second loop
        await asyncio.sleep(0.01)
        assert runs == ["run"]  # at once
        await asyncio.sleep(0.2)
        await now.aclose()
    assert len(runs) >= 4  # the failed second run did not end the loop
    assert [r.getMessage() for r in caplog.records] == ["chore failed"]
    assert caplog.records[0].exc_info is not None
    count = len(runs)
    await asyncio.sleep(0.1)
    assert len(runs) == count  # closed: no more runs
    assert not now.running

    later: list[int] = []

    async def note() -> None:
        later.append(1)

    delayed = Periodic(note, 0.1, name="later", logger=_log, failure="never")
    delayed.start()
    await asyncio.sleep(0.05)
    assert later == []  # not before one interval
    await asyncio.sleep(0.1)
    assert later == [1]
    await delayed.aclose()


async def test_aclose_cancels_a_run_in_progress() -> None:
    started = asyncio.Event()
    cancelled = False

    async def slow() -> None:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled = True
            raise

    chore = Periodic(slow, 1, name="slow", logger=_log, failure="x", immediately=True)
    chore.start()
    await started.wait()
    await chore.aclose()
    assert cancelled
    await chore.aclose()  # closing twice is harmless
