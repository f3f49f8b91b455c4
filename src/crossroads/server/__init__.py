"""The HTTP layer: the ASGI app factory, thin routes and authentication."""

from __future__ import annotations

from crossroads.server.app import create_app

__all__ = ["create_app"]
