"""Every error the gateway returns, in OpenAI's envelope.

One exception type, `GatewayError`, carries the HTTP status and the four envelope fields
(`message`, `type`, `param`, `code`). Whatever goes wrong — bad input, auth, an upstream
fault — is turned into one of these as close to the cause as possible, so the server only
ever has to render it. The constructors below name the cases the API documents.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GatewayError",
    "bad_request",
    "client_closed",
    "unsupported_parameter",
]

# OpenAI's `type` values by status; the SDK maps statuses to exception classes.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(Exception):
    """An error to be returned to the caller as `{"error": {...}}` with `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _TYPE_BY_STATUS.get(status, "api_error")
        self.param = param
        self.code = code
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        """The body OpenAI's SDKs parse into their exception's `.body`."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.message!r}, code={self.code!r})"


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    """A 400 for input the caller must fix."""
    return GatewayError(400, message, param=param, code=code)


def client_closed() -> GatewayError:
    """The caller went away before the answer was complete. 499 is how the request log marks
    it; nobody is left to receive it."""
    return GatewayError(
        499,
        "The client closed the connection before the answer was complete.",
        code="client_closed_request",
    )


def unsupported_parameter(param: str | list[str], detail: str = "") -> GatewayError:
    """A 400 for parameters Crossroads accepts in its schema but cannot honour here; every
    one is named, so the caller fixes the request once, and `param` is the first."""
    names = [param] if isinstance(param, str) else param
    quoted = ", ".join(f"'{name}'" for name in names)
    subject = f"Parameter {quoted} is" if len(names) == 1 else f"Parameters {quoted} are"
    message = f"{subject} not supported{detail or ' by this gateway yet'}."
    return GatewayError(400, message, param=names[0], code="unsupported_parameter")
