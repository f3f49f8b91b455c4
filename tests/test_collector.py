"""What each request leaves to the cyclic collector, and what start-up leaves to it.

`HangUp`: a disconnect cancels the block; a block that ends first leaves nothing behind. Its
watcher task runs on every non-streamed request, so what it leaves for the cyclic collector
adds up: a watcher ended by cancellation kept a cycle of some twenty objects alive per
request, and young collections ran every few hundred requests under load. The server also
freezes what its start-up made, so that full collections do not walk it.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path
from typing import Any

import httpx
import pytest

from crossroads.server.app import create_app
from crossroads.server.hangup import ClientLeft, HangUp
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import serve_in_thread
from tests.conftest import API_KEY, gateway_config


async def _never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@pytest.mark.parametrize("waits", [True, False], ids=["watcher-waiting", "watcher-not-started"])
async def test_a_block_that_ends_first_frees_its_watcher_without_the_cyclic_collector(
    waits: bool,
) -> None:
    gc.disable()
    try:
        with HangUp(_never) as hang_up:
            assert hang_up._watcher is not None
            watcher = weakref.ref(hang_up._watcher)
            if waits:
                await asyncio.sleep(0)  # the watcher is waiting on `receive`
        for _ in range(3):
            await asyncio.sleep(0)  # the cancellation is delivered, the task ends
        assert watcher() is None, "the watcher task is only reachable through a cycle"
        del hang_up
    finally:
        gc.enable()


async def test_a_disconnect_cancels_the_block_and_says_so() -> None:
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    with pytest.raises(ClientLeft):
        with HangUp(receive) as hang_up:
            await asyncio.sleep(5)
    assert hang_up.left


async def test_a_block_cancelled_for_another_reason_stays_cancelled() -> None:
    async def served() -> None:
        with HangUp(_never):
            await asyncio.sleep(5)

    task = asyncio.create_task(served())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_the_server_freezes_what_start_up_made_once_it_is_ready(tmp_path: Path) -> None:
    """`create_app(freeze_heap=True)` (what `crossroads serve` builds): the lifespan's
    stores, validators and engines are out of the cyclic collector's view, so full
    collections under load walk only what requests left."""
    gc.unfreeze()
    try:
        with FakeOpenAI(api_key="sk-upstream").running_in_thread() as fake:
            config = gateway_config(fake, tmp_path / "log.db")
            with serve_in_thread(create_app(config, freeze_heap=True)) as served:
                frozen = gc.get_freeze_count()
                answer = httpx.post(
                    f"{served.url}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
                )
                assert answer.status_code == 200, answer.text
        assert frozen > 10_000
    finally:
        gc.unfreeze()
