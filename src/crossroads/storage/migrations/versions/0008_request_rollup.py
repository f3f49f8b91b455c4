"""Add the hourly request rollup the dashboard reads, and fill it from the log already kept.

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-06

Written out by hand, like the migrations before it. The backfill is one INSERT … SELECT
grouped by hour, key, model and provider: on a million log rows it takes seconds, once, and
every later row is added by the log writer as it writes (`dashboard_store.Rollups`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

__all__: list[str] = []

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The grains and the dimensions each is split by, as `schema.ROLLUP_GRAINS` had them.
_GRAINS = {
    "all": (),
    "model": ("model",),
    "provider": ("provider",),
    "key": ("key_id",),
    "key_model": ("key_id", "model"),
    "key_provider": ("key_id", "provider"),
}
# The histogram's bucket bounds in ms, as `schema.LATENCY_BOUNDS_MS` had them at this revision.
_BOUNDS = (25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000)
_BUCKETS = len(_BOUNDS) + 1
_COUNTS = (
    "requests",
    "errors_4xx",
    "errors_5xx",
    "routed",
    "prompt_tokens",
    "completion_tokens",
)


def upgrade() -> None:
    op.create_table(
        "request_rollup",
        sa.Column("grain", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTS[:4]),
        sa.Column("cost", sa.Float(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTS[4:]),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("ttft_sum", sa.Float(), nullable=False),
        *(sa.Column(f"l{i}", sa.BigInteger(), nullable=False) for i in range(_BUCKETS)),
        *(sa.Column(f"t{i}", sa.BigInteger(), nullable=False) for i in range(_BUCKETS)),
        sa.PrimaryKeyConstraint(
            "grain", "key_id", "hour", "model", "provider", name="pk_request_rollup"
        ),
    )
    _backfill()


def _bucket(column: sa.ColumnElement[float], i: int) -> sa.ColumnElement[bool]:
    low = column > _BOUNDS[i - 1] if i > 0 else column.is_not(None)
    return sa.and_(low, column <= _BOUNDS[i]) if i < len(_BOUNDS) else low


def _backfill() -> None:
    log = sa.table(
        "request_log",
        *(
            sa.column(name)
            for name in (
                "created_at",
                "key_id",
                "model_served",
                "model_requested",
                "provider",
                "status_code",
                "cost",
                "prompt_tokens",
                "completion_tokens",
                "latency_ms",
                "ttft_ms",
            )
        ),
    )
    c = log.c
    if op.get_context().dialect.name == "postgresql":
        hour: sa.ColumnElement[Any] = sa.literal_column(
            "date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        )
    else:  # naive UTC text, "YYYY-MM-DD HH:MM:SS.ffffff"
        hour = sa.func.substr(c.created_at, 1, 13).concat(":00:00.000000")
    dimensions = {
        "key_id": sa.func.coalesce(c.key_id, ""),
        "model": sa.func.coalesce(c.model_served, c.model_requested),
        "provider": sa.func.coalesce(c.provider, ""),
    }
    count = sa.func.count
    zero = sa.literal(0)

    def total(column: sa.ColumnElement[float]) -> sa.ColumnElement[float]:
        return sa.func.coalesce(sa.func.sum(column), zero)

    sums = [
        count().label("requests"),
        count().filter(sa.and_(c.status_code >= 400, c.status_code < 500)).label("errors_4xx"),
        count().filter(c.status_code >= 500).label("errors_5xx"),
        count().filter(c.model_requested == "router").label("routed"),
        total(c.cost).label("cost"),
        total(c.prompt_tokens).label("prompt_tokens"),
        total(c.completion_tokens).label("completion_tokens"),
        total(c.latency_ms).label("latency_sum"),
        total(c.ttft_ms).label("ttft_sum"),
        *(count().filter(_bucket(c.latency_ms, i)).label(f"l{i}") for i in range(_BUCKETS)),
        *(count().filter(_bucket(c.ttft_ms, i)).label(f"t{i}") for i in range(_BUCKETS)),
    ]
    for grain, split in _GRAINS.items():
        keys = [
            sa.literal_column(f"'{grain}'").label("grain"),
            hour.label("hour"),
            *(
                (dimensions[name] if name in split else sa.literal_column("''")).label(name)
                for name in ("key_id", "model", "provider")
            ),
        ]
        grouped = sa.select(*keys, *sums).group_by(hour, *(dimensions[name] for name in split))
        names = [column.name for column in grouped.selected_columns]
        rollup = sa.table("request_rollup", *(sa.column(name) for name in names))
        op.execute(rollup.insert().from_select(names, grouped))


def downgrade() -> None:
    op.drop_table("request_rollup")
