"""The `gemini` dialect's capability matrix (generateContent API)."""

from __future__ import annotations

from crossroads.providers.capabilities import Capabilities, matrix

__all__ = ["GEMINI_CAPABILITIES", "GEMINI_PASSTHROUGH"]

# generateContent fields a caller may send (snake_case, as the OpenAI SDK's extra_body would).
GEMINI_PASSTHROUGH = frozenset({"safety_settings", "cached_content"})

GEMINI_CAPABILITIES = Capabilities(
    parameters=matrix(
        native=tuple(GEMINI_PASSTHROUGH),
        translated=(
            "temperature",  # → generationConfig.temperature
            "top_p",  # → generationConfig.topP
            "top_k",  # → generationConfig.topK
            "max_tokens",  # → generationConfig.maxOutputTokens
            "max_completion_tokens",  # → generationConfig.maxOutputTokens
            "stop",  # → generationConfig.stopSequences
            "n",  # → generationConfig.candidateCount
            "seed",  # → generationConfig.seed
            "presence_penalty",  # → generationConfig.presencePenalty
            "frequency_penalty",  # → generationConfig.frequencyPenalty
            "logprobs",  # → generationConfig.responseLogprobs
            "top_logprobs",  # → generationConfig.logprobs
            "response_format",  # → responseMimeType + responseSchema
            "guided_json",  # → responseMimeType application/json + responseSchema
            "guided_choice",  # → responseMimeType text/x.enum + an enum responseSchema
            "tools",  # → tools[].functionDeclarations (JSON Schema → Gemini's subset)
            "tool_choice",  # → toolConfig.functionCallingConfig
            "user",  # kept in the gateway's request log
            "metadata",  # kept in the gateway's request log
            "store",  # honoured by the gateway's request log
            "reasoning_effort",  # → generationConfig.thinkingConfig.thinkingBudget
            "reasoning",  # → thinkingConfig (budget, includeThoughts)
        ),
        unsupported=(
            "logit_bias",
            "parallel_tool_calls",
            "functions",
            "function_call",
            "service_tier",
            "audio",
            "modalities",
            "prediction",
            "web_search_options",
            "min_p",
            "use_beam_search",
            "beam_size",
            "best_of",
            "length_penalty",
            "early_stopping",
            "guided_regex",
            "guided_grammar",
        ),
    ),
    unknown="unsupported",
    vision=True,
    max_n=8,
    notes="tool schemas are converted to Gemini's OpenAPI subset; $ref is inlined",
)
