"""`[telemetry]`: where OpenTelemetry traces and metrics go, if anywhere.

    [telemetry]
    enabled = true
    endpoint = "http://127.0.0.1:4318"   # an OTLP/HTTP collector: /v1/traces, /v1/metrics
    headers = { "x-api-key" = "env:OTEL_KEY" }
    sample_ratio = 0.1                   # spans for 10% of requests; metrics count all

Needs the `otel` extra (`pip install 'crossroads[otel]'`).
"""

from __future__ import annotations

import importlib.util

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["TelemetryConfig"]


def _installed() -> bool:
    try:  # the parent package is imported to look for the child: absent, that raises
        return importlib.util.find_spec("opentelemetry.sdk") is not None
    except ModuleNotFoundError:
        return False


class TelemetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318"
    headers: dict[str, str] = Field(default_factory=dict)
    service_name: str = Field("crossroads", min_length=1)
    sample_ratio: float = Field(1.0, ge=0, le=1)
    export_interval: float = Field(5.0, gt=0, le=3600)  # seconds between exports

    @field_validator("enabled")
    @classmethod
    def _installed(cls, enabled: bool) -> bool:
        """Turned on without the extra: a config error now, not a failed start later."""
        if enabled and not _installed():
            raise ValueError(
                "needs OpenTelemetry, which is not installed: pip install 'crossroads[otel]'"
            )
        return enabled
