"""`create_app(config)`: the ASGI application and its lifespan.

Every long-lived object — upstream HTTP pools, the database engine, the log writer, the
metrics registry — is created in the lifespan and closed there, in reverse order, so a
test can build and tear down as many apps as it likes in one process and nothing lives at
module level.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from crossroads.cache.build import build_response_cache, uses_semantic
from crossroads.cache.config import CacheConfig
from crossroads.catalog import Catalog
from crossroads.config import Config
from crossroads.counters import build_state
from crossroads.finetune.serving import with_registered_models
from crossroads.learned.retrain import Retrainer
from crossroads.learned.serve import LearnedRouter, load_router
from crossroads.limits import KeyLimits
from crossroads.pipeline import Gateway
from crossroads.pipeline.ledger import LogSink
from crossroads.pipeline.stages import StageKind
from crossroads.protocol.chat import ChatCompletionRequest
from crossroads.protocol.errors import GatewayError
from crossroads.providers.registry import build_providers
from crossroads.retrieval.embedder import LocalEmbedder
from crossroads.retrieval.library import Library
from crossroads.routing.shared import SharedRouting
from crossroads.server import (
    admin,
    collections,
    completions,
    dashboard,
    embeddings,
    feedback,
    messages,
    responses_api,
    routes,
)
from crossroads.server.auth import KeyRing, master_key_from_env
from crossroads.server.datasets import dataset_routes
from crossroads.server.key_cache import KeyCache
from crossroads.server.log_edit import log_edit_routes
from crossroads.server.metrics import GatewayMetrics, MeteredSink
from crossroads.server.openapi import build_openapi
from crossroads.server.responses import error_response
from crossroads.server.state import AppState
from crossroads.stages import config_stages
from crossroads.storage.collection_store import CollectionStore
from crossroads.storage.dashboard_store import Rollups
from crossroads.storage.database import create_engine, default_database_url
from crossroads.storage.fine_tune_store import FineTuneStore
from crossroads.storage.key_store import KeyStore
from crossroads.storage.log_store import LogStore
from crossroads.storage.retention import LogPruner, rollup_max_age
from crossroads.storage.usage_store import usage_totals
from crossroads.storage.writer import LogWriter
from crossroads.telemetry.setup import telemetry_from_config

if TYPE_CHECKING:
    from crossroads.telemetry.emit import Telemetry

__all__ = ["create_app"]

logger = logging.getLogger("crossroads")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = GatewayError(
            404, f"Unknown endpoint: {request.method} {request.url.path}.", code="unknown_url"
        )
    elif exc.status_code == 405:
        error = GatewayError(
            405,
            f"Method {request.method} is not allowed on {request.url.path}.",
            type="invalid_request_error",
            code="method_not_allowed",
        )
    else:
        error = GatewayError(exc.status_code, str(exc.detail))
    return error_response(error)


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(
        GatewayError(
            500, "The gateway hit an internal error; it has been logged.", code="internal_error"
        )
    )


_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})


class GatewayApp(Starlette):
    """Starlette, with `POST /v1/chat/completions` dispatched straight to its handler.

    Chat completions are nearly all of a gateway's traffic. Starlette's error middleware,
    exception middleware, router and route wrappers cost more per request than the rest of
    the HTTP layer, and that route needs none of them: its handler answers every error
    itself, and an unexpected exception still gets the 500 envelope here. The app has no
    middleware that this path could skip; add any here too.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in _CHAT_PATHS
            and "app" not in scope
        ):
            scope["app"] = self
            request = Request(scope, receive, send)
            try:
                response = await routes.chat_completions(request)
            except Exception as exc:
                response = await _internal_error(request, exc)
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _freeze_heap() -> None:
    """Collect once, then freeze what is left: it lives as long as the process.

    Done when start-up has finished, not before the app is built: the lifespan loads most
    of what a server holds (stores, migrations, wire-model validators, guardrail engines,
    the embedder), and a full collection walks every object not frozen. Frozen before the
    lifespan, a gateway with guardrails configured left about 126,000 objects to every
    full collection; frozen here, a few thousand.
    """
    gc.collect()
    gc.freeze()


