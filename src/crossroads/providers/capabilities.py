"""The capability matrix: what each provider does with each request parameter.

Every dialect and preset declares, per OpenAI (or Crossroads) parameter, whether it is
`native` (sent as is), `translated` (expressed in the upstream's own terms, or honoured by
the gateway itself) or `unsupported`. Parameters the matrix does not name — the caller's
own extras — get the provider's `unknown` policy: passed through to upstreams that accept
arbitrary fields, dropped elsewhere.

Unsupported parameters are never sent upstream. By default they are dropped and listed in
the response's `dropped_params` — and so are supported ones that a dialect's rule says this
particular request cannot have (`Capabilities.cannot_honour`); with
`provider.require_parameters: true` the request only goes to a deployment that supports all
of them (400 if none does). A parameter set to the value OpenAI treats as its default
(`n: 1`, `logprobs: false`, …) asks for nothing, so it is removed quietly rather than
reported.

A supported parameter can still have a narrower range upstream than in OpenAI (Anthropic's
`temperature` is 0–1, OpenAI's 0–2). A value outside it would be refused upstream and end the
request, so it is clamped into the range and reported in `adjusted_params` (with
`provider.require_parameters`, the deployment is skipped instead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from crossroads.protocol.extensions import ENGINE_PARAMETERS, EXTENSION_FIELDS

__all__ = [
    "MATRIX_PARAMETERS",
    "OPENAI_PARAMETERS",
    "Capabilities",
    "ParameterPlan",
    "Support",
    "plan_parameters",
]

Support = Literal["native", "translated", "unsupported"]

# OpenAI's own request parameters (beyond messages, model and streaming), in its order.
OPENAI_PARAMETERS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "user",
    "metadata",
    "store",
    "reasoning_effort",
    "service_tier",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
)
# The parameters a matrix speaks about, in the order `crossroads providers matrix` shows them.
MATRIX_PARAMETERS = (*OPENAI_PARAMETERS, "reasoning", *ENGINE_PARAMETERS)

# Body fields that are the request itself rather than options on it.
_STRUCTURAL = frozenset({"messages", "model", "stream", "stream_options"})
# Values that ask for nothing beyond OpenAI's default behaviour.
_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "n": 1,
        "logprobs": False,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "parallel_tool_calls": True,
        "use_beam_search": False,
        "store": False,
    }
)


def _frozen(parameters: Mapping[str, Support]) -> Mapping[str, Support]:
    return MappingProxyType(dict(parameters))


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can do, consulted before a request is sent to it."""

    parameters: Mapping[str, Support] = field(default_factory=lambda: _frozen({}))
    # What happens to parameters the matrix does not name (the caller's own extras).
    unknown: Support = "native"
    vision: bool = False
    # The most choices (`n`) one request may ask for; None means no limit of ours.
    max_n: int | None = None
    # Parameters whose accepted range upstream is narrower than OpenAI's: (lowest, highest).
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=lambda: MappingProxyType({}))
    # Human notes for `crossroads providers list` (limits, quirks worth knowing).
    notes: str = ""
    # Supported parameters that this request's body rules out (e.g. Anthropic's thinking on
    # a tool loop whose signed thinking did not come back); dropped like unsupported ones.
    cannot_honour: Callable[[Mapping[str, Any]], list[str]] | None = None

    def support(self, name: str) -> Support:
        return self.parameters.get(name, self.unknown)

    def with_parameters(self, overrides: Mapping[str, Support]) -> Capabilities:
        """This matrix with some entries replaced (config can correct a preset)."""
        if not overrides:
            return self
        return replace(self, parameters=_frozen({**self.parameters, **overrides}))


def matrix(
    *,
    native: Iterable[str] = (),
    translated: Iterable[str] = (),
    unsupported: Iterable[str] = (),
) -> Mapping[str, Support]:
    """Build a parameter matrix; names not listed fall to the provider's `unknown` policy."""
    out: dict[str, Support] = {}
    for support, names in (
        ("native", native),
        ("translated", translated),
        ("unsupported", unsupported),
    ):
        for name in names:
            out[name] = support  # type: ignore[assignment]
    return _frozen(out)


@dataclass(slots=True)
class ParameterPlan:
    """What to do with one request's parameters on one provider."""

    # Unsupported parameters that ask for something; reported as `dropped_params`.
    dropped: list[str] = field(default_factory=list)
    # Every body key to remove before the call (the dropped ones plus quiet defaults).
    removed: list[str] = field(default_factory=list)
    # Values outside the provider's range, clamped into it: sent instead, reported as
    # `adjusted_params`.
    adjusted: dict[str, float] = field(default_factory=dict)


def plan_parameters(capabilities: Capabilities, body: Mapping[str, Any]) -> ParameterPlan:
    """Decide, for each parameter in `body`, whether it can go to this provider."""
    plan = ParameterPlan()
    for name, value in body.items():
        if name in _STRUCTURAL or name in EXTENSION_FIELDS or value is None:
            continue
        if capabilities.support(name) != "unsupported":
            bounds = capabilities.ranges.get(name)
            if (
                bounds is not None
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            ):
                clamped = min(max(value, bounds[0]), bounds[1])
                if clamped != value:
                    plan.adjusted[name] = clamped
            continue
        plan.removed.append(name)
        if name not in _DEFAULTS or _DEFAULTS[name] != value:
            plan.dropped.append(name)
    if capabilities.cannot_honour is not None:
        for name in capabilities.cannot_honour(body):
            if name not in plan.removed:
                plan.removed.append(name)
                plan.dropped.append(name)
    return plan
