"""The store contract: every backend must pass these (SQLite, PostgreSQL; InfluxDB with its URL)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgefleet.protocol import ResultRecord
from edgefleet.service.alarms import AlarmChange, DeviceHealth
from edgefleet.service.store import (
    DeviceUpdate,
    Event,
    IngestBatch,
    Reject,
    SQLiteStore,
    Store,
    StoreError,
)

T0 = 1_767_225_600_000

# name -> factory(tmp_path, request) -> Store. A backend without its server skips, saying why.
def _influx(tmp: Path, request) -> Store:
    """A real InfluxDB 2 (EDGEFLEET_INFLUX_URL/TOKEN/ORG), a fresh bucket per test; SQLite registry beside it."""
    import os
    import uuid

    from edgefleet.service.store.influx import InfluxStore

    url = os.environ.get("EDGEFLEET_INFLUX_URL")
    if not url:
        pytest.skip("EDGEFLEET_INFLUX_URL is not set: no InfluxDB 2 server to run the contract against")
    return InfluxStore(tmp / "registry.db", url=url, token=os.environ.get("EDGEFLEET_INFLUX_TOKEN", ""),
                       org=os.environ.get("EDGEFLEET_INFLUX_ORG", "edgefleet"),
                       bucket=f"contract-{uuid.uuid4().hex[:12]}")


def _postgres(tmp: Path, request) -> Store:
    """A real PostgreSQL (the session's server, tests/pg.py), a fresh database per test."""
    from edgefleet.service.store.postgres import PostgresStore

    return PostgresStore(request.getfixturevalue("pg_server").create_db())


BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Store]] = {
    "sqlite": lambda tmp, request: SQLiteStore(tmp / "store.db"),
    "influxdb": _influx,
    "postgresql": _postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request, tmp_path: Path) -> Iterator[Store]:
    s = BACKENDS[request.param](tmp_path, request)
    yield s
    s.close()


def rec(device: str = "d1", seq: int = 0, ts: int | None = None, score: float = 0.01, thr: float = 0.05,
        boot: str = "0000000a", model: int = 3) -> ResultRecord:
    return ResultRecord(device, boot, seq, T0 + seq * 1000 if ts is None else ts, model, score, thr,
                        score > thr, 400)


def batch(results=(), devices=(), events=(), rejects=(), ts: int = T0 + 10_000, messages: int | None = None):
    return IngestBatch(ts, len(results) + len(rejects) if messages is None else messages,
                       list(results), list(devices), list(events), list(rejects))


def test_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)


def test_duplicates_by_device_boot_seq_are_dropped(store: Store) -> None:
    first = store.write_batch(batch([rec(seq=i) for i in range(10)]))
    assert (first.stored, first.duplicates) == (10, 0)
    again = [rec(seq=i) for i in range(5, 15)] + [rec(seq=14)]
    out = store.write_batch(batch(again))
    assert (out.stored, out.duplicates) == (5, 6)
    assert [r.seq for r in out.new] == [10, 11, 12, 13, 14]
    # same seq on another boot or another device is a different result
    out = store.write_batch(batch([rec(seq=0, boot="0000000b"), rec(device="d2", seq=0)]))
    assert out.stored == 2
    assert store.count_results() == 17
    c = store.counts()
    assert (c.results, c.duplicates, c.devices) == (17, 6, 2)


def test_score_history_and_recent_results(store: Store) -> None:
    store.write_batch(batch([rec(seq=i, score=0.001 * i) for i in range(50)] + [rec("d2", 0)]))
    hist = store.score_history("d1")
    assert [r.seq for r in hist] == list(range(50))
    assert hist[7] == rec(seq=7, score=0.007)
    window = store.score_history("d1", since_ms=T0 + 10_000, until_ms=T0 + 19_000)
    assert [r.seq for r in window] == list(range(10, 20))
    assert [r.seq for r in store.recent_results("d1", 3)] == [47, 48, 49]
    assert store.score_history("nobody") == []


