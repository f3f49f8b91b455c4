"""`Periodic`: a chore run every few seconds in the background, from start-up to shutdown.

Log retention, router retraining and the exchange of routing state between replicas all
need the same loop: a task started in the app's lifespan, one run per interval, cancelled
and awaited at shutdown. The loop also owns the rule they share: a chore that fails is
logged and tried again at its next turn, never allowed to end the task or take serving down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Periodic"]


class Periodic:
    """Runs `job` every `interval` seconds while started; at once on `start()` when
    `immediately`, else first after one interval. A run that raises is logged on `logger`
    with `failure` and the schedule goes on."""

    def __init__(
        self,
        job: Callable[[], Awaitable[object]],
        interval: float,
        *,
        name: str,
        logger: logging.Logger,
        failure: str,
        immediately: bool = False,
    ) -> None:
        self._job = job
        self._interval = interval
        self._name = name
        self._logger = logger
        self._failure = failure
        self._immediately = immediately
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Start the task (a no-op when it runs already)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def aclose(self) -> None:
        """Cancel the task and wait until it has stopped (a run in progress is cancelled)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        if not self._immediately:
            await asyncio.sleep(self._interval)
        while True:
            try:
                await self._job()
            except Exception:
                self._logger.exception(self._failure)
            await asyncio.sleep(self._interval)
