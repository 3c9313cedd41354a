"""What a `--db` names: a SQLite file path, or a PostgreSQL URL (postgresql://user:password@host:port/db).

Pure string handling, so the commands can tell the two apart without importing a database driver,
and so no log line or error message ever carries a password (`mask_url`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PG_SCHEMES = ("postgresql://", "postgres://")


def is_db_url(db: str | Path | None) -> bool:
    """True when `db` is a PostgreSQL URL rather than a SQLite file path."""
    return isinstance(db, str) and db.strip().lower().startswith(PG_SCHEMES)


def mask_url(db: str | Path) -> str:
    """`db` fit for logs and messages: a URL's password (in the user part or as ?password=) becomes ***."""
    if not is_db_url(db):
        return str(db)
    parts = urlsplit(str(db))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        query = urlencode([(k, "***" if k.lower() == "password" else v)
                           for k, v in parse_qsl(query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


__all__ = ["PG_SCHEMES", "is_db_url", "mask_url"]
