"""Which guardrail set a request runs: the operator's layers, then the caller's additions.

The operator's layers — global `[guardrails]`, each requested model's, the key's (a config
key's table or a virtual key's stored set) — combine with the stricter action winning. The
request's own `guardrails` may only add checks: a check the operator already configured keeps
the operator's options (a caller must not lower a threshold or turn a block into a flag), so
the caller's entry for it is ignored, and `on_error`/`stream` can only get stricter.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING

from crossroads.config import Config
from crossroads.guardrails.config import CheckConfig, GuardrailSet, combine

if TYPE_CHECKING:
    from crossroads.pipeline.context import PreparedChat

__all__ = ["GuardrailLayers"]


class GuardrailLayers:
    """Resolves a request's guardrail set from the config, its key and its body."""

    def __init__(self, config: Config) -> None:
        self._global = config.guardrails
        self._models = {name: m.guardrails for name, m in config.models.items() if m.guardrails}
        self._keys = {k.name: k.guardrails for k in config.keys if k.guardrails}

    @property
    def configured(self) -> bool:
        """Whether any operator layer has checks (requests may still bring their own)."""
        return bool(self._global or self._models or self._keys)

    def operator_checks(self) -> list[CheckConfig]:
        """Every check the config names, on any layer (to load their engines early)."""
        sets = [self._global, *self._models.values(), *self._keys.values()]
        return [c for s in sets if s is not None for c in (*s.input, *s.output)]

    def resolve(self, chat: PreparedChat) -> GuardrailSet | None:
        request = chat.request
        virtual = chat.context.virtual_key
        names = (*request.model_names, *(request.models or ()))
        if request.guardrails is None and (virtual is None or not virtual.guardrails):
            # Nothing asked: no layer at all, or layers for other models only (the common
            # cases, kept cheap).
            if not self.configured:
                return None
            if self._global is None and not self._keys and self._models.keys().isdisjoint(names):
                return None
        operator = combine(
            self._global,
            *(self._models.get(name) for name in names),
            self._key_layer(chat),
        )
        caller = request.guardrails
        if caller is None:
            return operator
        if operator is None:
            return caller if caller.enabled else None
        return combine(operator, _only_new(caller, operator))

    def _key_layer(self, chat: PreparedChat) -> GuardrailSet | None:
        virtual = chat.context.virtual_key
        if virtual is not None:
            return _stored(virtual.id, virtual.updated_at.isoformat(), virtual.guardrails)
        key_id = chat.context.key_id
        return self._keys.get(key_id) if key_id is not None else None


def _only_new(caller: GuardrailSet, operator: GuardrailSet) -> GuardrailSet:
    """The caller's set without the checks the operator configured on the same side."""
    taken_in = {c.label for c in operator.input}
    taken_out = {c.label for c in operator.output}
    return GuardrailSet(
        input=tuple(c for c in caller.input if c.label not in taken_in),
        output=tuple(c for c in caller.output if c.label not in taken_out),
        on_error=caller.on_error,
        stream=caller.stream,
    )


def _stored(key_id: str, version: str, stored: object) -> GuardrailSet | None:
    if not stored:
        return None
    return _parse_stored(key_id, version, _freeze(stored))


@lru_cache(maxsize=1024)
def _parse_stored(key_id: str, version: str, frozen: str) -> GuardrailSet:
    """A virtual key's stored set, parsed once per key version (it was validated when the
    admin API stored it)."""
    return GuardrailSet.model_validate_json(frozen)


def _freeze(value: object) -> str:
    return json.dumps(value, sort_keys=True)
