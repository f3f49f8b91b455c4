"""The chat-completions request: OpenAI's parameters, then Crossroads' extensions.

Fields follow OpenAI's documented order; the extensions from DESIGN.md §1 come after, under
a comment. The model validates types and ranges only — whether a parameter can be honoured
is decided later (`unimplemented_parameters`, the provider's capabilities), because the
answer depends on where the request goes. Unknown fields are kept (`extra="allow"`):
OpenAI-compatible upstreams such as vLLM accept parameters we have never heard of.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crossroads.guardrails.config import GuardrailSet
from crossroads.protocol.extensions import ENGINE_PARAMETERS, EXTENSION_FIELDS, UPSTREAM_EXTENSIONS
from crossroads.quality_config import QualityOptions

__all__ = [
    "ENGINE_PARAMETERS",
    "EXTENSION_FIELDS",
    "UPSTREAM_EXTENSIONS",
    "ChatCompletionRequest",
    "ChatMessage",
    "ProviderPreferences",
    "unimplemented_parameters",
]

Probability = Annotated[float, Field(ge=0, le=1)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


class _Open(BaseModel):
    """Wire objects keep fields they do not know, so newer OpenAI features pass through.

    Types are strict, as OpenAI's are: `"10"` is not an integer, `true` is not a number and
    `"yes"` is not a boolean. A loosely typed value would be forwarded as sent (the body goes
    upstream as it arrived) and refused there, or worse, misread.

    Validators are built on first use (`defer_build`): the command line imports these
    models for their field names and should not pay for building them; the server builds
    them at start-up.
    """

    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)


# --- messages -------------------------------------------------------------------------------


class TextPart(_Open):
    type: Literal["text"]
    text: str


class ImageURL(_Open):
    url: NonEmptyStr
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Open):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(_Open):
    data: str
    format: str


class AudioPart(_Open):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FilePart(_Open):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(_Open):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[
    TextPart | ImagePart | AudioPart | FilePart | RefusalPart, Field(discriminator="type")
]


class FunctionCall(_Open):
    name: NonEmptyStr
    arguments: str


class ToolCall(_Open):
    id: NonEmptyStr
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Open):
    role: Literal["system"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]
    name: str | None = None


class DeveloperMessage(_Open):
    role: Literal["developer"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]
    name: str | None = None


class UserMessage(_Open):
    role: Literal["user"]
    content: str | Annotated[list[ContentPart], Field(min_length=1)]
    name: str | None = None


class AssistantMessage(_Open):
    role: Literal["assistant"]
    content: str | list[TextPart | RefusalPart] | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None

    @model_validator(mode="after")
    def _has_something(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls and self.function_call is None:
            raise ValueError("an assistant message needs `content` or `tool_calls`")
        return self


class ToolMessage(_Open):
    role: Literal["tool"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]
    tool_call_id: NonEmptyStr


class FunctionMessage(_Open):
    role: Literal["function"]
    content: str | None
    name: NonEmptyStr


ChatMessage = Annotated[
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage,
    Field(discriminator="role"),
]


# --- tools and formats ----------------------------------------------------------------------


class FunctionDefinition(_Open):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_.\-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(_Open):
    type: Literal["function"]
    function: FunctionDefinition


class RetrievalSpec(_Open):
    bucket_ids: Annotated[list[NonEmptyStr], Field(min_length=1)]
    max_num_results: int | None = Field(None, ge=1, le=100)


class RetrievalTool(_Open):
    type: Literal["retrieval"]
    retrieval: RetrievalSpec


class FileSearchTool(_Open):
    """OpenAI's `file_search` tool: search the caller's vector stores before answering."""

    type: Literal["file_search"]
    vector_store_ids: Annotated[list[NonEmptyStr], Field(min_length=1)]
    max_num_results: int | None = Field(None, ge=1, le=50)


Tool = Annotated[FunctionTool | RetrievalTool | FileSearchTool, Field(discriminator="type")]


class NamedFunction(_Open):
    name: NonEmptyStr


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(_Open):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("`json_schema` is required when type is 'json_schema'")
        return self


class StreamOptions(_Open):
    include_usage: bool | None = None


# --- extension objects ----------------------------------------------------------------------


class MaxPrice(_Open):
    """USD per 1M tokens."""

    prompt: float | None = Field(None, ge=0)
    completion: float | None = Field(None, ge=0)


class ProviderPreferences(_Open):
    """OpenRouter's provider-preferences object."""

    order: list[NonEmptyStr] | None = None
    only: list[NonEmptyStr] | None = None
    ignore: list[NonEmptyStr] | None = None
    allow_fallbacks: bool | None = None
    sort: Literal["price", "latency", "throughput"] | None = None
    max_price: MaxPrice | None = None
    require_parameters: bool | None = None


class ReasoningConfig(_Open):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    max_tokens: int | None = Field(None, ge=1)
    exclude: bool | None = None
    enabled: bool | None = None


class DebugOptions(_Open):
    echo_upstream_body: bool | None = None


class Plugin(_Open):
    id: NonEmptyStr


# --- the request ----------------------------------------------------------------------------


