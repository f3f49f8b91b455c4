"""The gateway's tables (request log, virtual keys, feedback), described once in SQLAlchemy Core.

`LogStore`, `KeyStore` and `FeedbackStore` build their statements from this description, and
the test-suite compares it with what the Alembic migrations create, so the two cannot drift
apart unnoticed. The migrations stay the source of truth for the database itself: nothing here
creates tables.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = [
    "LATENCY_BOUNDS_MS",
    "LATENCY_BUCKETS",
    "NAMING_CONVENTION",
    "ROLLUP_GRAINS",
    "UTCDateTime",
    "collection_chunks",
    "dataset_rows",
    "datasets",
    "feedback",
    "fine_tune_jobs",
    "metadata",
    "request_log",
    "request_rollup",
    "response_cache",
    "stored_files",
    "vector_stores",
    "virtual_keys",
]

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware timestamp that is stored in UTC and always read back as UTC.

    SQLite has no timestamp type: SQLAlchemy stores text and drops the offset, so values
    are normalised to naive UTC there (which also keeps text order equal to time order).
    Naive datetimes given by callers are taken to be UTC already.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> sa.JSON:
    # Python None is stored as SQL NULL, not as the JSON literal `null`.
    return sa.JSON(none_as_null=True)


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

request_log = sa.Table(
    "request_log",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("model_requested", sa.Text(), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=False),
    sa.Column("stream", sa.Boolean(), nullable=False),
    sa.Column("key_id", sa.Text(), nullable=True),
    sa.Column("model_served", sa.Text(), nullable=True),
    sa.Column("provider", sa.Text(), nullable=True),
    sa.Column("upstream_model", sa.Text(), nullable=True),
    sa.Column("error_code", sa.Text(), nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("request", _json(), nullable=True),
    sa.Column("response", _json(), nullable=True),
    sa.Column("prompt_tokens", sa.Integer(), nullable=True),
    sa.Column("completion_tokens", sa.Integer(), nullable=True),
    sa.Column("total_tokens", sa.Integer(), nullable=True),
    sa.Column("cached_tokens", sa.Integer(), nullable=True),
    sa.Column("prompt_characters", sa.BigInteger(), nullable=True),
    sa.Column("response_characters", sa.BigInteger(), nullable=True),
    sa.Column("cost", sa.Float(), nullable=True),
    sa.Column("latency_ms", sa.Float(), nullable=True),
    sa.Column("ttft_ms", sa.Float(), nullable=True),
    sa.Column("user", sa.Text(), nullable=True),
    sa.Column("metadata", _json(), nullable=True),
    sa.Column("session_id", sa.Text(), nullable=True),
    sa.Column("extra", _json(), nullable=True),
    sa.Column("tags", _json(), nullable=True),
    sa.Index(None, "created_at"),
    sa.Index(None, "model_requested", "created_at"),
    sa.Index(None, "session_id"),
    sa.Index(None, "status_code"),
    sa.Index(None, "key_id", "created_at"),
)

virtual_keys = sa.Table(
    "virtual_keys",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("name", sa.Text(), nullable=True),
    sa.Column("team", sa.Text(), nullable=True),
    sa.Column("models", _json(), nullable=True),  # None: every model
    sa.Column("max_budget", sa.Float(), nullable=True),  # USD
    sa.Column("budget_period", sa.Text(), nullable=True),  # daily | weekly | monthly
    sa.Column("rpm_limit", sa.Integer(), nullable=True),
    sa.Column("tpm_limit", sa.Integer(), nullable=True),
    sa.Column("max_parallel_requests", sa.Integer(), nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("metadata", _json(), nullable=False),
    sa.Column("key_hash", sa.Text(), nullable=False),  # SHA-256 hex of the secret
    sa.Column("key_prefix", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("guardrails", _json(), nullable=True),  # the key's own guardrail set
    sa.Index(None, "key_hash", unique=True),
    sa.Index(None, "team"),
)

# Scores given to logged answers (`POST /v1/feedback`). No foreign key to `request_log`: log
# retention deletes records without touching their feedback, and feedback for a record that
# is gone simply joins with nothing. Several rows per `log_id` may exist; the latest counts.
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("log_id", sa.Text(), nullable=False),
    sa.Column("score", sa.Float(), nullable=False),  # 0 (bad) to 1 (good)
    sa.Column("comment", sa.Text(), nullable=True),
    sa.Column("key_id", sa.Text(), nullable=True),  # who gave it; None in loopback-only mode
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index(None, "log_id", "created_at"),
)

# Retrieval collections (OpenAI's vector stores). `owner` is the key that created the row
# ("" in loopback-only mode); every read filters on it, so another key's collection is a 404.
# Keyword indexes (SQLite FTS5, PostgreSQL's GIN over a tsvector) are made by
# `CollectionStore.open`, since neither is portable DDL.
stored_files = sa.Table(
    "stored_files",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("owner", sa.Text(), nullable=False),
    sa.Column("filename", sa.Text(), nullable=False),
    sa.Column("purpose", sa.Text(), nullable=False),
    sa.Column("kind", sa.Text(), nullable=False),  # txt | md | html | pdf
    sa.Column("bytes", sa.Integer(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),  # what parsing extracted
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index(None, "owner", "created_at"),
)

vector_stores = sa.Table(
    "vector_stores",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("owner", sa.Text(), nullable=False),
    sa.Column("name", sa.Text(), nullable=True),
    sa.Column("metadata", _json(), nullable=True),
    sa.Column("embedding_model", sa.Text(), nullable=False),
    sa.Column("chunk_size", sa.Integer(), nullable=False),
    sa.Column("chunk_overlap", sa.Integer(), nullable=False),
    # Bumped on every change to the chunks: replicas' in-memory vector matrices compare it.
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index(None, "owner", "created_at"),
)

collection_chunks = sa.Table(
    "collection_chunks",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("store_id", sa.Text(), nullable=False),
    sa.Column("file_id", sa.Text(), nullable=True),  # None: text added directly
    sa.Column("source", sa.Text(), nullable=False),  # file name, or the text's title
    sa.Column("position", sa.Integer(), nullable=False),  # chunk index within its source
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("embedding", sa.LargeBinary(), nullable=False),  # float32, unit length
    sa.Index(None, "store_id", "file_id"),
)

# Cached answers (backend "sqlite"/PostgreSQL of the response cache). `context`, `question`
# and `vector` are set for entries the semantic cache may match (vector: float32, unit length).
response_cache = sa.Table(
    "response_cache",
    metadata,
    sa.Column("namespace", sa.Text(), primary_key=True),
    sa.Column("key", sa.Text(), primary_key=True),
    sa.Column("payload", sa.LargeBinary(), nullable=False),  # the completion, JSON
    sa.Column("expires_at", sa.Float(), nullable=False),  # Unix time
    sa.Column("context", sa.Text(), nullable=True),
    sa.Column("question", sa.Text(), nullable=True),
    sa.Column("vector", sa.LargeBinary(), nullable=True),
    sa.Index(None, "namespace", "context"),
    sa.Index(None, "expires_at"),
)

# Datasets built from the log or uploaded (`/v1/datasets`), for fine-tuning and evaluations.
# Owned by the key that made them (and its team): no key reads another's. `pruning` holds the
# dataset's named strings/regexes removed from every exported row.
datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("key_id", sa.Text(), nullable=True),  # None in loopback-only mode
    sa.Column("team", sa.Text(), nullable=True),
    sa.Column("test_fraction", sa.Float(), nullable=False),
    sa.Column("seed", sa.Integer(), nullable=False),
    sa.Column("pruning", _json(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index(None, "key_id"),
)

# One training example: the input messages (and tools), the answer, and what a preference
# pair needs (the answer's score, or the answers it was preferred over). Ids sort by time,
# so export pages by id with flat memory.
dataset_rows = sa.Table(
    "dataset_rows",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("dataset_id", sa.Text(), nullable=False),
    sa.Column("split", sa.Text(), nullable=False),  # train | test
    sa.Column("messages", _json(), nullable=False),
    sa.Column("tools", _json(), nullable=True),
    sa.Column("output", _json(), nullable=True),  # the assistant message
    sa.Column("rejected", _json(), nullable=True),  # assistant messages it is preferred over
    sa.Column("score", sa.Float(), nullable=True),  # latest feedback on its log record
    sa.Column("prompt_hash", sa.Text(), nullable=False),
    sa.Column("source_log_id", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index(None, "dataset_id", "id"),
    sa.Index(None, "dataset_id", "prompt_hash"),
)

# Fine-tuning jobs submitted to an upstream, tracked until they end; a finished job's model
# (`fine_tuned_model`) registered by `crossroads finetune status --register NAME` is served as
# `registered_as`, its requests pruned with the training dataset's rules (`pruning`).
fine_tune_jobs = sa.Table(
    "fine_tune_jobs",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),  # the upstream's job id
    sa.Column("dataset_id", sa.Text(), nullable=False),
    sa.Column("provider", sa.Text(), nullable=False),
    sa.Column("base_model", sa.Text(), nullable=False),
    sa.Column("method", sa.Text(), nullable=False),  # supervised | dpo
    sa.Column("status", sa.Text(), nullable=False),
    sa.Column("file_id", sa.Text(), nullable=False),
    sa.Column("fine_tuned_model", sa.Text(), nullable=True),
    sa.Column("key_id", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("registered_as", sa.Text(), nullable=True),
    sa.Column("pruning", _json(), nullable=True),
)

# Upper bounds (ms) of the latency and time-to-first-token histogram buckets in
# `request_rollup`; the last bucket (`l15`, `t15`) is everything above 20 s. Fixed, so that
# rows from any replica and any hour add up, and percentiles come from summed counts.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    25,
    50,
    100,
    200,
    300,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    7500,
    10000,
    20000,
)
LATENCY_BUCKETS = len(LATENCY_BOUNDS_MS) + 1

# The request log summed per UTC hour at several grains, kept up to date by the log writer's
# batches (dashboard_store.Rollups). A grain names the dimensions its rows are split by
# (`ROLLUP_GRAINS`); the other dimension columns hold "" (as does a record without a key or
# provider). Summing every dimension at once made as many rollup rows as log rows for a
# month of 20 keys × 12 models × 4 providers; per grain, a month is at most hours × keys ×
# models rows, and each query reads one grain through the primary key's prefix.
ROLLUP_GRAINS: dict[str, tuple[str, ...]] = {
    "all": (),
    "model": ("model",),
    "provider": ("provider",),
    "key": ("key_id",),
    "key_model": ("key_id", "model"),
    "key_provider": ("key_id", "provider"),
}

request_rollup = sa.Table(
    "request_rollup",
    metadata,
    sa.Column("grain", sa.Text(), primary_key=True),
    sa.Column("key_id", sa.Text(), primary_key=True),
    sa.Column("hour", UTCDateTime(), primary_key=True),
    sa.Column("model", sa.Text(), primary_key=True),  # the model that answered, else asked
    sa.Column("provider", sa.Text(), primary_key=True),
    sa.Column("requests", sa.BigInteger(), nullable=False),
    sa.Column("errors_4xx", sa.BigInteger(), nullable=False),
    sa.Column("errors_5xx", sa.BigInteger(), nullable=False),
    sa.Column("routed", sa.BigInteger(), nullable=False),  # asked for `model: "router"`
    sa.Column("cost", sa.Float(), nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
    sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
    sa.Column("latency_sum", sa.Float(), nullable=False),
    sa.Column("ttft_sum", sa.Float(), nullable=False),
    *(sa.Column(f"l{i}", sa.BigInteger(), nullable=False) for i in range(LATENCY_BUCKETS)),
    *(sa.Column(f"t{i}", sa.BigInteger(), nullable=False) for i in range(LATENCY_BUCKETS)),
)
