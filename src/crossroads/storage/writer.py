"""Batching request-log writes off the request path.

A request handler must never wait for the database, so it only hands its record to
`LogWriter.submit`, which appends to an in-memory queue. A background task writes the
queue in batches: every `flush_interval` seconds, or sooner once `max_batch` records wait.
When the database is unavailable the records stay queued and are retried with a capped
backoff; only when more than `max_pending` records wait are the oldest dropped (counted in
`dropped` and logged). A batch the database rejects for its content (not for being
unreachable) is retried record by record so one bad record cannot block the rest; records
rejected on their own are logged with their ids and counted in `rejected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import deque

from sqlalchemy import exc as sa_exc

from crossroads.storage.log_store import LogStore
from crossroads.storage.records import LogRecord

__all__ = ["LogWriter"]

_log = logging.getLogger("crossroads.storage")


def _is_data_error(error: BaseException) -> bool:
    """True when the database refused the data itself, so retrying as is cannot succeed.

    Anything else (connection refused, timeouts, a locked SQLite file, errors we do not
    recognise) counts as transient: the records are kept and retried.
    """
    if isinstance(error, sa_exc.IntegrityError | sa_exc.DataError):
        return True
    # The same, from the stdlib driver that writes SQLite logs (a duplicate id, a value
    # no column can hold); its OperationalError (a locked file) stays transient.
    if isinstance(error, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.InterfaceError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        # SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation).
        code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return isinstance(code, str) and code[:2] in {"22", "23"}
    # A parameter could not be converted (e.g. a body that is not JSON-serialisable).
    return isinstance(error, sa_exc.StatementError | TypeError | ValueError)


class LogWriter:
    """Queues `LogRecord`s and writes them to a `LogStore` in batches, in the background.

    `submit` must be called from the event loop's thread (it touches an `asyncio.Event`).
    """

    def __init__(
        self,
        store: LogStore,
        *,
        flush_interval: float = 1.0,
        max_batch: int = 500,
        max_pending: int = 100_000,
        max_backoff: float = 30.0,
    ) -> None:
        if flush_interval <= 0 or max_batch < 1 or max_pending < 1:
            raise ValueError("flush_interval, max_batch and max_pending must be positive")
        self._store = store
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._max_backoff = max(max_backoff, flush_interval)
        self._queue: deque[LogRecord] = deque()
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures = 0
        self._dropped_reported = 0
        self.written = 0
        self.dropped = 0
        self.rejected = 0

    @property
    def pending(self) -> int:
        """Records submitted and not yet written (including a batch being written)."""
        return len(self._queue) + self._in_flight

    def submit(self, record: LogRecord) -> None:
        """Queue `record` for writing. O(1); never blocks."""
        self._queue.append(record)
        if len(self._queue) > self._max_pending:
            self._queue.popleft()
            self.dropped += 1
        if len(self._queue) >= self._max_batch and self._failures == 0:
            self._wake.set()

    async def start(self) -> None:
        """Start the background flushing task (idempotent)."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="crossroads-log-writer")

    async def flush(self) -> None:
        """Write everything queued now. Raises if the database fails; nothing is lost."""
        async with self._flush_lock:
            while self._queue:
                batch = [
                    self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))
                ]
                self._in_flight = len(batch)
                try:
                    await self._write(batch)
                except BaseException:
                    self._requeue(batch)
                    raise
                finally:
                    self._in_flight = 0

    async def close(self) -> None:
        """Stop the background task and write everything submitted so far.

        If that final write fails the error is logged and raised, and the records remain
        `pending` (a later `flush()` may still write them).
        """
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            await task
        self._report_drops()
        try:
            await self.flush()
        except Exception:
            _log.error("request log: %d records could not be written at close", self.pending)
            raise

    async def _write(self, batch: list[LogRecord]) -> None:
        try:
            await self._store.write(batch)
        except Exception as error:
            if not _is_data_error(error):
                raise
            await self._write_one_by_one(batch, error)
        else:
            self.written += len(batch)

    async def _write_one_by_one(self, batch: list[LogRecord], error: Exception) -> None:
        _log.warning(
            "request log: batch of %d rejected (%s); writing one by one", len(batch), error
        )
        for index, record in enumerate(batch):
            try:
                await self._store.write([record])
            except Exception as single_error:
                if not _is_data_error(single_error):
                    del batch[:index]  # the caller requeues what is left
                    raise
                self.rejected += 1
                _log.error(
                    "request log: record %s rejected by the database and not stored: %s",
                    record.id,
                    single_error,
                )
            else:
                self.written += 1

    def _requeue(self, batch: list[LogRecord]) -> None:
        self._queue.extendleft(reversed(batch))
        while len(self._queue) > self._max_pending:
            self._queue.popleft()
            self.dropped += 1

    def _report_drops(self) -> None:
        if self.dropped > self._dropped_reported:
            _log.error(
                "request log: queue full (%d records), dropped %d oldest records",
                self._max_pending,
                self.dropped - self._dropped_reported,
            )
            self._dropped_reported = self.dropped

    def _next_delay(self) -> float:
        if self._failures == 0:
            return self._flush_interval
        return min(self._flush_interval * 2.0**self._failures, self._max_backoff)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_delay()):
                    await self._wake.wait()
            self._wake.clear()
            self._report_drops()
            if self._stopping:
                break
            try:
                await self.flush()
            except Exception:
                self._failures += 1
                _log.exception(
                    "request log: write failed (attempt %d, %d records pending); retrying in %.1fs",
                    self._failures,
                    self.pending,
                    self._next_delay(),
                )
            else:
                if self._failures:
                    _log.info("request log: writes recovered after %d failures", self._failures)
                self._failures = 0
