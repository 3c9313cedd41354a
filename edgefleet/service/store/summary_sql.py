"""Node summaries in the store (docs/protocol.md "summary", docs/store.md "Node summaries"), for SQLite and
PostgreSQL alike, beside the store classes rather than in them.

- `summaries` keeps each summary once, keyed (device, boot, seq) like a result: a redelivered copy is a counted
  duplicate, not a second count in the rollups.
- The new ones are folded into the 1-minute and 1-hour rollups (rollups.add_all_summaries) in the same commit,
  so a summary-only node's charts read like any other node's.
- A summary older than the raw horizon is refused (`too_old`), as a result is: its duplicate check may be gone.
- Loss: seq counts summaries per boot from 0, so a hole in it is a lost summary (`summary_loss`).

Each write is its own transaction, after the batch's: ingest acknowledges only after both, and both are
idempotent by key, so a crash between them (a redelivery) stores nothing twice. The table is created where
missing (CREATE TABLE IF NOT EXISTS) the first time a store object touches it, not by a schema migration
step: other work changes the migrations at the time this was written; fold it into the next step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edgefleet.protocol import ResultRecord, SummaryRecord
from edgefleet.service.rollups import add_all_summaries
from edgefleet.service.store import rollup_sql
from edgefleet.service.store.base import Reject
from edgefleet.service.store.sql_text import to_pg

TABLE = "summaries"
_COLS = ("device", "boot", "seq", "ts", "period", "model", "thr", "dropped", "n", "anom", "s_min", "s_mean", "s_p95",
         "s_max", "vrms", "vrms_max")
_LOCK_KEY = 0x6566_7375_6D6D_6172  # pg_advisory_xact_lock while creating the table ("efsummar")


def ddl(pg: bool) -> list[str]:
    i, f = ("BIGINT", "DOUBLE PRECISION") if pg else ("INTEGER", "REAL")
    return [f"CREATE TABLE IF NOT EXISTS {TABLE}(device TEXT NOT NULL, boot TEXT NOT NULL, seq {i} NOT NULL,"
            f" ts {i} NOT NULL, period {i} NOT NULL, model {i} NOT NULL, thr {f} NOT NULL, dropped {i} NOT NULL,"
            f" n {i} NOT NULL, anom {i} NOT NULL, s_min {f} NOT NULL, s_mean {f} NOT NULL, s_p95 {f} NOT NULL,"
            f" s_max {f} NOT NULL, vrms {f}, vrms_max {f}, ingest_ts {i} NOT NULL,"
            " PRIMARY KEY(device, boot, seq))",
            f"CREATE INDEX IF NOT EXISTS {TABLE}_device_ts ON {TABLE}(device, ts)",
            f"CREATE INDEX IF NOT EXISTS {TABLE}_ts ON {TABLE}(ts)"]


@dataclass(frozen=True)
class SummaryOutcome:
    stored: int = 0
    duplicates: int = 0
    new: list[SummaryRecord] = field(default_factory=list)


def _is_pg(store: Any) -> bool:
    return type(store).__name__ == "PostgresStore" or hasattr(store, "url") and not hasattr(store, "_db")


def _q(store: Any):
    if _is_pg(store):
        return to_pg
    return str


def _ensure(store: Any, cur: Any) -> None:
    if getattr(store, "_ef_summaries_ready", False):
        return
    pg = _is_pg(store)
    if pg:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    for sql in ddl(pg):
        cur.execute(sql)
    store._ef_summaries_ready = True


def ensure_table(store: Any) -> None:
    """Create the table where it is missing (readers call this; writers do it in their transaction)."""
    if not getattr(store, "_ef_summaries_ready", False):
        with store._tx() as cur:
            _ensure(store, cur)


def split_too_old(summaries: list[SummaryRecord], ingest_ts: int, raw_days: float
                  ) -> tuple[list[SummaryRecord], list[Reject]]:
    """The summaries inside the raw horizon, and a `too_old` reject for each one older (rollup_sql's rule)."""
    horizon = ingest_ts - int(raw_days * 86_400_000)
    kept, refused = [], []
    for s in summaries:
        if s.ts >= horizon:
            kept.append(s)
        else:
            key = f"{s.device}/{s.boot}/{s.seq}"
            refused.append(Reject(ingest_ts, f"ef/v1/{s.device}/summary", rollup_sql.TOO_OLD,
                                  f"summary {key} at ts {s.ts} is older than the raw-result horizon ({raw_days:g} "
                                  "days): its duplicate check is gone, so it is not stored or counted",
                                  key.encode()[:256], 0))
    return kept, refused


def _row(s: SummaryRecord, ingest_ts: int) -> tuple:
    return (s.device, s.boot, s.seq, s.ts, s.period, s.model, s.thr, s.dropped, s.n, s.anom, s.min, s.mean, s.p95,
            s.max, s.vrms, s.vrms_max, ingest_ts)


def write_summaries(store: Any, summaries: Iterable[SummaryRecord], ingest_ts: int) -> SummaryOutcome:
    """Store the summaries not seen before and fold them into both rollups, in one transaction. Call it with
    summaries inside the raw horizon (split_too_old) and in batch order."""
    items = list(summaries)
    if not items:
        return SummaryOutcome()
    pg = _is_pg(store)
    q = _q(store)
    sql = q(f"INSERT INTO {TABLE}({', '.join(_COLS)}, ingest_ts) VALUES ({', '.join('?' * (len(_COLS) + 1))})"
            " ON CONFLICT DO NOTHING")
    with store._tx() as cur:
        _ensure(store, cur)
        new = [s for s in items if cur.execute(sql, _row(s, ingest_ts)).rowcount == 1]
        if new:
            _registry(cur, new, pg)
            if pg:
                rollup_sql.write_locked(cur, new, add=add_all_summaries)
            else:
                # the rows the store keeps in memory for its result batches would be stale after this write
                kept = getattr(store, "_rollup_open", None)
                if kept is not None:
                    kept.clear()
                rollup_sql.write_kept(cur, {}, new, add=add_all_summaries)
    return SummaryOutcome(len(new), len(items) - len(new), new)


REPORT_KEY = "report/device/"  # settings key prefix: a device's summary period, seconds


def _registry(cur: Any, new: list[SummaryRecord], pg: bool) -> None:
    """The device registry, as a result batch updates it: last seen (the period's end), windows counted in
    `results`, the newest summary's p95 as the last score (what the tracker scores), its model and threshold."""
    per: dict[str, list] = {}
    for s in new:
        d = per.get(s.device)
        if d is None:
            per[s.device] = [s.ts, s.ts, s.n, s.p95, s.model, s.thr]
        else:
            d[0], d[2] = min(d[0], s.ts), d[2] + s.n
            if s.ts >= d[1]:
                d[1], d[3], d[4], d[5] = s.ts, s.p95, s.model, s.thr
    lo, hi, ph = ("LEAST", "GREATEST", "%s") if pg else ("min", "max", "?")
    cur.executemany(
        f"INSERT INTO devices AS t(device, first_seen, last_seen, results, last_score, model, thr) VALUES"
        f" ({', '.join([ph] * 7)}) ON CONFLICT(device) DO UPDATE SET results = t.results + excluded.results,"
        f" first_seen = {lo}(t.first_seen, excluded.first_seen),"
        " last_score = CASE WHEN excluded.last_seen >= t.last_seen THEN excluded.last_score ELSE t.last_score END,"
        " model = CASE WHEN excluded.last_seen >= t.last_seen THEN excluded.model ELSE t.model END,"
        " thr = CASE WHEN excluded.last_seen >= t.last_seen THEN excluded.thr ELSE t.thr END,"
        f" last_seen = {hi}(t.last_seen, excluded.last_seen)",
        [(dev, *per[dev]) for dev in sorted(per)])  # in key order, as other writers lock rows (no deadlock)
    # how often each device reports: a node summarizing every 5 minutes is not stale after 2 (store.devices)
    period = {s.device: s.period for s in sorted(new, key=lambda s: s.ts)}
    cur.executemany(f"INSERT INTO settings(key, value) VALUES ({ph}, {ph}) ON CONFLICT(key) DO UPDATE"
                    " SET value = excluded.value",
                    [(f"{REPORT_KEY}{dev}", str(period[dev] / 1000.0)) for dev in sorted(period)])


def _record(device: str, r: tuple) -> SummaryRecord:
    return SummaryRecord(device, r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), float(r[5]), int(r[6]), int(r[7]),
                         int(r[8]), float(r[9]), float(r[10]), float(r[11]), float(r[12]), r[13], r[14])


