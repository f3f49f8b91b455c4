"""`/v1/datasets`: datasets from the request log or uploaded JSONL, edited, split, exported.

A dataset belongs to the key that created it and to that key's team: any other key gets a
404 for it, exactly as for one that does not exist. Rows come from the log by `GET /v1/logs`'s
own filters (given as an object, `{"model": "x", "tags": "a,b", "metadata.k": "v"}`), limited
to the records the key may read, or from an uploaded JSONL body (`content-type:
application/jsonl`) in OpenAI chat or preference format, checked whole before any row is
stored. Export streams: `GET /v1/datasets/{id}/export?format=openai|openai-dpo|together-dpo|
trl-dpo&split=train|test`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from crossroads.datasets.export import EXPORT_FORMATS, export_lines
from crossroads.datasets.formats import check_openai_chat
from crossroads.datasets.pruning import Pruner, PruningRule
from crossroads.datasets.rows import RowInput, row_from_upload
from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.protocol.validation import validate_body
from crossroads.server.log_query import log_query
from crossroads.server.request_body import read_bytes, read_object
from crossroads.server.responses import JSONResponse, error_response
from crossroads.server.state import AppState
from crossroads.storage.dataset_store import Dataset, DatasetRow, DatasetStore, Owner

__all__ = ["JSONL_TYPES", "dataset_json", "dataset_routes", "row_json"]

_log = logging.getLogger("crossroads.datasets")

_MAX_BODY = 1024 * 1024
_MAX_UPLOAD = 64 * 1024 * 1024
_MAX_ROWS_PAGE = 1000
# Content types `POST /v1/datasets/{id}/rows` reads as a JSONL upload; any other is JSON.
JSONL_TYPES = ("application/jsonl", "application/x-ndjson", "application/x-jsonlines")

_Name = Annotated[str, Field(min_length=1, max_length=256)]
_Fraction = Annotated[float, Field(ge=0, lt=1)]
_Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]


class DatasetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: _Name
    test_fraction: _Fraction = 0.0
    seed: _Seed = 0
    pruning: Annotated[list[PruningRule], Field(max_length=100)] = []


class SplitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_fraction: _Fraction
    seed: _Seed = 0


class FromLogsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_logs: dict[str, str | int | float]
    limit: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class RowEditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: Annotated[list[dict[str, Any]], Field(min_length=1)] | None = None
    tools: list[dict[str, Any]] | None = None
    output: dict[str, Any] | None = None
    rejected: list[dict[str, Any]] | None = None
    score: Annotated[float, Field(ge=0, le=1)] | None = None
    split: Literal["train", "test"] | None = None


def dataset_json(dataset: Dataset, counts: dict[str, int] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object": "dataset",
        "id": dataset.id,
        "name": dataset.name,
        "key_id": dataset.key_id,
        "team": dataset.team,
        "test_fraction": dataset.test_fraction,
        "seed": dataset.seed,
        "pruning": dataset.pruning or [],
        "created_at": dataset.created_at.isoformat(),
    }
    if counts is not None:
        data["rows"] = counts
    return data


def row_json(row: DatasetRow) -> dict[str, Any]:
    return {
        "object": "dataset.row",
        "id": row.id,
        "dataset_id": row.dataset_id,
        "split": row.split,
        "messages": row.messages,
        "tools": row.tools,
        "output": row.output,
        "rejected": row.rejected,
        "score": row.score,
        "source_log_id": row.source_log_id,
        "created_at": row.created_at.isoformat(),
    }


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.crossroads
    return state


class _Call:
    """One authenticated call: the caller as a dataset owner, and the store."""

    def __init__(self, request: Request, owner: Owner, read_all: bool) -> None:
        self.request = request
        self.owner = owner
        self.read_all = read_all
        self.state = _state(request)
        self.store = DatasetStore(self.state.log_store.engine)

    async def dataset(self) -> Dataset:
        dataset_id = self.request.path_params["dataset_id"]
        found = None
        if "\x00" not in dataset_id:
            found = await self.store.get(dataset_id, self.owner)
        if found is None:
            shown = dataset_id[:64].encode("unicode_escape").decode()
            raise GatewayError(404, f"No dataset with id '{shown}'.", code="dataset_not_found")
        return found


Handler = Callable[[_Call], Awaitable[Response]]


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        state = _state(request)
        try:
            client = request.client
            caller = await state.keys.authenticate(
                request.headers.get("authorization"), client.host if client else None
            )
            team = caller.virtual_key.team if caller.virtual_key is not None else None
            call = _Call(
                request, Owner(caller.key_id, team), state.may_read_all_logs(caller.key_id)
            )
            return await handler(call)
        except GatewayError as exc:
            return error_response(exc)
        except (sa_exc.SQLAlchemyError, OSError):
            _log.exception("datasets: storage failed")
            return error_response(
                GatewayError(
                    503,
                    "The database is unavailable; nothing was changed. Retry shortly.",
                    code="dataset_store_unavailable",
                )
            )

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


async def create_dataset(call: _Call) -> Response:
    raw = await read_object(call.request, _MAX_BODY, '{"name": "support-answers"}')
    body = validate_body(DatasetBody, raw, "Dataset")
    dataset = await call.store.create(
        body.name,
        call.owner,
        test_fraction=body.test_fraction,
        seed=body.seed,
        pruning=[rule.model_dump() for rule in body.pruning],
    )
    return JSONResponse(dataset_json(dataset, {"train": 0, "test": 0}))


async def list_datasets(call: _Call) -> Response:
    found = await call.store.visible(call.owner)
    return JSONResponse({"object": "list", "data": [dataset_json(d) for d in found]})


async def get_dataset(call: _Call) -> Response:
    dataset = await call.dataset()
    return JSONResponse(dataset_json(dataset, await call.store.counts(dataset.id)))


async def delete_dataset(call: _Call) -> Response:
    dataset = await call.dataset()
    await call.store.delete(dataset.id)
    return JSONResponse({"object": "dataset.deleted", "id": dataset.id, "deleted": True})


async def set_split(call: _Call) -> Response:
    dataset = await call.dataset()
    raw = await read_object(call.request, _MAX_BODY, '{"test_fraction": 0.2, "seed": 7}')
    body = validate_body(SplitBody, raw, "Split")
    await call.store.set_split(dataset, test_fraction=body.test_fraction, seed=body.seed)
    updated = await call.store.get(dataset.id, call.owner)
    assert updated is not None
    return JSONResponse(dataset_json(updated, await call.store.counts(dataset.id)))


def _only(params: QueryParams, allowed: tuple[str, ...]) -> None:
    """A 400 naming a query parameter this endpoint does not take (never silently ignored)."""
    for name in params:
        if name not in allowed:
            raise bad_request(
                f"Unknown query parameter {name[:64]!r}; this endpoint takes "
                f"{', '.join(repr(a) for a in allowed)}.",
                param=name,
                code="unknown_parameter",
            )


def _parse_jsonl(raw: bytes) -> list[RowInput]:
    rows: list[RowInput] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(row_from_upload(orjson.loads(line)))
        except orjson.JSONDecodeError:
            raise bad_request(
                f"Line {number} of the upload is not JSON.", code="invalid_jsonl"
            ) from None
        except ValueError as error:
            raise bad_request(
                f"Line {number} of the upload: {error}.", code="invalid_jsonl"
            ) from None
    if not rows:
        raise bad_request("The upload holds no rows.", code="invalid_jsonl")
    return rows


async def add_rows(call: _Call) -> Response:
    """Rows from the log (a JSON body with `from_logs`) or from a JSONL upload."""
    dataset = await call.dataset()
    kind = call.request.headers.get("content-type", "").split(";")[0].strip()
    if kind in JSONL_TYPES:
        rows = _parse_jsonl(await read_bytes(call.request, _MAX_UPLOAD))
        added = await call.store.add_rows(dataset, rows)
    else:
        raw = await read_object(call.request, _MAX_BODY, '{"from_logs": {"tags": "golden"}}')
        body = validate_body(FromLogsBody, raw, "Rows")
        params = QueryParams([(k, str(v)) for k, v in body.from_logs.items()])
        query = log_query(params)
        filters = {k: v for k, v in query.filters.items() if k != "before"}
        added = await call.store.add_from_log(
            dataset,
            limit=body.limit,
            key_id=None if call.read_all else call.owner.key_id,
            **filters,
        )
    counts = await call.store.counts(dataset.id)
    return JSONResponse({"object": "dataset.rows_added", "added": added, "rows": counts})


async def list_rows(call: _Call) -> Response:
    dataset = await call.dataset()
    params = call.request.query_params
    _only(params, ("limit", "after", "split"))
    limit_text = params.get("limit", "100")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MAX_ROWS_PAGE:
        raise bad_request(f"'limit' must be an integer from 1 to {_MAX_ROWS_PAGE}.", param="limit")
    split = params.get("split")
    if split not in (None, "train", "test"):
        raise bad_request("'split' must be 'train' or 'test'.", param="split")
    limit = int(limit_text)
    rows = await call.store.page_rows(
        dataset.id, limit=limit + 1, after=params.get("after"), split=split
    )
    return JSONResponse(
        {
            "object": "list",
            "data": [row_json(r) for r in rows[:limit]],
            "has_more": len(rows) > limit,
            "next_after": rows[limit - 1].id if len(rows) > limit else None,
        }
    )


def _row_not_found(row_id: str) -> GatewayError:
    shown = row_id[:64].encode("unicode_escape").decode()
    return GatewayError(404, f"No row with id '{shown}' in this dataset.", code="row_not_found")


async def edit_row(call: _Call) -> Response:
    dataset = await call.dataset()
    row_id = call.request.path_params["row_id"]
    raw = await read_object(call.request, _MAX_BODY, '{"output": {"role": "assistant", ...}}')
    body = validate_body(RowEditBody, raw, "Row edit")
    changes = body.model_dump(exclude_unset=True)
    if changes.get("messages") is None and "messages" in changes:
        raise bad_request("'messages' cannot be null.", param="messages")
    if "split" in changes and changes["split"] is None:
        raise bad_request("'split' cannot be null.", param="split")
    current = await call.store.get_row(dataset.id, row_id)
    if current is None:
        raise _row_not_found(row_id)
    _check_row({**row_json(current), **changes})
    row = await call.store.update_row(dataset, row_id, changes)
    if row is None:
        raise _row_not_found(row_id)
    return JSONResponse(row_json(row))


def _check_row(row: dict[str, Any]) -> None:
    """The edited row must still export as valid training lines: a 400 naming the problem."""
    answers = [("output", row["output"])] if row.get("output") is not None else []
    answers += [(f"rejected[{i}]", a) for i, a in enumerate(row.get("rejected") or ())]
    for where, answer in answers or [("messages", None)]:
        line: dict[str, Any] = {"messages": [*row["messages"], *([answer] if answer else [])]}
        if row.get("tools"):
            line["tools"] = row["tools"]
        problems = [p for p in check_openai_chat(line) if answer or "assistant" not in p]
        if answer is not None and answer.get("role") != "assistant":
            problems.insert(0, f"{where} must be an assistant message")
        if problems:
            raise bad_request(f"The edited row is not valid: {problems[0]}.", param=where)


async def delete_row(call: _Call) -> Response:
    dataset = await call.dataset()
    row_id = call.request.path_params["row_id"]
    if not await call.store.delete_row(dataset.id, row_id):
        raise _row_not_found(row_id)
    return JSONResponse({"object": "dataset.row.deleted", "id": row_id, "deleted": True})


async def export(call: _Call) -> Response:
    """JSONL, streamed as rows are read."""
    dataset = await call.dataset()
    params = call.request.query_params
    _only(params, ("format", "split"))
    format = params.get("format", "openai")
    if format not in EXPORT_FORMATS:
        raise bad_request(
            f"'format' must be one of {', '.join(EXPORT_FORMATS)}; got {format[:64]!r}.",
            param="format",
        )
    split = params.get("split")
    if split not in (None, "train", "test"):
        raise bad_request("'split' must be 'train' or 'test'.", param="split")
    pruner = Pruner([PruningRule(**rule) for rule in dataset.pruning or ()])
    lines = export_lines(call.store, dataset.id, format, pruner, split=split)
    filename = f"{dataset.id}-{format}{'-' + split if split else ''}.jsonl"
    return StreamingResponse(
        lines,
        media_type="application/jsonl",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


def dataset_routes() -> list[Route]:
    base = "/v1/datasets/{dataset_id}"
    return [
        Route("/v1/datasets", _endpoint(create_dataset), methods=["POST"]),
        Route("/v1/datasets", _endpoint(list_datasets), methods=["GET"]),
        Route(base, _endpoint(get_dataset), methods=["GET"]),
        Route(base, _endpoint(delete_dataset), methods=["DELETE"]),
        Route(f"{base}/split", _endpoint(set_split), methods=["POST"]),
        Route(f"{base}/rows", _endpoint(add_rows), methods=["POST"]),
        Route(f"{base}/rows", _endpoint(list_rows), methods=["GET"]),
        Route(f"{base}/rows/{{row_id}}", _endpoint(edit_row), methods=["PATCH"]),
        Route(f"{base}/rows/{{row_id}}", _endpoint(delete_row), methods=["DELETE"]),
        Route(f"{base}/export", _endpoint(export), methods=["GET"]),
    ]