class CacheControl(_Open):
    """Per-request cache control (`cache`): `bypass` neither reads nor writes, `refresh`
    writes without reading, `exact`/`semantic` turn caching on for this request (also when
    sampling with temperature > 0)."""

    mode: Literal["bypass", "refresh", "off", "exact", "semantic"] | None = None
    ttl: float | None = Field(None, gt=0, le=30 * 86400)
    namespace: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    threshold: float | None = Field(None, gt=0, le=1)


class ChatCompletionRequest(_Open):
    """`POST /v1/chat/completions` body."""

    # OpenAI's parameters, in the order of OpenAI's reference.
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    model: Annotated[str, Field(min_length=1, max_length=512)]
    store: bool | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    metadata: (
        dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None
    ) = Field(None, max_length=16)
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=128)
    presence_penalty: Penalty | None = None
    response_format: ResponseFormat | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: Probability | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    functions: list[FunctionDefinition] | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None

    # Crossroads' extensions (DESIGN.md §1); their names are listed in protocol/extensions.py.
    models: Annotated[list[NonEmptyStr], Field(min_length=1, max_length=16)] | None = None
    max_cost: float | None = Field(None, ge=0)
    willingness_to_pay: float | None = Field(None, ge=0)
    quality_risk_threshold: Probability | None = None
    extra: dict[str, Any] | None = None
    provider: NonEmptyStr | ProviderPreferences | None = None
    routing: Literal["price", "perf", "perf_avg"] | None = None
    route: Literal["fallback", "sort"] | None = None
    top_k: int | None = Field(None, ge=-1)
    min_p: Probability | None = None
    use_beam_search: bool | None = None
    beam_size: int | None = Field(None, ge=1, le=64)
    best_of: int | None = Field(None, ge=1, le=64)
    length_penalty: float | None = None
    early_stopping: bool | Literal["never"] | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: NonEmptyStr | None = None
    guided_choice: Annotated[list[str], Field(min_length=1)] | None = None
    guided_grammar: NonEmptyStr | None = None
    rag_tune: NonEmptyStr | None = None
    integrity: int | None = Field(None, ge=1, le=15)
    integrity_model: NonEmptyStr | None = None
    session_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    plugins: list[Plugin] | None = None
    reasoning: ReasoningConfig | None = None
    debug: DebugOptions | None = None
    openai_api_key: NonEmptyStr | None = None
    # Checks to run on this request and its answer, on top of the configured ones.
    guardrails: GuardrailSet | None = None
    # Response cache control for this request (README "Retrieval and caching").
    cache: CacheControl | None = None
    # Answer quality (README "Answer quality"): how the risk is measured and acted on, and
    # the configured criteria to judge each answer by.
    quality: QualityOptions | None = None
    criteria: Annotated[list[NonEmptyStr], Field(min_length=1, max_length=10)] | None = None

    @field_validator("model")
    @classmethod
    def _model_list(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",")]
        if any(not name for name in names):
            raise ValueError("a comma-separated `model` must not contain empty names")
        if len(names) > 5:
            raise ValueError(f"at most 5 comma-separated models are allowed, got {len(names)}")
        if len(set(names)) != len(names):
            raise ValueError("a comma-separated `model` must not repeat a name")
        return value

    @field_validator("openai_api_key")
    @classmethod
    def _header_safe(cls, value: str | None) -> str | None:
        # It is sent upstream as an HTTP header: visible ASCII only, no spaces, line breaks
        # or other control characters, nothing that latin-1 or the upstream would mangle.
        if value is not None and not all(33 <= ord(c) <= 126 for c in value):
            raise ValueError(
                "must be an API key of visible ASCII characters (no spaces, line breaks, "
                "control or non-ASCII characters)"
            )
        return value

    @field_validator("guided_json")
    @classmethod
    def _schema_object(cls, value: dict[str, Any] | str | None) -> dict[str, Any] | str | None:
        if isinstance(value, str):
            try:
                decoded = json.loads(value)
            except ValueError:
                raise ValueError("must be a JSON schema object or a string holding one") from None
            if not isinstance(decoded, dict):
                raise ValueError("must be a JSON schema object")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("`top_logprobs` requires `logprobs` to be true")
        if self.stream_options is not None and not self.stream:
            raise ValueError("`stream_options` is only allowed when `stream` is true")
        return self

    @property
    def model_names(self) -> list[str]:
        return [name.strip() for name in self.model.split(",")]


# Extensions that are accepted and validated but not yet served by the gateway anywhere. A
# request that sets one gets a 400 `unsupported_parameter` instead of a silent no-op; each
# feature removes its names from here when it lands.
_NOT_YET_SERVED = ("plugins",)


def unimplemented_parameters(request: ChatCompletionRequest) -> list[str]:
    """Names of parameters the request sets that this gateway cannot honour yet, in order."""
    names = [name for name in _NOT_YET_SERVED if getattr(request, name) is not None]
    provider = request.provider
    if isinstance(provider, ProviderPreferences) and provider.model_extra:
        # OpenRouter has more preferences (quantizations, data_collection, …) that no
        # deployment here can be matched against: refused, not silently ignored.
        names += [f"provider.{name}" for name in provider.model_extra]
    return names
