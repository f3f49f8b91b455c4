"""Anthropic's error types and the HTTP status each stands for, for errors inside a stream.

Anthropic can fail a stream it already answered 200, with an `error` event whose data is the
same envelope a non-streamed error has (`{"type": "error", "error": {"type", "message"}}`).
The error `type` names the status the same failure has without streaming (an
`overloaded_error` is a 529), so mapping it back lets the caller's status and the routing
decision (retry, fail over, or give up) be the same whether or not the request streamed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crossroads.providers.base import UpstreamError
from crossroads.providers.http import upstream_error_from_envelope

__all__ = ["ERROR_STATUSES", "stream_error"]

ERROR_STATUSES: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def stream_error(event: Mapping[str, Any]) -> UpstreamError:
    """The failure an `error` event reports; an error of an unknown type is a broken stream."""
    error = event.get("error")
    error = error if isinstance(error, Mapping) else {}
    kind = error.get("type")
    message = str(error.get("message") or kind or "the upstream stream failed")
    status = ERROR_STATUSES.get(kind) if isinstance(kind, str) else None
    if status is None:
        code = kind if isinstance(kind, str) else None
        return UpstreamError(message, failure="stream_interrupted", code=code)
    return upstream_error_from_envelope(status, event, message, in_stream=True)
