"""OpenAI request parameters → the Messages API's: limits, sampling, tools, JSON answers and
thinking.

Everything the capability matrix lists as native or translated for this dialect is mapped
here; anything else that reaches this far (the gateway drops unsupported parameters first)
is ignored, and `metadata` and `store` stay with the gateway.

The one design decision: Anthropic has no JSON mode, so `response_format` (json_schema or
json_object) and `guided_json` are emulated with a forced tool whose input schema is the
requested schema; the answer's translation turns that tool's input back into the message
content. A forced tool cannot share the request with the caller's own tools or with
thinking, and those combinations are refused with a 400 naming the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.providers.anthropic.parameters import ANTHROPIC_PASSTHROUGH

__all__ = ["JSON_TOOL_DESCRIPTION", "Options", "map_options", "thinking_on"]

JSON_TOOL_DESCRIPTION = "Respond with the answer as this tool's input."
_JSON_TOOL_NAME = "json_answer"
# Thinking budgets for OpenAI's effort levels; Anthropic's floor is 1024.
_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
_MIN_BUDGET = 1024


@dataclass(frozen=True, slots=True)
class Options:
    fields: dict[str, Any]  # top-level Messages API fields, everything but model and messages
    json_tool: str | None  # the forced tool standing in for a JSON answer
    include_reasoning: bool


def map_options(body: Mapping[str, Any], default_max_tokens: int) -> Options:
    """The Messages API fields for an OpenAI body's parameters, or a 400 `GatewayError`."""
    out: dict[str, Any] = {}
    for name in ("temperature", "top_p", *sorted(ANTHROPIC_PASSTHROUGH)):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if user := body.get("user"):
        out["metadata"] = {"user_id": user}

    tools = [_tool(tool, k) for k, tool in enumerate(body.get("tools") or ())]
    choice = _tool_choice(body.get("tool_choice"), bool(tools), body.get("parallel_tool_calls"))
    json_tool = None
    if answer := _json_answer(body):
        json_tool, schema, param = answer
        if tools:
            raise bad_request(
                f"`{param}` cannot be combined with `tools` on Anthropic models: the JSON "
                "answer is produced by a forced tool call, which leaves no room for yours.",
                param=param,
            )
        tools = [{"name": json_tool, "description": JSON_TOOL_DESCRIPTION, "input_schema": schema}]
        choice = {"type": "tool", "name": json_tool}
    if tools:
        out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice

    if not isinstance(out.get("thinking", {}), Mapping):
        raise bad_request(
            '`thinking` must be an object, e.g. {"type": "enabled", "budget_tokens": 2048}.',
            param="thinking",
        )
    if "thinking" not in out and (thinking := _thinking(body)):
        out["thinking"] = thinking
    budget = _budget(out.get("thinking"))
    out["max_tokens"] = _max_tokens(body, default_max_tokens, budget)
    if out.get("thinking", {}).get("type", "disabled") != "disabled":
        _check_thinking_compatible(out, json_param=answer[2] if answer else None)

    reasoning = body.get("reasoning") or {}
    return Options(out, json_tool, include_reasoning=not reasoning.get("exclude"))


def _tool(tool: Mapping[str, Any], k: int) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise bad_request(
            f"Only function tools can be sent to Anthropic, not {tool.get('type')!r}.",
            param=f"tools[{k}].type",
        )
    function = tool.get("function") or {}
    out: dict[str, Any] = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if description := function.get("description"):
        out["description"] = description
    return out


