"""Stopping work for a client that has gone: one watcher task per request.

A caller that gives up should not keep a local model's slot busy, or keep paying an
upstream for tokens nobody will read. While a `HangUp` block runs, a watcher task waits on
the ASGI `receive` channel; on `http.disconnect` it cancels the task running the block,
which closes the upstream call wherever it is. Leaving the block then raises `ClientLeft`
instead of the cancellation. One plain task is the cheapest way to be told: running the
work in a second task and `asyncio.wait`-ing on both, or Starlette's anyio task group per
stream, cost several times more on every request.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from starlette.types import Receive

__all__ = ["ClientLeft", "HangUp"]


class ClientLeft(Exception):
    """The client disconnected while its request was being served."""


class HangUp:
    """`with HangUp(receive): ...` — cancel the block if the client disconnects."""

    __slots__ = ("_receive", "_task", "_watcher", "left")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._watcher: asyncio.Task[bool] | None = None
        self.left = False

    def __enter__(self) -> HangUp:
        task = asyncio.current_task()
        assert task is not None, "HangUp must be used inside a task"
        self._task = task
        self._watcher = asyncio.create_task(self._watch())
        self._watcher.add_done_callback(self._on_watcher_done)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        watcher, self._watcher = self._watcher, None
        assert watcher is not None, "HangUp blocks do not nest"
        watcher.remove_done_callback(self._on_watcher_done)
        watcher.cancel()
        if self.left and exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            self._task.uncancel()
            raise ClientLeft from None

    async def _watch(self) -> bool:
        """True once the client disconnects; False when cancelled because the block ended.

        What the watcher leaves matters on every request: a task ended by `CancelledError`
        keeps that exception, whose traceback holds this coroutine's frame, which holds
        `self`; had `self` still held the task, that was a reference cycle of some twenty
        objects (task, frames, the uvicorn request cycle) that only the cyclic collector
        frees, and it ran a young collection every few hundred requests. So `__exit__` lets
        go of the task, and a watcher cancelled while waiting returns instead of raising
        (one cancelled before it first ran, as a short block's is, cannot)."""
        try:
            while (await self._receive())["type"] != "http.disconnect":
                pass
        except asyncio.CancelledError:
            return False
        return True

    def _on_watcher_done(self, watcher: asyncio.Task[bool]) -> None:
        if not watcher.cancelled() and watcher.exception() is None and watcher.result():
            self.left = True
            self._task.cancel()
