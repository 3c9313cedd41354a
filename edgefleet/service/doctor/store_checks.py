"""The store, read without changing it: file, WAL, schema version, disk runway."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edgefleet.clock import now_ms
from edgefleet.service.doctor.report import (
    DISK_FAIL_DAYS,
    DISK_WARN_DAYS,
    Check,
    _human_bytes,
)
from edgefleet.service.store.sqlite import DEFAULT_RETENTION_DAYS, SCHEMA_VERSION

# ---------------------------------------------------------------- the store

@dataclass(frozen=True)
class StoreFacts:
    """What the doctor read from a store file, without changing it."""

    path: str
    exists: bool
    error: str = ""  # not a readable SQLite file: why
    writable: bool = False  # the file and its directory (WAL creates -wal and -shm beside it)
    not_writable: str = ""  # why not
    size_bytes: int = 0  # the file plus its -wal
    data_bytes: int = 0  # pages in use (WAL included, free pages not): what results cost
    journal_mode: str = ""
    user_version: int = 0
    tables: frozenset[str] = field(default_factory=frozenset)
    results: int = 0
    results_per_day: float = 0.0  # at the last hour's rate
    retention_days: float = DEFAULT_RETENTION_DAYS
    free_bytes: int = 0


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute().parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _writable(path: Path) -> str:
    """'' if `edgefleet serve` could write the store at `path` (file and directory), else why not."""
    directory = path.absolute().parent if path.exists() else _existing_ancestor(path)
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable by this user"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"directory {directory} is not writable by this user (SQLite creates -wal and -shm files there)"
    return ""


def _header_says_wal(path: Path) -> bool:
    """Bytes 18-19 of a SQLite header are 2 in WAL mode (read without SQLite, which could touch files)."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    return len(head) == 20 and head[18] == 2 and head[19] == 2


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """Open the store without changing anything on disk. A WAL store nobody has open has no -wal file,
    and even a `mode=ro` connection would create -wal and -shm (owned by the doctor's user, which can
    lock `edgefleet serve` out), so such a file is opened `immutable` (no writer is there to miss);
    otherwise (serve running, or a rollback-journal file) `mode=ro`."""
    immutable = _header_says_wal(path) and not Path(f"{path}-wal").exists()
    uri = f"file:{quote(str(path.absolute()))}?{'immutable=1' if immutable else 'mode=ro'}"
    db = sqlite3.connect(uri, uri=True, timeout=5.0)
    try:
        yield db
    finally:
        db.close()


def _scalar(db: sqlite3.Connection, sql: str, args: tuple = (), default: Any = 0) -> Any:
    row = db.execute(sql, args).fetchone()
    return default if row is None or row[0] is None else row[0]


def _results_per_day(db: sqlite3.Connection, tables: frozenset[str], now: int) -> float:
    """Results per day at the last hour's rate: ingest's own per-batch counts, else results by device
    time. Over the part of the hour since ingest began (at least a minute), so a store that started
    filling ten minutes ago is not taken for a slow one."""
    since = now - 3_600_000
    n, first = 0, None
    if "ingest_stats" in tables:
        n, first = db.execute("SELECT coalesce(sum(results), 0), min(ts) FROM ingest_stats WHERE ts >= ?",
                              (since,)).fetchone()
    if not n and "results" in tables:  # by the results_ts index
        n, first = db.execute("SELECT count(*), min(ts) FROM results WHERE ts >= ?", (since,)).fetchone()
    if not n:
        return 0.0
    span_s = min(3600.0, max(60.0, (now - first) / 1000))
    return n * 86400 / span_s


def _journal_mode(db: sqlite3.Connection, path: Path) -> str:
    """PRAGMA journal_mode; an `immutable` connection always says 'delete', so the header decides then."""
    mode = str(_scalar(db, "PRAGMA journal_mode", default="")).lower()
    return "wal" if mode != "wal" and _header_says_wal(path) else mode


def _data_bytes(db: sqlite3.Connection) -> int:
    """Bytes in pages that hold data: the file size counts free pages and a WAL that is reused."""
    pages = _scalar(db, "PRAGMA page_count") - _scalar(db, "PRAGMA freelist_count")
    return int(pages * _scalar(db, "PRAGMA page_size"))


def _retention_days(db: sqlite3.Connection, tables: frozenset[str]) -> float:
    if "settings" not in tables:
        return DEFAULT_RETENTION_DAYS
    return float(_scalar(db, "SELECT value FROM settings WHERE key = 'retention_days'", default=DEFAULT_RETENTION_DAYS))


