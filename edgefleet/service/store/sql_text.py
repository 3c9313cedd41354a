"""SQL text shared by both stores: written once with SQLite's `?` placeholders, translated for psycopg.

Its own module so that the SQL written for both (summary_sql, rollup_sql) does not import the
PostgreSQL store to translate it (that made an import circle: postgres -> sqlite -> summary_sql ->
postgres)."""

from __future__ import annotations

import re

_QMARK = re.compile(r"\?")


def to_pg(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (a literal % doubled)."""
    return _QMARK.sub("%s", sql.replace("%", "%%"))
