"""The request-log record: what the gateway served, as one row.

Built on the request path (cheap: plain attribute assignment), written off it in batches
by `LogWriter`. Bodies are already stripped of secrets (`openai_api_key`) by the time a
record is made, and are `None` when the caller sent `store: false`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["LogRecord"]


@dataclass(slots=True)
class LogRecord:
    id: str
    created_at: datetime  # UTC, when the request arrived
    model_requested: str
    status_code: int  # HTTP status returned to the caller (200 for a stream that started)
    stream: bool = False
    key_id: str | None = None
    model_served: str | None = None  # public model name that answered
    provider: str | None = None
    upstream_model: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    request: dict[str, Any] | None = None  # messages and parameters, None when store=false
    response: dict[str, Any] | None = None  # response body (assembled for streams)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    prompt_characters: int | None = None
    response_characters: int | None = None
    cost: float | None = None  # USD
    latency_ms: float | None = None
    ttft_ms: float | None = None  # time to first token, streams only
    user: str | None = None
    metadata: dict[str, Any] | None = None
    session_id: str | None = None
    extra: dict[str, Any] | None = None
    tags: list[str] | None = None
