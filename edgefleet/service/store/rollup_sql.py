"""Rollups and retention in SQL, one text for SQLite and PostgreSQL (`?` placeholders; PostgreSQL's store
translates them): the rollup tables, the upsert ingest runs in each batch's transaction, the backfill from raw
results, pruning in small batches, and the 'too old' rule that keeps the dedupe key honest.

Why refuse a result older than the raw horizon: the (device, boot, seq) key that rejects a redelivered
duplicate lives in the raw results table, and retention deletes it. A result older than the horizon could be
a duplicate whose key is gone; counting it again in the rollups would count it twice. So the store refuses
every result with ts < ingest time - retention as a reject (code `too_old`, reason in the rejects table),
and pruning deletes only rows older than its own now - retention: a key that was pruned always belongs to
a result the rule refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgefleet.protocol import ResultRecord
from edgefleet.service.rollups import (
    BINS_PER_DECADE,
    COLUMNS,
    HI_BIN,
    LO_BIN,
    SCORE_FLOOR,
    TABLES,
    WIDTHS,
    Agg,
    add_all,
    keep_ms,
)
from edgefleet.service.store.base import Reject

PRUNE_BATCH = 5_000  # rows per delete transaction: the ingest writer waits at most one such delete
TOO_OLD = "too_old"


def schema(pg: bool) -> str:
    """CREATE statements of the two rollup tables (SQLite: a script; PostgreSQL: split on ';')."""
    i, f = ("BIGINT", "DOUBLE PRECISION") if pg else ("INTEGER", "REAL")
    out = []
    for t in TABLES.values():
        out.append(f"CREATE TABLE IF NOT EXISTS {t}(device TEXT NOT NULL, bucket {i} NOT NULL, ts_max {i} NOT NULL,"
                   f" n {i} NOT NULL, anom {i} NOT NULL, judged {i} NOT NULL, s_min {f} NOT NULL, s_sum {f} NOT NULL,"
                   f" s_max {f} NOT NULL, hist TEXT NOT NULL, thr_max {f} NOT NULL, hi_max {f}, hi_thr_max {f},"
                   f" model {i} NOT NULL, v_n {i} NOT NULL, v_sum {f} NOT NULL, v_max {f}, r_n {i} NOT NULL,"
                   f" r_sum {f} NOT NULL, PRIMARY KEY(device, bucket)){'' if pg else ' WITHOUT ROWID'};\n"
                   f"CREATE INDEX IF NOT EXISTS {t}_bucket ON {t}(bucket);\n")
    out.append(f"CREATE TABLE IF NOT EXISTS {INGEST_1M}(ts {i} PRIMARY KEY, messages {i} NOT NULL, results {i} NOT NULL,"
               f" duplicates {i} NOT NULL, rejected {i} NOT NULL, lag_ms_sum {i} NOT NULL, lag_n {i} NOT NULL,"
               f" lag_ms_max {i});\n")
    return "".join(out)


# The System page's ingest statistics per minute (one row per batch in ingest_stats: 30 days are millions)
INGEST_1M = "ingest_stats_1m"
_INGEST_COLS = ("messages", "results", "duplicates", "rejected", "lag_ms_sum", "lag_n")


def ingest_upsert(pg: bool) -> str:
    """A batch's ingest_stats row (same values, `?`) added to its minute."""
    mx = "GREATEST(t.lag_ms_max, excluded.lag_ms_max)" if pg else \
        "max(coalesce(t.lag_ms_max, excluded.lag_ms_max), coalesce(excluded.lag_ms_max, t.lag_ms_max))"
    sets = ", ".join(f"{c} = t.{c} + excluded.{c}" for c in _INGEST_COLS)
    return (f"INSERT INTO {INGEST_1M} AS t VALUES (? / 60000 * 60000, ?, ?, ?, ?, ?, ?, ?)"
            f" ON CONFLICT(ts) DO UPDATE SET {sets}, lag_ms_max = {mx}")


def ingest_backfill_sql() -> str:
    """The minutes of the ingest_stats rows kept (the migration step; buckets already there are left alone)."""
    return (f"INSERT INTO {INGEST_1M} SELECT ts / 60000 * 60000 AS k, {', '.join(f'sum({c})' for c in _INGEST_COLS)},"
            " max(lag_ms_max) FROM ingest_stats WHERE true GROUP BY k ORDER BY k ON CONFLICT(ts) DO NOTHING")


def ingest_table(bucket_ms: int) -> str:
    """Where ingest_series reads buckets of `bucket_ms`: whole minutes from the minute table."""
    return INGEST_1M if bucket_ms % 60_000 == 0 else "ingest_stats"


