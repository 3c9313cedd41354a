"""PostgreSQL backend of the store (psycopg 3): the same `Store` as SQLite, shared by any number of
ingest processes on any host.

- Results have (device, boot, seq) as primary key; a batch goes in as one multi-row
  `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING` in key order, so the
  database itself says which results are new, and two processes inserting the same result wait
  for each other instead of storing it twice. Everything of a batch is one transaction; ingest
  acknowledges after it commits (`synchronous_commit` on, unless synchronous="OFF").
- Loss accounting reads and locks its boots rows (`FOR UPDATE`, in key order) inside the batch's
  transaction: no in-process cache, since another process may write the same boot at any time.
- The schema carries its version in a `schema_version` table (one row per applied migration);
  `migrate` brings an older database up one version at a time under an advisory lock, so
  migrations run twice or at once from two processes are harmless; a newer one is refused.
- The dashboard's reads are SQLiteStore's own methods (portable SQL, `?` placeholders translated),
  so the two backends cannot drift apart on what they return.

The OTA registry (models, campaigns, the command outbox) lives in the same database
(`connect_compat` gives `OtaRegistry` a sqlite3-shaped connection).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edgefleet.protocol import ResultRecord
from edgefleet.service.store import rollup_sql
from edgefleet.service.store.accounts import ACCOUNTS_SCHEMA_PG, AccountTables
from edgefleet.service.store.base import (
    REJECT_EXCERPT,
    AlarmChange,
    BatchOutcome,
    Counts,
    DeviceHealth,
    IngestBatch,
    IngestBucket,
    device_rollup,
    device_update_columns,
)
from edgefleet.service.store.loss import BootState, account
from edgefleet.service.store.outbox import (
    JOURNAL_LOCK,
    JOURNAL_SQL,
    NOTIFY_SCHEMA_PG,
    NotifyTables,
    journal_row,
)
from edgefleet.service.store.sql_text import to_pg
from edgefleet.service.store.sqlite import (
    ALARM_HOLD_OFF_MS,
    HEALTH_UPDATE_SQL,
    SQLiteStore,
    StoreError,
    _bearing_setting,
    _class_setting,
    health_row,
)
from edgefleet.service.store.url import mask_url, scrub

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError:  # pragma: no cover - the service image and requirements carry it
    psycopg = None  # type: ignore[assignment]

SCHEMA_VERSION = 6  # 2: results' readings and why (vrms, rpm, why, hint), an alarm's why and hint
# 3: alarm journal, shelves and notification outbox (store/outbox.py). 4: devices' degrading_since and remaining
# life, acknowledged data-loss alarms (SQLite's 6). 5: dashboard accounts, append-only audit log (SQLite's 7)
# 6: 1-minute and 1-hour rollups per device, backfilled from the raw results (SQLite's 8; store/rollup_sql.py)
_LOCK_KEY = 0x6566_7363_6865_6D61  # pg_advisory_xact_lock key of schema migrations ("efschema")
_DEADLOCK_RETRIES = 5

# Version 1: what SQLite's version 3 holds (results with commissioning fields, loss accounting),
# plus the OTA registry and the command outbox. Times are BIGINT ms; JSON kept as text, like SQLite.
_V1 = """
CREATE TABLE results(
  device TEXT NOT NULL, boot TEXT NOT NULL, seq BIGINT NOT NULL, ts BIGINT NOT NULL,
  model BIGINT NOT NULL, score DOUBLE PRECISION NOT NULL, thr DOUBLE PRECISION NOT NULL, anom SMALLINT NOT NULL,
  inf_us BIGINT NOT NULL, ingest_ts BIGINT NOT NULL,
  state TEXT NOT NULL DEFAULT '', hi DOUBLE PRECISION, cls BIGINT, hi_thr DOUBLE PRECISION,
  PRIMARY KEY(device, boot, seq));
CREATE INDEX results_device_ts ON results(device, ts);
CREATE INDEX results_ts ON results(ts);
CREATE TABLE shadow_results(
  device TEXT NOT NULL, boot TEXT NOT NULL, seq BIGINT NOT NULL, ts BIGINT NOT NULL,
  model BIGINT NOT NULL, score DOUBLE PRECISION NOT NULL, thr DOUBLE PRECISION NOT NULL, anom SMALLINT NOT NULL,
  inf_us BIGINT NOT NULL, shadow_model BIGINT NOT NULL, shadow_score DOUBLE PRECISION NOT NULL,
  shadow_thr DOUBLE PRECISION NOT NULL, shadow_anom SMALLINT NOT NULL,
  PRIMARY KEY(device, boot, seq));
CREATE INDEX shadow_results_model ON shadow_results(shadow_model, ts);
CREATE TABLE devices(
  device TEXT PRIMARY KEY, site TEXT, line TEXT, tags TEXT NOT NULL DEFAULT '[]',
  status TEXT NOT NULL DEFAULT 'unknown', status_ts BIGINT NOT NULL DEFAULT 0,
  boot TEXT, fw TEXT, model BIGINT, slot TEXT, thr DOUBLE PRECISION, caps TEXT NOT NULL DEFAULT '[]',
  first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL, results BIGINT NOT NULL DEFAULT 0,
  last_score DOUBLE PRECISION, health TEXT NOT NULL DEFAULT 'unknown', ewma_score DOUBLE PRECISION,
  slope_per_h DOUBLE PRECISION, eta_s DOUBLE PRECISION, health_ts BIGINT, comm TEXT);
