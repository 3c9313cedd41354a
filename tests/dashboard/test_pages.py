"""Each page under AppTest, against a real populated store: real content, and acknowledge writes through."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dashboards import ui
from dashboards.loaders.fleet import STATE_COLOURS
from edgefleet.service.alarms import AlarmTracker
from edgefleet.service.store import IngestBatch

from .conftest import chart_data, metrics, open_page

RED = STATE_COLOURS["alarm"]


def test_fleet_overview_counts_and_red_alarm_tiles(monkeypatch, fleet_db) -> None:
    at = open_page(monkeypatch, fleet_db.path)
    f = fleet_db.fleet
    m = metrics(at)
    assert m["Devices"] == str(len(f.devices))
    assert m["Alarming"] == str(len(f.alarm))
    assert m["Offline"] == str(len(f.offline))
    assert m["Unacknowledged"] == str(len(f.alarm))
    grids = [c for c in at.get("vega_lite_chart") if '"rect"' in c.proto.spec]
    assert len(grids) == 1
    spec, (tiles,) = chart_data(grids[0])
    scale = spec["encoding"]["color"]["scale"]
    colour = dict(zip(scale["domain"], scale["range"]))
    state = dict(zip(tiles["device"], tiles["state"]))
    assert {d: colour[state[d]] for d in f.alarm} == {d: RED for d in f.alarm}  # alarming machines are red
    assert all(colour[state[d]] != RED for d in f.devices if d not in f.alarm)
    assert {state[d] for d in f.offline} == {"offline"}
    # the models chart: v3 and v4 in use
    models = [c for c in at.get("vega_lite_chart") if c is not grids[0]]
    assert any(set(chart_data(c)[1][0].get("model", [])) == {"v3", "v4"} for c in models)
    attention = at.dataframe[0].value
    assert set(attention["device"]) >= set(f.alarm) | set(f.degrading)


def test_device_detail_timeline_threshold_and_trend(monkeypatch, fleet_db) -> None:
    dev = fleet_db.fleet.degrading[0]
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_DEVICE, device=dev)
    assert at.selectbox(key="device_pick").value == dev
    m = metrics(at)
    assert m["Status"] == "online" and m["Alarm"] == "none"
    assert m["Early warning"].startswith("~")  # degrading: a finite time to threshold
    score_chart, hi_chart = at.get("vega_lite_chart")[:2]  # a commissioned node: its health indicator below (then vrms)
    spec, frames = chart_data(score_chart)
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]
    assert marks == ["line", "circle", "line", "rule", "point"]  # scores, windows, trend, threshold, time extent
    by_column = {c: f for f in frames for c in f.columns}
    scores, trend, thr = by_column["seq"], by_column["part"], by_column["start"]
    assert len(scores) == len(fleet_db.store.score_history(dev))
    assert set(trend["part"]) == {"fit", "forecast"}
    assert thr["thr"].tolist() == [pytest.approx(2.667)]  # one any-speed class: one threshold throughout
    hi_spec, hi_frames = chart_data(hi_chart)
    assert hi_spec["layer"][0]["encoding"]["y"]["field"] == "hi"
    extent = [f for f in hi_frames if list(f.columns) == ["time"]] + [f for f in frames if list(f.columns) == ["time"]]
    assert len(extent) == 2 and extent[0]["time"].tolist() == extent[1]["time"].tolist()  # the two line up
    (recent,) = [d.value for d in at.dataframe if "window" in d.value.columns]
    last = fleet_db.store.recent_results(dev, 1)[0]
    assert len(recent) == 50 and recent["seq"].iloc[0] == last.seq  # newest first


def test_device_detail_defaults_to_the_most_urgent_machine(monkeypatch, fleet_db) -> None:
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_DEVICE)
    picked = at.selectbox(key="device_pick").value
    assert picked in fleet_db.fleet.alarm
    assert metrics(at)["Alarm"] == "critical"
    assert any(picked in md.value and "alarm" in md.value for md in at.markdown)


def test_alarms_filter_and_acknowledge_writes_to_the_store(monkeypatch, fleet_db) -> None:
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_ALARMS)
    table = at.dataframe[0].value
    assert sorted(table["device"]) == sorted(fleet_db.fleet.alarm)
    at.selectbox(key="alarm_severity").set_value("critical").run()
    assert len(at.dataframe[0].value) == 1
    at.selectbox(key="alarm_severity").set_value("any").run()

    assert at.selectbox(key="ack_alarm").value is None  # no alarm preselected: the wrong one is not one click away
    next(b for b in at.button if b.label == "Acknowledge").click().run()
    assert any("Pick the alarm to acknowledge" in e.value for e in at.error)
    assert fleet_db.store.alarms(acked=True) == []

    target = int(table[table["severity"] == "major"]["id"].iloc[0])
    at.selectbox(key="ack_alarm").set_value(target)
    at.text_input(key="ack_by").input("ann")
    at.text_input(key="ack_note").input("bearing ordered")
    next(b for b in at.button if b.label == "Acknowledge").click().run()
    assert not at.exception
    (acked,) = fleet_db.store.alarms(acked=True)  # written through the store
    assert (acked.id, acked.acked_by, acked.note) == (target, "ann", "bearing ordered")
    assert any("acknowledged" in s.value for s in at.success)
    shown = at.dataframe[0].value.set_index("id")
    assert shown.loc[target, "acked_by"] == "ann"  # the table is not stale after the write
    assert not any(o.startswith(f"#{target} ") for o in at.selectbox(key="ack_alarm").options)
    at.selectbox(key="alarm_state").set_value("active, unacknowledged").run()
    assert sorted(at.dataframe[0].value["device"]) == sorted(set(fleet_db.fleet.alarm) - {acked.device})


def test_new_alarm_appears_without_reopening_the_page(monkeypatch, fleet_db) -> None:
    """The loaders cache for TTL_S only: a rerun (what the fragment's run_every does) shows a new alarm."""
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_ALARMS)
    before = set(at.dataframe[0].value["device"])
    f = fleet_db.fleet  # a machine whose newest window was judged (commissioning ones raise nothing)
    healthy = next(d for d in f.devices if d not in before and d not in f.offline + f.commissioning + f.needs_class)
    last = fleet_db.store.recent_results(healthy, 1)[0]
    burst = [last._replace(seq=last.seq + i, ts=last.ts + i * 1000, score=10.0, anom=True) for i in range(1, 6)]
    out = fleet_db.store.write_batch(IngestBatch(burst[-1].ts + 500, 1, burst))
    tracker = AlarmTracker()
    changes = tracker.observe_many(out.new)
    fleet_db.store.apply_alarm_changes(changes, [tracker.health(healthy)])
    time.sleep(ui.TTL_S + 0.1)
    at.run()
    assert set(at.dataframe[0].value["device"]) == before | {healthy}


