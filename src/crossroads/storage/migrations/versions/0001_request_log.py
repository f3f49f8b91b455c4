"""Create the request log: one row per request the gateway served.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out by hand rather than derived from `crossroads.storage.schema`, so that this
migration keeps creating the same table however the schema module changes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

__all__: list[str] = []

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    op.create_table(
        "request_log",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_request_log"),
    )
    op.create_index("ix_request_log_created_at", "request_log", ["created_at"])
    op.create_index(
        "ix_request_log_model_requested_created_at",
        "request_log",
        ["model_requested", "created_at"],
    )
    op.create_index("ix_request_log_session_id", "request_log", ["session_id"])
    op.create_index("ix_request_log_status_code", "request_log", ["status_code"])
    op.create_index("ix_request_log_key_id_created_at", "request_log", ["key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_request_log_key_id_created_at", table_name="request_log")
    op.drop_index("ix_request_log_status_code", table_name="request_log")
    op.drop_index("ix_request_log_session_id", table_name="request_log")
    op.drop_index("ix_request_log_model_requested_created_at", table_name="request_log")
    op.drop_index("ix_request_log_created_at", table_name="request_log")
    op.drop_table("request_log")
