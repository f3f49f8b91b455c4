"""Responses API custom (freeform) tools, served by models that only know function tools.

A custom tool (`{"type": "custom", "name", "description", "format"}`, as Codex declares
`apply_patch`) takes free text, not JSON. Chat-completions upstreams have no such tool, so
it goes upstream as a function tool taking one string argument, `input`; the text format
(a grammar, when one is given) is put in that argument's description, since no upstream
behind the gateway can constrain a call to a grammar. The call comes back as a
`custom_tool_call` item whose `input` is that string argument, and a
`custom_tool_call_output` given back is a tool result like any other.

A call's arguments that are not `{"input": "<text>"}` (a model that answered the text
bare) are taken as the input text whole, rather than lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from crossroads.protocol.errors import bad_request

__all__ = ["INPUT", "call_arguments", "call_input", "custom_names", "function_tool"]

INPUT = "input"


def custom_names(tools: Iterable[Mapping[str, Any]] | None) -> frozenset[str]:
    """The names of the custom tools among a request's `tools`."""
    return frozenset(
        tool["name"]
        for tool in tools or ()
        if tool.get("type") == "custom" and isinstance(tool.get("name"), str)
    )


def function_tool(tool: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The chat function tool a custom tool is sent upstream as."""
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request(f"Missing required parameter: '{path}.name'.", param=f"{path}.name")
    about = "The tool's input: raw text, not JSON."
    spec = tool.get("format")
    if isinstance(spec, Mapping) and spec.get("type") == "grammar":
        definition = spec.get("definition")
        if not isinstance(definition, str):
            raise bad_request(
                f"Invalid '{path}.format.definition': a string is required.",
                param=f"{path}.format.definition",
            )
        syntax = spec.get("syntax") or "lark"
        about += f" It must match this {syntax} grammar:\n{definition}"
    elif spec is not None and not (isinstance(spec, Mapping) and spec.get("type") == "text"):
        raise bad_request(
            f'Invalid \'{path}.format\': expected {{"type": "text"}} or a grammar.',
            param=f"{path}.format",
        )
    function: dict[str, Any] = {
        "name": name,
        "parameters": {
            "type": "object",
            "properties": {INPUT: {"type": "string", "description": about}},
            "required": [INPUT],
            "additionalProperties": False,
        },
    }
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def call_arguments(text: str) -> str:
    """The function-call arguments for a custom tool call's input text."""
    return orjson.dumps({INPUT: text}).decode()


def call_input(arguments: str) -> str:
    """A custom tool call's input text from the function-call arguments the model gave."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get(INPUT), str):
        return str(value[INPUT])
    return arguments
