"""Errors in Anthropic's envelope: `{"type": "error", "error": {"type", "message"}}`.

The gateway's errors are `GatewayError`s in OpenAI's terms; Anthropic's SDKs pick their
exception class from the HTTP status and read `error.type` and `error.message`, so the
status is kept and the type renamed to Anthropic's word for it.
"""

from __future__ import annotations

from typing import Any

from crossroads.protocol.errors import GatewayError

__all__ = ["anthropic_envelope", "anthropic_error_type"]

# Anthropic's documented error types by HTTP status.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def anthropic_envelope(error: GatewayError, request_id: str | None = None) -> dict[str, Any]:
    """The body Anthropic's SDKs parse for `error`; `request_id` as Anthropic adds it."""
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": anthropic_error_type(error.status), "message": error.message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body