def test_system_page_rates_and_rejects(monkeypatch, fleet_db) -> None:
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_SYSTEM)
    m = metrics(at)
    assert m["Results stored"] == f"{fleet_db.fleet.results:,}"
    assert m["Rejected"] == f"{fleet_db.fleet.rejects:,}"
    assert float(m["Lag (avg)"].split()[0]) > 0
    charts = at.get("vega_lite_chart")
    assert len(charts) == 3  # rate, lag, rejects by reason
    _, (by_reason,) = chart_data(charts[2])
    assert by_reason["count"].sum() == fleet_db.fleet.rejects


def test_missing_database_says_what_to_do(monkeypatch, tmp_path: Path) -> None:
    db = tmp_path / "not-yet.db"
    for page in (None, ui.PAGE_DEVICE, ui.PAGE_ALARMS, ui.PAGE_SYSTEM):
        at = open_page(monkeypatch, db, page)
        assert any(str(db) in w.value and "EDGEFLEET_DB" in w.value for w in at.warning)
        assert not at.get("vega_lite_chart")
    assert not db.exists()  # the dashboard never creates the store


def test_empty_store_renders_every_page(monkeypatch, tmp_path: Path) -> None:
    """The service has created the store but nothing has arrived yet."""
    from edgefleet.service.store import open_store

    db = tmp_path / "empty.db"
    open_store(db).close()
    at = open_page(monkeypatch, db)
    assert any("no devices yet" in i.value for i in at.info)
    for page in (ui.PAGE_DEVICE, ui.PAGE_ALARMS, ui.PAGE_SYSTEM):
        at = open_page(monkeypatch, db, page)
        assert at.info or at.success


def test_system_page_shows_what_never_arrived_and_data_loss_alarms(monkeypatch, tmp_path: Path) -> None:
    from edgefleet.protocol import ResultRecord
    from edgefleet.service.store import DeviceUpdate, SQLiteStore
    from edgefleet.service.store.loss import SETTLE_MS

    db = tmp_path / "loss.db"
    store = SQLiteStore(db)
    t0 = int(time.time() * 1000) - SETTLE_MS - 120_000  # the holes have settled by now
    store.write_batch(IngestBatch(ingest_ts=t0, devices=[DeviceUpdate("pump-7", t0, site="north")], results=[
        ResultRecord("pump-7", "b0000001", s, t0 + s, 1, 0.1, 1.0, False, 5) for s in range(100) if s % 10]))
    assert store.track_loss(int(time.time() * 1000)) == [("raise", "pump-7")]
    store.close()
    at = open_page(monkeypatch, db, ui.PAGE_SYSTEM)
    m = metrics(at)
    assert m["Missing"] == "10" and m["Pending"] == "0"
    assert any("keep losing results" in e.value for e in at.error)
    assert any("pump-7" in str(df.value) for df in at.dataframe)
    assert len(at.get("vega_lite_chart")) >= 1


def test_a_link_to_an_alarm_preselects_it_in_the_acknowledge_form(monkeypatch, fleet_db) -> None:
    """Notifications link to `/alarms?alarm=ID`: that alarm, not the newest, is the one the form starts on."""
    target = min(a.id for a in fleet_db.store.alarms(active=True))
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_ALARMS, alarm=str(target))
    assert at.selectbox(key="ack_alarm").value == target
    other = max(a.id for a in fleet_db.store.alarms(active=True))
    at.selectbox(key="ack_alarm").set_value(other)  # a later pick in the form stands over the link
    next(b for b in at.button if b.label == "Acknowledge").click().run()
    assert [a.id for a in fleet_db.store.alarms(acked=True)] == [other]