def create_app(
    config: Config,
    stages: Sequence[StageKind] = (),
    telemetry: Telemetry | None = None,
    *,
    freeze_heap: bool = False,
) -> Starlette:
    """Build the app; nothing is opened until the lifespan starts.

    `stages` adds kinds of pipeline stages of the embedder's own (pipeline/stages.py) to
    the ones the config turns on; each runs at its fixed place in the pipeline. `telemetry`
    replaces the one `[telemetry]` would make (tests pass one with in-memory exporters).
    `freeze_heap` (the server process, not an embedder's) moves everything start-up made
    out of the cyclic collector's view once the app is ready (see `_freeze_heap`)."""

    configured = config  # registered fine-tuned models are added to it at each start

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal config
        engine = create_engine(config.storage.database_url or default_database_url())
        log_store = LogStore(engine)
        await log_store.open()  # migrates every table, virtual keys' too
        config = await with_registered_models(configured, FineTuneStore(engine))
        key_store = KeyStore(engine)
        collection_store = CollectionStore(engine)
        await collection_store.open()
        library = Library(collection_store, LocalEmbedder())
        cache_config = config.cache or CacheConfig()
        response_cache = build_response_cache(
            cache_config, engine, library.embedder, config.storage.state_url
        )
        key_cache = KeyCache(key_store)
        rollups = Rollups(engine, interval=config.storage.flush_interval)  # for the dashboard
        log_writer = LogWriter(
            log_store, flush_interval=config.storage.flush_interval, on_written=rollups.add
        )
        await log_writer.start()
        providers = build_providers(config)
        catalog = Catalog.from_config(config)
        metrics = GatewayMetrics(models=(entry.name for entry in catalog))
        counters = build_state(config.storage.state_url)
        pruner = LogPruner(
            engine,
            max_age=(
                timedelta(days=config.storage.retention_days)
                if config.storage.retention_days
                else None
            ),
            max_rows=config.storage.retention_rows,
            rollup_max_age=rollup_max_age(config.storage.rollup_retention_days),
            interval=config.storage.prune_interval,
        )

        async def spent(key_id: str, since: datetime | None) -> float:
            rows = await usage_totals(engine, group_by="key", start=since, key_id=key_id)
            return float(sum(row["cost"] for row in rows))

        traced = telemetry or telemetry_from_config(config.telemetry)
        sink: LogSink = MeteredSink(log_writer, metrics)
        if traced is not None:
            sink = traced.sink(sink)
        learned = LearnedRouter(load_router(config.router), catalog, config.models, config.router)
        retrainer = Retrainer(learned, engine, config.router, config.models)
        gateway = Gateway(
            catalog,
            providers,
            sink,
            config.routing,
            limits=KeyLimits(counters, lease_s=config.routing.timeout),
            spent=spent,
            learned=learned,
            stages=[*config_stages(config, library, response_cache), *stages],
            telemetry=traced,
        )
        shared = None
        if config.storage.state_url and not config.storage.state_url.startswith("memory://"):
            shared = SharedRouting(
                config.storage.state_url,
                breakers=gateway.route_state.breakers,
                stats=gateway.route_state.stats,
                deployments=lambda: [d.key for entry in catalog for d in entry.deployments],
                interval=config.routing.sync_interval,
            )
        state = AppState(
            config=config,
            catalog=catalog,
            keys=KeyRing(config.keys, master_key=master_key_from_env(), virtual_keys=key_cache),
            providers=providers,
            log_store=log_store,
            log_writer=log_writer,
            gateway=gateway,
            metrics=metrics,
            openapi_document=build_openapi(),
            key_store=key_store,
            key_cache=key_cache,
            shared=shared,
            library=library,
        )
        app.state.crossroads = state
        try:
            for provider in providers.values():
                await provider.start()
            pruner.start()
            retrainer.start()
            if shared is not None:
                shared.start()
            for kind in gateway.stage_kinds:
                if (warm := getattr(kind, "warm", None)) is not None:
                    await asyncio.to_thread(warm)  # load models now, not on a first request
            if uses_semantic(cache_config):
                await asyncio.to_thread(library.embedder.warm)
            # The wire models build their validators when first used (so the command line
            # starts quickly); the server builds them now, not on the first request.
            ChatCompletionRequest.model_rebuild(force=True)
            if freeze_heap:
                _freeze_heap()
            state.phase = "serving"
            yield
        finally:
            state.phase = "shutting down"
            await pruner.aclose()
            await retrainer.aclose()
            if shared is not None:
                await shared.aclose()
            for provider in providers.values():
                await provider.aclose()
            await gateway.drain()
            for kind in gateway.stage_kinds:
                if (drain := getattr(kind, "drain", None)) is not None:
                    await drain()
            await response_cache.aclose()
            await counters.aclose()
            await log_writer.close()
            await rollups.aclose()
            await log_store.close()
            if traced is not None:
                await asyncio.to_thread(traced.shutdown)

    return GatewayApp(
        routes=[
            Route("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
            Route("/chat/completions", routes.chat_completions, methods=["POST"]),
            Route("/v1/models", messages.list_models, methods=["GET"]),
            Route("/v1/messages", messages.create_message, methods=["POST"]),
            Route("/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
            Route("/v1/responses", responses_api.create_response, methods=["POST"]),
            Route("/v1/responses/{response_id}", responses_api.get_response, methods=["GET"]),
            Route("/v1/completions", completions.create_completion, methods=["POST"]),
            Route("/v1/logs", routes.list_logs, methods=["GET"]),
            Route("/v1/logs/{log_id}", routes.get_log, methods=["GET"]),
            Route("/v1/feedback", feedback.create_feedback, methods=["POST"]),
            Route("/v1/providers/stats", routes.provider_stats, methods=["GET"]),
            Route("/v1/usage", routes.usage, methods=["GET"]),
            Route("/health", routes.health, methods=["GET"]),
            Route("/ready", routes.ready, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            Route("/openapi.json", routes.openapi, methods=["GET"]),
            *admin.key_routes(),
            *collections.collection_routes(),
            Route("/v1/embeddings", embeddings.create_embeddings, methods=["POST"]),
            *log_edit_routes(),
            *dataset_routes(),
            *dashboard.routes(),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        lifespan=lifespan,
    )
