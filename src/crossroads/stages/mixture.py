"""Mixture of agents: several proposer models answer, an aggregator writes the answer.

A mixture is a config entry (`[quality.moa.<name>]`: proposers, aggregator, layers); a
request names it as its `model` (`"moa"` is the entry called so, or the only one). The
gateway routes such a request to the aggregator (`Preparer.aliases`); this request stage
first asks every proposer in parallel — as side calls, billed — and, for each further layer,
asks them again with the previous layer's proposals. The last proposals go to the aggregator
in a system message, and the aggregator's call is the request's own upstream call, so it
streams, fails over and is priced like any other. `mixture` in the response lists the
proposals; `usage.mixture` is what they cost.

Permissions: a virtual key's `models` list must name the mixture (`moa`); a key allowed the
mixture may use its proposers and aggregator through it, since the operator composed it —
asking for a proposer or the aggregator by its own name still needs that name in the list.
A key lacking the mixture gets 403 `model_not_allowed` naming the mixture.
"""

from __future__ import annotations

import asyncio
from typing import Any

from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.side_calls import SideBill, SideCalls, answer_text
from crossroads.pipeline.stages import Stage, StreamCheck
from crossroads.protocol.errors import GatewayError
from crossroads.quality_config import MixtureConfig, QualityConfig

__all__ = ["MOA_MODEL", "MixtureKind", "MixtureStage"]

MOA_MODEL = "moa"
_AGGREGATE = (
    "You have been given answers from several models to the conversation that follows. "
    "Synthesize them into one answer that is accurate and complete; do not trust any of them "
    "blindly, and do not mention that there were several.\n\n{proposals}"
)
_REFINE = (
    "Answers other models gave to this conversation; use them to improve yours:\n\n{proposals}"
)


def _listed(proposals: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"[{i + 1}] {text}" for i, (_, text) in enumerate(proposals))


class MixtureKind:
    name = "mixture"
    before = True
    after = True

    def __init__(self, config: QualityConfig) -> None:
        self.entries: dict[str, MixtureConfig] = dict(config.moa)
        if MOA_MODEL not in self.entries and len(self.entries) == 1:
            self.entries[MOA_MODEL] = next(iter(config.moa.values()))
        self.side: SideCalls | None = None

    def dormant(self) -> frozenset[str] | None:
        """Only a configured mixture model turns the stage on; no request field does."""
        return None if self.entries else frozenset()

    def bind(self, side: SideCalls) -> None:
        self.side = side
        side.preparer.aliases.update({n: e.aggregator for n, e in self.entries.items()})

    def select(self, chat: PreparedChat) -> Stage | None:
        entry = self.entries.get(chat.record.model_requested)
        if entry is None or self.side is None:
            return None
        return MixtureStage(chat.record.model_requested, entry, self.side)


class MixtureStage(Stage):
    name = "mixture"

    def __init__(self, name: str, entry: MixtureConfig, side: SideCalls) -> None:
        self.mixture = name
        self.entry = entry
        self.side = side
        self.bill = SideBill()

    async def before(self, chat: PreparedChat) -> dict[str, Any] | None:
        messages = list(chat.body["messages"])
        proposals: list[tuple[str, str]] = []
        for _layer in range(self.entry.layers):
            asked = messages
            if proposals:
                note = {"role": "system", "content": _REFINE.format(proposals=_listed(proposals))}
                asked = [note, *messages]
            proposals = await self._propose(chat, asked)
        aggregate = {"role": "system", "content": _AGGREGATE.format(proposals=_listed(proposals))}
        chat.rewrite_messages([aggregate, *messages])
        chat.report(
            "mixture",
            {
                "name": self.mixture,
                "aggregator": self.entry.aggregator,
                "layers": self.entry.layers,
                "proposals": [{"model": m, "content": t} for m, t in proposals],
            },
        )
        return None

    async def _propose(
        self, chat: PreparedChat, messages: list[dict[str, Any]]
    ) -> list[tuple[str, str]]:
        async def one(model: str) -> tuple[str, str] | GatewayError:
            try:
                response = await self.side.complete(
                    chat, self.bill, "mixture", model, messages, granted=True
                )
            except GatewayError as exc:
                return exc
            return model, answer_text(response)

        results = await asyncio.gather(*(one(m) for m in self.entry.proposers))
        answered = [r for r in results if not isinstance(r, GatewayError)]
        if not answered:
            failed = next(r for r in results if isinstance(r, GatewayError))
            raise failed  # no proposer answered: the caller gets the first one's error
        return answered

    async def after(self, chat: PreparedChat, response: dict[str, Any]) -> None:
        if isinstance(response.get("usage"), dict):
            self.bill.charge(response["usage"])

    def stream(self, chat: PreparedChat) -> StreamCheck | None:
        return _Billing(self.bill)


class _Billing(StreamCheck):
    """A streamed aggregator answer passes untouched; the proposals are billed at the end."""

    def __init__(self, bill: SideBill) -> None:
        self.bill = bill

    def finish(self, chat: PreparedChat, completion: dict[str, Any]) -> None:
        if isinstance(completion.get("usage"), dict):
            self.bill.charge(completion["usage"])
