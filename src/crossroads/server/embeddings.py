"""`POST /v1/embeddings`: OpenAI's embeddings endpoint, served locally or by an upstream.

The local model (`wordllama-l2-supercat-256`, also what collections and the semantic cache
use) answers with no network and costs nothing. Any other name is a catalog model: its
deployments are tried in order on providers of the `openai` dialect (the only wire dialect
here with an embeddings call), priced at the deployment's input price per 1M tokens.
Every call is written to the request log like a chat request (so it reaches `/v1/usage`,
budgets and the dashboard) and counted against the key's rpm/tpm/budget limits.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from crossroads.access import check_model_allowed
from crossroads.pipeline.context import CallContext
from crossroads.pipeline.ledger import Ledger
from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.protocol.json_body import decode_json_body
from crossroads.protocol.validation import validate_body
from crossroads.providers.base import UpstreamCall, UpstreamError
from crossroads.retrieval.embedder import LOCAL_MODEL
from crossroads.server.responses import JSONResponse, error_response
from crossroads.server.state import AppState
from crossroads.usage import estimate_tokens

__all__ = ["ENDPOINT", "EmbeddingsBody", "create_embeddings"]

# `metadata.endpoint` of this endpoint's log records (filter: `GET /v1/logs?metadata.endpoint=`).
ENDPOINT = "embeddings"

_log = logging.getLogger("crossroads.embeddings")
_MAX_BODY = 8 * 1024 * 1024
_MAX_INPUTS = 2048


class EmbeddingsBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    input: (
        Annotated[str, Field(min_length=1)]
        | Annotated[
            list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=_MAX_INPUTS)
        ]
        | Annotated[list[int], Field(min_length=1)]
        | Annotated[
            list[Annotated[list[int], Field(min_length=1)]],
            Field(min_length=1, max_length=_MAX_INPUTS),
        ]
    )
    model: Annotated[str, Field(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None


def _encoded(vector: list[float] | np.ndarray, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vector]


async def create_embeddings(request: Request) -> Response:
    state: AppState = request.app.state.crossroads
    try:
        client = request.client
        caller = await state.keys.authenticate(
            request.headers.get("authorization"), client.host if client else None
        )
    except GatewayError as exc:
        return error_response(exc)
    tags = request.headers.get("x-crossroads-tags")
    context = CallContext(
        key_id=caller.key_id,
        virtual_key=caller.virtual_key,
        session_header=request.headers.get("x-session-id") or None,
        tags=[t.strip() for t in tags.split(",") if t.strip()] if tags else None,
    )
    body: Any = None
    ledger: Ledger | None = None
    try:
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise GatewayError(
                413, f"Bodies are limited to {_MAX_BODY} bytes.", code="request_too_large"
            )
        body = decode_json_body(raw)
        ledger = _open_books(state, body, context)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.", code="invalid_value")
        parsed = validate_body(EmbeddingsBody, body, "Embeddings")
        local = parsed.model == LOCAL_MODEL
        if not local:  # the local model is free and what collections use: every key may
            check_model_allowed(context.virtual_key, [parsed.model])
        await ledger.admit_estimate(context, *_estimate(state, parsed))
        answer = await (_local(state, parsed) if local else _upstream(state, parsed, body))
    except GatewayError as exc:
        (ledger or _open_books(state, body, context)).fail(exc)
        return _answer(error_response(exc), context)
    except Exception as exc:  # a defect: still an envelope and a record
        return _answer(error_response(ledger.internal(exc)), context) if ledger else _crash(exc)
    _book(ledger, answer, context)
    return _answer(JSONResponse(answer), context)


def _open_books(state: AppState, body: Any, context: CallContext) -> Ledger:
    """The request's log record, marked `metadata.endpoint = "embeddings"` so log and usage
    queries can tell these rows from chat ones."""
    ledger = state.gateway.accounts.open(body, context)
    record = ledger.record
    record.metadata = {**(record.metadata or {}), "endpoint": ENDPOINT}
    return ledger


def _book(ledger: Ledger, answer: dict[str, Any], context: CallContext) -> None:
    """Close the books of a served request; the vectors are not kept in the log (a 2048-input
    request would write megabytes), only how many there were."""
    usage = answer["usage"]
    logged = {k: v for k, v in answer.items() if k != "data"}
    logged["embeddings"] = len(answer.get("data") or ())
    record = ledger.record
    record.model_served = answer.get("model")
    record.provider = answer.get("provider") or (
        "local" if answer["model"] == LOCAL_MODEL else None
    )
    latency_ms = (time.perf_counter() - context.received) * 1000
    ledger.succeed(logged, {**usage, "completion_tokens": 0}, latency_ms, attempts=None)


def _answer(response: Response, context: CallContext) -> Response:
    response.headers["x-crossroads-log-id"] = context.log_id
    response.headers.update(context.limit_headers or {})
    return response


def _crash(exc: Exception) -> Response:
    _log.error("internal error serving embeddings", exc_info=exc)
    return error_response(
        GatewayError(500, f"Internal error in the gateway ({type(exc).__name__}).")
    )


def _estimate(state: AppState, body: EmbeddingsBody) -> tuple[int, float]:
    """Tokens (for tpm) and the most the request can cost (for the budget reservation): the
    prompt (≈ 4 characters a token, or the token arrays' length) at the dearest deployment."""
    items = [body.input] if isinstance(body.input, str) else body.input
    if items and isinstance(items[0], int):
        tokens = len(items)
    elif items and isinstance(items[0], list):
        tokens = sum(len(i) for i in items if isinstance(i, list))
    else:
        tokens = estimate_tokens(sum(len(i) for i in items if isinstance(i, str)))
    entry = state.catalog.get(body.model)
    dearest = max((d.price.input for d in entry.deployments), default=0.0) if entry else 0.0
    return tokens, tokens * dearest / 1_000_000


async def _local(state: AppState, body: EmbeddingsBody) -> dict[str, Any]:
    if state.library is None:
        raise GatewayError(503, "Local embeddings are not available.", code="unavailable")
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not all(isinstance(t, str) for t in texts):
        raise bad_request(
            f"The local model {LOCAL_MODEL!r} takes text, not token arrays.", param="input"
        )
    embedder = state.library.embedder
    if body.dimensions is not None and body.dimensions > embedder.dimensions:
        raise bad_request(
            f"{LOCAL_MODEL!r} has {embedder.dimensions} dimensions; ask for at most that many.",
            param="dimensions",
        )
    strings = [str(t) for t in texts]
    vectors = await asyncio.to_thread(embedder.embed, strings)
    tokens = await asyncio.to_thread(embedder.count_tokens, strings)
    if body.dimensions is not None:
        vectors = vectors[:, : body.dimensions]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms == 0, 1, norms)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encoded(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": LOCAL_MODEL,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "cost": 0.0},
    }


