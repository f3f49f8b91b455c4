"""What a guardrail set is: input checks, output checks, and what to do when a check fails.

One model serves every place a guardrail set can come from — the global `[guardrails]` table,
a model's or a key's table in the TOML file, and the `guardrails` field of a request body —
so a setting means the same thing wherever it is written. The models are strict (an unknown
field is an error that names it) and frozen. A request may also write a short list of check
names (`["pii", "injection"]`); each name expands to that check with its default action.

Layers combine by `combine`: checks are added, never removed, and where two layers configure
the same check the stricter action wins, so a caller can tighten the operator's guardrails
but not loosen them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

__all__ = [
    "ACTION_STRICTNESS",
    "Action",
    "CheckConfig",
    "CheckKind",
    "CustomCheck",
    "GuardrailSet",
    "InjectionCheck",
    "OnError",
    "PiiCheck",
    "PolicyCheck",
    "StreamPolicy",
    "TopicRule",
    "combine",
]

CheckKind = Literal["pii", "injection", "policy", "custom"]
Action = Literal["block", "redact", "mask", "flag"]
OnError = Literal["block", "allow"]
StreamPolicy = Literal["sentence", "hold", "pass"]

# Higher is stricter: used when two layers configure the same check.
ACTION_STRICTNESS: dict[str, int] = {"flag": 0, "mask": 1, "redact": 2, "block": 3}
_STREAM_STRICTNESS: dict[str, int] = {"pass": 0, "sentence": 1, "hold": 2}

# Entities found by patterns with checksums or strict formats: cheap (no language model).
DEFAULT_PII_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IP_ADDRESS",
    "IBAN_CODE",
)
# Entities that need the spaCy named-entity model (about 40 ms per KB on one core).
NER_PII_ENTITIES: frozenset[str] = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION"})
# Every entity the PII engine can look for.
KNOWN_PII_ENTITIES: frozenset[str] = frozenset(
    {
        *DEFAULT_PII_ENTITIES,
        *NER_PII_ENTITIES,
        "CRYPTO",
        "US_BANK_NUMBER",
        "US_DRIVER_LICENSE",
        "US_ITIN",
        "US_PASSPORT",
        "MAC_ADDRESS",
        "URL",
        "DATE_TIME",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _CheckBase(_Strict):
    check: CheckKind
    action: Action
    # A label for results and logs; defaults to the check kind. Two checks of one kind in
    # one set need different names.
    name: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    # None inherits the set's `on_error`.
    on_error: OnError | None = None

    allowed_actions: ClassVar[frozenset[str]] = frozenset(ACTION_STRICTNESS)

    @property
    def label(self) -> str:
        """The name results carry: `name` when given, else the check kind."""
        return self.name or self.check

    @model_validator(mode="after")
    def _action_fits_check(self) -> _CheckBase:
        if self.action not in self.allowed_actions:
            allowed = ", ".join(sorted(self.allowed_actions))
            raise ValueError(
                f"action {self.action!r} does not apply to a {self.check} check (use {allowed})"
            )
        return self


class PiiCheck(_CheckBase):
    """Personal data found by Presidio: block it, replace it, mask it reversibly, or flag it."""

    check: Literal["pii"] = "pii"
    action: Action = "redact"
    entities: tuple[str, ...] = DEFAULT_PII_ENTITIES
    # Presidio's confidence below which a finding is ignored.
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    # Strings never reported as personal data (exact, case-insensitive), on top of the
    # built-in list of technical terms.
    allow: tuple[str, ...] = ()

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [e for e in value if e not in KNOWN_PII_ENTITIES]
        if unknown:
            known = ", ".join(sorted(KNOWN_PII_ENTITIES))
            raise ValueError(f"unknown PII entities {unknown} (known: {known})")
        if not value:
            raise ValueError("entities must name at least one entity")
        return tuple(dict.fromkeys(value))


class InjectionCheck(_CheckBase):
    """Prompt injection and jailbreak attempts: rules, then the shipped classifier, then ONNX."""

    check: Literal["injection"] = "injection"
    action: Action = "block"
    # Score at or above which the check triggers; the shipped classifier's scores are
    # calibrated so that 0.5 holds about 1% false positives on the benchmark's benign set.
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    rules: bool = True
    classifier: bool = True
    # A local ONNX classifier run after the others (needs onnxruntime).
    onnx_model: Path | None = None
    onnx_threshold: float = Field(0.5, ge=0.0, le=1.0)

    allowed_actions: ClassVar[frozenset[str]] = frozenset({"block", "flag"})


class TopicRule(_Strict):
    """A topic is a set of keywords or phrases; it triggers when `min_hits` distinct ones occur."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    keywords: tuple[str, ...] = Field(min_length=1)
    min_hits: int = Field(1, ge=1)


class PolicyCheck(_CheckBase):
    """The operator's own rules: denied words or phrases, regular expressions, topics."""

    check: Literal["policy"] = "policy"
    action: Action = "block"
    deny: tuple[str, ...] = ()
    regexes: tuple[str, ...] = ()
    topics: tuple[TopicRule, ...] = ()

    allowed_actions: ClassVar[frozenset[str]] = frozenset({"block", "redact", "flag"})

    @field_validator("regexes")
    @classmethod
    def _regexes_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, pattern in enumerate(value):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"regexes[{i}] {pattern!r} is not a valid regex: {exc}") from None
        return value

    @model_validator(mode="after")
    def _has_a_rule(self) -> PolicyCheck:
        if not (self.deny or self.regexes or self.topics):
            raise ValueError("a policy check needs at least one of deny, regexes, topics")
        return self


