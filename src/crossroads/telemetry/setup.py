"""The app's telemetry from `[telemetry]`: None when off, so nothing is imported or run.

Header values may be secret references (`env:NAME`), resolved here, at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crossroads.telemetry.config import TelemetryConfig

if TYPE_CHECKING:
    from crossroads.telemetry.emit import Telemetry

__all__ = ["OTEL_INSTALL", "telemetry_from_config"]

OTEL_INSTALL = "pip install 'crossroads[otel]'"


def telemetry_from_config(config: TelemetryConfig) -> Telemetry | None:
    if not config.enabled:
        return None
    try:
        from crossroads.telemetry.emit import Telemetry
    except ModuleNotFoundError as error:
        raise RuntimeError(
            f"[telemetry] enabled = true needs OpenTelemetry ({error.name} is missing): "
            f"{OTEL_INSTALL}"
        ) from None
    from crossroads.config import resolve_secret

    headers = {
        name: resolve_secret(value, f"telemetry.headers.{name}") or ""
        for name, value in config.headers.items()
    }
    return Telemetry(config.model_copy(update={"headers": headers}))