def test_device_registry_from_results_and_status(store: Store) -> None:
    birth = DeviceUpdate("d1", T0, status="online", boot="0000000a", fw="1.0.0", model=3, slot="A", thr=0.05,
                         caps=("ota", "debug"), site="north", line="L1", tags=("pump",))
    store.write_batch(batch([rec(seq=i, score=0.02 * i) for i in range(4)], devices=[birth]))
    d = store.device("d1")
    assert d is not None
    assert (d.status, d.fw, d.slot, d.site, d.line, d.tags, d.caps) == \
        ("online", "1.0.0", "A", "north", "L1", ("pump",), ("ota", "debug"))
    assert d.results == 4 and d.last_seen == T0 + 3000 and d.last_score == pytest.approx(0.06)
    # A late last will from an older connection does not override a newer status
    store.write_batch(batch(devices=[DeviceUpdate("d1", T0 - 5000, status="lost")]))
    assert store.device("d1").status == "online"
    store.write_batch(batch(devices=[DeviceUpdate("d1", T0 + 60_000, status="lost")]))
    assert store.device("d1").status == "lost"
    # online but silent for longer than the stale window reads as stale
    store.write_batch(batch(devices=[DeviceUpdate("d1", T0 + 70_000, status="online")]))
    assert store.devices(now_ms=T0 + 70_000 + 500_000, stale_s=60)[0].status == "stale"
    assert store.device("nobody") is None


def test_fleet_summary_and_site_health(store: Store) -> None:
    ups = [DeviceUpdate(f"n{i}", T0, status="online", model=3 if i < 3 else 4, site="north" if i < 2 else "south",
                        fw="1.0.0", slot="A", thr=0.05, caps=()) for i in range(5)]
    store.write_batch(batch([rec(f"n{i}", 0, ts=T0) for i in range(5)], devices=ups))
    store.apply_alarm_changes([AlarmChange("raise", "n0", T0, "major", 0.2, 0.05, 0.2)],
                              [DeviceHealth("n1", T0, 0.03, 0.5, 3600.0, "degrading")])
    s = store.fleet_summary(now_ms=T0 + 1000)
    assert (s.devices, s.online, s.offline, s.active_alarms, s.unacked_alarms, s.degrading) == (5, 5, 0, 1, 1, 1)
    assert s.models == {3: 3, 4: 2} and s.results == 5 and s.rejected == 0
    sites = {h.site: h for h in store.site_health(now_ms=T0 + 1000)}
    assert (sites["north"].devices, sites["north"].alarm, sites["north"].degrading, sites["north"].ok) == (2, 1, 1, 0)
    assert (sites["south"].devices, sites["south"].ok) == (3, 3)
    assert [d.device for d in store.devices(site="north")] == ["n0", "n1"]
    assert store.device("n0").health == "alarm" and store.device("n0").alarm_severity == "major"
    assert store.device("n1").eta_s == 3600.0


