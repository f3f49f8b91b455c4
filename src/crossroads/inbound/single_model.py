"""One model per request on the APIs that carry one answer.

Chat completions fan a comma-separated `model` ("a,b") out to every model named and return
each answer as a choice (or a vote's pick). Anthropic's Messages and the Responses API
have room for exactly one answer, so serving a fan-out there would silently drop all but
the first: the request is refused instead, naming `model`, so the caller knows to use chat
completions (or legacy completions, whose choices carry every answer).
"""

from __future__ import annotations

from crossroads.protocol.errors import bad_request

__all__ = ["require_single_model"]


def require_single_model(model: str, api: str) -> None:
    """A 400 naming `model` when it names several models (a fan-out)."""
    if "," in model:
        raise bad_request(
            f"Invalid 'model': {model[:200]!r} names several models, a fan-out, which "
            f"{api} cannot answer with (it has room for one answer). Name one model, or "
            "send the request to /v1/chat/completions, where fan-out is served.",
            param="model",
        )
