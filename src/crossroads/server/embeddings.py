"""`POST /v1/embeddings`: OpenAI's embeddings endpoint, served locally or by an upstream.

The local model (`wordllama-l2-supercat-256`, also what collections and the semantic cache
use) answers with no network and costs nothing. Any other name is a catalog model: its
deployments are tried in order on providers of the `openai` dialect (the only wire dialect
here with an embeddings call), priced at the deployment's input price per 1M tokens.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.protocol.json_body import decode_json_body
from crossroads.protocol.validation import validate_body
from crossroads.providers.base import UpstreamCall, UpstreamError
from crossroads.retrieval.embedder import LOCAL_MODEL
from crossroads.server.responses import JSONResponse, error_response
from crossroads.server.state import AppState

__all__ = ["EmbeddingsBody", "create_embeddings"]

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
        await state.keys.authenticate(
            request.headers.get("authorization"), client.host if client else None
        )
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise GatewayError(
                413, f"Bodies are limited to {_MAX_BODY} bytes.", code="request_too_large"
            )
        body = decode_json_body(raw)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.", code="invalid_value")
        parsed = validate_body(EmbeddingsBody, body, "Embeddings")
        if parsed.model == LOCAL_MODEL:
            return JSONResponse(await _local(state, parsed))
        return JSONResponse(await _upstream(state, parsed, body))
    except GatewayError as exc:
        return error_response(exc)


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
