"""The fleet database a command names with --db: a SQLite file, or a PostgreSQL URL."""

from __future__ import annotations

from pathlib import Path

from edgefleet.errors import EdgefleetError
from edgefleet.service.store.url import is_db_url, mask_url


def db_arg(value: str) -> str | Path:
    """argparse type of --db: a postgresql:// URL stays a string (a Path would fold its `//`), a file a Path."""
    return value.strip() if is_db_url(value) else Path(value)


def db_label(db: str | Path) -> str:
    """The database as messages and logs name it: a URL with its password masked."""
    return mask_url(str(db))


def require_db(db: str | Path) -> str | Path:
    """The --db to read, which must exist: a missing file is a mistyped path, and opening it
    would create an empty fleet that answers every question with 'nothing here'. A URL is
    returned as it is: connecting says, in one line, when the server or the database is not there."""
    if is_db_url(str(db)):
        return str(db).strip()
    path = Path(db)
    if not path.is_file():
        raise EdgefleetError(f"no store at {path} (run `edgefleet serve --db {path}` first, or pass --db)")
    return path


def db_exists(db: str | Path) -> bool:
    """Whether there is a database to read: a URL counts (its server decides), a file must exist."""
    return is_db_url(str(db)) or Path(db).is_file()
