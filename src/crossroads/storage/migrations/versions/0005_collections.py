"""Add retrieval collections (uploaded files, vector stores, their chunks) and the response
cache.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Written out by hand, like the migrations before it. The keyword indexes (FTS5, GIN) are
made by `CollectionStore.open`: neither is portable DDL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

__all__: list[str] = []

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stored_files",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stored_files"),
    )
    op.create_index("ix_stored_files_owner_created_at", "stored_files", ["owner", "created_at"])
    op.create_table(
        "vector_stores",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("embedding_model", sa.Text(), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("chunk_overlap", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vector_stores"),
    )
    op.create_index("ix_vector_stores_owner_created_at", "vector_stores", ["owner", "created_at"])
    op.create_table(
        "collection_chunks",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("store_id", sa.Text(), nullable=False),
        sa.Column("file_id", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_collection_chunks"),
    )
    op.create_index(
        "ix_collection_chunks_store_id_file_id", "collection_chunks", ["store_id", "file_id"]
    )
    op.create_table(
        "response_cache",
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("namespace", "key", name="pk_response_cache"),
    )
    op.create_index(
        "ix_response_cache_namespace_context", "response_cache", ["namespace", "context"]
    )
    op.create_index("ix_response_cache_expires_at", "response_cache", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_response_cache_expires_at", table_name="response_cache")
    op.drop_index("ix_response_cache_namespace_context", table_name="response_cache")
    op.drop_table("response_cache")
    op.drop_index("ix_collection_chunks_store_id_file_id", table_name="collection_chunks")
    op.drop_table("collection_chunks")
    op.drop_index("ix_vector_stores_owner_created_at", table_name="vector_stores")
    op.drop_table("vector_stores")
    op.drop_index("ix_stored_files_owner_created_at", table_name="stored_files")
    op.drop_table("stored_files")
