"""Pruning rules: named strings or regexes stripped from training rows and requests.

A long system prompt repeated in every training row teaches a fine-tuned model nothing and
costs tokens at every call. Pruned from the rows before export, it must be pruned the same way
from requests to the model trained on them, or that model sees a prompt it was never trained
on: the `pruning` request stage (stages/pruning.py) applies the same rules to incoming
messages. Rules apply in the order given, each to every text part of every message; the
result is the same for the same text every time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Pruner", "PruningRule"]


class PruningRule(BaseModel):
    """A named string (or `regex: true`: a Python regular expression) to strip."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    pattern: str = Field(min_length=1, max_length=10_000)
    regex: bool = False

    @model_validator(mode="after")
    def _compiles(self) -> PruningRule:
        if self.regex:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"pattern of rule {self.name!r} is not a regex: {error}") from None
        return self


class Pruner:
    """Rules compiled once; `prune_messages` returns new messages, never edits its input."""

    def __init__(self, rules: Sequence[PruningRule]) -> None:
        self.rules = tuple(rules)
        self._compiled = tuple(
            re.compile(r.pattern) if r.regex else re.compile(re.escape(r.pattern))
            for r in self.rules
        )

    def __bool__(self) -> bool:
        return bool(self.rules)

    def prune_text(self, text: str) -> str:
        for pattern in self._compiled:
            text = pattern.sub("", text)
        return text

    def prune_message(self, message: Any) -> Any:
        if not isinstance(message, dict):
            return message
        content = message.get("content")
        if isinstance(content, str):
            pruned = self.prune_text(content)
            return message if pruned == content else {**message, "content": pruned}
        if isinstance(content, list):
            parts = [
                {**part, "text": self.prune_text(part["text"])}
                if isinstance(part, dict) and isinstance(part.get("text"), str)
                else part
                for part in content
            ]
            return {**message, "content": parts}
        return message

    def prune_messages(self, messages: Sequence[Any]) -> list[Any]:
        return [self.prune_message(m) for m in messages]
