"""Which answer-quality settings a request runs with: request > key > model > `[quality]`.

The operator's layers are `[quality]`, a model's `answer_quality` and a key's (a config key's
`answer_quality`, or a virtual key's `metadata.answer_quality`, stored with the key through
the admin API, so no column of its own). Each setting is taken from the highest layer that
sets it; a key or model layer turns the check on for its requests unless it says
`enabled = false`, and a request that asks (`quality`, `quality_risk_threshold`) always does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from crossroads.config import Config
from crossroads.protocol.errors import bad_request
from crossroads.quality_config import QualityConfig, QualityLayer, QualityOptions

if TYPE_CHECKING:
    from crossroads.pipeline.context import PreparedChat

__all__ = ["VIRTUAL_KEY_FIELD", "QualityLayers", "ResolvedQuality", "check_stored_layer"]

# Where a virtual key keeps its layer: `metadata.answer_quality`.
VIRTUAL_KEY_FIELD = "answer_quality"
_FIELDS = ("method", "action", "autocorrect", "samples", "judge_model", "threshold")


@dataclass(frozen=True, slots=True)
class ResolvedQuality:
    """One request's settings, each from the highest layer that sets it."""

    enabled: bool  # an operator layer checks every answer of this request
    method: str
    action: str
    autocorrect: str
    samples: int
    judge_model: str | None
    threshold: float
    criteria: list[str] | None  # an operator layer's default criteria; None: none
    criteria_from: str  # the layer they came from (for error messages)
    judge_from_request: bool


class QualityLayers:
    """Resolves a request's quality settings from the config, its key and its body."""

    def __init__(self, config: QualityConfig, full: Config | None = None) -> None:
        self.config = config
        models = full.models if full is not None else {}
        keys = full.keys if full is not None else []
        self._models = {n: m.answer_quality for n, m in models.items() if m.answer_quality}
        self._keys = {k.name: k.answer_quality for k in keys if k.answer_quality}

    @property
    def configured(self) -> bool:
        """Whether the config turns checks on anywhere (globally, for a model or a key)."""
        return bool(self.config.enabled or self._models or self._keys)

    def silent(self, chat: PreparedChat) -> bool:
        """Whether no layer speaks for `chat` and the global setting is off: `resolve` would
        ask for no check and no criteria. Every request without quality fields asks this
        first, so it costs a few lookups, not a resolution."""
        if self.config.enabled:
            return False
        return self._model_layer(chat)[0] is None and self._key_layer(chat)[0] is None

    def resolve(self, chat: PreparedChat) -> ResolvedQuality:
        request = chat.request
        key, key_path = self._key_layer(chat)
        model, model_path = self._model_layer(chat)
        options: QualityOptions | None = request.quality
        ordered: list[QualityOptions] = [o for o in (options, key, model) if o is not None]
        picked: dict[str, Any] = {}
        for name in _FIELDS:
            value = next((getattr(o, name) for o in ordered if getattr(o, name) is not None), None)
            picked[name] = getattr(self.config, name) if value is None else value
        if request.quality_risk_threshold is not None:
            picked["threshold"] = request.quality_risk_threshold
        operator = key if key is not None else model
        enabled = operator.enabled if operator is not None else self.config.enabled
        criteria, criteria_from = None, ""
        for layer, path in ((key, key_path), (model, model_path)):
            if layer is not None and layer.criteria is not None:
                criteria, criteria_from = list(layer.criteria), path
                break
        return ResolvedQuality(
            enabled=enabled,
            criteria=criteria,
            criteria_from=criteria_from,
            judge_from_request=bool(options and options.judge_model),
            **picked,
        )

    def _model_layer(self, chat: PreparedChat) -> tuple[QualityLayer | None, str]:
        names = (chat.record.model_requested, *chat.request.model_names)
        for name in names:
            if name in self._models:
                return self._models[name], f"models.{name}.answer_quality"
        return None, ""

    def _key_layer(self, chat: PreparedChat) -> tuple[QualityLayer | None, str]:
        virtual = chat.context.virtual_key
        if virtual is not None:
            stored = virtual.metadata.get(VIRTUAL_KEY_FIELD)
            path = f"the key's metadata.{VIRTUAL_KEY_FIELD}"
            if not isinstance(stored, dict):
                return None, ""
            return _parse_stored(virtual.id, virtual.updated_at.isoformat(), _freeze(stored)), path
        key_id = chat.context.key_id
        layer = self._keys.get(key_id) if key_id is not None else None
        return layer, f"keys.{key_id}.answer_quality"


def check_stored_layer(metadata: dict[str, Any] | None, config: Config) -> None:
    """A 400 when a virtual key's `metadata.answer_quality` names a criterion or judge model
    this gateway lacks (its shape is checked by the admin API's body model)."""
    stored = (metadata or {}).get(VIRTUAL_KEY_FIELD)
    if not isinstance(stored, dict):
        return
    layer = QualityLayer.model_validate(stored)
    path = f"metadata.{VIRTUAL_KEY_FIELD}"
    if problems := config.quality.unknown_in_layer(path, layer, config.models):
        raise bad_request(f"{problems[0]}.", param=path, code="invalid_value")


@lru_cache(maxsize=1024)
def _parse_stored(key_id: str, version: str, frozen: str) -> QualityLayer | None:
    """A virtual key's stored layer, parsed once per key version; one that no longer
    validates (it was checked when stored) is ignored rather than failing every request."""
    try:
        return QualityLayer.model_validate_json(frozen)
    except ValidationError:
        return None


def _freeze(value: object) -> str:
    return json.dumps(value, sort_keys=True)
