"""The names of Crossroads' request extensions, without the wire models that validate them.

Capability matrices are declared when the configuration is read (each dialect's), and they
speak about these names; importing `crossroads.protocol.chat` for them would build its
pydantic models in every `crossroads config check` (about 40 ms). The names are therefore
written here, and `tests/test_protocol_extensions.py` checks that they are exactly the
extension fields of `ChatCompletionRequest`, so a field added there must be added here.
"""

from __future__ import annotations

__all__ = ["ENGINE_PARAMETERS", "EXTENSION_FIELDS", "UPSTREAM_EXTENSIONS"]

# Decoding extensions that only some providers can honour; each provider's capability matrix
# says which, and the others drop them (or, with `provider.require_parameters`, are skipped).
ENGINE_PARAMETERS = (
    "top_k",
    "min_p",
    "use_beam_search",
    "beam_size",
    "best_of",
    "length_penalty",
    "early_stopping",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
)

# Extensions that are request parameters for the upstream, not instructions to the gateway:
# they go to providers whose matrix supports them (natively or translated).
UPSTREAM_EXTENSIONS = frozenset({*ENGINE_PARAMETERS, "reasoning"})

# Body fields that are the gateway's own business, never sent to an upstream.
EXTENSION_FIELDS = frozenset(
    {
        "models",
        "max_cost",
        "willingness_to_pay",
        "quality_risk_threshold",
        "extra",
        "provider",
        "routing",
        "route",
        "rag_tune",
        "integrity",
        "integrity_model",
        "session_id",
        "plugins",
        "debug",
        "openai_api_key",
        "guardrails",
        "cache",
        "quality",
        "criteria",
    }
)
