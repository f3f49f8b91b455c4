"""OpenAI tool calling on top of an engine (and a model) that has none.

llama.cpp with the Gemma template neither renders `tools` nor returns `tool_calls`, rejects
`tools` together with a grammar, and breaks on `role: "tool"` messages (Gemma's template only
allows alternating user/model turns). So the gateway does tool calling itself, in text:

* `tool_messages` rewrites the conversation: tools are described in the system preamble
  together with the one call format, `<tool_call>{"name": …, "arguments": {…}}</tool_call>`;
  earlier calls and their results become plain assistant and user text; turns are merged
  until they alternate.
* `tool_call_grammar` builds an LLGuidance grammar that forces that format, with each
  tool's arguments held to its own parameters schema, when the caller requires a call.
* `parse_tool_calls` turns the generated text back into OpenAI `tool_calls`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from crossroads.protocol.errors import GatewayError
from crossroads.providers.llamacpp.structured import LLGUIDANCE, engine_schema, json_grammar

__all__ = ["parse_tool_calls", "tool_call_grammar", "tool_messages"]

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL = '<tool_call>{"name": "<tool name>", "arguments": {<arguments as JSON>}}</tool_call>'
# A function without `parameters` takes none (OpenAI: "an empty parameter list").
_NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}
_ROLE = {"developer": "system"}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # text parts only: the engine sees nothing else
        parts = (p.get("text") or p.get("refusal") or "" for p in content if isinstance(p, dict))
        return "\n".join(part for part in parts if part)
    return ""


def _functions(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        tool["function"]
        for tool in tools or []
        if tool.get("type") == "function" and isinstance(tool.get("function"), dict)
    ]


def _preamble(functions: list[dict[str, Any]]) -> str:
    lines = ["You can call these tools:", "<tools>"]
    for function in functions:
        spec = {"name": function["name"], "description": function.get("description") or ""}
        spec["parameters"] = function.get("parameters") or _NO_PARAMETERS
        lines.append(json.dumps(spec, ensure_ascii=False))
    lines += [
        "</tools>",
        "To call a tool, reply with one line per call, in exactly this format:",
        _CALL,
        'Results come back as <tool_response name="<tool name>">…</tool_response>.',
    ]
    return "\n".join(lines)


def _call_block(name: str, arguments: Any) -> str:
    try:
        decoded = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        decoded = arguments  # shown as the string it is
    call = {"name": name, "arguments": decoded}
    return f"{OPEN}{json.dumps(call, ensure_ascii=False)}{CLOSE}"


def tool_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Rewrite an OpenAI conversation into turns the Gemma template accepts.

    Returns an optional leading `system` message (caller system/developer text, then the tool
    preamble when `tools` has functions) followed by strictly alternating `user`/`assistant`
    messages with string content, starting with `user`. Assistant `tool_calls` become
    `<tool_call>` blocks, `tool` (and legacy `function`) results become user text
    `<tool_response name="…">…</tool_response>`; later system messages become user text.
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    names: dict[str, str] = {}

    def add(role: str, text: str) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": role, "content": text})

    for message in messages:
        role = _ROLE.get(message.get("role", ""), message.get("role", ""))
        text = _text(message.get("content"))
        if role == "system":
            if turns:
                add("user", text)
            else:
                system.append(text)
        elif role == "assistant":
            calls = list(message.get("tool_calls") or [])
            if message.get("function_call"):
                calls.append({"function": message["function_call"]})
            blocks = [text] if text else []
            for call in calls:
                function = call.get("function") or {}
                names[str(call.get("id"))] = function.get("name", "")
                blocks.append(_call_block(function.get("name", ""), function.get("arguments")))
            add("assistant", "\n".join(blocks))
        elif role in ("tool", "function"):
            name = message.get("name") or names.get(str(message.get("tool_call_id")))
            attribute = f' name="{name}"' if name else ""
            add("user", f"<tool_response{attribute}>{text}</tool_response>")
        else:
            add("user", text)
    functions = _functions(tools)
    if functions:
        system.append(_preamble(functions))
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": ""})
    system_text = "\n\n".join(part for part in system if part)
    return ([{"role": "system", "content": system_text}] if system_text else []) + turns


def _allowed(functions: list[dict[str, Any]], tool_choice: Any) -> list[dict[str, Any]] | None:
    """The functions a call may name, or None when no call is forced (auto)."""
    if tool_choice in (None, "auto", "required"):
        return None if tool_choice != "required" else functions
    if isinstance(tool_choice, Mapping) and isinstance(tool_choice.get("function"), Mapping):
        name = tool_choice["function"].get("name")
        chosen = [function for function in functions if function.get("name") == name]
        if not chosen:
            message = f"tool_choice names function {name!r}, which is not among the tools"
            raise GatewayError(400, message, param="tool_choice", code="invalid_value")
        return chosen
    message = f"tool_choice must be 'none', 'auto', 'required' or a function, not {tool_choice!r}"
    raise GatewayError(400, message, param="tool_choice", code="invalid_value")


def _rebase(node: Any, prefix: str) -> Any:
    """Point the schema's local `$ref`s at its new place inside the combined schema."""
    if isinstance(node, list):
        return [_rebase(item, prefix) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _rebase(value, prefix) for key, value in node.items()}
    ref = node.get("$ref")
    if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
        out["$ref"] = prefix + ref[1:]
    return out


