"""A bound parameter that takes JSON text for a JSON column, alike on both backends.

Values are encoded once by `storable_json` (NULs replaced, depth bounded) and bound as text.
PostgreSQL needs the text cast to `json`; SQLite must not get a cast, since its `CAST(x AS
JSON)` has numeric affinity and stores 0.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

__all__ = ["json_bind"]


def json_bind(name: str, dialect: str) -> sa.ColumnElement[Any]:
    text = sa.bindparam(name, type_=sa.Text())
    if dialect == "sqlite":
        return text
    from sqlalchemy.dialects import postgresql  # loaded with a PostgreSQL engine anyway

    return sa.cast(text, postgresql.JSON())
