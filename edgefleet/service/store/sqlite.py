"""SQLite backend of the store: one file, WAL, one transaction per ingest batch.

Results have (device, boot, seq) as primary key, so a redelivered result is ignored
by the database itself. `synchronous=FULL` by default: ingest acknowledges MQTT
messages after `write_batch` returns, so a commit must survive power loss, not only
a process crash.
"""

from __future__ import annotations

import json
import operator
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgefleet.errors import EdgefleetError
from edgefleet.protocol import ResultRecord
from edgefleet.service.iso20816 import machine_class
from edgefleet.service.store import rollup_sql, slow_commit, summary_sql
from edgefleet.service.store.accounts import ACCOUNTS_SCHEMA, AccountTables
from edgefleet.service.store.base import (
    REJECT_EXCERPT,
    SEVERITY_RANK,
    Alarm,
    AlarmChange,
    BatchOutcome,
    Counts,
    Device,
    DeviceHealth,
    Event,
    FleetSummary,
    IngestBatch,
    IngestBucket,
    RejectRecord,
    SiteHealth,
    device_rollup,
    device_update_columns,
)
from edgefleet.service.store.loss import SETTLE_MS, BootState, LossUpdate, account
from edgefleet.service.store.loss import figures as loss_figures
from edgefleet.service.store.outbox import NOTIFY_SCHEMA, NotifyTables, journal

SCHEMA_VERSION = 8  # 2: results carry commissioning state, HI and class; devices their baseline. 3: loss accounting
# 4: alarm journal, shelves and notification outbox (store/outbox.py). 5: results' readings and why (vrms, rpm,
# why, hint; feature definition v2), and the why and hint of the result that raised an alarm. 6: devices' degrading_since
# and remaining life (the dashboard's stages), acknowledged data-loss alarms
# 7: dashboard accounts and the append-only audit log (store/accounts.py)
# 8: 1-minute and 1-hour rollups per device (store/rollup_sql.py), backfilled from the raw results kept
DEFAULT_RETENTION_DAYS = 30.0

