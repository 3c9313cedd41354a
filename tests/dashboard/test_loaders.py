"""The loaders (dashboards/loaders/) without Streamlit, against a real populated store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dashboards.loaders import alarms, common, device, fleet, system
from edgefleet.service.alarms import AlarmPolicy

RED = fleet.STATE_COLOURS["alarm"]


def test_fleet_frame_states_follow_the_store(fleet_db) -> None:
    df = fleet.fleet_frame(fleet_db.store, data_now(fleet_db))
    f = fleet_db.fleet
    by = df.set_index("device")
    assert sorted(df["device"]) == sorted(f.devices)
    for d in f.alarm:
        assert by.loc[d, "state"] == "alarm" and by.loc[d, "colour"] == RED and by.loc[d, "severity"] is not None
    for d in f.offline:
        assert by.loc[d, "state"] == "offline" and by.loc[d, "status"] == "offline"
    for d in f.degrading:
        assert by.loc[d, "state"] == "degrading"
        assert 0 < by.loc[d, "eta_s"] < AlarmPolicy().horizon_s
    # every machine sits in exactly one grid cell of its site / line
    assert not df.duplicated(["row", "col"]).any()
    assert set(df["row"]) == {f"{s} / {ln}" for s, lines in
                              {"plant-north": "L1 L2 L3", "plant-south": "L1 L2", "plant-east": "L1 L2"}.items()
                              for ln in lines.split()}


def test_long_lines_wrap_in_the_grid(fleet_db) -> None:
    df = fleet.fleet_frame(fleet_db.store, data_now(fleet_db), width=3)  # 4 machines per line
    assert df["col"].max() == 2 and not df.duplicated(["row", "col"]).any()
    assert (df["row"] == "plant-north / L1 (2)").sum() == 1


def data_now(fleet_db) -> int:
    return max(r.ts for d in fleet_db.fleet.devices for r in fleet_db.store.recent_results(d, 1)) + 2000


def test_counts_models_and_attention(fleet_db) -> None:
    df = fleet.fleet_frame(fleet_db.store, data_now(fleet_db))
    c = fleet.fleet_counts(df)
    f = fleet_db.fleet
    assert c["devices"] == len(f.devices)
    assert c["alarming"] == len(f.alarm)
    assert c["offline"] == len(f.offline)
    assert c["degrading"] >= len(f.degrading)
    assert c["commissioning"] == len(f.commissioning)  # learning its normal: neither healthy nor alarming
    assert c["healthy"] + c["alarming"] + c["offline"] + c["degrading"] + c["commissioning"] == c["devices"]
    models = fleet.model_versions(df)
    assert set(models["model"]) == {"v3", "v4"} and models["devices"].sum() == len(f.devices)
    att = fleet.attention(df)
    assert list(att["device"][: len(f.alarm)]) != [] and set(att["device"][: len(f.alarm)]) == set(f.alarm)
    assert att["severity"].iloc[0] == "critical"  # most severe first


def test_trend_line_forecasts_the_threshold_crossing(fleet_db) -> None:
    dev = fleet_db.fleet.degrading[0]
    scores = device.score_frame(fleet_db.store, dev)
    thr = float(scores["thr"].iloc[-1])
    tl = device.trend_line(scores, thr)
    assert tl is not None and tl.slope_per_h > 0 and tl.eta_s is not None and tl.eta_s > 0
    fc = tl.points[tl.points["part"] == "forecast"]
    assert fc["score"].iloc[-1] == pytest.approx(thr, rel=1e-3)  # the forecast ends on the threshold
    # the store's early warning (computed by the alarm service) agrees with the chart's fit
    assert fleet_db.store.device(dev).eta_s == pytest.approx(tl.eta_s, rel=0.1, abs=30)
    healthy = [d for d in fleet_db.fleet.devices if d not in fleet_db.fleet.alarm + fleet_db.fleet.degrading][0]
    assert device.trend_line(device.score_frame(fleet_db.store, healthy).head(5), thr) is None  # too few points


def test_alarm_frame_filters(fleet_db) -> None:
    s = fleet_db.store
    active = alarms.alarm_frame(s, "active")
    assert sorted(active["device"]) == sorted(fleet_db.fleet.alarm)
    crit = alarms.alarm_frame(s, "active", min_severity="critical")
    assert len(crit) == 1 and crit["severity"].iloc[0] == "critical"
    site = active["site"].iloc[0]
    assert set(alarms.alarm_frame(s, "all", site=site)["site"]) == {site}
    assert alarms.alarm_frame(s, "cleared").empty
    assert s.ack_alarm(int(active["id"].iloc[0]), "ann", data_now(fleet_db))
    assert len(alarms.alarm_frame(s, "active, unacknowledged")) == len(active) - 1
    with pytest.raises(ValueError, match="unknown alarm state"):
        alarms.alarm_frame(s, "open")


def test_ingest_and_rejects(fleet_db) -> None:
    s = fleet_db.store
    ing = system.ingest_frame(s, 0, bucket_s=60)
    assert ing["results"].sum() == fleet_db.fleet.results == s.count_results()
    lags = ing["lag_ms_avg"].dropna()  # a bucket holding only the birth batch has no lag
    assert len(lags) >= len(ing) - 1 and (lags > 0).all()
    # the bucket still filling at `now` is marked, so a rate never reads low from a partial bucket
    last_ts = int(ing["ts"].iloc[-1])
    live = system.ingest_frame(s, 0, bucket_s=60, now_ms=last_ts + 30_000)
    assert list(live["complete"]) == [True] * (len(live) - 1) + [False]
    full = live[live["complete"]].tail(1)
    assert system.ingest_rate(live, 60, over_s=60) == pytest.approx(full["results"].iloc[0] / 60)
    assert system.ingest_rate(live.iloc[-1:], 60) is None
    rej = system.reject_series(s, 0, bucket_s=60)
    assert rej.by_reason["count"].sum() == fleet_db.fleet.rejects == s.counts().rejected
    assert not rej.truncated
    assert set(rej.by_reason["code"]) <= {"schema", "json", "topic", "size"}
    small = system.reject_series(s, 0, bucket_s=60, limit=3)
    assert small.truncated and len(small.latest) == 3
    tot = system.window_totals(ing)
    assert tot == {"messages": s.counts().messages, "results": fleet_db.fleet.results, "duplicates": 0,
                   "rejected": fleet_db.fleet.rejects}
    assert fleet.alarm_counts(s) == (len(fleet_db.fleet.alarm), len(fleet_db.fleet.alarm))
    s.ack_alarm(s.alarms(active=True)[0].id, "ann", data_now(fleet_db))
    assert fleet.alarm_counts(s) == (len(fleet_db.fleet.alarm), len(fleet_db.fleet.alarm) - 1)


def test_device_status_and_events(fleet_db) -> None:
    dev = fleet_db.fleet.offline[0]
    facts = device.device_status(fleet_db.store.device(dev), data_now(fleet_db))
    assert facts["status"] == "offline" and facts["model"] in ("v3", "v4") and facts["firmware"] == "1.2.0"
    ev = device.events_frame(fleet_db.store, dev)
    assert list(ev["kind"]) == ["status", "status"] and "state=offline" in ev["body"].iloc[0]


def test_resolve_db_order(tmp_path: Path) -> None:
    assert common.resolve_db(["--db", "a.db"], {"EDGEFLEET_DB": "b.db"}) == (Path("a.db"), "--db")
    assert common.resolve_db(["-x", "--durations=5"], {"EDGEFLEET_DB": "b.db"}) == (Path("b.db"), "EDGEFLEET_DB")
    assert common.resolve_db([], {})[1] == "default"
    msg = common.missing_db_message(tmp_path / "none.db", "--db")
    assert "none.db" in msg and "EDGEFLEET_DB" in msg
    assert "not a file" in common.missing_db_message(tmp_path, "--db")
    (tmp_path / "x.db").write_bytes(b"")
    assert common.missing_db_message(tmp_path / "x.db", "--db") is None


def test_formatting() -> None:
    assert common.fmt_eta(None) == "not rising"
    assert common.fmt_eta(0) == "above threshold" and common.fmt_eta(0, short=True) == "crossed"
    assert common.fmt_eta(420) == "threshold in ~7 min" and common.fmt_eta(7200, short=True) == "~2.0 h"
    assert common.fmt_age(12) == "12 s ago" and common.fmt_age(600) == "10 min ago"


def test_loaders_and_charts_do_not_import_streamlit() -> None:
    """They run (and are tested) without Streamlit; only ui.py and the pages use it."""
    code = "import sys, dashboards.loaders, dashboards.charts; sys.exit('streamlit' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0