_PG_TYPES = ("text", "bigint", "bigint", "bigint", "bigint", "bigint", "float8", "float8", "float8", "text", "float8",
             "float8", "float8", "bigint", "bigint", "float8", "float8", "bigint", "float8")  # COLUMNS


_BIG = tuple(i for i, t in enumerate(_PG_TYPES) if t == "bigint")
_STAGE_ROLLUPS = ("CREATE TEMP TABLE IF NOT EXISTS rollup_in(w bigint, " + ", ".join(
    f"{c} {t}" for c, t in zip(COLUMNS, _PG_TYPES)) + ") ON COMMIT DELETE ROWS")
OPEN_ROWS_MAX = 50_000  # rows a writer keeps in memory (about 25 MB); more: it starts again empty


def write_locked(cur: Any, new: list[ResultRecord], add: Callable = add_all,
                 open_rows: dict[tuple[int, str, int], Agg] | None = None) -> None:
    """PostgreSQL, any number of writers: the rows the batch touches are locked (`FOR UPDATE`, in key order),
    those missing created empty and locked, merged with the batch in Python and written back, in the batch's
    transaction: one lock per width (two more when a new minute or hour starts), then a binary COPY of the rows
    and one UPDATE per width. (A merging upsert with a jsonb function per row cost ingest 3/4 of its rate:
    benchmarks/rollup_ingest.py.)

    `open_rows` (the store's, kept between batches) spares reading and parsing the histograms back: a locked
    row whose count and score sum are those of the row kept in memory is that row (a row only grows, and
    anything another writer added changes its count), so the lock returns its histogram only when they
    differ. A batch that rolls back leaves rows in memory that the next lock finds different."""
    if not new:
        return
    cache = {} if open_rows is None else open_rows
    if len(cache) > OPEN_ROWS_MAX:
        cache.clear()
    cols = ", ".join(COLUMNS)
    sel = ", ".join("CASE WHEN t.n = k.n AND t.s_sum = k.s THEN NULL ELSE t.hist END" if c == "hist" else f"t.{c}"
                    for c in COLUMNS)

    def lock(w: int, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Agg]:
        kept = [cache.get((w, d, b)) for d, b in keys]
        rows = cur.execute(f"SELECT {sel}, t.n = k.n AND t.s_sum = k.s FROM {TABLES[w]} AS t JOIN unnest(%b::text[],"
                           " %b::bigint[], %b::bigint[], %b::float8[]) AS k(d, b, n, s) ON t.device = k.d AND"
                           " t.bucket = k.b ORDER BY t.device, t.bucket FOR UPDATE OF t",
                           ([k[0] for k in keys], [k[1] for k in keys], [-1 if a is None else a.n for a in kept],
                            [0.0 if a is None else float(a.s_sum) for a in kept]), binary=True).fetchall()
        got = {}
        for r in rows:
            key = (w, r[0], r[1])
            a = cache[key] if r[-1] else Agg.from_row(r)
            cache[key] = got[(r[0], r[1])] = a
        return got

    def load(w: int, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Agg]:
        got = lock(w, keys)  # usually all of them: only a new minute or hour has none yet
        missing = [k for k in keys if k not in got]
        if missing:  # empty rows to lock (another writer creating the same: ON CONFLICT waits for it)
            cur.execute(f"INSERT INTO {TABLES[w]}({cols}) SELECT d, b, 0, 0, 0, 0, 'Infinity', 0, '-Infinity', '{{}}',"
                        " '-Infinity', NULL, NULL, 0, 0, 0, NULL, 0, 0 FROM unnest(%b::text[], %b::bigint[]) AS u(d, b)"
                        " ORDER BY d, b ON CONFLICT DO NOTHING", ([k[0] for k in missing], [k[1] for k in missing]))
            got.update(lock(w, missing))
        for d, b in missing:  # the stored empty row (Agg(0) for it too, should it be gone again)
            cache[(w, d, b)] = got.setdefault((d, b), Agg(0))
        return got
    touched = add({}, new, load)  # add_all; rollups.add_all_summaries for node summaries. All keys locked each batch
    # written back by binary COPY into a temporary table (psycopg dumps array parameters element by element in
    # Python, text ones with a regular expression each), then one UPDATE per width
    cur.execute(_STAGE_ROLLUPS)
    with cur.copy(f"COPY rollup_in(w, {cols}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["bigint", *_PG_TYPES])
        for w, r in touched:
            v = [w, *r]
            for i in _BIG:  # an integer column takes only ints (a float8 one takes both)
                if v[i + 1] is not None:
                    v[i + 1] = int(v[i + 1])
            cp.write_row(v)
    sets = ", ".join(f"{c} = u.{c}" for c in COLUMNS[2:])
    cur.execute("; ".join(f"UPDATE {TABLES[w]} AS t SET {sets} FROM rollup_in AS u WHERE u.w = {int(w)} AND"
                          " t.device = u.device AND t.bucket = u.bucket" for w in WIDTHS))  # one round trip


def write_kept(db: Any, open_rows: dict[tuple[int, str, int], Agg], new: list[ResultRecord],
               add: Callable = add_all) -> None:
    """SQLite, one writer: add a batch's new results to the rows `open_rows` keeps in memory (loading the
    ones it does not from the tables) and write the touched rows whole, in the batch's transaction. No
    histogram is parsed or merged in SQL per row: the merging upsert (`write`) cost ingest 4/5 of its
    rate on SQLite (benchmarks/rollup_ingest.py). The caller drops `open_rows` when the transaction rolls back
    or another connection wrote the file (PRAGMA data_version), as the loss bookkeeping does."""
    if not new:
        return
    cols = ", ".join(COLUMNS)

    def load(w: int, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Agg]:
        # per bucket, `device IN (...) AND bucket = ?`: the primary key's lookups. A row-value IN over a VALUES
        # list was planned as a scan: 0.27 s a query on 3 M rows
        per: dict[int, list[str]] = {}
        for d, b in keys:
            per.setdefault(b, []).append(d)
        got: dict[tuple[str, int], Agg] = {}
        for b, devs in per.items():
            for i in range(0, len(devs), 500):  # SQLite's bound-variable limit
                part = devs[i:i + 500]
                rows = db.execute(f"SELECT {cols} FROM {TABLES[w]} WHERE device IN ({','.join('?' * len(part))})"
                                  " AND bucket = ?", [*part, b]).fetchall()
                got.update({(r[0], r[1]): Agg.from_row(r) for r in rows})
        return got
    touched = add(open_rows, new, load)  # add_all; rollups.add_all_summaries for node summaries
    sets = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
    for w in WIDTHS:
        db.executemany(f"INSERT INTO {TABLES[w]}({cols}) VALUES ({', '.join('?' * len(COLUMNS))})"
                       f" ON CONFLICT(device, bucket) DO UPDATE SET {sets}", [r for k, r in touched if k == w])


def backfill_sql(table: str, width_ms: int, pg: bool, since: str = "?") -> str:
    """Rollups of the raw results with ts >= `since` (a placeholder, or a literal in a migration step) into
    `table`, in one statement: the same bins as rollups.score_bin, computed by the database. Buckets already
    there are left alone, so a migration step run again counts nothing twice."""
    w = int(width_ms)
    if pg:
        b = (f"LEAST(GREATEST(floor(log(GREATEST(score, {SCORE_FLOOR})) * {BINS_PER_DECADE})::bigint, {LO_BIN}),"
             f" {HI_BIN})")
        obj = "jsonb_object_agg(bin, c)::text"
    else:
        b = (f"min(max(CAST(floor(log10(max(score, {SCORE_FLOOR})) * {BINS_PER_DECADE}) AS INTEGER), {LO_BIN}),"
             f" {HI_BIN})")
        obj = "json_group_object(bin, c)"
    return (f"INSERT INTO {table}({', '.join(COLUMNS)}) SELECT device, k, max(tsm), sum(c), sum(a), sum(j), min(mn),"
            f" sum(sm), max(mx), {obj}, max(th), max(hi), max(hit), max(mo), sum(vn), sum(vs), max(vm), sum(rn),"
            f" sum(rs) FROM (SELECT device, (ts / {w}) * {w} AS k, {b} AS bin, max(ts) AS tsm, count(*) AS c,"
            " sum(anom) AS a, sum(CASE WHEN state = '' THEN 1 ELSE 0 END) AS j, min(score) AS mn, sum(score) AS sm,"
            " max(score) AS mx, max(thr) AS th, max(hi) AS hi, max(hi_thr) AS hit, max(model) AS mo,"
            " count(vrms) AS vn, coalesce(sum(vrms), 0) AS vs, max(vrms) AS vm, count(rpm) AS rn,"
            f" coalesce(sum(rpm), 0) AS rs FROM results WHERE ts >= {since} GROUP BY device, k, bin) AS g"
            " WHERE true GROUP BY device, k ORDER BY device, k ON CONFLICT(device, bucket) DO NOTHING")


def migration(pg: bool) -> list[str]:
    """The schema step that adds rollups to an existing store: the tables, both rollups of every raw result
    kept, and the ingest statistics' minutes."""
    steps = [s.strip() for s in schema(pg).split(";") if s.strip()]
    return steps + [backfill_sql(TABLES[w], w, pg, since=str(-(2**62))) for w in WIDTHS] + [ingest_backfill_sql()]


def backfill_statements(pg: bool, since_ms: int = -(2**62)) -> list[tuple[str, tuple]]:
    """(sql, args) that rebuild both rollups from the raw results with ts >= since_ms (aligned down to each
    width), after deleting the rows they replace."""
    out = []
    for w in WIDTHS:
        lo = since_ms // w * w if since_ms > -(2**62) else since_ms
        out.append((f"DELETE FROM {TABLES[w]} WHERE bucket >= ?", (lo,)))
        out.append((backfill_sql(TABLES[w], w, pg), (lo,)))
    return out


def split_too_old(results: list[ResultRecord], ingest_ts: int, raw_days: float
                  ) -> tuple[list[ResultRecord], list[Reject]]:
    """The results inside the raw horizon, and a reject for each one older (see the module's docstring)."""
    horizon = ingest_ts - int(raw_days * 86_400_000)
    if not results or min(r.ts for r in results) >= horizon:
        return results, []
    kept, refused = [], []
    for r in results:
        if r.ts >= horizon:
            kept.append(r)
        else:
            refused.append(Reject(ingest_ts, f"ef/v1/{r.device}/result", TOO_OLD,
                                  f"result {r.device}/{r.boot}/{r.seq} at ts {r.ts} is older than the raw-result "
                                  f"horizon ({raw_days:g} days): its duplicate check is gone, so it is not stored "
                                  "or counted", f"{r.device}/{r.boot}/{r.seq}".encode()[:256], 0))
    return kept, refused


# retention: (table, key columns for a batched delete or None for one statement, time column)
RAW_TABLES = (("results", "device, boot, seq", "ts"), ("shadow_results", "device, boot, seq", "ts"),
              ("events", "id", "ts"), ("rejected", "id", "ts"), ("ingest_stats", None, "ts"))


def prune_plan(now_ms: int, raw_days: float) -> list[tuple[str, str | None, str, int]]:
    """(table, key, time column, cutoff ms) of everything retention deletes: raw telemetry after
    `raw_days`, rollups after rollups.keep_ms."""
    raw_cut = int(now_ms - raw_days * 86_400_000)
    plan = [(t, k, c, raw_cut) for t, k, c in RAW_TABLES]
    plan += [(TABLES[w], "device, bucket", "bucket", now_ms - keep_ms(w, raw_days)) for w in WIDTHS]
    plan.append((INGEST_1M, None, "ts", now_ms - keep_ms(WIDTHS[0], raw_days)))
    return plan


def delete_sql(table: str, key: str | None, col: str) -> str:
    """One bounded delete (`?` = cutoff, limit), or the whole table's old rows when it has no key."""
    if key is None:
        return f"DELETE FROM {table} WHERE {col} < ?"
    keys = f"({key})" if "," in key else key
    return f"DELETE FROM {table} WHERE {keys} IN (SELECT {key} FROM {table} WHERE {col} < ? LIMIT ?)"


def rollup_select(table: str) -> str:
    return (f"SELECT {', '.join(COLUMNS)} FROM {table} WHERE device = ? AND bucket >= ? AND bucket <= ?"
            " ORDER BY bucket")



def prune(tx: Callable[[], Any], q: Callable[[str], str], now_ms: int, raw_days: float,
          budget: int | None = None) -> int:
    """Retention in small transactions of at most PRUNE_BATCH rows each (`tx()` opens one and yields
    something with `.execute(sql, args).rowcount`; `q` translates the `?` placeholders): raw telemetry
    older than `raw_days`, rollups older than rollups.keep_ms, cleared alarms older than the raw horizon.
    Stops once `budget` rows are gone (None: when nothing old is left); returns the rows deleted, so a
    caller that gets `budget` back knows there may be more."""
    n = 0
    for table, key, col, cutoff in prune_plan(now_ms, raw_days):
        sql = q(delete_sql(table, key, col))
        while budget is None or n < budget:
            with tx() as cur:
                got = cur.execute(sql, (cutoff,) if key is None else (cutoff, PRUNE_BATCH)).rowcount
            n += max(got, 0)
            if key is None or got < PRUNE_BATCH:
                break
    if budget is None or n < budget:
        with tx() as cur:
            n += max(0, cur.execute(q("DELETE FROM alarms WHERE cleared_ts IS NOT NULL AND cleared_ts < ?"),
                                    (int(now_ms - raw_days * 86_400_000),)).rowcount)
    return n


__all__ = ["INGEST_1M", "PRUNE_BATCH", "TOO_OLD", "backfill_sql", "backfill_statements", "delete_sql",
           "ingest_backfill_sql", "ingest_table", "ingest_upsert", "migration", "prune", "prune_plan", "rollup_select",
           "schema", "split_too_old", "write_kept", "write_locked"]
