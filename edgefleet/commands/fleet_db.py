"""The fleet database a reading command names with --db."""

from __future__ import annotations

from pathlib import Path

from edgefleet.errors import EdgefleetError


def require_db(db: str | Path) -> Path:
    """The --db file, which must exist: a missing one is a mistyped path, and opening it
    would create an empty fleet that answers every question with 'nothing here'."""
    path = Path(db)
    if not path.is_file():
        raise EdgefleetError(f"no store at {path} (run `edgefleet serve --db {path}` first, or pass --db)")
    return path