def inspect_store(path: str | Path, now: int | None = None) -> StoreFacts:
    """Read what the store checks need: file, journal mode, schema version, counts, free disk."""
    p = Path(path)
    free = shutil.disk_usage(p.absolute().parent if p.exists() else _existing_ancestor(p)).free
    if not p.exists():
        return StoreFacts(str(p), False, not_writable=_writable(p), free_bytes=free)
    if not p.is_file():
        return StoreFacts(str(p), True, error=f"{p} is not a file", free_bytes=free)
    try:
        size = p.stat().st_size + (Path(f"{p}-wal").stat().st_size if Path(f"{p}-wal").exists() else 0)
        with _read_only(p) as db:
            tables = frozenset(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
            return StoreFacts(
                str(p), True, writable=not _writable(p), not_writable=_writable(p), size_bytes=size,
                journal_mode=_journal_mode(db, p),
                user_version=int(_scalar(db, "PRAGMA user_version")), tables=tables, data_bytes=_data_bytes(db),
                results=int(_scalar(db, "SELECT count(*) FROM results")) if "results" in tables else 0,
                results_per_day=_results_per_day(db, tables, now if now is not None else now_ms()),
                retention_days=_retention_days(db, tables), free_bytes=free)
    except (sqlite3.DatabaseError, OSError) as exc:
        return StoreFacts(str(p), True, error=f"cannot read {p} as SQLite: {exc}", free_bytes=free)


def check_store_file(f: StoreFacts) -> Check:
    name = "store.file"
    if f.error:
        return Check(name, "fail", f.error, "point --db (EDGEFLEET_DB) at the fleet's SQLite store; restore it from "
                     "a backup if it is damaged")
    if not f.exists:
        if f.not_writable:
            return Check(name, "fail", f"no store at {f.path}, and `edgefleet serve` could not create one: "
                         f"{f.not_writable}", "create the directory and give the service's user write access to it")
        return Check(name, "warn", f"no store at {f.path} yet (`edgefleet serve --db {f.path}` creates it)",
                     "pass the --db that `edgefleet serve` uses (or set EDGEFLEET_DB) if this is not it")
    if f.not_writable:
        return Check(name, "fail", f"{f.path} cannot be written: {f.not_writable}; ingest cannot commit, so it "
                     "acknowledges nothing and the broker's queue fills",
                     "give the user that runs `edgefleet serve` write access to the file and its directory")
    return Check(name, "pass", f"{f.path}: {_human_bytes(f.size_bytes)}, {f.results:,} results, writable")


def check_wal(f: StoreFacts) -> Check:
    name = "store.wal"
    if not f.exists or f.error:
        return Check(name, "skip", "no store to read")
    if f.journal_mode == "wal":
        return Check(name, "pass", "journal_mode = wal: the dashboard reads while ingest writes")
    return Check(name, "warn", f"journal_mode = {f.journal_mode or 'unknown'}: readers (dashboard, stats) block "
                 "ingest's commits, so ingest falls behind",
                 f"stop `edgefleet serve`, run `sqlite3 {f.path} 'PRAGMA journal_mode=WAL'` (or start serve, which "
                 "sets it); keep the store on a local disk (WAL does not work over NFS)")


def check_schema(f: StoreFacts) -> Check:
    name = "store.schema"
    if not f.exists or f.error:
        return Check(name, "skip", "no store to read")
    v = f.user_version
    if v > SCHEMA_VERSION:
        return Check(name, "fail", f"schema version {v} is newer than this edgefleet's ({SCHEMA_VERSION}): "
                     "`edgefleet serve` refuses to open it, so nothing is ingested",
                     "upgrade edgefleet on this host to the version that wrote the store (or point --db at "
                     "another store)")
    if v == SCHEMA_VERSION:
        return Check(name, "pass", f"schema version {v} (this edgefleet's)")
    if v == 0 and "results" not in f.tables:
        return Check(name, "pass", f"empty database: `edgefleet serve` creates schema version {SCHEMA_VERSION}")
    return Check(name, "warn", f"schema version {v} is older than this edgefleet's ({SCHEMA_VERSION}): "
                 "`edgefleet serve` upgrades it in place on its next start, after which older edgefleet "
                 "versions cannot open it",
                 f"back the file up before the upgrade (`sqlite3 {f.path} '.backup {f.path}.bak'`)")


def disk_runway_days(f: StoreFacts) -> float | None:
    """Days until the disk is full at the last hour's rate (None: no rate, or it never fills).
    Retention deletes results older than its window, and SQLite reuses the freed pages, so the store
    stops growing once it holds `retention_days` of results: only the growth up to there counts."""
    if not f.results or not f.results_per_day:
        return None
    per_day = f.data_bytes / f.results * f.results_per_day
    growth_left = per_day * f.retention_days - f.data_bytes
    if growth_left <= f.free_bytes:
        return None
    return f.free_bytes / per_day


def check_disk(f: StoreFacts) -> Check:
    name = "store.disk"
    free = _human_bytes(f.free_bytes)
    if not f.exists or f.error:
        return Check(name, "pass", f"{free} free where the store goes") if not f.error else \
            Check(name, "skip", "no store to read")
    if not f.results or not f.results_per_day:
        return Check(name, "pass", f"{free} free; no results in the last hour, so no rate to project")
    per_result = f.data_bytes / f.results
    rate = f"{f.results_per_day:,.0f} results/day at ~{per_result:,.0f} B each"
    days = disk_runway_days(f)
    if days is None:
        cap = _human_bytes(int(per_result * f.results_per_day * f.retention_days))
        return Check(name, "pass", f"{free} free; {rate}; retention ({f.retention_days:g} days) caps the store "
                     f"at ~{cap}, which fits")
    fix = (f"free disk space where {f.path} lives, move the store to a larger disk, or shorten retention "
           "(`edgefleet serve --retention-days N`)")
    detail = f"{free} free lasts {days:.1f} days at {rate} (retention {f.retention_days:g} days)"
    if days < DISK_FAIL_DAYS:
        return Check(name, "fail", detail + ": when it is full, ingest cannot commit and the broker's queue "
                     "overflows", fix)
    if days < DISK_WARN_DAYS:
        return Check(name, "warn", detail, fix)
    return Check(name, "pass", detail)