def _tool_choice(choice: Any, has_tools: bool, parallel: Any) -> dict[str, Any] | None:
    if not has_tools:
        if choice in (None, "auto", "none"):
            return None
        raise bad_request("`tool_choice` requires `tools`.", param="tool_choice")
    out: dict[str, Any] | None
    if choice is None:
        out = {"type": "auto"} if parallel is False else None
    elif choice in ("auto", "required", "none"):
        out = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        raise bad_request(f"Unknown `tool_choice` {choice!r}.", param="tool_choice")
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _json_answer(body: Mapping[str, Any]) -> tuple[str, dict[str, Any], str] | None:
    """(tool name, input schema, the parameter that asked) for a JSON answer, else None."""
    answer: tuple[str, Any, str] | None = None
    fmt = body.get("response_format") or {}
    kind = fmt.get("type")
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        name = spec.get("name") or _JSON_TOOL_NAME
        answer = name, spec.get("schema") or {"type": "object"}, "response_format"
    elif kind == "json_object":
        answer = _JSON_TOOL_NAME, {"type": "object"}, "response_format"
    elif kind not in (None, "text"):
        raise bad_request(f"Unknown `response_format` type {kind!r}.", param="response_format")
    elif (guided := body.get("guided_json")) is not None:
        if isinstance(guided, str | bytes):
            try:
                guided = orjson.loads(guided)
            except orjson.JSONDecodeError:
                guided = None
        answer = _JSON_TOOL_NAME, guided, "guided_json"
    if answer is None:
        return None
    name, schema, param = answer
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise bad_request(
            "On Anthropic models the JSON answer is a tool call's input, which must be a JSON "
            'object: the schema needs `"type": "object"` at the top.',
            param=param,
        )
    return name, schema, param


def _thinking(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """Anthropic's `thinking` for `reasoning` / `reasoning_effort`, or None for no thinking."""
    reasoning = body.get("reasoning") or {}
    if reasoning.get("enabled") is False:
        return None
    budget = reasoning.get("max_tokens")
    if budget is not None:
        if budget < _MIN_BUDGET:
            raise bad_request(
                f"Anthropic's smallest thinking budget is {_MIN_BUDGET} tokens; "
                f"`reasoning.max_tokens` is {budget}.",
                param="reasoning.max_tokens",
            )
        return {"type": "enabled", "budget_tokens": budget}
    param = "reasoning.effort" if reasoning.get("effort") is not None else "reasoning_effort"
    effort = reasoning.get("effort") or body.get("reasoning_effort")
    if effort is None and reasoning.get("enabled"):
        effort = "medium"
    if effort is None or effort == "none":
        return None
    if effort not in _BUDGETS:
        raise bad_request(f"Unknown reasoning effort {effort!r}.", param=param)
    return {"type": "enabled", "budget_tokens": _BUDGETS[effort]}


def thinking_on(body: Mapping[str, Any]) -> bool:
    """Whether `body` turns extended thinking on, as `map_options` will read it. A setting
    it would refuse counts as off here: its 400 comes from `map_options`."""
    passed = body.get("thinking")
    if passed is not None:
        return isinstance(passed, Mapping) and passed.get("type") in ("enabled", "adaptive")
    try:
        return _thinking(body) is not None
    except GatewayError:
        return False


def _budget(thinking: Any) -> int | None:
    if isinstance(thinking, Mapping) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        return budget if isinstance(budget, int) else None
    return None


def _max_tokens(body: Mapping[str, Any], default: int, budget: int | None) -> int:
    """The caller's limit, or the default on top of the thinking budget: Anthropic counts
    thinking inside `max_tokens` and wants the budget strictly below it."""
    for param in ("max_completion_tokens", "max_tokens"):
        limit = body.get(param)
        if limit is None:
            continue
        if budget is not None and limit <= budget:
            raise bad_request(
                f"Anthropic counts the thinking budget ({budget} tokens) inside the token "
                f"limit, which must exceed it: raise `{param}` above {budget} or lower the "
                "reasoning effort.",
                param=param,
            )
        return int(limit)
    return default + (budget or 0)


def _check_thinking_compatible(out: Mapping[str, Any], json_param: str | None) -> None:
    """Anthropic refuses thinking with forced tool use and with changed sampling."""
    if out.get("tool_choice", {}).get("type") in ("any", "tool"):
        what = "A JSON answer (a forced tool call)" if json_param else "A forced `tool_choice`"
        raise bad_request(
            f"{what} cannot be combined with reasoning on Anthropic models; drop the "
            "reasoning settings or let the model choose its tools.",
            param=json_param or "tool_choice",
        )
    temperature = out.get("temperature")
    if temperature is not None and temperature != 1:
        raise bad_request(
            "With reasoning on, Anthropic accepts only the default `temperature` (1).",
            param="temperature",
        )
    if out.get("top_p") is not None and out["top_p"] < 0.95:
        raise bad_request(
            "With reasoning on, Anthropic accepts `top_p` only from 0.95 to 1.", param="top_p"
        )
    if "top_k" in out:
        raise bad_request("With reasoning on, Anthropic does not accept `top_k`.", param="top_k")
