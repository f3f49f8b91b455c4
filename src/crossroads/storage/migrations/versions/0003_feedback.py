"""Create the feedback table: scores callers give to logged answers.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03

Written out by hand rather than derived from `crossroads.storage.schema`, so that this
migration keeps creating the same table however the schema module changes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

__all__: list[str] = []

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("log_id", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("key_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_log_id_created_at", "feedback", ["log_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_log_id_created_at", table_name="feedback")
    op.drop_table("feedback")
