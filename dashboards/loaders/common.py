"""What every page needs: where the database is, and times in words."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from edgefleet.service.config import DEFAULT_DB as DEFAULT_STORE
from edgefleet.service.store.url import is_db_url

DEFAULT_DB = Path(DEFAULT_STORE)  # the same default as `edgefleet serve` and `edgefleet ota`


def resolve_db(argv: Sequence[str], env: Mapping[str, str]) -> tuple[Path | str, str]:
    """The store path (or postgresql:// URL, kept a string) and where it came from: `--db PATH` after
    `streamlit run app.py --`, else $EDGEFLEET_DB, else the default store of every command (var/edgefleet.db)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--db")
    known, _ = parser.parse_known_args(list(argv))
    db, source = (known.db, "--db") if known.db else (env.get("EDGEFLEET_DB"), "EDGEFLEET_DB")
    if db:
        return (db.strip() if is_db_url(db) else Path(db)), source
    return DEFAULT_DB, "default"


def missing_db_message(path: Path | str, source: str) -> str | None:
    """None when `path` is a store file or a database URL (its server answers); otherwise what to do about it."""
    if is_db_url(path):
        return None
    if path.is_file():
        return None
    if path.exists():
        return f"{path} (from {source}) is not a file."
    return (f"No fleet database at `{path}` (from {source}) yet. Start the fleet service "
            f"(`edgefleet serve --db {path} ...` or `edgefleet demo`), or point the dashboard at an "
            "existing store with `EDGEFLEET_DB=PATH` or `streamlit run dashboards/app.py -- --db PATH`. "
            "This page retries by itself.")


def fmt_age(seconds: float) -> str:
    """'12 s ago', '3 min ago', '2.5 h ago'."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} d ago"


def fmt_eta(eta_s: float | None, short: bool = False) -> str:
    """The early-warning estimate in words ('threshold in ~7 min'; short: '~7 min', 'none' when not rising)."""
    if eta_s is None:
        return "none" if short else "not rising"
    if eta_s <= 0:
        return "crossed" if short else "above threshold"
    if eta_s < 90:
        when = f"~{eta_s:.0f} s"
    elif eta_s < 5400:
        when = f"~{eta_s / 60:.0f} min"
    elif eta_s < 2 * 86400:
        when = f"~{eta_s / 3600:.1f} h"
    else:
        when = f"~{eta_s / 86400:.0f} d"
    return when if short else f"threshold in {when}"