CREATE INDEX devices_site ON devices(site);
CREATE TABLE alarms(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, device TEXT NOT NULL, raised_ts BIGINT NOT NULL,
  cleared_ts BIGINT, severity TEXT NOT NULL, score DOUBLE PRECISION NOT NULL, peak_score DOUBLE PRECISION NOT NULL,
  thr DOUBLE PRECISION NOT NULL, acked_ts BIGINT, acked_by TEXT, note TEXT NOT NULL DEFAULT '',
  reopened BIGINT NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX alarms_one_active ON alarms(device) WHERE cleared_ts IS NULL;
CREATE INDEX alarms_raised ON alarms(raised_ts);
CREATE TABLE events(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, device TEXT NOT NULL, ts BIGINT NOT NULL,
  kind TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX events_device ON events(device, ts);
CREATE TABLE rejected(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ts BIGINT NOT NULL, topic TEXT NOT NULL,
  code TEXT NOT NULL, reason TEXT NOT NULL, payload BYTEA NOT NULL, size BIGINT NOT NULL);
CREATE INDEX rejected_ts ON rejected(ts);
CREATE TABLE ingest_stats(
  ts BIGINT NOT NULL, messages BIGINT NOT NULL, results BIGINT NOT NULL, duplicates BIGINT NOT NULL,
  rejected BIGINT NOT NULL, lag_ms_sum BIGINT NOT NULL, lag_n BIGINT NOT NULL, lag_ms_max BIGINT);
CREATE INDEX ingest_stats_ts ON ingest_stats(ts);
CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE boots(
  device TEXT NOT NULL, boot TEXT NOT NULL, first_ts BIGINT NOT NULL, last_ts BIGINT NOT NULL,
  max_seq BIGINT NOT NULL, received BIGINT NOT NULL, dropped BIGINT NOT NULL, jumps BIGINT NOT NULL,
  PRIMARY KEY(device, boot));
CREATE TABLE loss_samples(
  ts BIGINT NOT NULL, device TEXT NOT NULL, received BIGINT NOT NULL, missing BIGINT NOT NULL,
  pending BIGINT NOT NULL, dropped BIGINT NOT NULL, PRIMARY KEY(device, ts));
CREATE INDEX loss_samples_ts ON loss_samples(ts);
CREATE TABLE loss_alarms(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, device TEXT NOT NULL, raised_ts BIGINT NOT NULL,
  cleared_ts BIGINT, missing BIGINT NOT NULL, rate DOUBLE PRECISION NOT NULL);
CREATE UNIQUE INDEX loss_alarms_one_active ON loss_alarms(device) WHERE cleared_ts IS NULL;
CREATE TABLE seq_gaps(
  device TEXT NOT NULL, boot TEXT NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL, opened_ms BIGINT NOT NULL,
  PRIMARY KEY(device, boot, lo));
CREATE TABLE ota_models(
  version BIGINT PRIMARY KEY, model_id TEXT NOT NULL, created_ms BIGINT NOT NULL,
  artifact BYTEA NOT NULL, manifest BYTEA NOT NULL, sha256 TEXT NOT NULL, size BIGINT NOT NULL,
  n_inputs BIGINT NOT NULL, n_outputs BIGINT NOT NULL, card TEXT NOT NULL DEFAULT '{}');
CREATE TABLE ota_campaigns(
  id TEXT PRIMARY KEY, model BIGINT NOT NULL REFERENCES ota_models(version), target TEXT NOT NULL,
  policy TEXT NOT NULL, state TEXT NOT NULL, stage BIGINT NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
  devices TEXT NOT NULL DEFAULT '[]', created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL);
CREATE TABLE ota_device_state(
  campaign TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
  offered_ms BIGINT, updated_ms BIGINT NOT NULL, old_model BIGINT, PRIMARY KEY(campaign, device));
CREATE TABLE ota_history(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, campaign TEXT NOT NULL, device TEXT NOT NULL,
  ts BIGINT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '');
CREATE INDEX ota_history_device ON ota_history(device, ts);
CREATE TABLE ota_settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE device_commands(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, device TEXT NOT NULL, body TEXT NOT NULL,
  created_ms BIGINT NOT NULL, sent_ms BIGINT, note TEXT NOT NULL DEFAULT '');
CREATE INDEX device_commands_pending ON device_commands(sent_ms) WHERE sent_ms IS NULL;
"""

# Schema upgrades in order: MIGRATIONS[k] brings a database of version k-1 to version k, in one
# transaction with the row (k) in schema_version. Add version 2 here, never edit version 1.
MIGRATIONS: dict[int, list[str]] = {1: [s.strip() for s in _V1.split(";") if s.strip()],
                                     2: ["ALTER TABLE results ADD COLUMN vrms DOUBLE PRECISION, ADD COLUMN rpm DOUBLE"
                                         " PRECISION, ADD COLUMN why TEXT, ADD COLUMN hint TEXT",
                                         "ALTER TABLE alarms ADD COLUMN why TEXT, ADD COLUMN hint TEXT"],
                                     3: NOTIFY_SCHEMA_PG,
                                     4: ["ALTER TABLE devices ADD COLUMN degrading_since BIGINT, ADD COLUMN rul_s DOUBLE"
                                         " PRECISION, ADD COLUMN rul_low_s DOUBLE PRECISION, ADD COLUMN rul_high_s"
                                         " DOUBLE PRECISION",
                                         "ALTER TABLE loss_alarms ADD COLUMN acked_ts BIGINT, ADD COLUMN acked_by TEXT,"
                                         " ADD COLUMN note TEXT NOT NULL DEFAULT ''"],
                                     5: ACCOUNTS_SCHEMA_PG,
                                     6: rollup_sql.migration(pg=True)}

_RESULT_TYPES = ("text", "text", "bigint", "bigint", "bigint", "float8", "float8", "int2", "bigint", "bigint",
                 "text", "float8", "bigint", "float8", "float8", "float8", "text", "text")
# The batch goes in with binary COPY into a per-connection temporary table, then one INSERT ... SELECT: psycopg
# dumps the text arrays of an `unnest` insert with a regular expression per element (12 us a result measured,
# against 1.4 us for binary COPY: benchmarks/store_postgres.py). Emptied at each commit.
_RESULT_COLS = ("device, boot, seq, ts, model, score, thr, anom, inf_us, ingest_ts, state, hi, cls, hi_thr, vrms, rpm,"
                " why, hint")
_STAGE_RESULTS = ("CREATE TEMP TABLE IF NOT EXISTS results_in(" + ", ".join(
    f"{c} {t}" for c, t in zip(_RESULT_COLS.split(", "), _RESULT_TYPES)) + ") ON COMMIT DELETE ROWS")
_COPY_RESULTS = f"COPY results_in({_RESULT_COLS}) FROM STDIN (FORMAT BINARY)"
_INSERT_STAGED = (f"INSERT INTO results({_RESULT_COLS}) SELECT {_RESULT_COLS} FROM results_in"
                  " ON CONFLICT DO NOTHING RETURNING device, boot, seq")
_SHADOW_TYPES = ("text", "text", "bigint", "bigint", "bigint", "float8", "float8", "int2", "bigint", "bigint",
                 "float8", "float8", "int2")
_INSERT_SHADOWS = ("INSERT INTO shadow_results(device, boot, seq, ts, model, score, thr, anom, inf_us, shadow_model,"
                   " shadow_score, shadow_thr, shadow_anom) SELECT * FROM unnest("
                   + ", ".join(f"%s::{t}[]" for t in _SHADOW_TYPES) + ") ON CONFLICT DO NOTHING")
_pg = to_pg  # every statement here is written with SQLite's `?` placeholders (sql_text)


def _columns(rows: list[tuple]) -> list[list]:
    """Rows as one list per column: the arrays an `unnest(...)` insert takes."""
    return [list(c) for c in zip(*rows)]


def _one_line(exc: BaseException, url: str = "") -> str:
    """The driver's message on one line, with the URL masked and its password gone (libpq quotes a
    malformed URL whole)."""
    return scrub(" ".join(str(exc).split()), url) or type(exc).__name__


def _require_driver() -> None:
    if psycopg is None:
        raise StoreError("a postgresql:// store needs the psycopg package: pip install 'psycopg[binary]' "
                         "(requirements-service.txt)")


def connect(url: str, *, migrate_schema: bool = True, timeout_s: float = 10.0,
            application_name: str = "edgefleet") -> Any:
    """An autocommit connection to the database at `url`, its schema brought to SCHEMA_VERSION.
    Every failure is one StoreError line naming the URL with its password masked."""
    _require_driver()
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout_s)),
                               application_name=application_name)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to PostgreSQL at {mask_url(url)}: {_one_line(exc, url)}") from None
    except Exception as exc:  # a malformed URL (psycopg's ProgrammingError is a psycopg.Error too)
        raise StoreError(f"cannot use the database URL {mask_url(url)}: {_one_line(exc, url)}") from None
    if migrate_schema:
        try:
            migrate(conn, url)
        except BaseException:
            conn.close()
            raise
    return conn


def schema_version(conn: Any) -> int:
    """The database's schema version: 0 for an empty database."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL, to_regclass('results') IS NOT NULL"
                       ).fetchone()
    if not row[0]:
        if row[1]:
            return -1  # edgefleet-looking tables without a version: not ours to touch
        return 0
    return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])


