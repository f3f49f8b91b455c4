"""Record which name a fine-tuned model is registered as, and the pruning it was trained with.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

The gateway serves every registered model from its next start (finetune/serving.py), so the
registration must live in the database: the public name, and the dataset's pruning rules
(copied, since the dataset may be deleted after training) to prune its requests with.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

__all__: list[str] = []

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fine_tune_jobs") as batch:
        batch.add_column(sa.Column("registered_as", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pruning", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fine_tune_jobs") as batch:
        batch.drop_column("pruning")
        batch.drop_column("registered_as")
