"""Chat templates for GGUF files that carry none (or carry a wrong one).

The Gemma 3 270M GGUF that the default model package ships has no `tokenizer.chat_template`,
and llama.cpp would silently fall back to ChatML, which Gemma does not understand. A
template is therefore chosen explicitly: a built-in name from `BUILTIN_TEMPLATES`, or any
Jinja source given in config.
"""

from __future__ import annotations

__all__ = ["BUILTIN_TEMPLATES", "GEMMA3", "resolve_template"]

# Gemma 3's own template: the system prompt is folded into the first user turn, `assistant`
# is called `model`, and turns must alternate (tool turns are rewritten before rendering).
GEMMA3 = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

CHATML = """{%- for message in messages -%}
{{ '<|im_start|>' + message['role'] + '\\n' }}
{%- if message['content'] is string -%}{{ message['content'] }}
{%- else -%}{%- for item in message['content'] -%}
{%- if item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}
{%- endfor -%}
{%- endif -%}
{{ '<|im_end|>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}
"""

BUILTIN_TEMPLATES = {"gemma3": GEMMA3, "chatml": CHATML}


def resolve_template(value: str | None) -> str | None:
    """A built-in name → its Jinja source; Jinja source → itself; None → the GGUF's own."""
    if value is None:
        return None
    return BUILTIN_TEMPLATES.get(value, value)
