"""The environment variables Crossroads reads, named in one place.

This module imports nothing, so the command line can name them in its help text without
loading the server (every CLI command imports it at start-up).
"""

from __future__ import annotations

__all__ = ["API_KEY_ENV", "CONFIG_ENV", "HOST_ENV", "MASTER_KEY_ENV", "PORT_ENV"]

CONFIG_ENV = "CROSSROADS_CONFIG"  # the config file, when --config is not given
MASTER_KEY_ENV = "CROSSROADS_MASTER_KEY"  # opens the admin API (virtual keys)
API_KEY_ENV = "CROSSROADS_API_KEY"  # the bearer key `crossroads chat` sends
HOST_ENV = "CROSSROADS_HOST"  # `serve --host`, over [server] host
PORT_ENV = "CROSSROADS_PORT"  # `serve --port`, over [server] port
