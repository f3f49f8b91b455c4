"""Reading a body with a size cap (every endpoint), and a JSON object body (the data loop).

Datasets, log edits and uploads all take bodies a caller typed or generated; an oversized
one is a 413 and anything but a JSON object a 400, before any validation model runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request

from crossroads.protocol.errors import GatewayError, bad_request, client_closed
from crossroads.protocol.json_body import decode_json_body

__all__ = ["read_bytes", "read_object"]


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"Request bodies here are limited to {limit} bytes.", code="request_too_large"
    )


async def read_bytes(
    request: Request, limit: int, too_large: Callable[[int], GatewayError] = _too_large
) -> bytes:
    """The whole body, refused with `too_large(limit)` as soon as it is known to exceed
    `limit` (by its Content-Length, or while reading); a hang-up is recorded as 499."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    parts: list[bytes] = []
    size = 0
    try:
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise too_large(limit)
            parts.append(part)
    except ClientDisconnect:
        raise client_closed() from None
    return b"".join(parts)


async def read_object(request: Request, limit: int, example: str) -> dict[str, Any]:
    """The body as a JSON object; `example` shows its shape in the error message."""
    body = decode_json_body(await read_bytes(request, limit))
    if not isinstance(body, dict):
        raise bad_request(
            f"The request body must be a JSON object: {example}.", code="invalid_value"
        )
    return body
