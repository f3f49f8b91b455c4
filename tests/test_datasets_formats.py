"""The format validators themselves: the documented examples pass, each kind of mistake is
named. (The export tests rely on them, so they must be able to fail.)"""

from __future__ import annotations

from typing import Any

import pytest

from crossroads.datasets.formats import check_openai_chat, check_openai_dpo, check_trl_dpo
from crossroads.datasets.rows import row_from_upload
from crossroads.datasets.splits import assign_split, prompt_hash

# OpenAI's documented examples (fine-tuning guide: chat, tool calling, preference).
SFT = {
    "messages": [
        {"role": "system", "content": "Marv is a factual chatbot that is also sarcastic."},
        {"role": "user", "content": "What's the capital of France?"},
        {"role": "assistant", "content": "Paris, as if everyone doesn't know that already."},
    ]
}
SFT_TOOLS = {
    "messages": [
        {"role": "user", "content": "What is the weather in San Francisco?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_id",
                    "type": "function",
                    "function": {
                        "name": "get_current_weather",
                        "arguments": '{"location": "San Francisco, USA", "format": "celsius"}',
                    },
                }
            ],
        },
    ],
    "parallel_tool_calls": False,
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "description": "Get the current weather",
                "parameters": {"type": "object", "properties": {}, "required": []},
            },
        }
    ],
}
DPO = {
    "input": {
        "messages": [
            {"role": "user", "content": "Hello, can you tell me how cold San Francisco is today?"}
        ],
        "tools": [],
        "parallel_tool_calls": True,
    },
    "preferred_output": [
        {
            "role": "assistant",
            "content": "Today in San Francisco, it is not quite cold as expected.",
        }
    ],
    "non_preferred_output": [
        {"role": "assistant", "content": "It is not particularly cold in San Francisco today."}
    ],
}
TRL = {
    "prompt": [{"role": "user", "content": "What color is the sky?"}],
    "chosen": [{"role": "assistant", "content": "It is blue."}],
    "rejected": [{"role": "assistant", "content": "It is green."}],
}


def test_documented_examples_pass() -> None:
    assert check_openai_chat(SFT) == []
    assert check_openai_chat(SFT_TOOLS) == []
    assert check_openai_dpo(DPO) == []
    assert check_trl_dpo(TRL) == []
    assert check_trl_dpo({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}) == []


def _with(line: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(line)
    target: Any = out
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


_DELETE = object()


@pytest.mark.parametrize(
    ("check", "line", "fragment"),
    [
        (check_openai_chat, _with(SFT, ("messages",), []), "non-empty list"),
        (check_openai_chat, _with(SFT, ("messages", 2, "role"), "user"), "at least one assistant"),
        (check_openai_chat, _with(SFT, ("messages", 0, "role"), "robot"), "role must be"),
        (check_openai_chat, _with(SFT, ("messages", 2, "weight"), 2), "weight"),
        (check_openai_chat, _with(SFT, ("extra",), 1), "does not take"),
        (
            check_openai_chat,
            _with(SFT_TOOLS, ("messages", 1, "tool_calls", 0, "function", "arguments"), "{bad"),
            "not valid JSON",
        ),
        (check_openai_chat, _with(SFT_TOOLS, ("tools", 0, "type"), "retrieval"), "tools[0]"),
        (
            check_openai_chat,
            {"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]},
            "tool_call_id",
        ),
        (check_openai_dpo, _with(DPO, ("preferred_output",), []), "exactly one"),
        (check_openai_dpo, _with(DPO, ("non_preferred_output", 0, "role"), "user"), "'assistant'"),
        (
            check_openai_dpo,
            _with(DPO, ("input", "messages", 0, "role"), "assistant"),
            "end with a user",
        ),
        (
            check_openai_dpo,
            _with(DPO, ("non_preferred_output",), DPO["preferred_output"]),
            "differ",
        ),
        (check_openai_dpo, _with(DPO, ("input",), _DELETE), "input must be"),
        (check_trl_dpo, _with(TRL, ("chosen",), "It is blue."), "non-empty list"),
        (check_trl_dpo, _with(TRL, ("rejected",), TRL["chosen"]), "differ"),
        (check_trl_dpo, _with(TRL, ("prompt", 0, "role"), "assistant"), "must not end"),
    ],
)
def test_each_mistake_is_named(check: Any, line: dict[str, Any], fragment: str) -> None:
    problems = check(line)
    assert problems, line
    assert any(fragment in p for p in problems), problems


def test_uploads_take_both_formats_and_refuse_others() -> None:
    row = row_from_upload(SFT_TOOLS)
    assert row.output is not None and row.output["tool_calls"]
    assert row.tools == SFT_TOOLS["tools"]
    pair = row_from_upload(DPO)
    assert pair.rejected == DPO["non_preferred_output"]
    with pytest.raises(ValueError, match="assistant"):
        row_from_upload({"messages": [{"role": "user", "content": "x"}]})


def test_splits_are_seeded_and_stable() -> None:
    digests = [prompt_hash([{"role": "user", "content": str(i)}]) for i in range(2000)]
    first = [assign_split(d, seed=1, test_fraction=0.2) for d in digests]
    assert first == [assign_split(d, seed=1, test_fraction=0.2) for d in digests]
    assert first != [assign_split(d, seed=2, test_fraction=0.2) for d in digests]
    assert 300 < first.count("test") < 500
    assert prompt_hash([{"b": 1, "a": 2}]) == prompt_hash([{"a": 2, "b": 1}])
