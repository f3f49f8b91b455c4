"""Google's error statuses and the HTTP status each stands for, for errors inside a stream.

Gemini can fail an `alt=sse` stream it already answered 200, with an event holding the same
envelope a non-streamed error has (`{"error": {"code", "message", "status", "details"}}`).
Its `code` (else its canonical `status` name) is the HTTP status the same failure has without
streaming (UNAVAILABLE is a 503), and a RetryInfo in its details says when to retry, so the
caller's status, `Retry-After` and the routing decision are the same whether or not the
request streamed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crossroads.providers.base import UpstreamError
from crossroads.providers.http import upstream_error_from_envelope

__all__ = ["CANONICAL_STATUSES", "stream_error"]

# google.rpc.Code names → HTTP statuses, as Google's APIs map them.
CANONICAL_STATUSES: Mapping[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "NOT_IMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def stream_error(event: Mapping[str, Any]) -> UpstreamError:
    """The failure an error event reports; one with no known status is a broken stream."""
    error = event.get("error")
    details = error if isinstance(error, Mapping) else {"message": str(error)}
    message = str(details.get("message") or error)
    name = details.get("status")
    code = details.get("code")
    status = code if isinstance(code, int) and 400 <= code <= 599 else None
    if status is None and isinstance(name, str):
        status = CANONICAL_STATUSES.get(name)
    if status is None:
        name = name if isinstance(name, str) else None
        return UpstreamError(
            f"Gemini failed mid-stream: {message}", failure="stream_interrupted", code=name
        )
    return upstream_error_from_envelope(status, event, message, in_stream=True)
