"""Issue 19 on the dashboard: each machine's stage, "degrading since", remaining life with its interval and
the trend, in plain words; from the alarm service's health, through the store's registry, to the pages.

The words are pure functions (tested on numbers); the registry columns are tested on a real SQLite and a
real PostgreSQL; the pages through Streamlit's AppTest on a sample plant the real AlarmTracker judged.
"""

from __future__ import annotations

import math
import sqlite3

import pytest

from dashboards import ui
from dashboards.loaders import fleet, health
from edgefleet.service.store import DeviceUpdate, IngestBatch, open_store
from edgefleet.service.store.base import DeviceHealth

from .conftest import open_page

DAY, HOUR = 86400.0, 3600.0


def make_degrading(store, devices: list[str]) -> None:
    """What the alarm service stores for a machine whose health indicator rises significantly, short of an alarm:
    health degrading, the trend's time to the alarm level, remaining life with its interval (the sample plant's
    rising machines may or may not pass the service's significance test; the pages' words must not depend on it)."""
    health = []
    for d in devices:
        ts = store.recent_results(d, 1)[0].ts
        health.append(DeviceHealth(d, ts - 60_000, 1.0, 0.9, 1800.0, "degrading", 3 * HOUR, 2 * HOUR, 5 * HOUR))
        health.append(DeviceHealth(d, ts, 1.0, 0.9, 1800.0, "degrading", 3 * HOUR, 2 * HOUR, 5 * HOUR))
    store.apply_alarm_changes([], health[0::2])
    store.apply_alarm_changes([], health[1::2])  # a later update keeps the time it left healthy


# ---------- the words ----------

@pytest.mark.parametrize("health_, severity, rul, stage", [
    ("ok", None, None, "healthy"), ("degrading", None, 3 * DAY, "degrading"), ("alarm", "warning", DAY, "alarm"),
    ("alarm", "major", None, "alarm"), ("alarm", "critical", DAY, "critical"), ("alarm", "warning", 0.0, "critical"),
    ("ok", "major", None, "alarm"),  # an active alarm wins over a stale health row
    ("critical", None, None, "critical"), ("unknown", None, None, None), (None, None, None, None)])
def test_stage_of(health_, severity, rul, stage) -> None:
    assert health.stage_of(health_, severity, rul) == stage


def test_remaining_life_in_words_with_its_interval() -> None:
    assert health.remaining_life_words(3 * DAY, 2 * DAY, 5 * DAY) == "about 3 days left (2-5 days)"
    assert health.remaining_life_words(3 * DAY, 20 * HOUR, 5 * DAY) == "about 3 days left (20 h - 5 days)"
    assert health.remaining_life_words(3 * DAY, 2 * DAY, math.inf) == "about 3 days left (at least 2 days)"
    assert health.remaining_life_words(None, None, None) == ""
    # computed at health_ts, shown later: counted from now
    assert health.remaining_life_words(3 * DAY, 2 * DAY, 5 * DAY, 0, int(DAY * 1000)) == \
        "about 2 days left (1-4 days)"
    assert health.remaining_life_words(HOUR, HOUR / 2, 2 * HOUR, 0, int(2 * HOUR * 1000)).startswith("at the failure")
    assert health.remaining_life_words(0.0, 0.0, 0.0) == "at the failure level now (by the fitted trend)"


def test_trend_in_plain_words_not_a_log_slope() -> None:
    per_h = math.log(2) / (40 / 60)  # the ratio doubles every 40 min
    words = health.trend_words(per_h, 2 * HOUR)
    assert words == "score rising, doubling every 40 min; at this rate it reaches the alarm level in about 2 h"
    assert health.trend_words(math.log(2) / 24, 3 * DAY).startswith("score rising, doubling every 24 h;")
    assert health.trend_words(-0.3, None) == "score steady or falling: no sign of wear"
    assert "not yet a significant trend" in health.trend_words(0.05, None)
    assert health.trend_words(per_h, 0.0).startswith("score above the alarm level, still rising")
    assert health.trend_words(None, None) == "too few judged windows for a trend yet"
    for w in (words, health.trend_words(0.05, None), health.trend_words(per_h, 0.0)):
        assert "slope" not in w and "log" not in w


def test_since_and_durations() -> None:
    t = 1_796_000_000_000
    assert health.since_words(t, t + 3 * 86_400_000) == "degrading since 2026-11-30 00:53 UTC (3 days ago)"
    assert health.since_words(None, t) == ""
    assert [health.duration_words(s) for s in (45, 5400, DAY, 36 * HOUR, 90 * DAY)] == \
        ["45 s", "1.5 h", "24 h", "1.5 days", "13 weeks"]
    assert health.attention_since(t, t - 5) == t - 5 and health.attention_since(None, None) is None


# ---------- the registry ----------

def _device(store, name: str = "pump-1", ts: int = 1000) -> None:
    store.write_batch(IngestBatch(ts, 1, devices=[DeviceUpdate(name, ts, status="online", site="north")]))