BOOTS_FLUSH_S = 5.0  # a boot's in-order updates reach its row at most this long after their results
# a device's n-th newest result time (one parameter: n - 1), -1 with fewer: from the (device, ts) index alone
_NEWEST_CUT = "coalesce((SELECT c.ts FROM results c WHERE c.device = d.device ORDER BY c.ts DESC LIMIT 1 OFFSET ?), -1)"
_BOOT_KEY = operator.itemgetter(0, 1)  # (device, boot) of a result or of a seq mark
_DROPPED = ResultRecord._fields.index("dropped")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results(
  device TEXT NOT NULL, boot TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
  model INTEGER NOT NULL, score REAL NOT NULL, thr REAL NOT NULL, anom INTEGER NOT NULL,
  inf_us INTEGER NOT NULL, ingest_ts INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT '', hi REAL, cls INTEGER, hi_thr REAL,
  vrms REAL, rpm REAL, why TEXT, hint TEXT,
  PRIMARY KEY(device, boot, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS results_device_ts ON results(device, ts);
CREATE INDEX IF NOT EXISTS results_ts ON results(ts);
CREATE TABLE IF NOT EXISTS shadow_results(
  device TEXT NOT NULL, boot TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
  model INTEGER NOT NULL, score REAL NOT NULL, thr REAL NOT NULL, anom INTEGER NOT NULL,
  inf_us INTEGER NOT NULL, shadow_model INTEGER NOT NULL, shadow_score REAL NOT NULL,
  shadow_thr REAL NOT NULL, shadow_anom INTEGER NOT NULL,
  PRIMARY KEY(device, boot, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS shadow_results_model ON shadow_results(shadow_model, ts);
CREATE TABLE IF NOT EXISTS devices(
  device TEXT PRIMARY KEY, site TEXT, line TEXT, tags TEXT NOT NULL DEFAULT '[]',
  status TEXT NOT NULL DEFAULT 'unknown', status_ts INTEGER NOT NULL DEFAULT 0,
  boot TEXT, fw TEXT, model INTEGER, slot TEXT, thr REAL, caps TEXT NOT NULL DEFAULT '[]',
  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, results INTEGER NOT NULL DEFAULT 0,
  last_score REAL, health TEXT NOT NULL DEFAULT 'unknown', ewma_score REAL, slope_per_h REAL,
  eta_s REAL, health_ts INTEGER, comm TEXT, degrading_since INTEGER, rul_s REAL, rul_low_s REAL, rul_high_s REAL);
CREATE INDEX IF NOT EXISTS devices_site ON devices(site);
CREATE TABLE IF NOT EXISTS alarms(
  id INTEGER PRIMARY KEY, device TEXT NOT NULL, raised_ts INTEGER NOT NULL, cleared_ts INTEGER,
  severity TEXT NOT NULL, score REAL NOT NULL, peak_score REAL NOT NULL, thr REAL NOT NULL,
  acked_ts INTEGER, acked_by TEXT, note TEXT NOT NULL DEFAULT '', reopened INTEGER NOT NULL DEFAULT 0,
  why TEXT, hint TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS alarms_one_active ON alarms(device) WHERE cleared_ts IS NULL;
CREATE INDEX IF NOT EXISTS alarms_raised ON alarms(raised_ts);
CREATE TABLE IF NOT EXISTS events(
  id INTEGER PRIMARY KEY, device TEXT NOT NULL, ts INTEGER NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_device ON events(device, ts);
CREATE TABLE IF NOT EXISTS rejected(
  id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, topic TEXT NOT NULL, code TEXT NOT NULL,
  reason TEXT NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS rejected_ts ON rejected(ts);
CREATE TABLE IF NOT EXISTS ingest_stats(
  ts INTEGER NOT NULL, messages INTEGER NOT NULL, results INTEGER NOT NULL, duplicates INTEGER NOT NULL,
  rejected INTEGER NOT NULL, lag_ms_sum INTEGER NOT NULL, lag_n INTEGER NOT NULL, lag_ms_max INTEGER);
CREATE INDEX IF NOT EXISTS ingest_stats_ts ON ingest_stats(ts);
CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS boots(
  device TEXT NOT NULL, boot TEXT NOT NULL, first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL,
  max_seq INTEGER NOT NULL, received INTEGER NOT NULL, dropped INTEGER NOT NULL, jumps INTEGER NOT NULL,
  PRIMARY KEY(device, boot)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS loss_samples(
  ts INTEGER NOT NULL, device TEXT NOT NULL, received INTEGER NOT NULL, missing INTEGER NOT NULL,
  pending INTEGER NOT NULL, dropped INTEGER NOT NULL, PRIMARY KEY(device, ts)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS loss_samples_ts ON loss_samples(ts);
CREATE TABLE IF NOT EXISTS loss_alarms(
  id INTEGER PRIMARY KEY, device TEXT NOT NULL, raised_ts INTEGER NOT NULL, cleared_ts INTEGER,
  missing INTEGER NOT NULL, rate REAL NOT NULL, acked_ts INTEGER, acked_by TEXT, note TEXT NOT NULL DEFAULT '');
CREATE UNIQUE INDEX IF NOT EXISTS loss_alarms_one_active ON loss_alarms(device) WHERE cleared_ts IS NULL;
CREATE TABLE IF NOT EXISTS seq_gaps(
  device TEXT NOT NULL, boot TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL, opened_ms INTEGER NOT NULL,
  PRIMARY KEY(device, boot, lo)) WITHOUT ROWID;
"""

ALARM_HOLD_OFF_MS = 10 * 60 * 1000  # a re-raise this soon after a clear reopens the same alarm
_INSERT_RESULT = ("INSERT OR IGNORE INTO results(device, boot, seq, ts, model, score, thr, anom, inf_us, ingest_ts,"
                  " state, hi, cls, hi_thr, vrms, rpm, why, hint) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_BASE_COLS = "device, boot, seq, ts, model, score, thr, anom, inf_us"
_RESULT_COLS = _BASE_COLS + ", state, hi, cls, hi_thr, vrms, rpm, why, hint"
_SHADOW_COLS = _BASE_COLS + ", shadow_model, shadow_score, shadow_thr, shadow_anom"
_DEVICE_HEALTH_COLS = ["ALTER TABLE devices ADD COLUMN degrading_since INTEGER", "ALTER TABLE devices ADD COLUMN rul_s REAL",
                       "ALTER TABLE devices ADD COLUMN rul_low_s REAL", "ALTER TABLE devices ADD COLUMN rul_high_s REAL"]
_LOSS_ACK_COLS = ["ALTER TABLE loss_alarms ADD COLUMN acked_ts INTEGER", "ALTER TABLE loss_alarms ADD COLUMN acked_by TEXT",
                  "ALTER TABLE loss_alarms ADD COLUMN note TEXT NOT NULL DEFAULT ''"]
# A device's health row as apply_alarm_changes writes it (both backends): `degrading_since` is kept while the
# health stays away from ok, set when it leaves ok, and cleared when it comes back.
HEALTH_UPDATE_SQL = ("UPDATE devices SET degrading_since = CASE WHEN ? IN ('ok', 'unknown') THEN NULL"
                     " ELSE coalesce(degrading_since, ?) END, health = ?, ewma_score = ?, slope_per_h = ?, eta_s = ?,"
                     " health_ts = ?, rul_s = ?, rul_low_s = ?, rul_high_s = ? WHERE device = ?")


def health_row(h: DeviceHealth) -> tuple:
    """HEALTH_UPDATE_SQL's arguments for one DeviceHealth."""
    return (h.state, h.ts, h.state, h.ewma_score, h.slope_per_h, h.eta_s, h.ts, h.rul_s, h.rul_low_s, h.rul_high_s,
            h.device)


# Schema upgrades in order: each brings a store of version k-1 to version k (docs/store.md).
_INGEST_STATS_DDL = ("CREATE TABLE IF NOT EXISTS ingest_stats(ts INTEGER NOT NULL, messages INTEGER NOT NULL,"
                     " results INTEGER NOT NULL, duplicates INTEGER NOT NULL, rejected INTEGER NOT NULL,"
                     " lag_ms_sum INTEGER NOT NULL, lag_n INTEGER NOT NULL, lag_ms_max INTEGER)")
_MIGRATIONS = {
    2: ["ALTER TABLE results ADD COLUMN state TEXT NOT NULL DEFAULT ''", "ALTER TABLE results ADD COLUMN hi REAL",
        "ALTER TABLE results ADD COLUMN cls INTEGER", "ALTER TABLE results ADD COLUMN hi_thr REAL",
        "ALTER TABLE devices ADD COLUMN comm TEXT"],
    3: ["ALTER TABLE alarms ADD COLUMN reopened INTEGER NOT NULL DEFAULT 0"],  # + boots, seq_gaps,
    # loss_samples, loss_alarms: new tables, created by the schema script (older results are not accounted)
    4: [],  # alarm_events, alarm_shelves, notify_outbox: new tables (store/outbox.py)
    5: ["ALTER TABLE results ADD COLUMN vrms REAL", "ALTER TABLE results ADD COLUMN rpm REAL",
        "ALTER TABLE results ADD COLUMN why TEXT", "ALTER TABLE results ADD COLUMN hint TEXT",
        "ALTER TABLE alarms ADD COLUMN why TEXT", "ALTER TABLE alarms ADD COLUMN hint TEXT"],
    6: [*_DEVICE_HEALTH_COLS, *_LOSS_ACK_COLS],  # the dashboard's stage, "degrading since", remaining life; ack loss
    7: [],  # users, audit (append-only by triggers): new tables (store/accounts.py)
    # rollup_1m, rollup_1h, filled from the results table; a store from before ingest_stats (schema 1) gets it first
    8: [_INGEST_STATS_DDL, *rollup_sql.migration(pg=False)],
}
_INSERT_SHADOW = f"INSERT OR IGNORE INTO shadow_results({_SHADOW_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"


class StoreError(EdgefleetError):
    """A database that cannot be opened or has another schema version."""


def _class_setting(cls: str | None, device: str | None, site: str | None) -> tuple[str, str | None]:
    """The settings key and value of a machine class for one device or one site (store.set_machine_class)."""
    if (device is None) == (site is None):
        raise StoreError("a machine class is set for one device or one site: give device= or site=, not both")
    name = device if device is not None else site
    if not name or not name.strip() or len(name) > 200:
        raise StoreError(f"a machine class needs a device or site name, got {name!r}")
    return f"iso_class/{'device' if device is not None else 'site'}/{name}", None if cls is None else machine_class(cls)


def _bearing_setting(device: str, geometry: dict | None) -> tuple[str, str | None]:
    """The settings key and JSON value of a device's bearing geometry (checked by BearingGeometry)."""
    if not device or not device.strip() or len(device) > 200:
        raise StoreError(f"a bearing geometry needs a device name, got {device!r}")
    if geometry is None:
        return f"bearing/device/{device}", None
    from edgefleet.runtime.diagnosis import (
        BearingGeometry,  # numpy: only when a geometry is set
    )

    try:
        g = BearingGeometry(int(geometry["n_balls"]), float(geometry["ball_d_mm"]), float(geometry["pitch_d_mm"]),
                            float(geometry.get("contact_deg", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"a bearing geometry has n_balls, ball_d_mm, pitch_d_mm (and contact_deg): {exc}") from None
    return f"bearing/device/{device}", json.dumps({"n_balls": g.n_balls, "ball_d_mm": g.ball_d_mm,
                                                  "pitch_d_mm": g.pitch_d_mm, "contact_deg": g.contact_deg})


def _rec(row: tuple) -> ResultRecord:
    return ResultRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), row[8],
                        None, None, None, None, row[9] or "", row[10], row[11], row[12], 0,
                        row[13], row[14], row[15], row[16])


def _shadow_rec(row: tuple) -> ResultRecord:
    return ResultRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), row[8],
                        row[9], row[10], row[11], bool(row[12]))


class SQLiteStore(NotifyTables, AccountTables):
    """The default store (telemetry and registry in one SQLite file)."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", account_loss: bool = True) -> None:
        self.path = str(path)
        self.account_loss = account_loss  # off only to measure what the accounting costs
        # loss bookkeeping of recent boots, valid while no other connection has written the file
        # (PRAGMA data_version); another ingest process sharing the file makes it reload from the table
        self._boots: dict[tuple[str, str], BootState] = {}
        self._holes: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self._data_version = -1
        self._rollup_open: dict = {}  # rollup rows this writer keeps (rollup_sql.write_kept), and its data_version
        self._rollup_version = -1
        self._dirty: set[tuple[str, str]] = set()  # boots updated in order, row not written yet
        self._flushed = 0.0  # time.monotonic() of the last write of those
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA busy_timeout=30000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: store schema version {version} is newer than this edgefleet "
                                 f"({SCHEMA_VERSION}); upgrade edgefleet")
            if 0 < version < SCHEMA_VERSION:
                self._migrate(version)
            self._db.executescript(_SCHEMA + NOTIFY_SCHEMA + ACCOUNTS_SCHEMA + rollup_sql.schema(pg=False))
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        self._lock = threading.RLock()

    # ---------- plumbing ----------

    def _migrate(self, version: int) -> None:
        """Upgrade an older store in place, one version at a time, each in one transaction."""
        for target in range(version + 1, SCHEMA_VERSION + 1):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql in _MIGRATIONS[target]:
                    table = sql.split()[2] if sql.startswith("ALTER TABLE") else None
                    if table and not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                                      (table,)).fetchone():
                        continue  # not there yet: the schema script creates it whole
                    words = sql.split()
                    if table and words[3:5] == ["ADD", "COLUMN"] and any(
                            r[1] == words[5] for r in self._db.execute(f"PRAGMA table_info({table})")):
                        continue  # a file a later step already touched (or one made by hand): the column is there
                    self._db.execute(sql)
                self._db.execute(f"PRAGMA user_version={target}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                self._boots.clear()  # the loss bookkeeping may hold what was rolled back
                self._holes.clear()
                self._rollup_open.clear()  # and the rollup rows kept in memory
                self._dirty.clear()
                raise
            slow_commit.before_commit()  # tests/benchmarks only (EDGEFLEET_TEST_COMMIT_DELAY_FILE): a slow disk
            self._db.execute("COMMIT")

    def _q(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            try:
                self.flush_loss()
            except sqlite3.Error:
                pass  # closing a store that cannot write: the next load replays the stored results
            self._db.close()

    # ---------- writes ----------

    def write_batch(self, batch: IngestBatch) -> BatchOutcome:
        with self._tx() as db:
            outcome = self._insert_results(db, batch.results, batch.ingest_ts, batch.seq_marks)
            self._registry(db, batch, outcome)
        return outcome

    def write_results(self, results: list[ResultRecord], ingest_ts: int) -> BatchOutcome:
        with self._tx() as db:
            return self._insert_results(db, results, ingest_ts)

    def write_registry(self, batch: IngestBatch, outcome: BatchOutcome) -> None:
        with self._tx() as db:
            self._registry(db, batch, outcome)

    def _insert_results(self, db: sqlite3.Connection, results: list[ResultRecord], ingest_ts: int,
                        marks: list[tuple[str, str, int, int]] = ()) -> BatchOutcome:
        results, refused = rollup_sql.split_too_old(results, ingest_ts, self.retention_days())
        outcome = SQLiteStore._insert_plain(db, results, ingest_ts)
        if refused:
            outcome = BatchOutcome(outcome.stored, outcome.duplicates, outcome.new, refused)
        SQLiteStore._insert_shadows(db, outcome.new)
        self._write_rollups(db, outcome.new)
        if self.account_loss:
            self._account(db, outcome.new, ingest_ts, list(marks))
        return outcome

    def _write_rollups(self, db: sqlite3.Connection, new: list[ResultRecord]) -> None:
        """The batch's new results into the rollups (store/rollup_sql.py `write_kept`), with the open rows kept
        in memory while no other connection has written the file."""
        if not new:
            return
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._rollup_version or len(self._rollup_open) > 50_000:
            self._rollup_open.clear()
            self._rollup_version = version
        rollup_sql.write_kept(db, self._rollup_open, new)

    def _account(self, db: sqlite3.Connection, new: list[ResultRecord], ingest_ts: int,
                 marks: list[tuple[str, str, int, int]] | None = None) -> None:
        """Loss accounting for the new results and the nodes' sequence marks (store/loss.py), in the
        same commit. Holes, new boots, drops and jumps are written at once; a boot whose new results
        are simply the next ones is written at most every BOOTS_FLUSH_S (its results are committed,
        so a crash loses nothing: loading a boot replays the results stored past its row's max_seq)."""
        marks = marks or []
        if not new and not marks:
            return
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version or len(self._boots) > 200_000:
            if version == self._data_version:
                self._write_boots(db, self._dirty_rows())  # only large: keep what is not written yet
            self._boots.clear()  # someone else wrote the file (or the cache is large): read it again
            self._holes.clear()
            self._dirty.clear()  # not written: loading the boot again replays its stored results
            self._data_version = version
        boots, holes = self._boots, self._holes
        pairs = list(map(_BOOT_KEY, new))
        keys = set(pairs)
        keys.update(map(_BOOT_KEY, marks))
        missing = sorted(keys - boots.keys())  # not known from earlier batches
        loaded: list[tuple[str, str]] = []
        for i in range(0, len(missing), 400):  # SQLite's bound-variable limit
            part = missing[i:i + 400]
            rows = ",".join(["(?,?)"] * len(part))
            for d, b, f, t, m, rcv, drp, j in db.execute(
                    "SELECT device, boot, first_ts, last_ts, max_seq, received, dropped, jumps FROM boots"
                    f" WHERE (device, boot) IN (VALUES {rows})", [x for k in part for x in k]):
                boots[(d, b)] = BootState(m, rcv, drp, j, f, t)
                loaded.append((d, b))
        immediate = {k for k in missing if k not in boots}  # new boots: their rows are written at once
        for k in immediate:
            holes.setdefault(k, [])  # and no holes in the table yet: none to read when one opens
        if loaded:
            self._replay(db, loaded, new, immediate)
        upd = account(new, boots, holes, marks, load_holes=lambda k: self._read_holes(db, k), dropped_at=_DROPPED,
                      keys=pairs)
        self._write_holes(db, upd, ingest_ts)
        dirty, quiet = self._dirty, upd.quiet
        loud = upd.boots.keys() - quiet  # set operations only: this runs for every result
        loud.update(immediate.intersection(upd.boots))
        dirty.difference_update(loud)
        immediate.update(loud)
        dirty.update(quiet - immediate)
        now = time.monotonic()
        if dirty and now - self._flushed >= BOOTS_FLUSH_S:
            immediate.update(dirty)
            dirty.clear()
            self._flushed = now
        self._write_boots(db, {k: boots[k] for k in immediate if k in boots})

    @staticmethod
    def _read_holes(db: sqlite3.Connection, key: tuple[str, str]) -> list[tuple[int, int]]:
        return [(lo, hi) for lo, hi in db.execute(
            "SELECT lo, hi FROM seq_gaps WHERE device = ? AND boot = ? ORDER BY lo", key)]

    def _replay(self, db: sqlite3.Connection, loaded: list[tuple[str, str]], new: list[ResultRecord],
                immediate: set[tuple[str, str]]) -> None:
        """Boots just read from the table: fold in the results stored past their row's max_seq and
        not in this batch (committed by a process that died, or by another one, before it wrote the
        row), so the bookkeeping is what an always-written row would say."""
        boots, holes = self._boots, self._holes
        wanted = set(loaded)
        mine = {(r.device, r.boot, r.seq) for r in new if (r.device, r.boot) in wanted}
        missed = []
        for d, b in loaded:
            st = boots[(d, b)]
            for seq, ts in db.execute("SELECT seq, ts FROM results WHERE device = ? AND boot = ? AND seq > ?"
                                      " ORDER BY seq", (d, b, st.max_seq)):
                if (d, b, seq) not in mine:
                    missed.append((d, b, seq, ts, st.dropped))
        if not missed:
            return
        immediate.update((m[0], m[1]) for m in missed)
        upd = account(missed, boots, holes, load_holes=lambda k: self._read_holes(db, k))
        self._write_holes(db, upd, int(time.time() * 1000))

    @staticmethod
    def _write_holes(db: sqlite3.Connection, upd: LossUpdate, ingest_ts: int) -> None:
        db.executemany("INSERT INTO seq_gaps(device, boot, lo, hi, opened_ms) VALUES (?,?,?,?,?)",
                       [(d, b, lo, hi, ingest_ts) for d, b, lo, hi in upd.opened])
        for d, b, lo, hi, pieces in upd.filled:
            row = db.execute("SELECT opened_ms FROM seq_gaps WHERE device = ? AND boot = ? AND lo = ?", (d, b, lo)).fetchone()
            opened = row[0] if row else ingest_ts
            db.execute("DELETE FROM seq_gaps WHERE device = ? AND boot = ? AND lo = ?", (d, b, lo))
            db.executemany("INSERT INTO seq_gaps(device, boot, lo, hi, opened_ms) VALUES (?,?,?,?,?)",
                           [(d, b, plo, phi, opened) for plo, phi in pieces])

    @staticmethod
    def _write_boots(db: sqlite3.Connection, rows: dict[tuple[str, str], BootState]) -> None:
        if rows:
            db.executemany("INSERT INTO boots(device, boot, first_ts, last_ts, max_seq, received, dropped, jumps)"
                           " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(device, boot) DO UPDATE SET first_ts = excluded.first_ts,"
                           " last_ts = excluded.last_ts, max_seq = excluded.max_seq, received = excluded.received,"
                           " dropped = excluded.dropped, jumps = excluded.jumps",
                           [(d, b, s.first_ts, s.last_ts, s.max_seq, s.received, s.dropped, s.jumps)
                            for (d, b), s in sorted(rows.items())])

    def _dirty_rows(self) -> dict[tuple[str, str], BootState]:
        return {k: self._boots[k] for k in self._dirty}

    def flush_loss(self) -> None:
        """Write the boots whose in-order updates are still in memory (before reading the table here,
        and at close)."""
        if self._dirty:
            with self._tx() as db:
                if db.execute("PRAGMA data_version").fetchone()[0] == self._data_version:
                    self._write_boots(db, self._dirty_rows())
                else:  # another process wrote the file since: its rows may be newer than the kept ones, and
                    self._boots.clear()  # written back they put max_seq below its holes; the next batch
                    self._holes.clear()  # reloads the rows and replays the results stored past them
                self._dirty.clear()
                self._flushed = time.monotonic()

    def track_loss(self, now_ms: int, window_ms: int = 3_600_000, min_missing: int = 5,
                   min_rate: float = 0.01) -> list[tuple[str, str]]:
        """Sample every lossy device's figures, then raise a data-loss alarm (apart from the machine's
        health alarms) for a device that lost at least `min_missing` results and `min_rate` of what
        it sent over the last `window_ms`, and clear it after a window without a new loss. Returns
        the changes as (op, device)."""
        loss = self.loss(now_ms)["devices"]
        changes: list[tuple[str, str]] = []
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO loss_samples VALUES (?,?,?,?,?,?)",
                           [(now_ms, d, e["received"], e["missing"], e["pending_gaps"], e["dropped_on_node"])
                            for d, e in loss.items()])
            active = {d for (d,) in db.execute("SELECT device FROM loss_alarms WHERE cleared_ts IS NULL")}
            for d in sorted(set(loss) | active):
                e = loss.get(d, {"received": 0, "missing": 0})
                old = db.execute("SELECT received, missing FROM loss_samples WHERE device = ? AND ts <= ?"
                                 " ORDER BY ts DESC LIMIT 1", (d, now_ms - window_ms)).fetchone() or (0, 0)
                lost, sent = e["missing"] - old[1], (e["received"] - old[0]) + (e["missing"] - old[1])
                rate = lost / sent if sent > 0 else 0.0
                if d not in active and lost >= min_missing and rate >= min_rate:
                    cur = db.execute("INSERT INTO loss_alarms(device, raised_ts, missing, rate) VALUES (?,?,?,?)",
                                     (d, now_ms, lost, rate))
                    journal(db, now_ms, "data-loss", cur.lastrowid, d, "raised", missing=lost, rate=rate)
                    changes.append(("raise", d))
                elif d in active and lost <= 0:
                    (aid,), = db.execute("SELECT id FROM loss_alarms WHERE device = ? AND cleared_ts IS NULL", (d,))
                    db.execute("UPDATE loss_alarms SET cleared_ts = ? WHERE id = ?", (now_ms, aid))
                    journal(db, now_ms, "data-loss", aid, d, "cleared")
                    changes.append(("clear", d))
            db.execute("DELETE FROM loss_samples WHERE ts < ?", (now_ms - 30 * 86_400_000,))
        return changes

    def loss_alarms(self, active: bool | None = None) -> list[dict]:
        where = "" if active is None else (" WHERE cleared_ts IS NULL" if active else " WHERE cleared_ts IS NOT NULL")
        rows = self._q("SELECT id, device, raised_ts, cleared_ts, missing, rate, acked_ts, acked_by, note"
                       " FROM loss_alarms" + where + " ORDER BY raised_ts DESC")
        return [{"id": i, "device": d, "raised_ts": r, "cleared_ts": c, "missing": m, "rate": rt, "acked_ts": at,
                 "acked_by": ab, "note": n} for i, d, r, c, m, rt, at, ab, n in rows]

    def ack_loss_alarm(self, alarm_id: int, by: str, ts: int, note: str = "") -> bool:
        """Acknowledge a data-loss alarm (as ack_alarm a health alarm); False if unknown or acknowledged already.
        Portable SQL: PostgresStore uses this method too."""
        with self._tx() as db:
            return db.execute(self._notify_sql("UPDATE loss_alarms SET acked_ts = ?, acked_by = ?, note = ?"
                                               " WHERE id = ? AND acked_ts IS NULL"),
                              (ts, by, note, alarm_id)).rowcount == 1

    def machine_meta(self) -> dict[str, dict]:
        """What people set about each machine beyond its node (`edgefleet machine name|tag`): {device: {"name":
        str, "tags": {key: value}}}, kept apart from the tags a node reports (its status overwrites those)."""
        return {key.split("/", 2)[2]: json.loads(value)
                for key, value in self._q("SELECT key, value FROM settings WHERE key LIKE 'machine/device/%'")}

    def set_machine_meta(self, device: str, meta: dict | None) -> None:
        """Replace (None or empty: remove) a device's name and tags; the caller checks them
        (edgefleet.service.machine_meta). Portable SQL: PostgresStore uses this method too."""
        key, q = f"machine/device/{device}", self._notify_sql
        with self._tx() as db:
            if not meta:
                db.execute(q("DELETE FROM settings WHERE key = ?"), (key,))
            else:
                db.execute(q("INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"),
                           (key, json.dumps(meta, sort_keys=True)))

    def loss_series(self, since_ms: int) -> list[tuple[int, str, int, int, int]]:
        """(ts, device, missing, pending, dropped) samples since `since_ms`, for the System page."""
        return [tuple(r) for r in self._q("SELECT ts, device, missing, pending, dropped FROM loss_samples"
                                          " WHERE ts >= ? ORDER BY ts", (since_ms,))]

    def loss(self, now_ms: int, device: str | None = None, settle_ms: int = SETTLE_MS) -> dict:
        """What never arrived: `missing` (holes older than the settle window, less what the nodes
        said their rings dropped), `pending_gaps` (younger holes), `dropped_on_node`, `seq_jumps`,
        and per device with `device` (or for every device that lost something)."""
        flush = getattr(self, "flush_loss", None)  # SQLite: boots updated in order, not written yet
        if flush is not None:
            flush()
        where, args = ("WHERE device = ?", (device,)) if device else ("", ())
        per = loss_figures(self._q(f"SELECT device, boot, received, dropped, jumps FROM boots {where}", args),
                           self._q(f"SELECT device, boot, lo, hi, opened_ms FROM seq_gaps {where}", args),
                           now_ms, settle_ms)
        total = {k: sum(e[k] for e in per.values()) for k in ("missing", "pending_gaps", "dropped_on_node", "seq_jumps")}
        lossy = {d: e for d, e in per.items() if device or e["missing"] or e["pending_gaps"] or e["dropped_on_node"]
                 or e["seq_jumps"]}
        return {**total, "settle_s": settle_ms / 1000, "devices": dict(sorted(lossy.items()))}

    @staticmethod
    def _insert_shadows(db: sqlite3.Connection, new: list[ResultRecord]) -> None:
        """Shadow-mode outcomes of new results go to a side table: both models on each window."""
        rows = [(*r[:7], int(r.anom), r.inf_us, r.shadow_model, r.shadow_score, r.shadow_thr, int(r.shadow_anom))
                for r in new if r.shadow_model is not None]
        if rows:
            db.executemany(_INSERT_SHADOW, rows)

    @staticmethod
    def _insert_plain(db: sqlite3.Connection, results: list[ResultRecord], ingest_ts: int) -> BatchOutcome:
        rows = [(*r[:7], int(r.anom), r.inf_us, ingest_ts, r.state, r.hi, r.cls, r.hi_thr, r.vrms, r.rpm, r.why, r.hint)
                for r in results]
        before = db.total_changes
        db.execute("SAVEPOINT bulk")
        db.executemany(_INSERT_RESULT, rows)
        if db.total_changes - before == len(rows):  # the usual case: nothing seen before
            db.execute("RELEASE bulk")
            return BatchOutcome(len(rows), 0, list(results))
        db.execute("ROLLBACK TO bulk")  # some duplicates: find out which, row by row
        db.execute("RELEASE bulk")
        new = []
        for rec, row in zip(results, rows):
            if db.execute(_INSERT_RESULT, row).rowcount == 1:
                new.append(rec)
        return BatchOutcome(len(new), len(rows) - len(new), new)

    @staticmethod
    def _registry(db: sqlite3.Connection, batch: IngestBatch, outcome: BatchOutcome) -> None:
        per_dev, lag_sum, lag_n, lag_max = device_rollup(batch, outcome)
        db.executemany(
            "INSERT INTO devices(device, first_seen, last_seen, results, last_score, model, thr) VALUES (?,?,?,?,?,?,?)"
            " ON CONFLICT(device) DO UPDATE SET results = results + excluded.results,"
            " first_seen = min(first_seen, excluded.first_seen),"
            " last_score = CASE WHEN excluded.last_seen >= last_seen THEN excluded.last_score ELSE last_score END,"
            " model = CASE WHEN excluded.last_seen >= last_seen THEN excluded.model ELSE model END,"
            " thr = CASE WHEN excluded.last_seen >= last_seen THEN excluded.thr ELSE thr END,"
            " last_seen = max(last_seen, excluded.last_seen)",
            [(dev, d[0], d[1], d[2], d[3], d[4], d[5]) for dev, d in per_dev.items()])
        for u in batch.devices:
            db.execute("INSERT INTO devices(device, first_seen, last_seen) VALUES (?,?,?)"
                       " ON CONFLICT(device) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
                       (u.device, u.ts, u.ts))
            sets = device_update_columns(u)
            if sets:  # a status older than the one stored (a late last will) changes nothing
                db.execute(f"UPDATE devices SET {', '.join(f'{k} = ?' for k in sets)}"
                           " WHERE device = ? AND status_ts <= ?", (*sets.values(), u.device, u.ts))
        db.executemany("INSERT INTO events(device, ts, kind, body) VALUES (?,?,?,?)",
                       [(e.device, e.ts, e.kind, json.dumps(e.body, separators=(",", ":")))
                        for e in batch.events])
        db.executemany("INSERT INTO rejected(ts, topic, code, reason, payload, size) VALUES (?,?,?,?,?,?)",
                       [(r.ts, r.topic[:256], r.code, r.reason[:500], r.payload[:REJECT_EXCERPT], r.size)
                        for r in [*batch.rejects, *outcome.refused]])
        stats = (batch.ingest_ts, batch.messages, outcome.stored, outcome.duplicates,
                 len(batch.rejects) + len(outcome.refused), lag_sum, lag_n, lag_max)
        db.execute("INSERT INTO ingest_stats VALUES (?,?,?,?,?,?,?,?)", stats)
        db.execute(rollup_sql.ingest_upsert(False), stats)  # and its minute (rollup_sql.INGEST_1M)

    def apply_alarm_changes(self, changes: list[AlarmChange], health: list[DeviceHealth]) -> None:
        with self._tx() as db:
            for c in changes:
                if c.op == "raise":
                    # a machine that clears and raises again within the hold-off is one alarm that flaps,
                    # not a new one to acknowledge each time: reopen it and count
                    last = db.execute("SELECT id FROM alarms WHERE device = ? AND cleared_ts IS NOT NULL"
                                      " AND cleared_ts >= ? ORDER BY cleared_ts DESC LIMIT 1",
                                      (c.device, c.ts - ALARM_HOLD_OFF_MS)).fetchone()
                    if last is not None:
                        db.execute("UPDATE alarms SET cleared_ts = NULL, reopened = reopened + 1, severity = ?,"
                                   " peak_score = max(peak_score, ?), why = ?, hint = ? WHERE id = ?",
                                   (c.severity, c.peak_score, c.why, c.hint, last[0]))
                        journal(db, c.ts, "health", last[0], c.device, "reopened", c.severity)
                    else:
                        cur = db.execute("INSERT OR IGNORE INTO alarms(device, raised_ts, severity, score, peak_score, thr,"
                                         " why, hint) VALUES (?,?,?,?,?,?,?,?)",
                                         (c.device, c.ts, c.severity, c.score, c.peak_score, c.thr, c.why, c.hint))
                        if cur.rowcount:
                            journal(db, c.ts, "health", cur.lastrowid, c.device, "raised", c.severity)
                elif c.op == "update":
                    prev = db.execute("SELECT id, severity FROM alarms WHERE device = ? AND cleared_ts IS NULL",
                                      (c.device,)).fetchone()
                    db.execute("UPDATE alarms SET severity = ?, peak_score = max(peak_score, ?)"
                               " WHERE device = ? AND cleared_ts IS NULL", (c.severity, c.peak_score, c.device))
                    if prev is not None and prev[1] != c.severity:
                        journal(db, c.ts, "health", prev[0], c.device, "severity", c.severity, previous=prev[1])
                elif c.op == "clear":
                    prev = db.execute("SELECT id FROM alarms WHERE device = ? AND cleared_ts IS NULL", (c.device,)).fetchone()
                    db.execute("UPDATE alarms SET cleared_ts = ?, peak_score = max(peak_score, ?)"
                               " WHERE device = ? AND cleared_ts IS NULL", (c.ts, c.peak_score, c.device))
                    if prev is not None:
                        journal(db, c.ts, "health", prev[0], c.device, "cleared", c.severity)
                else:
                    raise ValueError(f"unknown alarm change {c.op!r}")
            db.executemany(HEALTH_UPDATE_SQL, [health_row(h) for h in health])

    def set_device_meta(self, device: str, site: str | None = None, line: str | None = None,
                        tags: tuple[str, ...] | None = None) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO devices(device, first_seen, last_seen) VALUES (?, 0, 0)", (device,))
            if site is not None:
                db.execute("UPDATE devices SET site = ? WHERE device = ?", (site, device))
            if line is not None:
                db.execute("UPDATE devices SET line = ? WHERE device = ?", (line, device))
            if tags is not None:
                db.execute("UPDATE devices SET tags = ? WHERE device = ?", (json.dumps(list(tags)), device))

    def ack_alarm(self, alarm_id: int, by: str, ts: int, note: str = "") -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE alarms SET acked_ts = ?, acked_by = ?, note = ? WHERE id = ? AND acked_ts IS NULL",
                             (ts, by, note, alarm_id))
            return cur.rowcount == 1

    # ---------- settings and retention ----------

    def retention_days(self) -> float:
        rows = self._q("SELECT value FROM settings WHERE key = 'retention_days'")
        return float(rows[0][0]) if rows else DEFAULT_RETENTION_DAYS

    def set_retention_days(self, days: float) -> None:
        if not days > 0:
            raise StoreError(f"retention must be a positive number of days, got {days}")
        with self._tx() as db:
            db.execute("INSERT INTO settings VALUES ('retention_days', ?)"
                       " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (repr(float(days)),))

    def apply_retention(self, now_ms: int, budget: int | None = None) -> int:
        """Raw telemetry past the retention, rollups past theirs, in transactions of a few thousand rows
        (store/rollup_sql.py `prune`); at most about `budget` rows when given."""
        self._rollup_open.clear()
        return rollup_sql.prune(self._tx, str, now_ms, self.retention_days(), budget)

    def rollup_rows(self, device: str, width_ms: int, since_ms: int, until_ms: int) -> list[tuple]:
        """A device's stored rollup rows (rollups.COLUMNS) of `width_ms` (rollups.MINUTE_MS or HOUR_MS) with
        buckets in [since_ms, until_ms], in time order."""
        from edgefleet.service.rollups import TABLES

        return self._q(rollup_sql.rollup_select(TABLES[int(width_ms)]), (device, since_ms, until_ms))

    def rebuild_rollups(self, since_ms: int | None = None) -> None:
        """Recompute both rollups from the raw results (from `since_ms`, aligned down to each width; None:
        from the oldest raw result kept, aligned up, so buckets whose raw rows retention removed stay)."""
        self._rollup_open.clear()
        with self._tx() as db:
            if since_ms is None:
                (since_ms,), = db.execute("SELECT coalesce(min(ts), 0) FROM results").fetchall()
                since_ms = -(-since_ms // 3_600_000) * 3_600_000
            for sql, args in rollup_sql.backfill_statements(False, since_ms):
                db.execute(sql, args)

    # ---------- reads ----------

    def score_history(self, device: str, since_ms: int | None = None, until_ms: int | None = None,
                      limit: int = 10000) -> list[ResultRecord]:
        rows = self._q(f"SELECT {_RESULT_COLS} FROM results WHERE device = ? AND ts >= ? AND ts <= ?"
                       " ORDER BY ts DESC, seq DESC LIMIT ?",
                       (device, since_ms if since_ms is not None else -1,
                        until_ms if until_ms is not None else 2**62, limit))
        return [_rec(r) for r in reversed(rows)]

    def recent_results(self, device: str, n: int) -> list[ResultRecord]:
        return self.score_history(device, limit=n)

    def count_results(self) -> int:
        return self._q("SELECT count(*) FROM results")[0][0]

    def shadow_results(self, shadow_model: int, *, device: str | None = None, since_ms: int | None = None,
                       limit: int = 100_000) -> list[ResultRecord]:
        rows = self._q(f"SELECT {_SHADOW_COLS} FROM shadow_results WHERE shadow_model = ? AND ts >= ?"
                       + (" AND device = ?" if device is not None else "")
                       + " ORDER BY ts DESC, seq DESC LIMIT ?",
                       (shadow_model, since_ms if since_ms is not None else -1,
                        *((device,) if device is not None else ()), limit))
        return [_shadow_rec(r) for r in reversed(rows)]

    # ---------- readings (feature definition v2) and machine classes (ISO 20816) ----------

    def vrms_history(self, device: str, since_ms: int | None = None, until_ms: int | None = None,
                     limit: int = 10000) -> list[tuple[int, float, float | None]]:
        """(ts, vrms in mm/s, rpm or None) of a device's results that carry a velocity reading, in time
        order (the newest `limit` in the range)."""
        rows = self._q("SELECT ts, vrms, rpm FROM results WHERE device = ? AND ts >= ? AND ts <= ?"
                       " AND vrms IS NOT NULL ORDER BY ts DESC, seq DESC LIMIT ?",
                       (device, since_ms if since_ms is not None else -1,
                        until_ms if until_ms is not None else 2**62, limit))
        return [tuple(r) for r in reversed(rows)]

    def result_buckets(self, device: str, since_ms: int, until_ms: int, bucket_ms: int) -> list[tuple]:
        """A device's results in [since_ms, until_ms] downsampled in the database, one row per time bucket of
        `bucket_ms` that holds any (what the dashboard charts for long ranges: 30 days at 1/s are 2.6 M rows):
        (bucket start, newest ts, results, anomalous, max score, max thr, max hi, max hi_thr, mean vrms,
        max vrms, mean rpm, judged, class when the bucket has one, newest model, the state of its windows
        without a verdict or the empty string), in time order."""
        b = max(1, int(bucket_ms))
        rows = self._q("SELECT k, max(ts), count(*), sum(anom), max(score), max(thr), max(hi), max(hi_thr), avg(vrms),"
                       " max(vrms), avg(rpm), sum(CASE WHEN state = '' THEN 1 ELSE 0 END),"
                       " CASE WHEN min(cls) = max(cls) THEN min(cls) END, max(model), max(state)"
                       " FROM (SELECT (ts - CAST(? AS BIGINT)) / CAST(? AS BIGINT) AS k, ts, anom, score, thr, hi,"
                       " hi_thr, vrms, rpm, state, cls, model FROM results WHERE device = ? AND ts >= ? AND ts <= ?)"
                       " AS r GROUP BY k ORDER BY k", (since_ms, b, device, since_ms, until_ms))
        return [(int(since_ms) + int(r[0]) * b, *r[1:]) for r in rows]

    def latest_vrms(self, n: int = 5, look_back: int = 200) -> dict[str, tuple[int, float]]:
        """Per device with velocity readings among its newest `look_back` results: (time of its newest reading,
        median vrms of its newest `n`), what the fleet grid colours by ISO zone (one window's reading is noisy).
        One statement for the fleet: each device's `look_back`-th newest time from the (device, ts) index alone,
        then its newest readings from there on, newest first, so a node with readings costs `n` row reads and
        an older node (no readings) at most `look_back`."""
        pick = ("(SELECT r.{col} FROM results r WHERE r.device = m.device AND r.ts >= m.cut AND r.vrms IS NOT NULL"
                " ORDER BY r.ts DESC LIMIT 1 OFFSET {k})")
        cols = ", ".join([pick.format(col="ts", k=0)] + [pick.format(col="vrms", k=k) for k in range(max(1, n))])
        out: dict[str, tuple[int, float]] = {}
        for device, ts, *vals in self._q(f"WITH m AS MATERIALIZED (SELECT d.device, {_NEWEST_CUT} AS cut FROM devices d)"
                                         f" SELECT device, {cols} FROM m ORDER BY device", (max(1, look_back) - 1,)):
            v = sorted(float(x) for x in vals if x is not None)
            if ts is not None and v:
                mid = len(v) // 2
                out[device] = (int(ts), v[mid] if len(v) % 2 else 0.5 * (v[mid - 1] + v[mid]))
        return out

    def recent_window_counts(self, n: int, devices: Iterable[str] | None = None) -> dict[str, tuple[int, int, int]]:
        """Per device (all, or those named), of its newest `n` results: (how many, how many 'commissioning', how
        many 'uncommissioned'): which commissioned machines need a class (the Fleet page). One statement for the
        fleet from the (device, ts) index and the 1-minute rollups: a device whose rollups from the minute of
        its n-th newest result on count every raw result there and no window without a verdict has none of
        either; only the others (commissioning, a speed in no class, rollups short) read their newest states."""
        rows = self._q(f"WITH c AS MATERIALIZED (SELECT d.device, {_NEWEST_CUT} AS cut FROM devices d),"
                       " m AS MATERIALIZED (SELECT device, cut, cut - cut % 60000 AS minute FROM c)"
                       " SELECT device, cut,"
                       " (SELECT count(*) FROM results r WHERE r.device = m.device AND r.ts >= m.cut),"
                       " (SELECT count(*) FROM results r WHERE r.device = m.device AND r.ts >= m.minute),"
                       " (SELECT coalesce(sum(u.n), 0) FROM rollup_1m u WHERE u.device = m.device AND u.bucket >= m.minute),"
                       " (SELECT coalesce(sum(u.n - u.judged), 0) FROM rollup_1m u WHERE u.device = m.device"
                       " AND u.bucket >= m.minute) FROM m", (max(1, n) - 1,))
        want = None if devices is None else set(devices)
        out: dict[str, tuple[int, int, int]] = {}
        for device, cut, recent, raw, rolled, unjudged in rows:
            if want is not None and device not in want:
                continue
            if int(rolled) == int(raw) and int(unjudged) == 0:
                out[device] = (min(int(recent), n), 0, 0)
                continue
            states = [s for (s,) in self._q("SELECT state FROM results WHERE device = ? ORDER BY ts DESC, seq DESC"
                                            " LIMIT ?", (device, n))]
            out[device] = (len(states), states.count("commissioning"), states.count("uncommissioned"))
        return out

    def machine_classes(self) -> dict[str, dict[str, str]]:
        """ISO 20816 machine classes set per device and per site: {"device": {id: cls}, "site": {site: cls}}
        (iso20816.class_for picks a device's; unset: the default class)."""
        out: dict[str, dict[str, str]] = {"device": {}, "site": {}}
        for key, value in self._q("SELECT key, value FROM settings WHERE key LIKE 'iso_class/%'"):
            _, scope, name = key.split("/", 2)
            if scope in out:
                out[scope][name] = value
        return out

    def set_machine_class(self, cls: str | None, *, device: str | None = None, site: str | None = None) -> None:
        """Set (or with None, unset) the ISO 20816 machine class of one device or of a site's devices;
        a bad class name or scope is one MachineClassError / StoreError line."""
        key, value = _class_setting(cls, device, site)
        with self._tx() as db:
            if value is None:
                db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                db.execute("INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           (key, value))

    def bearings(self) -> dict[str, dict]:
        """Bearing geometry per device ({n_balls, ball_d_mm, pitch_d_mm, contact_deg}): what the dashboard
        marks BPFO, BPFI and BSF from (the node's own config is not reported)."""
        return {key.split("/", 2)[2]: json.loads(value)
                for key, value in self._q("SELECT key, value FROM settings WHERE key LIKE 'bearing/device/%'")}

    def set_bearing(self, device: str, geometry: dict | None) -> None:
        """Set (None: unset) a device's bearing geometry; one that makes no sense is one FeatureError line."""
        key, value = _bearing_setting(device, geometry)
        with self._tx() as db:
            if value is None:
                db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                db.execute("INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           (key, value))

    def ingest_series(self, since_ms: int, bucket_s: int = 10) -> list[IngestBucket]:
        b = max(1, int(bucket_s * 1000))
        rows = self._q("SELECT (ts / ?) * ?, sum(messages), sum(results), sum(duplicates), sum(rejected),"
                       f" sum(lag_ms_sum), sum(lag_n), max(lag_ms_max) FROM {rollup_sql.ingest_table(b)} WHERE ts >= ?"
                       " GROUP BY ts / ? ORDER BY 1", (b, b, since_ms, b))
        return [IngestBucket(t, m, r, d, j, (ls / ln) if ln else None, lm) for t, m, r, d, j, ls, ln, lm in rows]

    _DEVICE_SQL = ("SELECT d.device, d.site, d.line, d.tags, d.status, d.boot, d.fw, d.model, d.slot, d.thr,"
                   " d.caps, d.first_seen, d.last_seen, d.results, d.last_score, d.health, d.ewma_score,"
                   " d.slope_per_h, d.eta_s, a.severity, d.comm, d.degrading_since, d.rul_s, d.rul_low_s, d.rul_high_s,"
                   " d.health_ts FROM devices d"
                   " LEFT JOIN alarms a ON a.device = d.device AND a.cleared_ts IS NULL")

    @staticmethod
    def _device(row: tuple, now_ms: int | None, stale_s: float) -> Device:
        status, health, sev = row[4], row[15], row[19]
        if status == "online" and now_ms is not None and row[12] < now_ms - stale_s * 1000:
            status = "stale"
        if sev is not None:
            health = "alarm"
        elif health == "alarm":  # the alarm was cleared after the last health update
            health = "ok"
        return Device(row[0], row[1], row[2], tuple(json.loads(row[3])), status, row[5], row[6], row[7],
                      row[8], row[9], tuple(json.loads(row[10])), row[11], row[12], row[13], row[14],
                      health, row[16], row[17], row[18], sev, json.loads(row[20]) if row[20] else None,
                      *row[21:26])

    def device(self, device: str) -> Device | None:
        rows = self._q(self._DEVICE_SQL + " WHERE d.device = ?", (device,))
        return self._device(rows[0], None, 0) if rows else None

    def devices(self, site: str | None = None, now_ms: int | None = None, stale_s: float = 120.0) -> list[Device]:
        if site is None:
            rows = self._q(self._DEVICE_SQL + " ORDER BY d.site, d.line, d.device")
        else:
            rows = self._q(self._DEVICE_SQL + " WHERE coalesce(d.site, '') = ? ORDER BY d.line, d.device", (site,))
        # a node in summary mode reports once a period: stale after 2.5 periods, not after stale_s
        every = {k[len(summary_sql.REPORT_KEY):]: float(v) for k, v in
                 self._q("SELECT key, value FROM settings WHERE key LIKE ?", (summary_sql.REPORT_KEY + "%",))
                 } if now_ms else {}
        return [self._device(r, now_ms, max(stale_s, 2.5 * every.get(r[0], 0.0))) for r in rows]

    def fleet_summary(self, now_ms: int, stale_s: float = 120.0) -> FleetSummary:
        devs = self.devices(now_ms=now_ms, stale_s=stale_s)
        models: dict[int, int] = {}
        for d in devs:
            if d.model is not None:
                models[d.model] = models.get(d.model, 0) + 1
        active, unacked = self._q("SELECT count(*), count(*) - count(acked_ts) FROM alarms WHERE cleared_ts IS NULL")[0]
        online = sum(d.status == "online" for d in devs)
        return FleetSummary(len(devs), online, len(devs) - online, active, unacked,
                            sum(d.health == "degrading" for d in devs), dict(sorted(models.items())),
                            self.count_results(), self._q("SELECT count(*) FROM rejected")[0][0])

    def site_health(self, now_ms: int, stale_s: float = 120.0) -> list[SiteHealth]:
        sites: dict[str, list[int]] = {}
        for d in self.devices(now_ms=now_ms, stale_s=stale_s):
            s = sites.setdefault(d.site or "", [0, 0, 0, 0, 0])
            s[0] += 1
            s[1] += d.status == "online"
            s[2] += d.health in ("ok", "unknown")
            s[3] += d.health == "degrading"
            s[4] += d.health == "alarm"
        return [SiteHealth(k, *v) for k, v in sorted(sites.items())]

    def alarms(self, *, active: bool | None = None, acked: bool | None = None, device: str | None = None,
               site: str | None = None, min_severity: str | None = None, since_ms: int | None = None,
               limit: int = 500) -> list[Alarm]:
        where, args = [], []
        if active is not None:
            where.append("a.cleared_ts IS NULL" if active else "a.cleared_ts IS NOT NULL")
        if acked is not None:
            where.append("a.acked_ts IS NOT NULL" if acked else "a.acked_ts IS NULL")
        if device is not None:
            where.append("a.device = ?")
            args.append(device)
        if site is not None:
            where.append("coalesce(d.site, '') = ?")
            args.append(site)
        if min_severity is not None:
            if min_severity not in SEVERITY_RANK:
                raise StoreError(f"unknown severity {min_severity!r} (one of {', '.join(SEVERITY_RANK)})")
            ok = [s for s, r in SEVERITY_RANK.items() if r >= SEVERITY_RANK[min_severity]]
            where.append(f"a.severity IN ({','.join('?' * len(ok))})")
            args += ok
        if since_ms is not None:
            where.append("(a.raised_ts >= ? OR a.cleared_ts IS NULL)")
            args.append(since_ms)
        sql = ("SELECT a.id, a.device, d.site, d.line, a.raised_ts, a.cleared_ts, a.severity, a.score,"
               " a.peak_score, a.thr, a.acked_ts, a.acked_by, a.note, a.reopened, a.why, a.hint FROM alarms a"
               " LEFT JOIN devices d ON d.device = a.device")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY (a.cleared_ts IS NULL) DESC, a.raised_ts DESC LIMIT ?"
        return [Alarm(*r) for r in self._q(sql, (*args, limit))]

    def active_alarm(self, device: str) -> Alarm | None:
        found = self.alarms(active=True, device=device, limit=1)
        return found[0] if found else None

    def events(self, device: str, kind: str | None = None, limit: int = 100) -> list[Event]:
        sql, args = "SELECT device, ts, kind, body FROM events WHERE device = ?", [device]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        rows = self._q(sql + " ORDER BY ts DESC, id DESC LIMIT ?", (*args, limit))
        return [Event(d, t, k, json.loads(b)) for d, t, k, b in rows]

    def rejects(self, limit: int = 100, since_ms: int | None = None) -> list[RejectRecord]:
        rows = self._q("SELECT id, ts, topic, code, reason, payload, size FROM rejected WHERE ts >= ?"
                       " ORDER BY id DESC LIMIT ?", (since_ms if since_ms is not None else -1, limit))
        return [RejectRecord(*r) for r in rows]

    def reject_counts(self) -> dict[str, int]:
        return dict(self._q("SELECT code, count(*) FROM rejected GROUP BY code ORDER BY code"))

    def counts(self) -> Counts:
        (dups, msgs), = self._q("SELECT coalesce(sum(duplicates), 0), coalesce(sum(messages), 0) FROM ingest_stats")
        alarms, active = self._q("SELECT count(*), count(*) - count(cleared_ts) FROM alarms")[0]
        return Counts(self.count_results(), self._q("SELECT count(*) FROM devices")[0][0], alarms, active,
                      self._q("SELECT count(*) FROM rejected")[0][0], dups, msgs,
                      self._q("SELECT count(*) FROM events")[0][0])
