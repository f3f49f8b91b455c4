"""What a virtual key lets its caller use, checked once the request has been parsed.

Authentication (`server/auth.py`) says who the caller is before the body is read; which
models a request names is known only after the gateway has parsed it, so this check runs
there. It lives outside `server/` because the server imports the gateway, never the
other way round.
"""

from __future__ import annotations

from collections.abc import Iterable

from crossroads.protocol.errors import GatewayError
from crossroads.storage.key_store import VirtualKey

__all__ = ["check_model_allowed"]


def check_model_allowed(virtual_key: VirtualKey | None, model_names: Iterable[str]) -> None:
    """Raise a 403 `model_not_allowed` unless the key may use every one of `model_names`.

    Config keys and loopback callers (`virtual_key` None) and virtual keys without a
    `models` list may use any model.
    """
    if virtual_key is None or virtual_key.models is None:
        return
    for name in model_names:
        if name not in virtual_key.models:
            allowed = ", ".join(virtual_key.models) or "none"
            raise GatewayError(
                403,
                f"This API key may not use model '{name}'. It may use: {allowed}.",
                param="model",
                code="model_not_allowed",
            )
