"""A chat completion → an OpenAI Responses API `response` object.

The response id is the request log's id behind `resp_`, which is how
`previous_response_id` finds the conversation again: no store of its own, the log is it.
Output items come in the order a Responses model emits them: reasoning (as a summary), the
message, then one `function_call` item per tool call — a `custom_tool_call` for a call to
one of the request's custom tools (inbound/custom_tools.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from crossroads.inbound.custom_tools import call_input, custom_names
from crossroads.inbound.responses_request import ResponsesRequest

__all__ = [
    "RESPONSE_PREFIX",
    "ResponseShell",
    "custom_tool_call_item",
    "function_call_item",
    "message_item",
    "reasoning_item",
    "response_usage",
]

RESPONSE_PREFIX = "resp_"

# Finish reasons that leave a response incomplete, and the reason the API gives.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_usage(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": prompt_details.get("cached_tokens") or 0,
            "cache_write_tokens": prompt_details.get("cache_write_tokens") or 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": completion_details.get("reasoning_tokens") or 0
        },
        "total_tokens": prompt + completion,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content if status == "completed" else [],
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def custom_tool_call_item(item_id: str, call_id: str, name: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "custom_tool_call", "call_id": call_id, "name": name,
            "input": text}  # fmt: skip


def reasoning_item(item_id: str, summary: str | None) -> dict[str, Any]:
    parts = [{"type": "summary_text", "text": summary}] if summary else []
    return {"id": item_id, "type": "reasoning", "summary": parts}


class ResponseShell:
    """The parts of a `response` that echo the request; `body` fills in the rest."""

    def __init__(self, request: ResponsesRequest, log_id: str) -> None:
        self.request = request
        self.log_id = log_id
        self.id = RESPONSE_PREFIX + log_id
        self.created_at = int(time.time())
        self.custom_tools = custom_names(request.tools)

    def call_item(self, k: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
        """The output item of a finished tool call: a custom tool's, or a function's."""
        if name in self.custom_tools:
            return custom_tool_call_item(
                self.item_id("ctc", k), call_id, name, call_input(arguments)
            )
        return function_call_item(self.item_id("fc", k), call_id, name, arguments)

    def item_id(self, kind: str, k: int = 0) -> str:
        return f"{kind}_{self.log_id}" + (f"_{k}" if k else "")

    def body(
        self,
        *,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        incomplete: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        request = self.request
        choice = request.tool_choice
        if isinstance(choice, dict):
            choice = {"type": choice.get("type", "function"), "name": choice.get("name")}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "model": request.model,
            "output": output,
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "reasoning": {
                "effort": (request.reasoning or {}).get("effort"),
                "summary": (request.reasoning or {}).get("summary"),
            },
            "store": request.store,
            "temperature": request.temperature,
            "text": request.text or {"format": {"type": "text"}},
            "tool_choice": choice or "auto",
            "tools": [_tool(tool) for tool in request.tools or ()],
            "top_p": request.top_p,
            "truncation": "disabled",
            "usage": usage,
            "user": request.user,
            "metadata": request.metadata or {},
        }

    def completed(self, completion: Mapping[str, Any]) -> dict[str, Any]:
        """The whole `response` for a non-streamed chat completion."""
        choice = (completion.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        output: list[dict[str, Any]] = []
        if reasoning := message.get("reasoning_content"):
            output.append(reasoning_item(self.item_id("rs"), reasoning))
        if (text := message.get("content")) or not message.get("tool_calls"):
            output.append(message_item(self.item_id("msg"), text or ""))
        for k, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            output.append(
                self.call_item(
                    k,
                    call.get("id") or "",
                    function.get("name") or "",
                    function.get("arguments") or "",
                )
            )
        incomplete = INCOMPLETE.get(choice.get("finish_reason") or "")
        return self.body(
            status="incomplete" if incomplete else "completed",
            output=output,
            usage=response_usage(completion.get("usage")),
            incomplete=incomplete,
        )


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    if tool.get("type") == "custom":
        echoed = {"type": "custom", "name": tool.get("name")}
        return echoed | {k: tool[k] for k in ("description", "format") if k in tool}
    return {
        "type": "function",
        "name": tool.get("name"),
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict", True),
    }
