"""One GGUF model loaded in-process by llama.cpp, driven from asyncio.

xllamacpp's `Server` runs llama.cpp's own server loop (continuous batching over parallel
slots) on a C++ thread. Its `handle_*` calls block the calling thread with the GIL
released, so each request runs in a worker thread and the event loop never waits on the
model. Generation is always streamed internally: the per-chunk callback is the only way to
stop llama.cpp early, so a caller that goes away (client disconnect, `aclose`) frees its
slot at once, streaming or not.

`Server` also opens an HTTP endpoint on 127.0.0.1 for the routes it does not expose to
Python (`/apply-template`, `/tokenize`, `/detokenize`). It is locked with a random key only
this process knows, so nothing else on the machine can use the engine around the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

__all__ = ["EngineError", "EngineSettings", "LlamaEngine"]

logger = logging.getLogger("crossroads.llamacpp")

_DONE = object()


class EngineError(Exception):
    """llama.cpp refused or failed a request; `status` is the HTTP status it implies."""

    def __init__(self, message: str, status: int = 400, kind: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind


@dataclass(frozen=True, slots=True)
class EngineSettings:
    model_path: str
    context_size: int = 4096  # total KV cache, shared by the slots
    parallel: int = 4
    threads: int | None = None
    chat_template: str | None = None  # Jinja source; None uses the GGUF's own
    alias: str = "local"


def _engine_error(error: Any) -> EngineError:
    if isinstance(error, dict):
        message = str(error.get("message") or error)
        code = error.get("code")
        status = code if isinstance(code, int) and 400 <= code < 600 else 500
        return EngineError(message, status, error.get("type"))
    return EngineError(str(error), 500)


class LlamaEngine:
    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self._server: Any = None
        self._key = secrets.token_urlsafe(24)
        self._http: aiohttp.ClientSession | None = None
        self.load_seconds: float | None = None

    @property
    def loaded(self) -> bool:
        return self._server is not None

    # --- life cycle -----------------------------------------------------------------------

    def _build(self) -> Any:
        import xllamacpp

        settings = self.settings
        params = xllamacpp.CommonParams()
        params.model.path = settings.model_path
        params.n_ctx = settings.context_size
        params.n_parallel = settings.parallel
        params.cont_batching = True
        threads = settings.threads or max(1, os.cpu_count() or 1)
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        if settings.chat_template is not None:
            params.chat_template = settings.chat_template
        params.use_jinja = True
        # Gemma 3 uses sliding-window attention; a full-size SWA cache lets a prompt that
        # shares a prefix with the previous one reuse all of it (beam search relies on this).
        params.swa_full = True
        params.fit_params = False
        params.verbosity = 0
        params.model_alias = {settings.alias}
        params.api_keys = [self._key]
        return xllamacpp.Server(params)

    async def load(self) -> None:
        """Load the weights in a worker thread; logs a progress line and the load time."""
        logger.info("loading %s …", self.settings.model_path)
        started = time.perf_counter()
        try:
            self._server = await asyncio.to_thread(self._build)
        except RuntimeError as exc:
            raise EngineError(
                f"llama.cpp could not load {self.settings.model_path}: {exc}", 500
            ) from None
        self.load_seconds = time.perf_counter() - started
        self._http = aiohttp.ClientSession(
            base_url=self._server.listening_address,
            headers={"Authorization": f"Bearer {self._key}"},
            timeout=aiohttp.ClientTimeout(total=60),
        )
        logger.info(
            "loaded %s in %.2f s (%d slots, context %d)",
            os.path.basename(self.settings.model_path),
            self.load_seconds,
            self.settings.parallel,
            self.settings.context_size,
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        # xllamacpp stops its threads when the Server object is collected.
        self._server = None

    def _require(self) -> Any:
        if self._server is None:
            raise EngineError("the model is still loading; try again shortly", 503, "loading")
        return self._server

    # --- requests -------------------------------------------------------------------------

    async def stream(self, method: str, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any]]:
        """Run `handle_chat_completions` or `handle_completions` streamed, chunk by chunk.

        Closing the iterator early stops generation and frees the slot.
        """
        server = self._require()
        handler: Callable[..., Any] = getattr(server, method)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return cancelled.is_set()

        def run() -> None:
            try:
                handler({**body, "stream": True}, on_chunk)
            except (ValueError, RuntimeError) as exc:
                loop.call_soon_threadsafe(queue.put_nowait, EngineError(str(exc), 400))
            except Exception as exc:
                loop.call_soon_threadsafe(queue.put_nowait, EngineError(repr(exc), 500))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        worker = loop.run_in_executor(None, run)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, EngineError):
                    raise item
                if isinstance(item, dict) and "error" in item and "choices" not in item:
                    raise _engine_error(item["error"])
                yield item
        finally:
            cancelled.set()
            await asyncio.shield(worker)

    async def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed call (used where cancellation does not matter: short steps)."""
        server = self._require()
        try:
            result = await asyncio.to_thread(getattr(server, method), {**body, "stream": False})
        except (ValueError, RuntimeError) as exc:
            raise EngineError(str(exc), 400) from None
        if isinstance(result, dict) and "error" in result and "choices" not in result:
            raise _engine_error(result["error"])
        if not isinstance(result, dict):
            raise EngineError(f"unexpected engine result: {result!r}", 500)
        return result

    async def http(self, path: str, payload: dict[str, Any]) -> Any:
        """POST to one of the engine's own loopback routes (`/apply-template`, `/tokenize`…)."""
        self._require()
        assert self._http is not None
        async with self._http.post(path, data=orjson.dumps(payload)) as response:
            data = await response.read()
            decoded = orjson.loads(data) if data else None
            if response.status >= 400:
                error = decoded.get("error") if isinstance(decoded, dict) else decoded
                raise _engine_error(error)
            return decoded
