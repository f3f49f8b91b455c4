"""Create datasets, their rows, and fine-tuning jobs.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06

Written out by hand, like the migrations before it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

__all__: list[str] = []

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=True),
        sa.Column("team", sa.Text(), nullable=True),
        sa.Column("test_fraction", sa.Float(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("pruning", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
    )
    op.create_index("ix_datasets_key_id", "datasets", ["key_id"])
    op.create_table(
        "dataset_rows",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Text(), nullable=False),
        sa.Column("split", sa.Text(), nullable=False),
        sa.Column("messages", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("tools", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("output", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("rejected", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("prompt_hash", sa.Text(), nullable=False),
        sa.Column("source_log_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_rows"),
    )
    op.create_index("ix_dataset_rows_dataset_id_id", "dataset_rows", ["dataset_id", "id"])
    op.create_index(
        "ix_dataset_rows_dataset_id_prompt_hash", "dataset_rows", ["dataset_id", "prompt_hash"]
    )
    op.create_table(
        "fine_tune_jobs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("base_model", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("file_id", sa.Text(), nullable=False),
        sa.Column("fine_tuned_model", sa.Text(), nullable=True),
        sa.Column("key_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fine_tune_jobs"),
    )


def downgrade() -> None:
    op.drop_table("fine_tune_jobs")
    op.drop_index("ix_dataset_rows_dataset_id_prompt_hash", table_name="dataset_rows")
    op.drop_index("ix_dataset_rows_dataset_id_id", table_name="dataset_rows")
    op.drop_table("dataset_rows")
    op.drop_index("ix_datasets_key_id", table_name="datasets")
    op.drop_table("datasets")