class CustomCheck(_CheckBase):
    """A rule written in Python, found by entry point name or dotted path (`pkg.mod:func`)."""

    check: Literal["custom"] = "custom"
    action: Action = "flag"
    rule: str = Field(min_length=1, max_length=200)
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    # Passed to the rule as its `options` argument.
    options: dict[str, Any] = Field(default_factory=dict)

    allowed_actions: ClassVar[frozenset[str]] = frozenset({"block", "redact", "flag"})


def _check_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("check")
        return kind if isinstance(kind, str) else None
    return getattr(value, "check", None)


CheckConfig = Annotated[
    Annotated[PiiCheck, Tag("pii")]
    | Annotated[InjectionCheck, Tag("injection")]
    | Annotated[PolicyCheck, Tag("policy")]
    | Annotated[CustomCheck, Tag("custom")],
    Discriminator(
        _check_tag,
        custom_error_type="invalid_check",
        custom_error_message="check must be one of 'pii', 'injection', 'policy', 'custom'",
    ),
]

# What a bare name means in a short list: (goes on input, goes on output).
_SHORTHAND_SIDES: dict[str, tuple[bool, bool]] = {
    "pii": (True, True),
    "injection": (True, False),
}


def _expand_entry(entry: Any) -> Any:
    """A bare check name inside `input`/`output` becomes `{"check": name}`."""
    if isinstance(entry, str):
        return {"check": entry}
    return entry


class GuardrailSet(_Strict):
    """Checks on the request (`input`) and on the answer (`output`), and how to run them."""

    input: tuple[CheckConfig, ...] = ()
    output: tuple[CheckConfig, ...] = ()
    # When a check cannot run (analyzer error, missing model): block (fail closed) or allow.
    on_error: OnError = "block"
    # How output checks see a streamed answer: per complete sentence, the whole answer held
    # back until checked, or passed through as it comes (results only, nothing enforced).
    stream: StreamPolicy = "sentence"

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return _from_names(value)
        if isinstance(value, dict):
            value = dict(value)
            for side in ("input", "output"):
                entries = value.get(side)
                if isinstance(entries, list | tuple):
                    value[side] = [_expand_entry(e) for e in entries]
        return value

    @model_validator(mode="after")
    def _unique_labels(self) -> GuardrailSet:
        for side, checks in (("input", self.input), ("output", self.output)):
            seen: set[str] = set()
            for check in checks:
                if check.label in seen:
                    raise ValueError(
                        f"{side} has two checks named {check.label!r}: give one a `name`"
                    )
                seen.add(check.label)
        return self

    @property
    def enabled(self) -> bool:
        """True when there is anything to run."""
        return bool(self.input or self.output)

    def on_error_for(self, check: CheckConfig) -> OnError:
        """The check's own `on_error`, else the set's."""
        return check.on_error or self.on_error


def _from_names(names: Iterable[Any]) -> dict[str, Any]:
    """`["pii", "injection"]` → PII on input and output, injection on input, default actions."""
    inputs: list[dict[str, str]] = []
    outputs: list[dict[str, str]] = []
    for i, name in enumerate(names):
        if not isinstance(name, str) or name not in _SHORTHAND_SIDES:
            choices = ", ".join(repr(n) for n in _SHORTHAND_SIDES)
            raise ValueError(
                f"[{i}]: a short list names checks ({choices}); policy and custom checks "
                "need the object form with their options"
            )
        on_input, on_output = _SHORTHAND_SIDES[name]
        if on_input and {"check": name} not in inputs:
            inputs.append({"check": name})
        if on_output and {"check": name} not in outputs:
            outputs.append({"check": name})
    return {"input": inputs, "output": outputs}


def _merge_checks(
    base: tuple[CheckConfig, ...], extra: tuple[CheckConfig, ...]
) -> tuple[CheckConfig, ...]:
    merged: dict[tuple[str, str], CheckConfig] = {(c.check, c.label): c for c in base}
    for check in extra:
        key = (check.check, check.label)
        previous = merged.get(key)
        if previous is None:
            merged[key] = check
            continue
        # The later layer's options, the stricter action of the two.
        action = max(previous.action, check.action, key=ACTION_STRICTNESS.__getitem__)
        if check.check == "injection" and action not in ("block", "flag"):
            action = previous.action
        merged[key] = check.model_copy(update={"action": action})
    return tuple(merged.values())


def combine(*layers: GuardrailSet | None) -> GuardrailSet | None:
    """Merge layers from the least to the most specific (global, model, key, request).

    Checks accumulate; a check configured twice keeps the later options with the stricter
    action; `on_error` is `block` if any layer says so, and the strictest stream policy wins.
    Returns None when no layer is given or none has a check.
    """
    present = [layer for layer in layers if layer is not None]
    if not present:
        return None
    result = present[0]
    for layer in present[1:]:
        result = GuardrailSet(
            input=_merge_checks(result.input, layer.input),
            output=_merge_checks(result.output, layer.output),
            on_error="block" if "block" in (result.on_error, layer.on_error) else "allow",
            stream=max(result.stream, layer.stream, key=_STREAM_STRICTNESS.__getitem__),
        )
    return result if result.enabled else None
