"""Retraining the learned router from the gateway's own traffic, on a schedule.

Every `router.retrain_interval` seconds the rated requests in the log (`feedback_rows`) and
any `router.retrain_data` files are gathered. A log row counts for the profile its model is
mapped to (`router_profile`), so a model's profile learns from the public data and its own
feedback together. Models with fewer than `MIN_ROWS_PER_MODEL` rows are left out of this
round; with at least `retrain_min_rows` rows left a new artifact is trained, checked against
the config (every profile a model is predicted by must still be there), saved to
`retrain_out` when set, and swapped in. Any failure is logged and the current router kept.

A round with too few rows to retrain still hands the rated requests to the current router's
priors (`QualityRouter.with_feedback`): a (model, query type) people rate well or badly moves
the prior the router falls back on for prompts unlike its training data. (A retrained router
learns its priors from those rows directly.)

Training runs in a child Python process, not a thread: it is seconds to a minute of CPU
work, much of it pure Python holding the GIL, and in a thread it stalled the event loop
(p99 loop lag 0.3 → 6 ms while training, measured). The child gets the rows as JSON Lines and
writes an `.npz`, which is loaded like any artifact (no pickles cross the boundary).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.config import ModelConfig, RouterConfig
from crossroads.learned.data import LabelledRow, read_rows
from crossroads.learned.from_log import feedback_rows
from crossroads.learned.predictor import MIN_ROWS_PER_MODEL, QualityRouter
from crossroads.learned.serve import LearnedRouter
from crossroads.periodic import Periodic

__all__ = ["Retrainer", "train_in_child"]

_log = logging.getLogger("crossroads.learned")

# The child's whole program: imports only the router core (about 0.2 s), not the gateway.
_CHILD = (
    "import sys\n"
    "from crossroads.learned.data import read_jsonl\n"
    "from crossroads.learned.predictor import train\n"
    "train(read_jsonl(sys.argv[1])).save(sys.argv[2])\n"
)


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
        self._periodic = Periodic(
            self.retrain_once,
            config.retrain_interval or 0.0,
            name="router-retrainer",
            logger=_log,
            failure="router: retraining failed; the current router stays",
        )
        self.rounds = 0  # retrained artifacts swapped in

    @property
    def enabled(self) -> bool:
        return bool(self._config.retrain_interval)

    def start(self) -> None:
        if self.enabled:
            self._periodic.start()

    async def aclose(self) -> None:
        await self._periodic.aclose()

    async def retrain_once(self) -> QualityRouter | None:
        """Train on the log's rated requests plus `retrain_data`; None when too few rows."""
        rated = [self._as_profile(row) for row in await feedback_rows(self._engine)]
        rows = list(rated)
        if self._config.retrain_data:
            rows += await asyncio.to_thread(read_rows, self._config.retrain_data)
        counts = Counter(row.model for row in rows)
        if sparse := sorted(m for m, n in counts.items() if n < MIN_ROWS_PER_MODEL):
            _log.info(
                "router: left out of this retraining, fewer than %d rows: %s",
                MIN_ROWS_PER_MODEL,
                ", ".join(f"{m} ({counts[m]})" for m in sparse),
            )
            rows = [row for row in rows if counts[row.model] >= MIN_ROWS_PER_MODEL]
        if len(rows) < self._config.retrain_min_rows:
            _log.info(
                "router: %d labelled rows, fewer than retrain_min_rows=%d; not retraining",
                len(rows),
                self._config.retrain_min_rows,
            )
            if rated:
                self._router.predictor = self._router.predictor.with_feedback(rated)
            return None
        trained = await train_in_child(rows)
        self._router.check(trained)  # before saving: a restart must be able to load it
        if self._config.retrain_out:
            await asyncio.to_thread(_save, trained, Path(self._config.retrain_out))
        self._router.predictor = trained
        self.rounds += 1
        _log.info("router: retrained on %d rows; profiles: %s", len(rows), trained.models)
        return trained

    def _as_profile(self, row: LabelledRow) -> LabelledRow:
        model = self._models.get(row.model)
        if model is None or model.router_profile is None:
            return row
        return dataclasses.replace(row, model=model.router_profile)


async def train_in_child(rows: list[LabelledRow]) -> QualityRouter:
    """`train(rows)` in a child Python process; killed if the caller is cancelled."""
    with tempfile.TemporaryDirectory(prefix="crossroads-retrain-") as scratch:
        data, out = Path(scratch, "rows.jsonl"), Path(scratch, "router.npz")
        await asyncio.to_thread(_write_jsonl, rows, data)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            str(data),
            str(out),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, stderr = await child.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
            raise
        if child.returncode != 0:
            lines = stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(
                f"training exited with status {child.returncode}: "
                f"{lines[-1] if lines else 'no message'}"
            )
        return await asyncio.to_thread(QualityRouter.load, out)


def _write_jsonl(rows: list[LabelledRow], path: Path) -> None:
    with path.open("w", encoding="utf-8") as file:
        for row in rows:
            item = {"prompt": row.prompt, "model": row.model, "score": row.score}
            if row.cost is not None:
                item["cost"] = row.cost
            if row.completion_tokens is not None:
                item["completion_tokens"] = row.completion_tokens
            file.write(json.dumps(item) + "\n")


def _save(router: QualityRouter, path: Path) -> None:
    """Write beside `path`, then rename: a gateway (re)starting never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as file:
        partial = Path(file.name)
    try:
        router.save(partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