def summaries(store: Any, device: str, since_ms: int | None = None, until_ms: int | None = None,
              limit: int = 10_000) -> list[SummaryRecord]:
    """A device's stored summaries in time order (the newest `limit` of the range)."""
    ensure_table(store)
    rows = store._q(f"SELECT {', '.join(_COLS[1:])} FROM {TABLE} WHERE device = ? AND ts >= ? AND ts <= ?"
                    " ORDER BY ts DESC, seq DESC LIMIT ?",
                    (device, -(2**62) if since_ms is None else since_ms, 2**62 if until_ms is None else until_ms,
                     limit))
    return [_record(device, r) for r in reversed(rows)]


def as_result(s: SummaryRecord) -> ResultRecord:
    """What the alarm tracker sees of a summary: one point at the period's end scoring its p95, anomalous when
    the p95 is above the threshold (more than 5 % of the period's windows were). The p95, not the max: one
    spike among 300 windows is not a raise; a period mostly above the threshold is (docs/store.md)."""
    return ResultRecord(s.device, s.boot, s.seq, s.ts, s.model, s.p95, s.thr, s.p95 > s.thr, 0,
                        vrms=s.vrms)


def summary_loss(store: Any, device: str | None = None) -> dict[str, Any]:
    """Summaries that never arrived, from the holes in each boot's seq (0..max seq): per device and in total,
    beside what nodes reported dropping from their own ring. (A lost tail after a boot's last stored summary
    is not seen; results have status `res_seq` for that, summaries not yet.)"""
    ensure_table(store)
    where, args = ("WHERE device = ?", (device,)) if device else ("", ())
    per: dict[str, dict[str, int]] = {}
    for d, _boot, mx, cnt, drp, windows in store._q(
            f"SELECT device, boot, max(seq), count(*), max(dropped), sum(n) FROM {TABLE} {where}"
            " GROUP BY device, boot", args):
        e = per.setdefault(d, {"received": 0, "missing": 0, "dropped_on_node": 0, "windows": 0})
        e["received"] += int(cnt)
        e["missing"] += max(int(mx) + 1 - int(cnt) - int(drp), 0)
        e["dropped_on_node"] += int(drp)
        e["windows"] += int(windows)
    total = {k: sum(e[k] for e in per.values()) for k in ("received", "missing", "dropped_on_node", "windows")}
    return {**total, "devices": per}


def prune(store: Any, now_ms: int, raw_days: float) -> int:
    """Summaries older than the raw horizon (their rollups stay): what retention does to raw results."""
    ensure_table(store)
    with store._tx() as cur:
        return max(0, cur.execute(_q(store)(f"DELETE FROM {TABLE} WHERE ts < ?"),
                                  (int(now_ms - raw_days * 86_400_000),)).rowcount)


__all__ = ["TABLE", "SummaryOutcome", "as_result", "ddl", "ensure_table", "prune", "split_too_old", "summaries",
           "summary_loss", "write_summaries"]
