"""Validators for the fine-tuning formats export writes, mirroring their documentation.

Each returns the problems it finds in one JSONL line (an empty list: the line is valid), so a
test can check every exported line and an upload can say which line is wrong and why.

- OpenAI chat SFT (also Together's conversational format): `{"messages": [...], "tools":
  [...], "parallel_tool_calls": bool}`; roles system, developer, user, assistant, tool; at
  least one assistant message; an assistant message has content or `tool_calls`
  (`{id, type: "function", function: {name, arguments}}` with `arguments` a JSON string) and
  an optional `weight` of 0 or 1; a tool message has `tool_call_id`; tools are
  `{type: "function", function: {name, description?, parameters?}}`.
- OpenAI preference (DPO), which Together takes as is: `{"input": {"messages": [...], "tools"?,
  "parallel_tool_calls"?}, "preferred_output": [assistant], "non_preferred_output":
  [assistant]}`; the input ends with a user (or tool) turn; each output is exactly one
  assistant message.
- TRL preference (conversational): `{"prompt": [...], "chosen": [assistant], "rejected":
  [assistant]}`, or all three strings (standard form), never mixed.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["FORMATS", "check_line", "check_openai_chat", "check_openai_dpo", "check_trl_dpo"]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def _text_content(content: Any, where: str, problems: list[str]) -> None:
    if isinstance(content, str):
        return
    if isinstance(content, list) and content:
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
                problems.append(f"{where}.content[{j}] must be a text or image_url part")
            elif part["type"] == "text" and not isinstance(part.get("text"), str):
                problems.append(f"{where}.content[{j}].text must be a string")
        return
    problems.append(f"{where}.content must be a string or a non-empty list of parts")


def _tool_calls(calls: Any, where: str, problems: list[str]) -> None:
    if not isinstance(calls, list) or not calls:
        problems.append(f"{where}.tool_calls must be a non-empty list")
        return
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict) or call.get("type") != "function":
            problems.append(f"{at} must be an object with type 'function'")
            continue
        if not isinstance(call.get("id"), str) or not call["id"]:
            problems.append(f"{at}.id must be a non-empty string")
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            problems.append(f"{at}.function.name must be a string")
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            problems.append(f"{at}.function.arguments must be a JSON string")
        else:
            try:
                orjson.loads(arguments)
            except orjson.JSONDecodeError:
                problems.append(f"{at}.function.arguments is not valid JSON")


def _message(message: Any, where: str, problems: list[str]) -> str | None:
    """Check one chat message; return its role (None when it has none usable)."""
    if not isinstance(message, dict):
        problems.append(f"{where} must be an object")
        return None
    role = message.get("role")
    if role not in _ROLES:
        problems.append(f"{where}.role must be one of {sorted(_ROLES)}, got {role!r}")
        return None
    allowed = {"role", "content", "name"}
    if role == "assistant":
        allowed |= {"tool_calls", "weight", "refusal", "function_call"}
        if "weight" in message and message["weight"] not in (0, 1):
            problems.append(f"{where}.weight must be 0 or 1")
        has_calls = message.get("tool_calls") is not None
        if has_calls:
            _tool_calls(message["tool_calls"], where, problems)
        if message.get("content") is not None or not has_calls:
            _text_content(message.get("content"), where, problems)
    elif role == "tool":
        allowed |= {"tool_call_id"}
        if not isinstance(message.get("tool_call_id"), str):
            problems.append(f"{where}.tool_call_id must be a string")
        _text_content(message.get("content"), where, problems)
    else:
        _text_content(message.get("content"), where, problems)
    extra = set(message) - allowed
    if extra:
        problems.append(f"{where} has fields the format does not take: {sorted(extra)}")
    return str(role)


def _messages(messages: Any, where: str, problems: list[str]) -> list[str]:
    if not isinstance(messages, list) or not messages:
        problems.append(f"{where} must be a non-empty list of messages")
        return []
    roles = [_message(m, f"{where}[{i}]", problems) for i, m in enumerate(messages)]
    return [r for r in roles if r is not None]


def _tools(tools: Any, where: str, problems: list[str]) -> None:
    if not isinstance(tools, list):
        problems.append(f"{where} must be a list")
        return
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
        ):
            problems.append(f"{where}[{i}] must be {{type: 'function', function: {{name, ...}}}}")
        elif "parameters" in function and not isinstance(function["parameters"], dict):
            problems.append(f"{where}[{i}].function.parameters must be a JSON schema object")


def _keys(line: dict[str, Any], allowed: set[str], problems: list[str]) -> None:
    extra = set(line) - allowed
    if extra:
        problems.append(f"fields the format does not take: {sorted(extra)}")


def check_openai_chat(line: Any) -> list[str]:
    problems: list[str] = []
    if not isinstance(line, dict):
        return ["a line must be a JSON object"]
    _keys(line, {"messages", "tools", "parallel_tool_calls", "functions"}, problems)
    roles = _messages(line.get("messages"), "messages", problems)
    if roles and "assistant" not in roles:
        problems.append("messages must hold at least one assistant message")
    if "tools" in line:
        _tools(line["tools"], "tools", problems)
    if "parallel_tool_calls" in line and not isinstance(line["parallel_tool_calls"], bool):
        problems.append("parallel_tool_calls must be a boolean")
    return problems


def _one_assistant(output: Any, where: str, problems: list[str]) -> None:
    if not isinstance(output, list) or len(output) != 1:
        problems.append(f"{where} must be a list of exactly one assistant message")
        return
    if _message(output[0], f"{where}[0]", problems) not in ("assistant", None):
        problems.append(f"{where}[0].role must be 'assistant'")


def check_openai_dpo(line: Any) -> list[str]:
    problems: list[str] = []
    if not isinstance(line, dict):
        return ["a line must be a JSON object"]
    _keys(line, {"input", "preferred_output", "non_preferred_output"}, problems)
    given = line.get("input")
    if not isinstance(given, dict):
        problems.append("input must be an object with messages")
    else:
        _keys(given, {"messages", "tools", "parallel_tool_calls"}, problems)
        roles = _messages(given.get("messages"), "input.messages", problems)
        if roles and roles[-1] not in ("user", "tool"):
            problems.append("input.messages must end with a user or tool message")
        if "tools" in given:
            _tools(given["tools"], "input.tools", problems)
    _one_assistant(line.get("preferred_output"), "preferred_output", problems)
    _one_assistant(line.get("non_preferred_output"), "non_preferred_output", problems)
    if not problems and line["preferred_output"] == line["non_preferred_output"]:
        problems.append("preferred_output and non_preferred_output must differ")
    return problems


def check_trl_dpo(line: Any) -> list[str]:
    problems: list[str] = []
    if not isinstance(line, dict):
        return ["a line must be a JSON object"]
    _keys(line, {"prompt", "chosen", "rejected"}, problems)
    prompt, chosen, rejected = line.get("prompt"), line.get("chosen"), line.get("rejected")
    if all(isinstance(v, str) for v in (prompt, chosen, rejected)):
        if chosen == rejected:
            problems.append("chosen and rejected must differ")
        return problems
    roles = _messages(prompt, "prompt", problems)
    if roles and roles[-1] == "assistant":
        problems.append("prompt must not end with an assistant message")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, list) or not value:
            problems.append(f"{name} must be a non-empty list of messages (or all three strings)")
            continue
        for i, message in enumerate(value):
            if _message(message, f"{name}[{i}]", problems) not in ("assistant", None):
                problems.append(f"{name}[{i}].role must be 'assistant'")
    if not problems and chosen == rejected:
        problems.append("chosen and rejected must differ")
    return problems


FORMATS = {
    "openai": check_openai_chat,
    "openai-dpo": check_openai_dpo,
    "together-dpo": check_openai_dpo,
    "trl-dpo": check_trl_dpo,
}


def check_line(format: str, line: Any) -> list[str]:
    return FORMATS[format](line)