def test_alarm_lifecycle_filters_and_ack(store: Store) -> None:
    store.set_device_meta("a", site="north")
    store.set_device_meta("b", site="south")
    store.apply_alarm_changes([AlarmChange("raise", "a", T0, "warning", 0.06, 0.05, 0.06),
                               AlarmChange("raise", "b", T0 + 1, "critical", 0.5, 0.05, 0.5)], [])
    # a second raise while one is active is ignored (one active alarm per device)
    store.apply_alarm_changes([AlarmChange("raise", "a", T0 + 2, "warning", 0.07, 0.05, 0.07)], [])
    assert len(store.alarms(active=True)) == 2
    store.apply_alarm_changes([AlarmChange("update", "a", T0 + 3, "major", 0.12, 0.05, 0.12)], [])
    a = store.active_alarm("a")
    assert (a.severity, a.peak_score, a.score, a.site) == ("major", 0.12, 0.06, "north")
    assert [x.device for x in store.alarms(min_severity="critical")] == ["b"]
    assert [x.device for x in store.alarms(site="north")] == ["a"]
    assert store.ack_alarm(a.id, "olga", T0 + 10, "checking bearing")
    assert not store.ack_alarm(a.id, "olga", T0 + 11)  # already acknowledged
    assert not store.ack_alarm(999_999, "olga", T0 + 11)
    assert [x.device for x in store.alarms(acked=False)] == ["b"]
    store.apply_alarm_changes([AlarmChange("clear", "a", T0 + 20, "major", 0.01, 0.05, 0.12)], [])
    assert store.active_alarm("a") is None
    cleared = store.alarms(active=False)
    assert len(cleared) == 1 and cleared[0].cleared_ts == T0 + 20 and cleared[0].acked_by == "olga"
    # raised again soon after clearing: the same alarm reopens, counted (no flapping alarms)
    store.apply_alarm_changes([AlarmChange("raise", "a", T0 + 30, "warning", 0.06, 0.05, 0.06)], [])
    (again,) = store.alarms(device="a")
    assert again.active and again.reopened == 1 and again.acked_by == "olga"
    # after the hold-off, a new alarm is raised on the same device
    store.apply_alarm_changes([AlarmChange("clear", "a", T0 + 40, "warning", 0.01, 0.05, 0.06),
                               AlarmChange("raise", "a", T0 + 40 + 11 * 60_000, "warning", 0.06, 0.05, 0.06)], [])
    assert len(store.alarms(device="a")) == 2
    c = store.counts()
    assert (c.alarms, c.active_alarms) == (3, 2)
    with pytest.raises(StoreError):
        store.alarms(min_severity="apocalyptic")


def test_rejects_events_and_ingest_series(store: Store) -> None:
    bad = Reject(T0, "ef/v1/d1/result", "json", "Expecting value: line 1 column 1", b"\x00" * 1000, 1000)
    store.write_batch(batch([rec(seq=i, ts=T0 - 250) for i in range(3)], rejects=[bad],
                            events=[Event("d1", T0, "status", {"state": "online"})], ts=T0))
    store.write_batch(batch([rec(seq=1, ts=T0 - 250), rec(seq=3, ts=T0 + 500)], ts=T0 + 1000))
    r = store.rejects()
    assert len(r) == 1 and (r[0].code, r[0].topic, r[0].size) == ("json", "ef/v1/d1/result", 1000)
    assert len(r[0].payload) == 256
    assert store.reject_counts() == {"json": 1}
    assert store.events("d1")[0].body == {"state": "online"}
    assert store.events("d1", kind="debug") == []
    series = store.ingest_series(T0 - 60_000, bucket_s=60)
    assert sum(b.results for b in series) == 4 and sum(b.duplicates for b in series) == 1
    assert sum(b.rejected for b in series) == 1 and sum(b.messages for b in series) == 6
    assert max(b.lag_ms_max for b in series) == 500 and min(b.lag_ms_avg for b in series) == 312.5  # (3*250 + 500) / 4


def test_retention(store: Store) -> None:
    assert store.retention_days() == 30.0
    store.set_retention_days(1)
    day = 86_400_000
    store.write_batch(batch([rec(seq=0, ts=T0 - 3 * day)], ts=T0 - 3 * day))  # stored while it was young
    store.write_batch(batch([rec(seq=1, ts=T0)], ts=T0))
    assert store.apply_retention(T0) >= 1
    assert [r.seq for r in store.score_history("d1")] == [1]
    again = store.write_batch(batch([rec(seq=0, ts=T0 - 3 * day)], ts=T0))  # its key is gone: refused, not stored
    assert again.stored == 0 and [r.code for r in again.refused] == ["too_old"]
    assert [r.seq for r in store.score_history("d1")] == [1]
    with pytest.raises(StoreError):
        store.set_retention_days(0)


