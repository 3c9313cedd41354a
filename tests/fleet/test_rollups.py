"""History at every scale (issue 18 item 4): per-device 1-minute and 1-hour rollups kept by ingest in the batch's
transaction, on SQLite and PostgreSQL alike; duplicates and failed batches never count twice; retention in small
batches; results older than the raw horizon refused as too_old; the dashboard's choice of resolution."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dashboards.loaders import timeseries
from dashboards.loaders.timerange import RAW, resolution, resolution_label
from edgefleet.protocol import ResultRecord
from edgefleet.service import rollups
from edgefleet.service.rollups import HOUR_MS, MINUTE_MS, P95_REL_ERROR
from edgefleet.service.store import IngestBatch, SQLiteStore, Store, rollup_sql

T0 = 1_767_225_600_000  # 2026-01-01, on an hour
DAY = 86_400_000


def _postgres(request) -> Store:
    from edgefleet.service.store.postgres import PostgresStore

    return PostgresStore(request.getfixturevalue("pg_server").create_db())


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path) -> Iterator[Store]:
    s = SQLiteStore(tmp_path / "store.db") if request.param == "sqlite" else _postgres(request)
    yield s
    s.close()


def results(device: str = "d1", n: int = 600, t0: int = T0, step_ms: int = 1000, seed: int = 1,
            boot: str = "0000000a") -> list[ResultRecord]:
    """Scores spread over three decades, some anomalous, vrms on two in three, a commissioning stretch."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        score = 10 ** rng.uniform(-3, 0)
        out.append(ResultRecord(device, boot, i, t0 + i * step_ms, 2, score, 0.3, score > 0.3, 400,
                                state="commissioning" if i < 30 else "", hi=rng.uniform(0, 4), hi_thr=3.0,
                                vrms=None if i % 3 == 0 else 1.0 + (i % 7) / 10, rpm=1480.0 + i % 5))
    return out


def write(store: Store, recs: list[ResultRecord], ingest_ts: int | None = None, size: int = 97) -> None:
    for k in range(0, len(recs), size):
        part = recs[k:k + size]
        store.write_batch(IngestBatch(ingest_ts or max(r.ts for r in part) + 50, len(part), part))


