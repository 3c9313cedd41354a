"""The Fleet page's fleet-wide reads (one statement each, benchmarks/dashboard_load.py): `recent_window_counts`
and `latest_vrms` give what the per-device definitions give, on SQLite and PostgreSQL, including the cases the
fast path must not get wrong (windows without a verdict, rollups that do not cover the raw results, few results,
older nodes without readings, readings only far back)."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.protocol import ResultRecord
from edgefleet.service.store import IngestBatch, SQLiteStore, Store

T0 = 1_796_400_000_000
N = 120


def res(device: str, seq: int, *, state: str = "", vrms: float | None = 2.0, step_ms: int = 20_000) -> ResultRecord:
    return ResultRecord(device, "00000001", seq, T0 + seq * step_ms, 2, 0.05, 0.3, False, 400, state=state,
                        vrms=vrms, rpm=1480.0 if vrms is not None else None)


def fleet() -> list[ResultRecord]:
    """Machines whose newest N windows differ in the ways the Fleet page counts."""
    out = [res("judged", i, vrms=1.0 + i % 7) for i in range(300)]  # all judged: the fast path
    # uncommissioned windows only before its newest N, one in the minute they start in (its rollup counts it)
    out += [res("old-speed", i, state="uncommissioned" if i < 181 else "") for i in range(301)]
    out += [res("new-speed", i, state="uncommissioned" if i % 10 == 0 and i > 250 else "") for i in range(300)]
    out += [res("learning", i, state="commissioning" if i >= 260 else "") for i in range(300)]
    out += [res("sensor", i, state="sensor_dead" if i == 299 else "") for i in range(300)]
    out += [res("few", i, state="uncommissioned" if i == 3 else "") for i in range(40)]  # fewer than N
    out += [res("no-readings", i, vrms=None) for i in range(300)]  # an older node
    out += [res("far-back", i, vrms=5.0 if i < 50 else None) for i in range(300)]  # readings beyond 200 back
    out += [res("sparse", i, vrms=3.0 if i % 60 == 0 else None) for i in range(300)]  # 3 readings in 200
    out += [res("fast", i, step_ms=500, vrms=2.0 + i / 1000) for i in range(500)]  # many per minute
    return out


def store_with(s: Store) -> Store:
    rs = fleet()
    for i in range(0, len(rs), 500):
        s.write_batch(IngestBatch(T0 + 10_000_000, len(rs[i:i + 500]), rs[i:i + 500]))
    # a device written before it had rollups: its results but none of its minute rollups
    s.write_batch(IngestBatch(T0 + 10_000_000, 300, [res("no-rollups", i, state="uncommissioned" if i == 290 else "")
                                                     for i in range(300)]))
    with s._tx() as db:
        db.execute("DELETE FROM rollup_1m WHERE device = " + ("?" if isinstance(s, SQLiteStore) else "%s"),
                   ("no-rollups",))
    return s


def per_device_counts(s: Store, n: int) -> dict[str, tuple[int, int, int]]:
    """The definition: each device's newest n results, counted."""
    out = {}
    for d in s.devices():
        recs = s.recent_results(d.device, n)
        out[d.device] = (len(recs), sum(r.state == "commissioning" for r in recs),
                         sum(r.state == "uncommissioned" for r in recs))
    return out


def per_device_vrms(s: Store, n: int = 5, look_back: int = 200) -> dict[str, tuple[int, float]]:
    """The definition: the median of the newest n readings among a device's newest look_back results."""
    out = {}
    for d in s.devices():
        recs = [r for r in reversed(s.recent_results(d.device, look_back)) if r.vrms is not None][:n]
        if recs:
            out[d.device] = (recs[0].ts, statistics.median(r.vrms for r in recs))
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "fleet.db")
    else:
        from edgefleet.service.store.postgres import PostgresStore
        s = PostgresStore(request.getfixturevalue("pg_server").create_db())
    yield store_with(s)
    s.close()


def test_recent_window_counts_match_each_devices_newest_windows(store: Store) -> None:
    want = per_device_counts(store, N)
    got = store.recent_window_counts(N)
    assert got == want
    # the cases that matter, spelled out
    assert got["judged"] == (N, 0, 0) and got["old-speed"] == (N, 0, 0) and got["few"] == (40, 0, 1)
    assert got["new-speed"] == (N, 0, 4) and got["learning"] == (N, 40, 0) and got["no-rollups"] == (N, 0, 1)
    assert got["sensor"] == (N, 0, 0)  # a sensor fault window: no verdict, but neither state counted here
    assert store.recent_window_counts(N, ["few", "learning", "unknown-device"]) == {"few": (40, 0, 1),
                                                                                   "learning": (N, 40, 0)}
    assert store.recent_window_counts(7) == per_device_counts(store, 7)


def test_latest_vrms_matches_the_median_of_each_devices_newest_readings(store: Store) -> None:
    got = store.latest_vrms()
    assert got == per_device_vrms(store)
    assert "no-readings" not in got and "far-back" not in got  # none among the newest 200 results
    assert got["sparse"] == (T0 + 240 * 20_000, 3.0)  # 3 readings in its newest 200: their median
    assert store.latest_vrms(n=3, look_back=50) == per_device_vrms(store, 3, 50)
