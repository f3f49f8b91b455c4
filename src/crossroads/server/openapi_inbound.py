"""The inbound APIs' part of `/openapi.json`: Anthropic's Messages, the Responses API and
legacy completions, their request schemas from the pydantic models that validate them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from crossroads.inbound.anthropic_request import MessagesRequest
from crossroads.inbound.completions import CompletionRequest
from crossroads.inbound.responses_request import ResponsesRequest

__all__ = ["inbound_paths"]

_OPENAI_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
_ANTHROPIC_ERROR = {
    "type": "object",
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
        "request_id": {"type": "string"},
    },
}


def _post(
    operation: str, summary: str, model: type[BaseModel], answer: str, error: dict[str, Any]
) -> dict[str, Any]:
    errors = {
        status: {"description": text, "content": {"application/json": {"schema": error}}}
        for status, text in (
            ("400", "Invalid request; the message names the field"),
            ("401", "Missing or wrong API key"),
            ("404", "Unknown model (or previous response)"),
            ("429", "Rate limited (upstream or gateway)"),
            ("503", "Upstream overloaded or unavailable"),
        )
    }
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": model.model_json_schema()}},
            },
            "responses": {
                "200": {
                    "description": answer,
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                **errors,
            },
        }
    }


def inbound_paths() -> dict[str, Any]:
    return {
        "/v1/messages": _post(
            "createMessage",
            "Anthropic Messages API, served by any configured model (key in x-api-key or "
            "authorization)",
            MessagesRequest,
            "An Anthropic Message, or its SSE event stream",
            _ANTHROPIC_ERROR,
        ),
        "/v1/messages/count_tokens": _post(
            "countMessageTokens",
            "Estimated input tokens of a Messages API request; nothing is sent upstream",
            MessagesRequest,
            '`{"input_tokens": n}`',
            _ANTHROPIC_ERROR,
        ),
        "/v1/responses": _post(
            "createResponse",
            "OpenAI Responses API; previous_response_id resolves from the request log",
            ResponsesRequest,
            "A response object, or its SSE event stream",
            _OPENAI_ERROR,
        ),
        "/v1/responses/{response_id}": {
            "get": {
                "operationId": "getResponse",
                "summary": "A stored response, from the request log (the same key's only)",
                "parameters": [
                    {
                        "name": "response_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "The response object"},
                    "404": {
                        "description": "No stored response with this id for this key",
                        "content": {"application/json": {"schema": _OPENAI_ERROR}},
                    },
                },
            }
        },
        "/v1/completions": _post(
            "createCompletion",
            "Legacy text completions, served by chat models",
            CompletionRequest,
            "A text_completion, or an SSE stream of them",
            _OPENAI_ERROR,
        ),
    }