def migrate(conn: Any, url: str = "") -> int:
    """Bring the schema to SCHEMA_VERSION, one version per transaction, under an advisory lock (a
    second process waits, then finds nothing to do). Refuses a newer or a foreign schema."""
    where = mask_url(url) if url else "the database"
    try:
        version = schema_version(conn)
        _check_version(version, where)
        while version < SCHEMA_VERSION:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER PRIMARY KEY,"
                             " applied_ms BIGINT NOT NULL, by TEXT NOT NULL DEFAULT '')")
                version = schema_version(conn)  # another process may have migrated while we waited
                _check_version(version, where)
                if version >= SCHEMA_VERSION:
                    break
                target = version + 1
                for sql in MIGRATIONS[target]:
                    conn.execute(sql)
                conn.execute("INSERT INTO schema_version(version, applied_ms, by) VALUES (%s, %s, %s)",
                             (target, int(time.time() * 1000), "edgefleet"))
            version = target
    except psycopg.Error as exc:
        raise StoreError(f"cannot prepare the schema in {where}: {_one_line(exc, url)}") from None
    return version


def _check_version(version: int, where: str) -> None:
    if version < 0:
        raise StoreError(f"{where} has tables (results) but no edgefleet schema_version: not an edgefleet store, "
                         "or one made by hand; use an empty database")
    if version > SCHEMA_VERSION:
        raise StoreError(f"{where}: store schema version {version} is newer than this edgefleet "
                         f"({SCHEMA_VERSION}); upgrade edgefleet")


