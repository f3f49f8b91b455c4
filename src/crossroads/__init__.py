"""Crossroads: a self-hosted, OpenAI-compatible LLM gateway and router."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
