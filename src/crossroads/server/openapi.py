"""`/openapi.json`: the API described from the same pydantic models that validate it.

Built once at start-up. The request schema is the one `ChatCompletionRequest` enforces, so
schema-driven fuzzers and client generators see exactly what the gateway accepts,
extensions included.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from crossroads import __version__
from crossroads.protocol.chat import ChatCompletionRequest
from crossroads.protocol.responses import ChatCompletion, ChatCompletionChunk, ErrorResponse
from crossroads.server.log_query import LOG_PARAMETERS, MAX_JSON_FILTERS, USAGE_PARAMETERS
from crossroads.server.openapi_collections import collection_paths
from crossroads.server.openapi_datasets import bulk_log_edit, dataset_paths, log_edit
from crossroads.server.openapi_inbound import inbound_paths
from crossroads.storage.feedback_store import COMMENT_MAX_CHARS

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{model}"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}},
    }


_ERRORS = {
    "400": _error("Invalid request: malformed JSON, wrong types, out-of-range values"),
    "401": _error("Missing or wrong API key"),
    "404": _error("Unknown model (`model_not_found`)"),
    "413": _error("Request body over the configured limit"),
    "429": _error("Rate limited (upstream or gateway)"),
    "502": _error("Upstream failed or answered with something unusable"),
    "503": _error("Upstream overloaded or unavailable"),
    "504": _error("Upstream timed out"),
}


def build_openapi() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [
        (ChatCompletionRequest, "validation"),
        (ChatCompletion, "serialization"),
        (ChatCompletionChunk, "serialization"),
        (ErrorResponse, "serialization"),
    ]
    _, schemas = models_json_schema(models, ref_template=_REF)
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Crossroads",
            "version": __version__,
            "description": "OpenAI-compatible LLM gateway and router.",
        },
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": bearer,
        "paths": {
            "/v1/chat/completions": {
                "post": {
                    "operationId": "createChatCompletion",
                    "summary": "Create a chat completion (OpenAI-compatible, with extensions)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": _REF.format(model="ChatCompletionRequest")}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "A completion, or an SSE stream of chunks",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": _REF.format(model="ChatCompletion")}
                                },
                                "text/event-stream": {
                                    "schema": {"$ref": _REF.format(model="ChatCompletionChunk")}
                                },
                            },
                        },
                        **_ERRORS,
                    },
                }
            },
            **inbound_paths(),
            **collection_paths(),
            **dataset_paths(),
            "/v1/models": {
                "get": {
                    "operationId": "listModels",
                    "responses": {
                        "200": {
                            "description": "OpenAI model list; Anthropic's shape when the "
                            "anthropic-version header is sent"
                        },
                        "401": _ERRORS["401"],
                    },
                }
            },
            "/v1/logs": {
                "get": {
                    "operationId": "listLogs",
                    "parameters": [
                        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                        for n in LOG_PARAMETERS
                    ]
                    + [
                        {
                            "name": f"{prefix}KEY",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": f"records whose {prefix[:-1]} holds KEY = this "
                            f"value; at most {MAX_JSON_FILTERS} such filters and tags",
                        }
                        for prefix in ("metadata.", "extra.")
                    ],
                    "responses": {
                        "200": {"description": "Request log records, newest first"},
                        "400": _ERRORS["400"],
                        "401": _ERRORS["401"],
                    },
                },
                "patch": bulk_log_edit(),
            },
            "/v1/logs/{log_id}": {
                "get": {
                    "operationId": "getLog",
                    "parameters": [
                        {
                            "name": "log_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "One record"},
                        "404": _error("No such record"),
                    },
                },
                "patch": log_edit(),
            },
            "/v1/feedback": _feedback_path(),
            "/v1/usage": {
                "get": {
                    "operationId": "getUsage",
                    "summary": "Requests, tokens and cost summed from the request log",
                    "parameters": [
                        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                        for n in USAGE_PARAMETERS
                    ],
                    "responses": {
                        "200": {"description": "Usage rows per group, and totals"},
                        "400": _ERRORS["400"],
                        "401": _ERRORS["401"],
                    },
                }
            },
            "/v1/providers/stats": {
                "get": {
                    "operationId": "getProviderStats",
                    "summary": "Live stats and circuit-breaker state per deployment",
                    "responses": {"200": {"description": "Per deployment, over the window"}},
                }
            },
            **_admin_paths(),
            "/health": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {"200": {"description": "Alive"}},
                }
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "security": [],
                    "responses": {
                        "200": {"description": "Ready"},
                        "503": {"description": "Not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": 'Prometheus metrics (needs a key with logs = "all")',
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": _ERRORS["401"],
                        "403": _error("The key may not read every key's records"),
                    },
                }
            },
        },
    }


def _admin_paths() -> dict[str, Any]:
    """The admin API (virtual keys), authenticated by the master key."""
    key_id = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
    body = {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
        "description": "name, team, models, max_budget, budget_period, rpm_limit, tpm_limit, "
        "max_parallel_requests, expires_at, metadata",
    }
    missing = {"404": _error("No such key")}
    refused = {"400": _ERRORS["400"], "401": _ERRORS["401"], "403": _error("Admin API disabled")}
    return {
        "/admin/keys": {
            "post": {
                "operationId": "createKey",
                "summary": "Create a virtual key (the secret is in this response only)",
                "requestBody": body,
                "responses": {"200": {"description": "The key, with its secret"}, **refused},
            },
            "get": {
                "operationId": "listKeys",
                "parameters": [
                    {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                    for n in ("team", "include_revoked")
                ],
                "responses": {"200": {"description": "Keys, without secrets"}, **refused},
            },
        },
        "/admin/keys/{key_id}": {
            "get": {
                "operationId": "getKey",
                "parameters": [key_id],
                "responses": {"200": {"description": "The key"}, **missing},
            },
            "patch": {
                "operationId": "updateKey",
                "parameters": [key_id],
                "requestBody": body,
                "responses": {
                    "200": {"description": "The key"},
                    "404": _error("No such key"),
                    **refused,
                },
            },
            "delete": {
                "operationId": "revokeKey",
                "parameters": [key_id],
                "responses": {
                    "200": {"description": "The revoked key"},
                    "404": _error("No such key"),
                },
            },
        },
    }


def _feedback_path() -> dict[str, Any]:
    """`POST /v1/feedback`: a score for a logged answer, learned from by `router train`."""
    body = {
        "type": "object",
        "required": ["log_id", "score"],
        "additionalProperties": False,
        "properties": {
            "log_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 256,
                "description": "The answer's `x-crossroads-log-id` header",
            },
            "score": {
                "oneOf": [
                    {"type": "number", "minimum": 0, "maximum": 1},
                    {"type": "boolean", "description": "true = 1, false = 0"},
                ]
            },
            "comment": {"type": ["string", "null"], "maxLength": COMMENT_MAX_CHARS},
        },
    }
    return {
        "post": {
            "operationId": "createFeedback",
            "summary": "Score a logged answer from 0 to 1 (the latest score for a record counts)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "The stored feedback"},
                "400": _ERRORS["400"],
                "401": _ERRORS["401"],
                "404": _error("No such record, or one of another key (`log_not_found`)"),
                "413": _ERRORS["413"],
                "503": _error("The request log is unavailable (`log_store_unavailable`)"),
            },
        }
    }