def _walk(store) -> None:
    """ok -> degrading -> alarm -> degrading -> ok: degrading_since is set once, kept, then cleared."""
    h = lambda ts, state, rul=None: DeviceHealth("pump-1", ts, 1.0, 0.4, 600.0 if state != "ok" else None, state,  # noqa: E731
                                                 rul, None if rul is None else rul / 2, None if rul is None else math.inf)
    store.apply_alarm_changes([], [h(2000, "ok")])
    assert store.device("pump-1").degrading_since is None
    store.apply_alarm_changes([], [h(3000, "degrading", 7200.0)])
    d = store.device("pump-1")
    assert (d.health, d.degrading_since, d.rul_s, d.rul_low_s, d.rul_high_s, d.health_ts) == \
        ("degrading", 3000, 7200.0, 3600.0, math.inf, 3000)
    for ts, state in ((4000, "degrading"), (5000, "alarm"), (6000, "degrading")):
        store.apply_alarm_changes([], [h(ts, state, 5000.0)])
        assert store.device("pump-1").degrading_since == 3000  # since it left ok, not since the last update
    store.apply_alarm_changes([], [h(7000, "ok")])
    d = store.device("pump-1")
    assert (d.health, d.degrading_since, d.rul_s) == ("ok", None, None)


def test_registry_keeps_degrading_since_and_remaining_life_sqlite(tmp_path) -> None:
    store = open_store(tmp_path / "f.db", synchronous="OFF")
    _device(store)
    _walk(store)
    store.close()


def test_registry_keeps_degrading_since_and_remaining_life_postgres(pg_server) -> None:
    store = open_store(pg_server.create_db())
    try:
        _device(store)
        _walk(store)
    finally:
        store.close()


def test_a_version_5_store_gains_the_columns(tmp_path) -> None:
    """An existing store (schema 5: no degrading_since, RUL or loss acknowledgement) is upgraded in place."""
    path = tmp_path / "old.db"
    store = open_store(path)
    _device(store)
    store.close()
    db = sqlite3.connect(path)
    for col in ("degrading_since", "rul_s", "rul_low_s", "rul_high_s"):
        db.execute(f"ALTER TABLE devices DROP COLUMN {col}")
    for col in ("acked_ts", "acked_by", "note"):
        db.execute(f"ALTER TABLE loss_alarms DROP COLUMN {col}")
    db.execute("PRAGMA user_version = 5")
    db.commit()
    db.close()
    store = open_store(path)
    assert store.device("pump-1").status == "online"  # kept
    _walk(store)
    store.close()


# ---------- the pages ----------

def test_fleet_frame_and_attention_carry_stage_since_and_life(fleet_db) -> None:
    """The sample plant's alarms come from the real AlarmTracker, its degrading machines' health as the service
    stores it: each has a time it left healthy and (degrading) a remaining-life estimate, and the attention list
    says both in words."""
    f = fleet_db.fleet
    make_degrading(fleet_db.store, f.degrading)
    now = max(fleet_db.store.recent_results(d, 1)[0].ts for d in f.devices) + 2000
    df = fleet.fleet_frame(fleet_db.store, now).set_index("device")
    for d in f.degrading:
        assert df.loc[d, "stage"] == "degrading"
        assert 0 < df.loc[d, "attention_since_ms"] <= fleet_db.store.recent_results(d, 1)[0].ts - 60_000  # or earlier: the plant's own tracker
        assert 0 < df.loc[d, "rul_low_s"] <= df.loc[d, "rul_s"] <= df.loc[d, "rul_high_s"]
    for d in f.alarm:
        assert df.loc[d, "stage"] in ("alarm", "critical") and df.loc[d, "attention_since_ms"] > 0
    assert (df.loc[[d for d in f.devices if d not in f.alarm + f.degrading], "stage"] != "degrading").all()
    att = fleet.attention(df.reset_index(), now).set_index("device")
    for d in f.degrading:
        assert att.loc[d, "since"].startswith("since 20") and att.loc[d, "since"].endswith("ago)")
        assert att.loc[d, "remaining"] == "about 3 h left (2-5 h)"  # counted from `now`, 2 s after the update
        assert att.loc[d, "trend"] == ("score rising, doubling every 46 min; at this rate it reaches the alarm level "
                                       "in about 30 min")
    assert list(att.index[: len(f.alarm)]) and set(att.index[: len(f.alarm)]) == set(f.alarm)


def test_pages_say_it_in_plain_words(monkeypatch, fleet_db) -> None:
    monkeypatch.setenv("EDGEFLEET_DASHBOARD_AUTH", "off")
    f = fleet_db.fleet
    make_degrading(fleet_db.store, f.degrading)
    at = open_page(monkeypatch, fleet_db.path)
    att = at.dataframe[0].value
    assert {"stage", "since", "remaining", "trend"} <= set(att.columns)
    assert set(att["device"]) >= set(f.alarm) | set(f.degrading)
    dev = f.degrading[0]
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_DEVICE, device=dev)
    text = "\n".join(m.value for m in at.markdown) + "\n".join(c.value for c in at.caption)
    assert ">degrading</span>" in text and "needs attention since 20" in text
    assert "**Remaining life:** about " in text and " left (" in text
    assert "**Trend:** score rising, doubling every" in text
    assert "**Long-term trend:** " in text  # the hourly-rollup forecast beside the short one, with its horizon
    assert "slope" not in text and "per hour" not in text  # the jargon is gone


def test_long_term_forecast_words_name_their_horizon() -> None:
    from edgefleet.service.alarms import Forecast

    def fc(state, eta=None):
        return Forecast("rollup_1h", "from the last 14 days of hourly rollups (336 points)", 336, 14 * 86400.0,
                        0.5, 0.1, 4.0, eta, state)

    assert health.forecast_words(fc("rising", 5 * 86400.0)) == (
        "from the last 14 days of hourly rollups (336 points): reaches the alarm level in about 5 days at this trend")
    assert health.forecast_words(fc("flat")).endswith(": no significant rise")
    assert health.forecast_words(fc("above")).endswith(": already over the alarm level")
    assert health.forecast_words(fc("too_few")).startswith("not enough history yet")
