"""The seam between the gateway and a wire dialect.

A `Provider` is one configured upstream endpoint speaking one dialect (`openai`,
`anthropic`, `gemini`, `llamacpp`). Whatever the dialect, it takes an OpenAI-format request
body and gives back OpenAI-format results: a response dict from `complete`, chunk dicts from
`stream`. Translation lives entirely inside the dialect module, so routing, usage and logging
never see a foreign wire format. Failures are raised as `UpstreamError`, never as a
transport library's exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from crossroads.providers.capabilities import Capabilities

if TYPE_CHECKING:
    from crossroads.protocol.chat import ChatCompletionRequest

__all__ = [
    "Capabilities",
    "Provider",
    "UpstreamCall",
    "UpstreamError",
    "UpstreamFailure",
    "capability_gap",
]

UpstreamFailure = Literal["http", "timeout", "connection", "malformed", "stream_interrupted"]


def capability_gap(capabilities: Capabilities, request: ChatCompletionRequest) -> list[str]:
    """Every content part (as a body path) that the provider cannot take, in body order.

    Parameters are planned separately (dropped or required, `plan_parameters`); a part of
    a message cannot be dropped without changing what the caller asked, so it is refused,
    with all such parts named so the caller fixes the request once.
    """
    if capabilities.vision:
        return []
    return [
        f"messages[{i}].content[{j}]"
        for i, message in enumerate(request.messages)
        if isinstance(message.content, list)
        for j, part in enumerate(message.content)
        if part.type in ("image_url", "input_audio", "file")
    ]


@dataclass(slots=True)
class UpstreamCall:
    """One request to send upstream: an OpenAI-format body whose `model` is the upstream id."""

    body: dict[str, Any]
    # A key that replaces the configured one for this call only (bring-your-own-key).
    api_key: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    # When set, the provider appends the exact body it sends upstream (in its dialect).
    sent: list[dict[str, Any]] | None = None


class UpstreamError(Exception):
    """The upstream failed; `status` is its HTTP status when it answered at all (for an
    error event inside a stream, the status the same error has without streaming)."""

    def __init__(
        self,
        message: str,
        *,
        failure: UpstreamFailure,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        param: str | None = None,
        in_stream: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.failure = failure
        self.status = status
        self.retry_after = retry_after
        self.code = code
        self.param = param
        # An error event inside a 200 stream; `status` is what the same error is without one.
        self.in_stream = in_stream


@runtime_checkable
class Provider(Protocol):
    """One upstream endpoint. Created from config, started and closed in the app's lifespan."""

    name: str
    dialect: str
    capabilities: Capabilities

    @property
    def ready(self) -> bool:
        """False while the provider cannot serve yet (weights still loading, load failed)."""
        ...

    @property
    def not_ready_reason(self) -> str:
        """Why `ready` is False, for `/ready` and for the 503 a request gets meanwhile."""
        ...

    async def start(self) -> None:
        """Open pooled connections, or begin loading weights; called once before serving.

        Must return promptly: slow work (loading a model) continues in the background and
        is reported through `ready`.
        """

    async def aclose(self) -> None:
        """Release everything `start` acquired."""

    async def complete(self, call: UpstreamCall) -> dict[str, Any]:
        """Return an OpenAI `chat.completion` dict, or raise `UpstreamError`."""
        ...

    def stream(self, call: UpstreamCall) -> AsyncIterator[dict[str, Any]]:
        """Yield OpenAI `chat.completion.chunk` dicts as they arrive, never buffering.

        The caller always asks for usage (`stream_options.include_usage`), so the last
        chunk carries it when the upstream reports usage at all.
        """
        ...
