"""The request pipeline: prepare, admit, serve, keep the books (see `gateway`)."""

from __future__ import annotations

from crossroads.pipeline.context import CallContext, PreparedChat
from crossroads.pipeline.gateway import Gateway
from crossroads.pipeline.ledger import LogSink, SpentSource

__all__ = ["CallContext", "Gateway", "LogSink", "PreparedChat", "SpentSource"]