def _call_schema(functions: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
    branches: list[dict[str, Any]] = []
    for function in functions:
        index = next(i for i, tool in enumerate(tools) if tool.get("function") is function)
        param = f"tools[{index}].function.parameters"
        parameters = engine_schema(function.get("parameters") or _NO_PARAMETERS, param)
        if parameters.setdefault("type", "object") != "object":
            message = "a function's parameters must describe an object"
            raise GatewayError(400, message, param=param, code="invalid_schema")
        for key in ("$id", "$schema"):
            parameters.pop(key, None)
        arguments = _rebase(parameters, f"#/anyOf/{len(branches)}/properties/arguments")
        branches.append(
            {
                "type": "object",
                "properties": {"name": {"const": function["name"]}, "arguments": arguments},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return {"anyOf": branches}


def _not_a_call() -> str:
    """A regex for any text that, after leading whitespace, does not start with `<tool_call>`.

    LLGuidance's own negation (`~`) expresses this too but made sampling crawl (one request
    took a minute), so the complement is spelled out: a proper prefix of the tag, or the tag
    broken at some character.
    """
    hexes = [f"\\x{{{ord(char):X}}}" for char in OPEN]
    first = "[^" + hexes[0] + r" \t\r\n]"
    broken = [first + "(?s:.*)"]
    broken += ["".join(hexes[:i]) + f"[^{hexes[i]}](?s:.*)" for i in range(1, len(OPEN))]
    prefixes = ["".join(hexes[:i]) for i in range(1, len(OPEN))]
    return r"[ \t\r\n]*(?:" + "|".join(broken + prefixes) + ")?"


def tool_call_grammar(
    tools: list[dict[str, Any]] | None, tool_choice: Any, parallel: bool
) -> str | None:
    """An LLGuidance grammar for the reply, or None when nothing should be constrained.

    "required" or a named function: the reply is one `<tool_call>{"name": …, "arguments": …}
    </tool_call>` block (one or more, newline-separated, when `parallel`), `name` one of the
    allowed functions and `arguments` valid for *that* function's parameters. "auto" (the
    default with tools): either text that does not start with `<tool_call>` or such blocks,
    so a reply that opens a call is held to the format; text cannot be followed by a call.
    "none", or no function tools: None. Bad schemas or choices raise a 400 `GatewayError`.
    """
    functions = _functions(tools)
    if not functions or tool_choice == "none":
        return None
    allowed = _allowed(functions, tool_choice)
    schema = _call_schema(allowed or functions, tools or [])
    calls = 'call ("\\n" call)*' if parallel else "call"
    start = f"TEXT | {calls}\nTEXT: /{_not_a_call()}/" if allowed is None else calls
    return (
        f"{LLGUIDANCE}start: {start}\n"
        f'call: "{OPEN}" arguments "{CLOSE}"\n'
        f"arguments: {json_grammar(schema)}\n"
    )


def _valid_call(block: str, functions: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    try:
        call = json.loads(block)
    except ValueError:
        return None
    if not isinstance(call, dict) or set(call) != {"name", "arguments"}:
        return None
    name, arguments = call["name"], call["arguments"]
    if not isinstance(name, str) or name not in functions or not isinstance(arguments, dict):
        return None
    schema = functions[name].get("parameters") or _NO_PARAMETERS
    try:
        if not Draft202012Validator(schema).is_valid(arguments):
            return None
    except Exception:  # a schema too broken to check (e.g. a dangling $ref) vouches for nothing
        return None
    return {
        "id": f"call_{secrets.token_hex(12)}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
    }


def parse_tool_calls(
    text: str, tools: list[dict[str, Any]]
) -> tuple[str | None, list[dict[str, Any]]]:
    """Split generated text into (content or None, OpenAI `tool_calls`).

    Every `<tool_call>…</tool_call>` block holding `{"name", "arguments"}` for a known
    function, with arguments valid for its parameters, becomes a call; anything else —
    malformed or unknown calls (possible only under "auto"), or a block cut off by
    `max_tokens` — stays in the content. Content is None when nothing but calls remains.
    """
    functions = {function["name"]: function for function in _functions(tools)}
    calls: list[dict[str, Any]] = []
    rest: list[str] = []
    position = 0
    while (start := text.find(OPEN, position)) >= 0:
        end = text.find(CLOSE, start + len(OPEN))
        if end < 0:
            break
        call = _valid_call(text[start + len(OPEN) : end], functions)
        if call is None:
            rest.append(text[position : start + len(OPEN)])
            position = start + len(OPEN)
            continue
        calls.append(call)
        rest.append(text[position:start])
        position = end + len(CLOSE)
    rest.append(text[position:])
    content = "".join(rest).strip()
    return (content or None), calls
