"""Inbound APIs other than chat completions: Anthropic's Messages, OpenAI's Responses and
legacy completions, each translated to the chat-completions request the pipeline serves
and the answer translated back, so every model, route, limit, guardrail and log works the
same whichever API the caller speaks."""
