"""The datasets' and log edits' part of `/openapi.json`: `/v1/datasets…` and
`PATCH /v1/logs…`, request schemas from the pydantic models that validate the bodies, the
JSONL upload and the streamed JSONL export, so client generators see both content types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from crossroads.datasets.export import EXPORT_FORMATS
from crossroads.server.datasets import (
    _MAX_BODY,
    _MAX_ROWS_PAGE,
    _MAX_UPLOAD,
    JSONL_TYPES,
    DatasetBody,
    FromLogsBody,
    RowEditBody,
    SplitBody,
)
from crossroads.server.log_edit import LogEditBody
from crossroads.server.log_query import LOG_PARAMETERS, MAX_JSON_FILTERS
from crossroads.server.openapi_collections import _errors, _inlined, _json_body, _path

__all__ = ["bulk_log_edit", "dataset_paths", "log_edit"]

_BAD = ("400", "Invalid request; `param` names the field or query parameter")
_TOO_LARGE = ("413", f"Body over {_MAX_BODY} bytes (`request_too_large`)")
_UNAVAILABLE = ("503", "The database is unavailable; nothing was changed")
_NO_DATASET = ("404", "No such dataset for this key or its team (`dataset_not_found`)")
_NO_ROW = ("404", "No such dataset or row (`dataset_not_found`, `row_not_found`)")


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_SPLIT = _query("split", {"enum": ["train", "test"]}, "only this split's rows")


def _operation(
    operation: str,
    summary: str,
    answer: str,
    *errors: tuple[str, str],
    params: tuple[dict[str, Any], ...] = (),
    model: type[BaseModel] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": operation,
        "summary": summary,
        "parameters": list(params),
        "responses": {
            "200": {
                "description": answer,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **_errors(*errors, _UNAVAILABLE),
        },
    }
    if model is not None:
        document["requestBody"] = _json_body(model)
    return document


def _add_rows(dataset_id: dict[str, Any]) -> dict[str, Any]:
    upload = {
        "schema": {"type": "string"},
        "description": "One row per line: OpenAI chat fine-tuning (`{messages, tools?}`, "
        "the last assistant message the answer) or preference format (`{input, "
        "preferred_output, non_preferred_output}`); checked whole before any row is stored",
    }
    body = {
        "required": True,
        "description": "Rows from the request log (JSON: `from_logs` holds `GET /v1/logs`'s "
        "filters) or a JSONL upload",
        "content": {
            "application/json": {"schema": _inlined(FromLogsBody)},
            **dict.fromkeys(JSONL_TYPES, upload),
        },
    }
    document = _operation(
        "addDatasetRows",
        f"Add rows from the log or a JSONL upload (at most {_MAX_UPLOAD} bytes)",
        "`{object: dataset.rows_added, added, rows: {train, test}}`",
        _BAD,
        _NO_DATASET,
        ("413", f"Body over the limit ({_MAX_BODY} bytes of JSON, {_MAX_UPLOAD} of JSONL)"),
        params=(dataset_id,),
    )
    document["requestBody"] = body
    return document


def _export(dataset_id: dict[str, Any]) -> dict[str, Any]:
    document = _operation(
        "exportDataset",
        "Export as JSONL for fine-tuning, streamed; pruning rules applied",
        "",
        _BAD,
        _NO_DATASET,
        params=(
            dataset_id,
            _query(
                "format",
                {"enum": list(EXPORT_FORMATS), "default": "openai"},
                "`openai` (chat SFT) or a preference (DPO) layout",
            ),
            _SPLIT,
        ),
    )
    document["responses"]["200"] = {
        "description": "One training example per line",
        "headers": {
            "Content-Disposition": {
                "description": '`attachment; filename="{id}-{format}[-{split}].jsonl"`',
                "schema": {"type": "string"},
            }
        },
        "content": {"application/jsonl": {"schema": {"type": "string"}}},
    }
    return document


def dataset_paths() -> dict[str, Any]:
    dataset_id, row_id = _path("dataset_id"), _path("row_id")
    rows_page = (
        dataset_id,
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": _MAX_ROWS_PAGE, "default": 100},
            "rows per page",
        ),
        _query("after", {"type": "string"}, "a page's `next_after`: the page that follows"),
        _SPLIT,
    )
    return {
        "/v1/datasets": {
            "post": _operation(
                "createDataset",
                "Create a dataset owned by the key and its team",
                "The dataset, with `rows: {train: 0, test: 0}`",
                _BAD,
                _TOO_LARGE,
                model=DatasetBody,
            ),
            "get": _operation(
                "listDatasets",
                "The datasets of the key and its team",
                "`{object: list, data}`",
            ),
        },
        "/v1/datasets/{dataset_id}": {
            "get": _operation(
                "getDataset",
                "One dataset, with its row counts per split",
                "The dataset",
                _NO_DATASET,
                params=(dataset_id,),
            ),
            "delete": _operation(
                "deleteDataset",
                "Delete a dataset and its rows",
                "`{object: dataset.deleted, id, deleted: true}`",
                _NO_DATASET,
                params=(dataset_id,),
            ),
        },
        "/v1/datasets/{dataset_id}/split": {
            "post": _operation(
                "splitDataset",
                "Reassign rows to train and test, reproducibly from the seed",
                "The dataset, with its new row counts",
                _BAD,
                _NO_DATASET,
                _TOO_LARGE,
                params=(dataset_id,),
                model=SplitBody,
            ),
        },
        "/v1/datasets/{dataset_id}/rows": {
            "post": _add_rows(dataset_id),
            "get": _operation(
                "listDatasetRows",
                "A page of rows, oldest first",
                "`{object: list, data, has_more, next_after}`",
                _BAD,
                _NO_DATASET,
                params=rows_page,
            ),
        },
        "/v1/datasets/{dataset_id}/rows/{row_id}": {
            "patch": _operation(
                "editDatasetRow",
                "Edit a row; it must still export as valid training lines",
                "The row as it now is",
                _BAD,
                _NO_ROW,
                _TOO_LARGE,
                params=(dataset_id, row_id),
                model=RowEditBody,
            ),
            "delete": _operation(
                "deleteDatasetRow",
                "Delete a row",
                "`{object: dataset.row.deleted, id, deleted: true}`",
                _NO_ROW,
                params=(dataset_id, row_id),
            ),
        },
        "/v1/datasets/{dataset_id}/export": {"get": _export(dataset_id)},
    }


def _log_filters() -> list[dict[str, Any]]:
    """`GET /v1/logs`'s filters, without its paging: a bulk edit edits every match."""
    named = [
        _query(n, {"type": "string"}, f"as for `GET /v1/logs`'s `{n}`")
        for n in LOG_PARAMETERS
        if n not in ("limit", "before")
    ]
    keyed = [
        _query(
            f"{prefix}KEY",
            {"type": "string"},
            f"records whose {prefix[:-1]} holds KEY = this value; at most "
            f"{MAX_JSON_FILTERS} such filters and tags",
        )
        for prefix in ("metadata.", "extra.")
    ]
    return named + keyed


_LOG_EDIT_TOO_LARGE = ("413", "Body over the limit (`request_too_large`)")


def log_edit() -> dict[str, Any]:
    """`PATCH /v1/logs/{log_id}`."""
    return _operation(
        "editLog",
        "Set metadata keys (null removes one) and tags of one logged record",
        "The record as it now is",
        _BAD,
        ("404", "No such record the key may read (`log_not_found`)"),
        _LOG_EDIT_TOO_LARGE,
        params=(_path("log_id"),),
        model=LogEditBody,
    )


def bulk_log_edit() -> dict[str, Any]:
    """`PATCH /v1/logs?filters`."""
    return _operation(
        "editLogs",
        "Edit every record the filters match (at least one filter; no limit or before)",
        "`{object: request_log.bulk_update, updated}`",
        _BAD,
        _LOG_EDIT_TOO_LARGE,
        params=tuple(_log_filters()),
        model=LogEditBody,
    )