def test_concurrent_writers_lose_nothing(store: Store) -> None:
    def work(dev: str) -> None:
        for b in range(20):
            store.write_batch(batch([rec(dev, b * 10 + i) for i in range(10)]))
    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count_results() == 800


def test_sqlite_survives_reopen_and_refuses_foreign_files(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "a.db")
    s.write_batch(batch([rec(seq=0)]))
    s.close()
    s = SQLiteStore(tmp_path / "a.db")
    assert s.count_results() == 1
    s.close()
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path / "junk.db")


def shadow_rec(seq: int, *, device: str = "d1", score: float = 0.01, shadow_score: float = 0.02,
               shadow_model: int = 4, boot: str = "0000000a", ts: int | None = None) -> ResultRecord:
    r = rec(device, seq, ts=ts, score=score, boot=boot)
    return r._replace(shadow_model=shadow_model, shadow_score=shadow_score, shadow_thr=0.05,
                      shadow_anom=shadow_score > 0.05)


def test_shadow_results_keep_both_models_once(store: Store) -> None:
    plain = [rec(seq=i) for i in range(3)]
    shadow = [shadow_rec(i, score=0.005 * i, shadow_score=0.01 * i) for i in range(3, 8)]
    out = store.write_batch(batch(plain + shadow))
    assert out.stored == 8
    again = store.write_batch(batch([shadow_rec(7), shadow_rec(8, device="d2")]))  # one duplicate
    assert (again.stored, again.duplicates) == (1, 1)
    got = store.shadow_results(4)
    assert [(r.device, r.seq) for r in got] == [("d1", s) for s in range(3, 8)] + [("d2", 8)]
    assert got[0] == shadow[0] and got[4] == shadow[4]  # every field back, both models
    assert [r.shadow_anom for r in got[:5]] == [False, False, False, True, True]  # 0.03 ... 0.07 vs 0.05
    assert [r.anom for r in got[:5]] == [False] * 5  # 0.015 ... 0.035
    assert store.shadow_results(4, device="d2") == [shadow_rec(8, device="d2")]
    assert store.shadow_results(4, since_ms=T0 + 6000) == [shadow[3], shadow[4], shadow_rec(8, device="d2")]
    assert store.shadow_results(4, limit=2) == [shadow[4], shadow_rec(8, device="d2")]
    assert store.shadow_results(5) == []
    assert store.count_results() == 9  # shadow results are results too, counted once
    assert [r.seq for r in store.score_history("d1")] == list(range(8))


def test_shadow_results_follow_retention(store: Store) -> None:
    store.write_batch(batch([shadow_rec(0, ts=T0 - 3 * 86400_000), shadow_rec(1, ts=T0)]))
    store.set_retention_days(1)
    store.apply_retention(T0)
    assert [r.seq for r in store.shadow_results(4)] == [1]


# ---- readings and why (feature definition v2), ISO 20816 machine classes ----

WHY = '[{"lo":22.1,"hi":27.4,"share":0.62},{"name":"vrms","share":0.21}]'


def reading(seq: int, vrms: float | None, *, device: str = "d1", anom: bool = False, rpm: float | None = 1497.0,
            why: str | None = None, hint: str | None = None) -> ResultRecord:
    return rec(device, seq, score=0.1 if anom else 0.01)._replace(vrms=vrms, rpm=None if vrms is None else rpm,
                                                                  why=why, hint=hint)


def test_results_keep_their_readings_and_why(store: Store) -> None:
    rows = [reading(0, 1.5), reading(1, None), reading(2, 6.42, anom=True, why=WHY, hint="unbalance")]
    store.write_batch(batch(rows))
    got = store.score_history("d1")
    assert [(r.vrms, r.rpm, r.why, r.hint) for r in got] == [(1.5, 1497.0, None, None), (None, None, None, None),
                                                             (6.42, 1497.0, WHY, "unbalance")]
    assert store.vrms_history("d1") == [(T0, 1.5, 1497.0), (T0 + 2000, 6.42, 1497.0)]  # readings only
    assert store.vrms_history("d1", since_ms=T0 + 1) == [(T0 + 2000, 6.42, 1497.0)]
    assert store.vrms_history("d1", limit=1) == [(T0 + 2000, 6.42, 1497.0)]