async def _upstream(state: AppState, body: EmbeddingsBody, raw: dict[str, Any]) -> dict[str, Any]:
    entry = state.catalog.get(body.model)
    if entry is None:
        raise GatewayError(
            404,
            f"The model '{body.model}' does not exist: use {LOCAL_MODEL!r} or a configured "
            "embedding model.",
            param="model",
            code="model_not_found",
        )
    last: UpstreamError | None = None
    for deployment in entry.deployments:
        provider = state.providers.get(deployment.provider)
        embed = getattr(provider, "embeddings", None)
        if embed is None:
            continue
        forwarded = {**raw, "model": deployment.upstream_model}
        try:
            answer: dict[str, Any] = await embed(UpstreamCall(forwarded))
        except UpstreamError as exc:
            _log.info("embeddings on %s failed: %s", deployment.key, exc.message)
            last = exc
            continue
        given = answer.get("usage")
        usage: dict[str, Any] = given if isinstance(given, dict) else {}
        tokens = int(usage.get("prompt_tokens") or 0)
        answer["model"] = body.model
        answer["usage"] = {
            **usage,
            "prompt_tokens": tokens,
            "total_tokens": int(usage.get("total_tokens") or tokens),
            "cost": round(tokens * deployment.price.input / 1_000_000, 10),
        }
        answer["provider"] = deployment.provider
        return answer
    if last is not None:
        status = last.status if last.status and 400 <= last.status < 500 else 502
        raise GatewayError(
            status,
            f"Every deployment of '{body.model}' failed: {last.message}",
            code="upstream_error",
        )
    raise bad_request(
        f"The model '{body.model}' has no deployment that serves embeddings (dialect openai).",
        param="model",
        code="unsupported_model",
    )