def expected(recs: list[ResultRecord], width: int) -> dict[int, dict]:
    per: dict[int, list[ResultRecord]] = {}
    for r in recs:
        per.setdefault(r.ts // width * width, []).append(r)
    out = {}
    for b, rs in per.items():
        s = np.array([r.score for r in rs])
        v = [r.vrms for r in rs if r.vrms is not None]
        out[b] = {"n": len(rs), "anom": sum(r.anom for r in rs), "judged": sum(r.state == "" for r in rs),
                  "min": s.min(), "mean": s.mean(), "max": s.max(), "p95": np.sort(s)[math.ceil(0.95 * len(s)) - 1],
                  "vrms": sum(v) / len(v) if v else None, "vmax": max(v) if v else None,
                  "ts_max": max(r.ts for r in rs)}
    return out


def check(store: Store, recs: list[ResultRecord], device: str = "d1") -> None:
    """The stored rollups of both widths are exactly the results' figures (p95 within the histogram's error)."""
    for width in (MINUTE_MS, HOUR_MS):
        want = expected(recs, width)
        rows = store.rollup_rows(device, width, 0, 2**62)
        assert [r[1] for r in rows] == sorted(want)
        for row, (b, e) in zip(rows, sorted(want.items())):
            c = dict(zip(rollups.COLUMNS, row))
            assert (c["n"], c["anom"], c["judged"], c["ts_max"]) == (e["n"], e["anom"], e["judged"], e["ts_max"])
            assert c["s_min"] == pytest.approx(e["min"]) and c["s_max"] == pytest.approx(e["max"])
            assert c["s_sum"] / c["n"] == pytest.approx(e["mean"])
            assert (c["v_sum"] / c["v_n"] if c["v_n"] else None) == pytest.approx(e["vrms"])
            assert c["v_max"] == pytest.approx(e["vmax"])
            p95 = rollups.quantile(rollups.hist_parse(c["hist"]), 0.95, c["s_min"], c["s_max"])
            assert abs(p95 / e["p95"] - 1) <= P95_REL_ERROR + 1e-9


def test_rollups_follow_ingest_and_ignore_redelivered_duplicates(store: Store) -> None:
    recs = results(n=900, step_ms=5000)  # 75 minutes: two hours, 75 minutes
    write(store, recs)
    write(store, recs[100:400], size=50)  # a redelivery: rejected by the key, so never counted again
    dup = store.write_batch(IngestBatch(T0 + 10 * DAY, 3, [recs[5], recs[5], recs[6]]))  # twice in one batch too
    assert (dup.stored, dup.duplicates) == (0, 3)
    check(store, recs)
    assert sum(r[3] for r in store.rollup_rows("d1", HOUR_MS, 0, 2**62)) == 900
    assert store.rollup_rows("d1", MINUTE_MS, T0 + 60_000, T0 + 120_000)[0][1] == T0 + 60_000  # range read
    assert store.rollup_rows("other", MINUTE_MS, 0, 2**62) == []


def test_a_batch_that_fails_counts_nothing_and_its_retry_counts_once(store: Store, monkeypatch) -> None:
    recs = results(n=120)
    write(store, recs[:60])
    real = store._registry

    def crash(*args, **kwargs):  # the commit never happens: results and rollups of the batch roll back
        raise RuntimeError("power cut")
    monkeypatch.setattr(store, "_registry", crash)
    with pytest.raises(RuntimeError):
        store.write_batch(IngestBatch(T0 + 200_000, 60, recs[60:]))
    assert sum(r[3] for r in store.rollup_rows("d1", MINUTE_MS, 0, 2**62)) == 60
    monkeypatch.setattr(store, "_registry", real)
    write(store, recs[60:])  # the broker redelivers the unacknowledged batch
    check(store, recs)


def test_results_older_than_the_raw_horizon_are_refused_as_too_old(store: Store) -> None:
    store.set_retention_days(2)
    now = T0 + 10 * DAY
    fresh = results(n=5, t0=now - 60_000)
    old = results(n=3, t0=now - 3 * DAY, boot="0000000b")
    out = store.write_batch(IngestBatch(now, 8, fresh + old))
    assert (out.stored, out.duplicates) == (5, 0)
    assert [r.code for r in out.refused] == ["too_old"] * 3
    codes = [r.code for r in store.rejects(limit=10)]
    assert codes.count("too_old") == 3 and "older than the raw-result horizon (2 days)" in store.rejects(1)[0].reason
    assert store.count_results() == 5
    assert sum(r[3] for r in store.rollup_rows("d1", HOUR_MS, 0, 2**62)) == 5  # rollups never saw them
    assert sum(b.rejected for b in store.ingest_series(now - 60_000, bucket_s=60)) == 3


def test_retention_prunes_in_small_batches_and_keeps_rollups(store: Store, monkeypatch) -> None:
    monkeypatch.setattr(rollup_sql, "PRUNE_BATCH", 7)
    store.set_retention_days(1)
    old = results(n=50, t0=T0, step_ms=60_000)  # 50 minutes, a day before "now"
    write(store, old)
    now = T0 + 2 * DAY
    new = results(n=10, t0=now - 60_000, boot="0000000b")
    write(store, new)
    first = store.apply_retention(now, budget=20)
    assert 20 <= first < 50 + 7  # a budget stops it after the batch that reached it
    assert 0 < store.count_results() - 10 < 50
    store.apply_retention(now)
    assert store.count_results() == 10
    assert sum(r[3] for r in store.rollup_rows("d1", HOUR_MS, 0, 2**62)) == 60  # rollups outlive raw results
    assert sum(r[3] for r in store.rollup_rows("d1", MINUTE_MS, 0, 2**62)) == 60
    store.apply_retention(T0 + 120 * DAY)  # past the 90 days of minute rollups: hour rollups stay
    assert store.rollup_rows("d1", MINUTE_MS, 0, 2**62) == []
    assert sum(r[3] for r in store.rollup_rows("d1", HOUR_MS, 0, 2**62)) == 60
    assert store.apply_retention(T0 + 120 * DAY) == 0


def test_rebuild_and_the_migration_backfill_give_the_incremental_rollups(store: Store, tmp_path: Path) -> None:
    recs = results(n=400, step_ms=20_000) + results("d2", n=100, seed=2)
    write(store, recs)
    before = {w: store.rollup_rows("d1", w, 0, 2**62) for w in (MINUTE_MS, HOUR_MS)}
    store.rebuild_rollups(0)
    check(store, recs[:400])
    check(store, recs[400:], "d2")
    after = {w: store.rollup_rows("d1", w, 0, 2**62) for w in (MINUTE_MS, HOUR_MS)}
    def same(rows: list[tuple]) -> list[tuple]:  # counts and histograms (PostgreSQL writes jsonb's spacing)
        return [(*r[:6], rollups.hist_parse(r[9])) for r in rows]
    assert {w: same(rows) for w, rows in after.items()} == {w: same(rows) for w, rows in before.items()}
    if isinstance(store, SQLiteStore):  # an existing store of the version before: the migration backfills it
        store._db.execute("DROP TABLE rollup_1m")
        store._db.execute("DROP TABLE rollup_1h")
        store._db.execute("PRAGMA user_version = 7")
        store.close()
        again = SQLiteStore(store.path)
        check(again, recs[:400])
        again.close()


def test_the_dashboard_picks_the_resolution_for_the_range() -> None:
    now = T0 + 100 * DAY
    assert resolution(now - 3_600_000, now, now, 30) == RAW
    assert resolution(now - DAY, now, now, 30) == MINUTE_MS
    assert resolution(now - 7 * DAY, now, now, 30) == MINUTE_MS
    assert resolution(now - 30 * DAY, now, now, 30) == HOUR_MS
    assert resolution(now - 40 * DAY, now - 40 * DAY + 3_600_000, now, 30) == MINUTE_MS  # raw gone: rollups
    assert resolution(now - 95 * DAY, now - 94 * DAY, now, 30) == HOUR_MS  # minute rollups gone too
    assert resolution_label(HOUR_MS, 2 * HOUR_MS) == "1-hour rollups, 2 h buckets"
    assert resolution_label(RAW) == "raw results"


def test_device_series_reads_raw_minute_and_hour_history(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    now = T0 + 30 * DAY
    history = results(n=30 * 24 * 6, t0=now - 30 * DAY, step_ms=600_000)  # 30 days, one per 10 min
    write(s, history, size=500)
    recent = results(n=3600, t0=now - 3_600_000, boot="0000000b", seed=3)  # the last hour at 1/s
    write(s, recent, size=500)
    hour = timeseries.device_series(s, "d1", now - 3_600_000, now, now_ms=now)
    assert (hour.resolution_ms, hour.bucketed, hour.label) == (RAW, False, "raw results")
    assert len(hour.frame) == hour.total == 3600 + 6
    day = timeseries.device_series(s, "d1", now - DAY, now, now_ms=now)
    assert day.resolution_ms == MINUTE_MS and day.bucketed and day.label == "1-minute rollups, 5 min buckets"
    assert day.total == 3600 + 144 and len(day.frame) <= 288
    month = timeseries.device_series(s, "d1", now - 30 * DAY, now, now_ms=now)
    assert month.resolution_ms == HOUR_MS and month.label == "1-hour rollups, 2 h buckets"
    assert month.total == len(history) + len(recent) and len(month.frame) <= 360
    last = month.frame.iloc[-1]  # the newest 2 h bucket: its p95 from the merged histograms
    tail = [r.score for r in history + recent if r.ts >= now - 2 * HOUR_MS]
    want = np.sort(tail)[math.ceil(0.95 * len(tail)) - 1]
    assert abs(last["score_p95"] / want - 1) <= P95_REL_ERROR + 1e-9
    cmp = timeseries.compare_frame(s, ["d1"], now - 30 * DAY, now)
    assert int(cmp["n"].sum()) == month.total
    s.close()


def test_two_sqlite_writers_on_one_file_count_every_result_once(tmp_path: Path) -> None:
    """Each writer keeps the open rollup rows in memory; a commit by the other makes it read them again."""
    a, b = SQLiteStore(tmp_path / "shared.db"), SQLiteStore(tmp_path / "shared.db")
    recs = results(n=300, step_ms=500)
    for k in range(0, 300, 25):  # the same minutes, alternately from each process
        (a if k % 50 else b).write_batch(IngestBatch(T0 + 400_000, 25, recs[k:k + 25]))
    check(a, recs)
    check(b, recs)
    a.close()
    b.close()


def test_ingest_statistics_per_minute_match_the_batches(store: Store) -> None:
    """The System page's long ranges read ingest_stats_1m, kept by each batch's commit; the same sums."""
    recs = results(n=500, step_ms=700)
    write(store, recs, size=23)
    fine = store.ingest_series(T0 - 60_000, bucket_s=10)  # from the per-batch rows
    coarse = store.ingest_series(T0 - 60_000, bucket_s=120)  # from the minute rows
    assert sum(b.results for b in coarse) == sum(b.results for b in fine) == 500
    assert sum(b.messages for b in coarse) == 500
    assert max(b.lag_ms_max for b in coarse) == max(b.lag_ms_max for b in fine) == 22 * 700 + 50
    for b in coarse:
        inside = [f for f in fine if b.ts <= f.ts < b.ts + 120_000]
        assert b.results == sum(f.results for f in inside)
    store.apply_retention(T0 + 200 * DAY)
    assert store.ingest_series(0, bucket_s=60) == []


def test_two_postgresql_writers_at_once_count_every_result_once(request) -> None:
    """Two ingest processes' connections adding to the same minutes at the same time (rows locked in key order)."""
    import threading

    from edgefleet.service.store.postgres import PostgresStore

    url = request.getfixturevalue("pg_server").create_db()
    a, b = PostgresStore(url), PostgresStore(url)
    recs = results(n=400, step_ms=300) + results("d2", n=400, step_ms=300, seed=4)
    parts = [recs[k:k + 20] for k in range(0, len(recs), 20)]

    def work(store: Store, mine: list) -> None:
        for p in mine:
            store.write_batch(IngestBatch(T0 + 200_000, len(p), p))
    threads = [threading.Thread(target=work, args=(s, parts[i::2])) for i, s in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(a, recs[:400])
    check(a, recs[400:], "d2")
    a.close()
    b.close()


def test_ingest_refuses_results_older_than_the_raw_horizon_and_keeps_rollups(ingest, mosquitto, unique) -> None:
    """Through a real Mosquitto and IngestService: a node whose clock (or ring) says 40 days ago gets its results
    refused as too_old (acknowledged, counted, the reason kept); the fresh ones land in raw and rollups."""
    from edgefleet import protocol

    from .support import Publisher, result_payload, wait_until

    svc = ingest(retention_days=30.0)
    dev = unique("old")
    pub = Publisher(mosquitto.host, mosquitto.port, unique("pub"))
    pub.publish(protocol.topic(dev, "result"), result_payload(0, 5, ts0=int(time.time() * 1000) - 40 * DAY))
    pub.publish(protocol.topic(dev, "result"), result_payload(5, 5))
    pub.wait_all()
    wait_until(lambda: svc.counters.stored + svc.counters.rejected >= 10, 20, "both messages ingested")
    mine = [r.code for r in svc.store.rejects() if f"/{dev}/" in r.topic]  # (the session broker's retained
    assert svc.counters.stored == 5 and mine == ["too_old"] * 5  # statuses of other tests arrive too)
    assert svc.counters.acked >= 2
    assert sum(r[3] for r in svc.store.rollup_rows(dev, HOUR_MS, 0, 2**62)) == 5
    pub.close()
