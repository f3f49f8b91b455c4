"""The OpenAI request's options → Gemini's `generationConfig`, `tools` and `toolConfig`.

Sampling parameters are renamed into `generationConfig`; `response_format`, `guided_json`
and `guided_choice` become `responseMimeType` plus a `responseSchema` in Gemini's schema
subset; reasoning settings become `thinkingConfig`; tools become `functionDeclarations`;
`safety_settings` and `cached_content` pass through as Gemini spells them. Parameters the
gateway keeps for itself (`user`, `metadata`, `store`) and those the capability matrix
removes before a body gets here are never read.

The one design decision: reasoning effort is a token budget. Gemini's `thinkingBudget`
counts tokens, so each OpenAI effort level stands for a fixed budget (`_BUDGETS`) and an
explicit `reasoning.max_tokens` wins over any level.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from crossroads.protocol.errors import bad_request
from crossroads.providers.gemini.schema import SchemaCache

__all__ = ["RequestOptions", "map_options"]

# OpenAI name → generationConfig name, for values that are copied as they are.
_RENAMED = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("n", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)
_BUDGETS = {
    "none": 0,
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
}
_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


@dataclass(frozen=True, slots=True)
class RequestOptions:
    fields: dict[str, Any]  # top-level GenerateContentRequest fields besides the contents
    include_reasoning: bool
    json_mode: bool


def map_options(body: Mapping[str, Any], schemas: SchemaCache) -> RequestOptions:
    config = _sampling(body)
    json_mode = _structured_output(body, config, schemas)
    include_reasoning = _thinking(body, config)
    fields: dict[str, Any] = {}
    if config:
        fields["generationConfig"] = config
    tools = body.get("tools") or []
    if tools:
        fields["tools"] = [{"functionDeclarations": _declarations(tools, schemas)}]
    names = {(tool.get("function") or {}).get("name") for tool in tools}
    if tool_config := _tool_config(body.get("tool_choice"), names):
        fields["toolConfig"] = tool_config
    if (safety := body.get("safety_settings")) is not None:
        fields["safetySettings"] = safety
    if (cached := body.get("cached_content")) is not None:
        fields["cachedContent"] = cached
    return RequestOptions(fields, include_reasoning, json_mode)


def _sampling(body: Mapping[str, Any]) -> dict[str, Any]:
    config = {gemini: body[openai] for openai, gemini in _RENAMED if body.get(openai) is not None}
    # vLLM's `top_k` of -1 (or 0) means "no limit", which Gemini spells by leaving it out.
    if (top_k := body.get("top_k")) is not None and top_k > 0:
        config["topK"] = top_k
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    if stop := body.get("stop"):
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("logprobs"):
        config["responseLogprobs"] = True
        if (top := body.get("top_logprobs")) is not None:
            config["logprobs"] = top
    return config


def _structured_output(
    body: Mapping[str, Any], config: dict[str, Any], schemas: SchemaCache
) -> bool:
    """Sets `responseMimeType` / `responseSchema`; True when the answer is constrained."""
    response_format = body.get("response_format") or {}
    kind = response_format.get("type")
    asked = [
        name
        for name, present in (
            ("response_format", kind in ("json_object", "json_schema")),
            ("guided_json", body.get("guided_json") is not None),
            ("guided_choice", body.get("guided_choice") is not None),
        )
        if present
    ]
    if len(asked) > 1:
        raise bad_request(
            f"`{asked[0]}` and `{asked[1]}` both constrain the answer; send only one.",
            param=asked[1],
        )
    if kind not in (None, "text", "json_object", "json_schema"):
        raise bad_request(f"Unknown response_format type {kind!r}.", param="response_format.type")
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
    elif kind == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema is not None:
            config["responseSchema"] = schemas.convert(
                schema, path="response_format.json_schema.schema"
            )
    elif (guided := body.get("guided_json")) is not None:
        if isinstance(guided, str):
            try:
                guided = orjson.loads(guided)
            except orjson.JSONDecodeError:
                guided = None
        if not isinstance(guided, dict):
            raise bad_request("`guided_json` must be a JSON schema object.", param="guided_json")
        config["responseMimeType"] = "application/json"
        config["responseSchema"] = schemas.convert(guided, path="guided_json")
    elif (choices := body.get("guided_choice")) is not None:
        config["responseMimeType"] = "text/x.enum"
        config["responseSchema"] = {"type": "STRING", "enum": list(choices)}
    else:
        return False
    return True


def _thinking(body: Mapping[str, Any], config: dict[str, Any]) -> bool:
    """Sets `thinkingConfig`; returns whether thought parts go back to the caller."""
    reasoning = body.get("reasoning") or {}
    exclude = bool(reasoning.get("exclude"))
    budget = reasoning.get("max_tokens")
    if budget is None:
        effort = reasoning.get("effort") or body.get("reasoning_effort")
        param = "reasoning.effort" if reasoning.get("effort") else "reasoning_effort"
        if effort is None and (enabled := reasoning.get("enabled")) is not None:
            effort, param = ("medium" if enabled else "none"), "reasoning.enabled"
        if effort is not None:
            if effort not in _BUDGETS:
                raise bad_request(
                    f"Unknown reasoning effort {effort!r}; use one of {', '.join(_BUDGETS)}.",
                    param=param,
                )
            budget = _BUDGETS[effort]
    thinking: dict[str, Any] = {}
    if budget is not None:
        thinking = {"thinkingBudget": budget, "includeThoughts": not exclude}
    elif exclude:
        thinking = {"includeThoughts": False}
    if thinking:
        config["thinkingConfig"] = thinking
    return not exclude


def _declarations(tools: list[Mapping[str, Any]], schemas: SchemaCache) -> list[dict[str, Any]]:
    declarations = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise bad_request(
                f"Only function tools can be sent to Gemini, got {tool.get('type')!r}.",
                param=f"tools[{i}].type",
            )
        function = tool.get("function") or {}
        declaration: dict[str, Any] = {"name": function.get("name")}
        if description := function.get("description"):
            declaration["description"] = description
        if (parameters := function.get("parameters")) is not None:
            schema = schemas.convert(parameters, path=f"tools[{i}].function.parameters")
            # A function without arguments is declared without `parameters`: Gemini
            # rejects an OBJECT schema that has no properties.
            if schema.get("properties") or "anyOf" in schema:
                declaration["parameters"] = schema
        declarations.append(declaration)
    return declarations


def _tool_config(choice: Any, names: set[Any]) -> dict[str, Any] | None:
    if choice is None or (not names and choice in ("auto", "none")):
        return None
    if isinstance(choice, str) and choice in _TOOL_MODES:
        if not names:
            raise bad_request("`tool_choice: required` needs `tools`.", param="tool_choice")
        return {"functionCallingConfig": {"mode": _TOOL_MODES[choice]}}
    name = (choice.get("function") or {}).get("name") if isinstance(choice, Mapping) else None
    if name is None:
        raise bad_request(f"Unknown tool_choice {choice!r}.", param="tool_choice")
    if name not in names:
        raise bad_request(
            f"`tool_choice` names the function {name!r}, which is not among `tools`.",
            param="tool_choice.function.name",
        )
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