class PostgresStore(NotifyTables, AccountTables):
    """The store in a PostgreSQL database; safe to share between processes and hosts."""

    _notify_sql = staticmethod(_pg)  # the journal, shelves and outbox (NotifyTables) inside _tx
    # Reads in portable SQL: SQLiteStore's methods, run through this class's `_q` (`?` -> `%s`).
    score_history = SQLiteStore.score_history
    recent_results = SQLiteStore.recent_results
    count_results = SQLiteStore.count_results
    shadow_results = SQLiteStore.shadow_results
    _DEVICE_SQL = SQLiteStore._DEVICE_SQL
    _device = SQLiteStore.__dict__["_device"]
    device = SQLiteStore.device
    devices = SQLiteStore.devices
    fleet_summary = SQLiteStore.fleet_summary
    site_health = SQLiteStore.site_health
    alarms = SQLiteStore.alarms
    active_alarm = SQLiteStore.active_alarm
    events = SQLiteStore.events
    rejects = SQLiteStore.rejects
    reject_counts = SQLiteStore.reject_counts
    retention_days = SQLiteStore.retention_days
    loss = SQLiteStore.loss
    loss_alarms = SQLiteStore.loss_alarms
    loss_series = SQLiteStore.loss_series
    vrms_history = SQLiteStore.vrms_history
    latest_vrms = SQLiteStore.latest_vrms
    recent_window_counts = SQLiteStore.recent_window_counts
    result_buckets = SQLiteStore.result_buckets
    rollup_rows = SQLiteStore.rollup_rows
    machine_classes = SQLiteStore.machine_classes
    bearings = SQLiteStore.bearings
    ack_loss_alarm = SQLiteStore.ack_loss_alarm  # portable SQL through _notify_sql
    machine_meta = SQLiteStore.machine_meta
    set_machine_meta = SQLiteStore.set_machine_meta

    def __init__(self, url: str, *, synchronous: str = "FULL", account_loss: bool = True) -> None:
        self.url = url
        self.path = mask_url(url)  # what logs and messages name (SQLiteStore.path is its file)
        self.account_loss = account_loss
        self._sync_off = str(synchronous).upper() == "OFF"
        self._lock = threading.RLock()
        self._staged: Any = None  # the connection whose temporary results_in exists (_stage)
        self._rollup_open: dict = {}  # rollup rows as this writer last wrote them (rollup_sql.write_locked)
        self._conn = self._connect(migrate_schema=True)

    # ---------- plumbing ----------

    def _connect(self, migrate_schema: bool = False) -> Any:
        conn = connect(self.url, migrate_schema=migrate_schema)
        if self._sync_off:
            conn.execute("SET synchronous_commit = off")
        return conn

    def _live(self) -> Any:
        """The connection, opened again if the server dropped it (a restart): the caller's
        statement then runs on the new one; what was in flight rolled back and was never acked."""
        if self._conn.closed or self._conn.broken:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = self._connect()
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            conn = self._live()
            try:
                with conn.transaction():
                    with conn.cursor() as cur:
                        yield cur
            except psycopg.OperationalError as exc:
                if isinstance(exc, (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)):
                    raise
                raise StoreError(f"PostgreSQL {self.path}: {_one_line(exc, self.url)}") from exc

    def _retrying(self, fn, *args):
        """Run a write transaction again when PostgreSQL chose it as a deadlock victim (two ingest
        processes upserting the same devices in another order): it rolled back whole."""
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                return fn(*args)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == _DEADLOCK_RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))

    def _q(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._live().execute(_pg(sql), args).fetchall()
            except psycopg.OperationalError as exc:
                raise StoreError(f"PostgreSQL {self.path}: {_one_line(exc, self.url)}") from exc

    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._live())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ---------- writes ----------

    def write_batch(self, batch: IngestBatch) -> BatchOutcome:
        def run() -> BatchOutcome:
            try:
                with self._tx() as cur:
                    outcome = self._insert_results(cur, batch.results, batch.ingest_ts, batch.seq_marks)
                    self._registry(cur, batch, outcome)
            except BaseException:
                self._staged = None  # the rollback may have undone the temporary table's creation
                self._rollup_open.clear()  # and the rows kept hold what was rolled back
                raise
            return outcome
        return self._retrying(run)

    def write_results(self, results: list[ResultRecord], ingest_ts: int) -> BatchOutcome:
        def run() -> BatchOutcome:
            try:
                with self._tx() as cur:
                    return self._insert_results(cur, results, ingest_ts)
            except BaseException:
                self._staged = None
                self._rollup_open.clear()
                raise
        return self._retrying(run)

    def write_registry(self, batch: IngestBatch, outcome: BatchOutcome) -> None:
        def run() -> None:
            with self._tx() as cur:
                self._registry(cur, batch, outcome)
        self._retrying(run)

    def _insert_results(self, cur: Any, results: list[ResultRecord], ingest_ts: int,
                        marks: list[tuple[str, str, int, int]] = ()) -> BatchOutcome:
        results, refused = rollup_sql.split_too_old(results, ingest_ts, self.retention_days())
        if results:
            # key order: two processes inserting overlapping batches take row locks in the same order
            # (the temporary table's heap scan gives the rows in COPY order)
            ordered = sorted(results, key=lambda r: (r.device, r.boot, r.seq))
            self._stage(cur)
            with cur.copy(_COPY_RESULTS) as cp:
                cp.set_types(_RESULT_TYPES)
                for r in ordered:
                    cp.write_row((*r[:7], int(r.anom), r.inf_us, ingest_ts, r.state, r.hi, r.cls, r.hi_thr, r.vrms,
                                  r.rpm, r.why, r.hint))
            got = cur.execute(_INSERT_STAGED, binary=True).fetchall()
            if len(got) == len(results):
                outcome = BatchOutcome(len(results), 0, list(results))
            else:
                fresh, new = set(got), []
                for r in results:  # batch order; a key twice in one batch is new once
                    k = (r.device, r.boot, r.seq)
                    if k in fresh:
                        fresh.discard(k)
                        new.append(r)
                outcome = BatchOutcome(len(new), len(results) - len(new), new)
            shadows = [(*r[:7], int(r.anom), r.inf_us, r.shadow_model, r.shadow_score, r.shadow_thr,
                        int(r.shadow_anom)) for r in outcome.new if r.shadow_model is not None]
            if shadows:
                cur.execute(_INSERT_SHADOWS, _columns(shadows))
            rollup_sql.write_locked(cur, outcome.new, open_rows=self._rollup_open)
        else:
            outcome = BatchOutcome(0, 0, [])
        if refused:
            outcome = BatchOutcome(outcome.stored, outcome.duplicates, outcome.new, refused)
        if self.account_loss:
            self._account(cur, outcome.new, ingest_ts, list(marks))
        return outcome

    def _stage(self, cur: Any) -> None:
        """The temporary table the batch is copied into, created once per connection (again after a rollback,
        which may have undone its creation, or a new connection)."""
        if self._staged is not cur.connection:
            cur.execute(_STAGE_RESULTS)
            self._staged = cur.connection

    def _account(self, cur: Any, new: list[ResultRecord], ingest_ts: int,
                 marks: list[tuple[str, str, int, int]]) -> None:
        """Loss accounting (store/loss.py) in the batch's transaction. The boots rows of the batch
        are created if missing and locked in key order, so processes sharing a device's messages
        take turns on its bookkeeping."""
        if not new and not marks:
            return
        span: dict[tuple[str, str], list[int]] = {}
        for d, b, seq, _ in marks:
            span[(d, b)] = [-2, seq, 0]
        for r in new:
            e = span.get((r.device, r.boot))
            if e is None:
                span[(r.device, r.boot)] = [r.seq, r.seq, 1]
            else:
                e[0], e[1], e[2] = min(e[0], r.seq), max(e[1], r.seq), e[2] + 1
        keys = sorted(span)
        boots: dict[tuple[str, str], BootState] = {}
        found = self._lock_boots(cur, keys, boots)
        if len(found) < len(keys):  # new boots: placeholder rows to lock (another process may insert
            # the same ones now: ON CONFLICT waits for it, then the second read sees its row)
            created = [k for k in keys if k not in found]
            cur.execute("INSERT INTO boots(device, boot, first_ts, last_ts, max_seq, received, dropped, jumps)"
                        " SELECT d, b, 0, 0, -1, 0, 0, 0 FROM unnest(%s::text[], %s::text[]) AS u(d, b)"
                        " ORDER BY d, b ON CONFLICT DO NOTHING", ([k[0] for k in created], [k[1] for k in created]))
            self._lock_boots(cur, created, boots)
        holes: dict[tuple[str, str], list[tuple[int, int]]] = {}
        odd = [k for k, (lo, hi, n) in span.items()
               if not (lo == (boots[k].max_seq if k in boots else -1) + 1 and hi - lo + 1 == n)]
        if odd:
            for d, b, lo, hi in cur.execute(
                    "SELECT device, boot, lo, hi FROM seq_gaps WHERE (device, boot) IN"
                    " (SELECT * FROM unnest(%s::text[], %s::text[])) ORDER BY device, boot, lo",
                    ([k[0] for k in odd], [k[1] for k in odd])).fetchall():
                holes.setdefault((d, b), []).append((lo, hi))
            for k in odd:
                holes.setdefault(k, [])
        upd = account(new, boots, holes, marks, dropped_at=ResultRecord._fields.index("dropped"))  # no tuple per result
        self._write_gaps(cur, upd.opened, upd.filled, ingest_ts)
        if upd.boots:
            rows = sorted((d, b, s.first_ts, s.last_ts, s.max_seq, s.received, s.dropped, s.jumps)
                          for (d, b), s in upd.boots.items())
            cur.execute("INSERT INTO boots AS t(device, boot, first_ts, last_ts, max_seq, received, dropped, jumps)"
                        " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[],"
                        " %s::bigint[], %s::bigint[], %s::bigint[]) ON CONFLICT(device, boot) DO UPDATE SET"
                        " first_ts = excluded.first_ts, last_ts = excluded.last_ts, max_seq = excluded.max_seq,"
                        " received = excluded.received, dropped = excluded.dropped, jumps = excluded.jumps",
                        _columns(rows))

    @staticmethod
    def _write_gaps(cur: Any, opened: list[tuple[str, str, int, int]],
                    filled: list[tuple[str, str, int, int, list[tuple[int, int]]]], ingest_ts: int) -> None:
        """The batch's hole changes in three statements, whatever their number: two ingest processes
        sharing a device's messages fill each other's holes in every batch (one statement per
        hole made that the slowest part). A filled hole's pieces keep the time it opened; a piece
        filled again in the same batch is folded here and never reaches the database."""
        gone: list[tuple[str, str, int]] = []  # rows in the table to delete
        pieces: dict[tuple[str, str, int], tuple[int, tuple]] = {}  # key -> (hi, the deleted row it came from)
        for d, b, lo, _hi, rest in filled:
            key = (d, b, lo)
            if key in pieces:  # a piece made earlier in this batch
                since = pieces.pop(key)[1]
            else:
                gone.append(key)
                since = key
            for plo, phi in rest:
                pieces[(d, b, plo)] = (phi, since)
        was: dict[tuple[str, str, int], int] = {}
        if gone:
            for d, b, lo, t in cur.execute(
                    "DELETE FROM seq_gaps WHERE (device, boot, lo) IN (SELECT * FROM unnest(%s::text[], %s::text[],"
                    " %s::bigint[])) RETURNING device, boot, lo, opened_ms", _columns(gone)).fetchall():
                was[(d, b, lo)] = t
        rows = [(d, b, lo, hi, ingest_ts) for d, b, lo, hi in opened]
        rows += [(d, b, lo, hi, was.get(since, ingest_ts)) for (d, b, lo), (hi, since) in pieces.items()]
        if rows:
            cur.execute("INSERT INTO seq_gaps(device, boot, lo, hi, opened_ms) SELECT * FROM unnest(%s::text[],"
                        " %s::text[], %s::bigint[], %s::bigint[], %s::bigint[])", _columns(sorted(rows)))

    @staticmethod
    def _lock_boots(cur: Any, keys: list[tuple[str, str]], boots: dict[tuple[str, str], BootState]) -> set:
        """Read and lock (in key order) the boots rows of `keys` that exist; a placeholder row (a boot
        being created, max_seq -1, nothing received) stays out of `boots`: account() starts it fresh."""
        found = set()
        for d, b, f, t, m, rcv, drp, j in cur.execute(
                "SELECT device, boot, first_ts, last_ts, max_seq, received, dropped, jumps FROM boots"
                " WHERE (device, boot) IN (SELECT * FROM unnest(%s::text[], %s::text[])) ORDER BY device, boot"
                " FOR UPDATE", ([k[0] for k in keys], [k[1] for k in keys])).fetchall():
            found.add((d, b))
            if not (m == -1 and rcv == 0 and f == 0 and drp == 0 and j == 0):
                boots[(d, b)] = BootState(m, rcv, drp, j, f, t)
        return found

    @staticmethod
    def _registry(cur: Any, batch: IngestBatch, outcome: BatchOutcome) -> None:
        per_dev, lag_sum, lag_n, lag_max = device_rollup(batch, outcome)
        if per_dev:
            rows = sorted((dev, *d) for dev, d in per_dev.items())
            cur.execute(
                "INSERT INTO devices AS t(device, first_seen, last_seen, results, last_score, model, thr)"
                " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::float8[],"
                " %s::bigint[], %s::float8[])"
                " ON CONFLICT(device) DO UPDATE SET results = t.results + excluded.results,"
                " first_seen = LEAST(t.first_seen, excluded.first_seen),"
                " last_score = CASE WHEN excluded.last_seen >= t.last_seen THEN excluded.last_score ELSE t.last_score END,"
                " model = CASE WHEN excluded.last_seen >= t.last_seen THEN excluded.model ELSE t.model END,"
                " thr = CASE WHEN excluded.last_seen >= t.last_seen THEN excluded.thr ELSE t.thr END,"
                " last_seen = GREATEST(t.last_seen, excluded.last_seen)", _columns(rows))
        for u in batch.devices:
            cur.execute("INSERT INTO devices AS t(device, first_seen, last_seen) VALUES (%s,%s,%s)"
                        " ON CONFLICT(device) DO UPDATE SET last_seen = GREATEST(t.last_seen, excluded.last_seen)",
                        (u.device, u.ts, u.ts))
            sets = device_update_columns(u)
            if sets:  # a status older than the one stored (a late last will) changes nothing
                cur.execute(f"UPDATE devices SET {', '.join(f'{k} = %s' for k in sets)}"
                            " WHERE device = %s AND status_ts <= %s", (*sets.values(), u.device, u.ts))
        if batch.events:
            cur.executemany("INSERT INTO events(device, ts, kind, body) VALUES (%s,%s,%s,%s)",
                            [(e.device, e.ts, e.kind, json.dumps(e.body, separators=(",", ":")))
                             for e in batch.events])
        if batch.rejects or outcome.refused:
            cur.executemany("INSERT INTO rejected(ts, topic, code, reason, payload, size) VALUES (%s,%s,%s,%s,%s,%s)",
                            [(r.ts, r.topic[:256], r.code, r.reason[:500], bytes(r.payload[:REJECT_EXCERPT]), r.size)
                             for r in [*batch.rejects, *outcome.refused]])
        stats = (batch.ingest_ts, batch.messages, outcome.stored, outcome.duplicates,
                 len(batch.rejects) + len(outcome.refused), lag_sum, lag_n, lag_max)
        cur.execute("INSERT INTO ingest_stats VALUES (%s,%s,%s,%s,%s,%s,%s,%s)", stats)
        cur.execute(_pg(rollup_sql.ingest_upsert(True)), stats)  # and its minute (rollup_sql.INGEST_1M)

    def apply_alarm_changes(self, changes: list[AlarmChange], health: list[DeviceHealth]) -> None:
        def run() -> None:
            with self._tx() as cur:
                if changes:  # journal ids in commit order (store/outbox.py): one alarm writer at a time
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (JOURNAL_LOCK,))

                def journal(*args, **detail) -> None:
                    cur.execute(_pg(JOURNAL_SQL), journal_row(*args, **detail))

                for c in changes:
                    if c.op == "raise":
                        last = cur.execute("SELECT id FROM alarms WHERE device = %s AND cleared_ts IS NOT NULL"
                                           " AND cleared_ts >= %s ORDER BY cleared_ts DESC LIMIT 1",
                                           (c.device, c.ts - ALARM_HOLD_OFF_MS)).fetchone()
                        active = cur.execute("SELECT 1 FROM alarms WHERE device = %s AND cleared_ts IS NULL",
                                             (c.device,)).fetchone()
                        if active is not None:
                            continue  # one active alarm per device: a second raise changes nothing
                        if last is not None:
                            cur.execute("UPDATE alarms SET cleared_ts = NULL, reopened = reopened + 1, severity = %s,"
                                        " peak_score = GREATEST(peak_score, %s), why = %s, hint = %s WHERE id = %s",
                                        (c.severity, c.peak_score, c.why, c.hint, last[0]))
                            journal(c.ts, "health", last[0], c.device, "reopened", c.severity)
                        else:
                            row = cur.execute("INSERT INTO alarms(device, raised_ts, severity, score, peak_score, thr,"
                                              " why, hint) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING"
                                              " RETURNING id", (c.device, c.ts, c.severity, c.score, c.peak_score,
                                                                c.thr, c.why, c.hint)).fetchone()
                            if row is not None:
                                journal(c.ts, "health", row[0], c.device, "raised", c.severity)
                    elif c.op == "update":
                        prev = cur.execute("SELECT id, severity FROM alarms WHERE device = %s AND cleared_ts IS NULL",
                                           (c.device,)).fetchone()
                        cur.execute("UPDATE alarms SET severity = %s, peak_score = GREATEST(peak_score, %s)"
                                    " WHERE device = %s AND cleared_ts IS NULL", (c.severity, c.peak_score, c.device))
                        if prev is not None and prev[1] != c.severity:
                            journal(c.ts, "health", prev[0], c.device, "severity", c.severity, previous=prev[1])
                    elif c.op == "clear":
                        prev = cur.execute("UPDATE alarms SET cleared_ts = %s, peak_score = GREATEST(peak_score, %s)"
                                           " WHERE device = %s AND cleared_ts IS NULL RETURNING id",
                                           (c.ts, c.peak_score, c.device)).fetchone()
                        if prev is not None:
                            journal(c.ts, "health", prev[0], c.device, "cleared", c.severity)
                    else:
                        raise ValueError(f"unknown alarm change {c.op!r}")
                if health:
                    cur.executemany(_pg(HEALTH_UPDATE_SQL),
                                    [health_row(h) for h in sorted(health, key=lambda h: h.device)])
        self._retrying(run)

    def set_device_meta(self, device: str, site: str | None = None, line: str | None = None,
                        tags: tuple[str, ...] | None = None) -> None:
        with self._tx() as cur:
            cur.execute("INSERT INTO devices(device, first_seen, last_seen) VALUES (%s, 0, 0) ON CONFLICT DO NOTHING",
                        (device,))
            if site is not None:
                cur.execute("UPDATE devices SET site = %s WHERE device = %s", (site, device))
            if line is not None:
                cur.execute("UPDATE devices SET line = %s WHERE device = %s", (line, device))
            if tags is not None:
                cur.execute("UPDATE devices SET tags = %s WHERE device = %s", (json.dumps(list(tags)), device))

    def ack_alarm(self, alarm_id: int, by: str, ts: int, note: str = "") -> bool:
        with self._tx() as cur:
            cur.execute("UPDATE alarms SET acked_ts = %s, acked_by = %s, note = %s WHERE id = %s AND acked_ts IS NULL",
                        (ts, by, note, alarm_id))
            return cur.rowcount == 1

    def track_loss(self, now_ms: int, window_ms: int = 3_600_000, min_missing: int = 5,
                   min_rate: float = 0.01) -> list[tuple[str, str]]:
        """SQLiteStore.track_loss on PostgreSQL (the same rule; see there)."""
        loss = self.loss(now_ms)["devices"]
        changes: list[tuple[str, str]] = []
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY + 1,))  # one sampler at a time
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (JOURNAL_LOCK,))  # journal ids in commit order
            if loss:
                cur.executemany("INSERT INTO loss_samples VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT(device, ts) DO UPDATE"
                                " SET received = excluded.received, missing = excluded.missing,"
                                " pending = excluded.pending, dropped = excluded.dropped",
                                [(now_ms, d, e["received"], e["missing"], e["pending_gaps"], e["dropped_on_node"])
                                 for d, e in loss.items()])
            active = {d for (d,) in cur.execute("SELECT device FROM loss_alarms WHERE cleared_ts IS NULL").fetchall()}
            for d in sorted(set(loss) | active):
                e = loss.get(d, {"received": 0, "missing": 0})
                old = cur.execute("SELECT received, missing FROM loss_samples WHERE device = %s AND ts <= %s"
                                  " ORDER BY ts DESC LIMIT 1", (d, now_ms - window_ms)).fetchone() or (0, 0)
                lost, sent = e["missing"] - old[1], (e["received"] - old[0]) + (e["missing"] - old[1])
                rate = lost / sent if sent > 0 else 0.0
                if d not in active and lost >= min_missing and rate >= min_rate:
                    (aid,) = cur.execute("INSERT INTO loss_alarms(device, raised_ts, missing, rate) VALUES (%s,%s,%s,%s)"
                                         " RETURNING id", (d, now_ms, lost, rate)).fetchone()
                    cur.execute(_pg(JOURNAL_SQL), journal_row(now_ms, "data-loss", aid, d, "raised", missing=lost,
                                                              rate=rate))
                    changes.append(("raise", d))
                elif d in active and lost <= 0:
                    for (aid,) in cur.execute("UPDATE loss_alarms SET cleared_ts = %s WHERE device = %s"
                                              " AND cleared_ts IS NULL RETURNING id", (now_ms, d)).fetchall():
                        cur.execute(_pg(JOURNAL_SQL), journal_row(now_ms, "data-loss", aid, d, "cleared"))
                    changes.append(("clear", d))
            cur.execute("DELETE FROM loss_samples WHERE ts < %s", (now_ms - 30 * 86_400_000,))
        return changes

    def set_machine_class(self, cls: str | None, *, device: str | None = None, site: str | None = None) -> None:
        """SQLiteStore.set_machine_class on PostgreSQL."""
        key, value = _class_setting(cls, device, site)
        with self._tx() as cur:
            if value is None:
                cur.execute("DELETE FROM settings WHERE key = %s", (key,))
            else:
                cur.execute("INSERT INTO settings VALUES (%s, %s) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                            (key, value))

    def set_bearing(self, device: str, geometry: dict | None) -> None:
        """SQLiteStore.set_bearing on PostgreSQL."""
        key, value = _bearing_setting(device, geometry)
        with self._tx() as cur:
            if value is None:
                cur.execute("DELETE FROM settings WHERE key = %s", (key,))
            else:
                cur.execute("INSERT INTO settings VALUES (%s, %s) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                            (key, value))

    # ---------- settings and retention ----------

    def set_retention_days(self, days: float) -> None:
        if not days > 0:
            raise StoreError(f"retention must be a positive number of days, got {days}")
        with self._tx() as cur:
            cur.execute("INSERT INTO settings VALUES ('retention_days', %s)"
                        " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (repr(float(days)),))

    def apply_retention(self, now_ms: int, budget: int | None = None) -> int:
        """SQLiteStore.apply_retention on PostgreSQL: small transactions, at most about `budget` rows."""
        return rollup_sql.prune(self._tx, _pg, now_ms, self.retention_days(), budget)

    def rebuild_rollups(self, since_ms: int | None = None) -> None:
        """SQLiteStore.rebuild_rollups on PostgreSQL."""
        with self._tx() as cur:
            if since_ms is None:
                (since_ms,) = cur.execute("SELECT coalesce(min(ts), 0) FROM results").fetchone()
                since_ms = -(-int(since_ms) // 3_600_000) * 3_600_000
            for sql, args in rollup_sql.backfill_statements(True, since_ms):
                cur.execute(_pg(sql), args)

    # ---------- reads that differ from SQLite's ----------

    def ingest_series(self, since_ms: int, bucket_s: int = 10) -> list[IngestBucket]:
        b = max(1, int(bucket_s * 1000))
        rows = self._q("SELECT (ts / ?::bigint) * ?::bigint AS t, sum(messages)::bigint, sum(results)::bigint,"
                       " sum(duplicates)::bigint, sum(rejected)::bigint, sum(lag_ms_sum)::bigint, sum(lag_n)::bigint,"
                       f" max(lag_ms_max) FROM {rollup_sql.ingest_table(b)} WHERE ts >= ? GROUP BY t ORDER BY t",
                       (b, b, since_ms))
        return [IngestBucket(t, m, r, d, j, (ls / ln) if ln else None, lm) for t, m, r, d, j, ls, ln, lm in rows]

    def counts(self) -> Counts:
        (dups, msgs), = self._q("SELECT coalesce(sum(duplicates), 0)::bigint, coalesce(sum(messages), 0)::bigint"
                                " FROM ingest_stats")
        alarms, active = self._q("SELECT count(*), count(*) - count(cleared_ts) FROM alarms")[0]
        return Counts(self.count_results(), self._q("SELECT count(*) FROM devices")[0][0], alarms, active,
                      self._q("SELECT count(*) FROM rejected")[0][0], dups, msgs,
                      self._q("SELECT count(*) FROM events")[0][0])


class CompatConnection:
    """A PostgreSQL connection shaped like the sqlite3 one `OtaRegistry` uses: `execute(sql with ?,
    args)` returning a cursor, `executemany`, autocommit; one statement at a time across threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn = connect(url)
        self._lock = threading.Lock()

    def _live(self) -> Any:
        if self._conn.closed or self._conn.broken:
            self._conn = connect(self.url, migrate_schema=False)
        return self._conn

    def execute(self, sql: str, args: tuple | list = ()) -> Any:
        with self._lock:
            try:
                return self._live().execute(_pg(sql), args)
            except psycopg.OperationalError as exc:
                raise StoreError(f"PostgreSQL {mask_url(self.url)}: {_one_line(exc, self.url)}") from exc

    def executemany(self, sql: str, rows: list) -> Any:
        with self._lock:
            cur = self._live().cursor()
            cur.executemany(_pg(sql), rows)
            return cur

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def connect_compat(url: str) -> CompatConnection:
    return CompatConnection(url)


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "CompatConnection", "PostgresStore", "connect", "connect_compat",
           "migrate", "schema_version"]
