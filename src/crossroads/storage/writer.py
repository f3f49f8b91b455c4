"""Batching request-log writes off the request path.

A request handler must never wait for the database, so it only hands its record to
`LogWriter.submit`, which appends to an in-memory queue. A background task writes the
queue in batches: every `flush_interval` seconds, or sooner once `max_batch` records wait.
When the database is unavailable the records stay queued and are retried with a capped
backoff; only when more than `max_pending` records wait are the oldest dropped (counted in
`dropped` and logged). A batch that fails for any other reason than the database being
unreachable, busy or shutting down is retried record by record, so one bad record cannot
block the rest. A record refused on its own is stored without its tags, bodies, metadata
and extra (those replaced by a note saying why; counted in `stripped`), or, if even that is
refused for its data, dropped (counted in `rejected`); either is logged once, with its id.
The writer never retries a record for what it holds, so it never stalls on one: only a
database that refuses even a stripped record (it is down, or its schema is missing) keeps
records queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc

from crossroads.storage.log_store import LogStore
from crossroads.storage.records import LogRecord
from crossroads.storage.storable import not_stored, storable_text

__all__ = ["LogWriter"]

_log = logging.getLogger("crossroads.storage")


# SQLSTATE classes of a database that is unreachable, overloaded or shutting down, or of a
# transaction to run again: 08 connection, 40 rollback, 53 resources, 55 object state (a
# lock), 57 operator intervention, 58 system error.
_TRANSIENT_SQLSTATES = frozenset({"08", "40", "53", "55", "57", "58"})


def _sqlstate(error: BaseException) -> str | None:
    orig = getattr(error, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


def _is_transient(error: BaseException) -> bool:
    """True when the database could not be reached or used right now: retry later as is."""
    if isinstance(error, OSError | TimeoutError | sqlite3.OperationalError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated or isinstance(error.orig, OSError | TimeoutError):
            return True
        code = _sqlstate(error)
        if code is not None:
            return code[:2] in _TRANSIENT_SQLSTATES
        return isinstance(error, sa_exc.OperationalError)
    return isinstance(error, sa_exc.DisconnectionError | sa_exc.TimeoutError)


def _is_data_error(error: BaseException) -> bool:
    """True when the database, or the conversion before it, refused the data itself."""
    if isinstance(error, sa_exc.IntegrityError | sa_exc.DataError):
        return True
    # The same, from the stdlib driver that writes SQLite logs (a duplicate id, a value
    # no column can hold); its OperationalError (a locked file) stays transient.
    if isinstance(error, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.InterfaceError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        # SQLSTATE classes 22 (data exception), 23 (integrity constraint violation) and 54
        # (program limit exceeded: a value too large for an index row, say).
        code = _sqlstate(error)
        return code is not None and code[:2] in {"22", "23", "54"}
    # A parameter could not be converted or encoded (a value too deep, too large, or of a
    # type no column takes).
    return isinstance(
        error,
        sa_exc.StatementError | TypeError | ValueError | RecursionError | OverflowError,
    )


def _safe_text(value: Any) -> str | None:
    """Text any column takes (see `storable_text`), whatever the value was."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return storable_text(text)


def _safe_number(value: Any, kind: type[int] | type[float]) -> Any:
    """`value` if it is a `kind` that every backend's column takes, else None."""
    if type(value) is not kind:
        return None
    number: float = value
    if kind is int and not -(2**31) <= number < 2**31:
        return None
    return number if math.isfinite(number) and abs(number) <= 1e15 else None


def _stripped(record: LogRecord, reason: str) -> LogRecord:
    """What is kept of a record the database refused: its accounting, without its tags,
    bodies, metadata or extra (those replaced by a note saying why), its text made safe."""
    note = not_stored(f"the database refused this record ({reason[:200]})")
    texts: dict[str, Any] = {
        name: _safe_text(getattr(record, name))
        for name in (
            "key_id",
            "model_served",
            "provider",
            "upstream_model",
            "error_code",
            "error_message",
            "user",
            "session_id",
        )
    }
    numbers: dict[str, Any] = {
        name: _safe_number(getattr(record, name), kind)
        for name, kind in (
            ("prompt_tokens", int),
            ("completion_tokens", int),
            ("total_tokens", int),
            ("cached_tokens", int),
            ("prompt_characters", int),
            ("response_characters", int),
            ("cost", float),
            ("latency_ms", float),
            ("ttft_ms", float),
        )
    }
    return dataclasses.replace(
        record,
        model_requested=_safe_text(record.model_requested) or "",
        status_code=record.status_code if type(record.status_code) is int else 0,
        stream=record.stream is True,
        request=None if record.request is None else note,
        response=None if record.response is None else note,
        metadata=None if record.metadata is None else note,
        extra=None if record.extra is None else note,
        tags=None,
        **texts,
        **numbers,
    )


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
        on_written: Callable[[Sequence[LogRecord]], Awaitable[None]] | None = None,
    ) -> None:
        if flush_interval <= 0 or max_batch < 1 or max_pending < 1:
            raise ValueError("flush_interval, max_batch and max_pending must be positive")
        self._store = store
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._max_backoff = max(max_backoff, flush_interval)
        # Told of every batch once stored (the dashboard's rollups); its failure is logged
        # and never retried, since retrying would write the records twice.
        self._on_written = on_written
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
        self.stripped = 0

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
            if _is_transient(error):
                raise
            # The hook hears of exactly the records stored (stripped ones as stored, rejected
            # ones not at all), even when the database fails partway and the rest is requeued.
            stored: list[LogRecord] = []
            try:
                await self._write_one_by_one(batch, error, stored)
            finally:
                await self._written(stored)
        else:
            self.written += len(batch)
            await self._written(batch)

    async def _written(self, batch: list[LogRecord]) -> None:
        if self._on_written is None or not batch:
            return
        try:
            await self._on_written(batch)
        except Exception:
            _log.exception("request log: the after-write hook failed for %d records", len(batch))

    async def _write_one_by_one(
        self, batch: list[LogRecord], error: Exception, stored: list[LogRecord]
    ) -> None:
        """Each record of a refused batch alone; those stored are appended to `stored`."""
        _log.warning(
            "request log: batch of %d rejected (%s); writing one by one", len(batch), error
        )
        for index, record in enumerate(batch):
            try:
                try:
                    await self._store.write([record])
                except Exception as single_error:
                    if _is_transient(single_error):
                        raise
                    kept = await self._write_stripped(record, single_error)
                    if kept is not None:
                        stored.append(kept)
                else:
                    self.written += 1
                    stored.append(record)
            except BaseException:
                del batch[:index]  # the caller requeues what is left, this record included
                raise

    async def _write_stripped(self, record: LogRecord, error: Exception) -> LogRecord | None:
        """Store what can be kept of a record the database refused, or drop it, once; returns
        what was stored, or None.

        If even the stripped record fails for a reason that is not its data, the database
        itself is failing: that is raised, and the record retried later like any other.
        """
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        stripped = _stripped(record, reason)
        try:
            await self._store.write([stripped])
        except Exception as stripped_error:
            if not _is_data_error(stripped_error):
                raise
            self.rejected += 1
            _log.error(
                "request log: record %s rejected by the database and not stored: %s",
                record.id,
                reason,
            )
            return None
        self.written += 1
        self.stripped += 1
        _log.error(
            "request log: record %s rejected by the database (%s); stored without its "
            "bodies and metadata",
            record.id,
            reason,
        )
        return stripped

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
