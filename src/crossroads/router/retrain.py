"""Retraining the learned router from the gateway's own traffic, on a schedule.

Every `router.retrain_interval` seconds the rated requests in the log (`feedback_rows`) and
any `router.retrain_data` files are gathered; with at least `retrain_min_rows` of them a new
artifact is trained in a worker thread (training is CPU work for seconds; the event loop
must keep serving), saved to `retrain_out` when set, and swapped in. A log row counts for
the profile its model is mapped to (`router_profile`), so a model's profile learns from the
public data and its own feedback together. A failure is logged and the current router kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.config import ModelConfig, RouterConfig
from crossroads.router.data import LabelledRow, read_rows
from crossroads.router.from_log import feedback_rows
from crossroads.router.predictor import QualityRouter, train
from crossroads.router.serve import LearnedRouter

__all__ = ["Retrainer"]

_log = logging.getLogger("crossroads.router")


class Retrainer:
    """The background task; `retrain_once()` is one round, also callable directly."""

    def __init__(
        self,
        router: LearnedRouter,
        engine: AsyncEngine,
        config: RouterConfig,
        models: Mapping[str, ModelConfig],
    ) -> None:
        self._router = router
        self._engine = engine
        self._config = config
        self._models = models
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0  # retrained artifacts swapped in

    @property
    def enabled(self) -> bool:
        return bool(self._config.retrain_interval)

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="router-retrainer")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        assert self._config.retrain_interval
        while True:
            await asyncio.sleep(self._config.retrain_interval)
            try:
                await self.retrain_once()
            except Exception:
                _log.exception("router: retraining failed; the current router stays")

    async def retrain_once(self) -> QualityRouter | None:
        """Train on the log's rated requests plus `retrain_data`; None when too few rows."""
        rows = [self._as_profile(row) for row in await feedback_rows(self._engine)]
        if self._config.retrain_data:
            rows += await asyncio.to_thread(read_rows, self._config.retrain_data)
        if len(rows) < self._config.retrain_min_rows:
            _log.info(
                "router: %d labelled rows, fewer than retrain_min_rows=%d; not retraining",
                len(rows),
                self._config.retrain_min_rows,
            )
            return None
        trained = await asyncio.to_thread(train, rows)
        if self._config.retrain_out:
            await asyncio.to_thread(trained.save, self._config.retrain_out)
        self._router.predictor = trained  # refused (raises) if a configured profile is missing
        self.rounds += 1
        _log.info("router: retrained on %d rows; profiles: %s", len(rows), trained.models)
        return trained

    def _as_profile(self, row: LabelledRow) -> LabelledRow:
        model = self._models.get(row.model)
        if model is None or model.router_profile is None:
            return row
        return dataclasses.replace(row, model=model.router_profile)