def test_latest_vrms_is_the_median_of_the_newest_readings(store: Store) -> None:
    store.write_batch(batch([reading(i, v) for i, v in enumerate([9.0, 1.0, 2.0, 30.0, 3.0, 2.5])]
                            + [reading(0, None, device="old-node")] + [reading(0, 4.0, device="d2")]))
    latest = store.latest_vrms(n=5)
    assert latest == {"d1": (T0 + 5000, 2.5), "d2": (T0, 4.0)}  # median of 1, 2, 30, 3, 2.5; old-node: none


def test_an_alarm_remembers_the_why_of_the_result_that_raised_it(store: Store) -> None:
    store.write_batch(batch([rec("d1", 0)]))
    store.apply_alarm_changes([AlarmChange("raise", "d1", T0 + 1000, "major", 0.2, 0.05, 0.2, WHY, "unbalance")], [])
    a = store.active_alarm("d1")
    assert (a.why, a.hint, a.why_items[0]["lo"]) == (WHY, "unbalance", 22.1)
    store.apply_alarm_changes([AlarmChange("clear", "d1", T0 + 2000, "major", 0.01, 0.05, 0.2)], [])
    store.apply_alarm_changes([AlarmChange("raise", "d1", T0 + 3000, "warning", 0.1, 0.05, 0.1, None,
                                           "misalignment")], [])  # reopened within the hold-off
    a = store.active_alarm("d1")
    assert (a.reopened, a.why, a.hint, a.why_items) == (1, None, "misalignment", [])
    store.apply_alarm_changes([AlarmChange("raise", "d2", T0, "warning", 0.1, 0.05, 0.1)], [])
    assert (store.active_alarm("d2").why, store.active_alarm("d2").hint) == (None, None)  # older nodes say nothing


def test_machine_classes_per_device_and_site(store: Store) -> None:
    from edgefleet.service.iso20816 import MachineClassError

    assert store.machine_classes() == {"device": {}, "site": {}}
    store.set_machine_class("iii", device="pump-1")
    store.set_machine_class("class IV", site="north")
    store.set_machine_class("I", site="south")
    store.set_machine_class(None, site="south")
    assert store.machine_classes() == {"device": {"pump-1": "III"}, "site": {"north": "IV"}}
    with pytest.raises(MachineClassError, match="one of I, II, III, IV"):
        store.set_machine_class("V", device="pump-1")
    with pytest.raises(StoreError, match="one device or one site"):
        store.set_machine_class("II", device="pump-1", site="north")
    assert store.machine_classes()["device"] == {"pump-1": "III"}  # nothing changed by the refusals


def test_bearing_geometry_per_device(store: Store) -> None:
    from edgefleet.errors import FeatureError

    store.set_bearing("pump-1", {"n_balls": 9, "ball_d_mm": 7.94, "pitch_d_mm": 39.04})
    assert store.bearings() == {"pump-1": {"n_balls": 9, "ball_d_mm": 7.94, "pitch_d_mm": 39.04, "contact_deg": 0.0}}
    with pytest.raises(FeatureError, match="were they swapped"):
        store.set_bearing("pump-2", {"n_balls": 9, "ball_d_mm": 39.04, "pitch_d_mm": 7.94})
    with pytest.raises(StoreError, match="n_balls, ball_d_mm, pitch_d_mm"):
        store.set_bearing("pump-2", {"n_balls": 9})
    store.set_bearing("pump-1", None)
    assert store.bearings() == {}
