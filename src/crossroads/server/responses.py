"""Response types: orjson-encoded JSON and the error envelope."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from crossroads.protocol.errors import GatewayError

__all__ = ["JSONResponse", "error_response"]


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.envelope(), status_code=error.status, headers=error.headers)
