"""Commissioning on the dashboard (docs/baseline.md): the Device page's state in words, classes and coverage,
windows without a verdict on the charts; the Fleet page's counts and grid state; commission commands queued
from both pages. On a real SQLite store written through `write_batch` (status `comm` objects, results with
state / hi / cls) and the real OTA registry's outbox."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboards import ui
from dashboards.loaders import commissioning, device, fleet
from edgefleet.errors import EdgefleetError
from edgefleet.protocol import ResultRecord
from edgefleet.service.ota.registry import OtaRegistry
from edgefleet.service.store import DeviceUpdate, IngestBatch, SQLiteStore, open_store

from .conftest import chart_data, metrics, open_page

LEARNED = int(datetime(2026, 11, 20, 8, 30, tzinfo=UTC).timestamp() * 1000)
CLASSES = [{"rpm": [1140.0, 1260.0], "n": 64, "thr": 2.31, "hi_thr": 1.62},
           {"rpm": [1425.0, 1575.0], "n": 64, "thr": 2.667, "hi_thr": 1.71},
           {"rpm": [1706.2, 1885.8], "n": 80, "thr": 3.05, "hi_thr": 1.84}]
COMMISSIONED = {"state": "commissioned", "hash": "0123456789abcdef", "learned": LEARNED, "classes": CLASSES}
ANY_SPEED = {"state": "commissioned", "hash": "fedcba9876543210", "learned": LEARNED,
             "classes": [{"rpm": [0.0, 0.0], "n": 64, "thr": 2.5, "hi_thr": 1.8}]}
LEARNING = {"state": "commissioning", "target": 64,
            "progress": [{"rpm": 1500.0, "n": 64}, {"rpm": 1200.0, "n": 64}, {"rpm": 1796.0, "n": 17}]}
WINDOWS = 150  # per device, 5 s apart, ending now
JUDGED_BEFORE_RELEARN = 60  # comm-01: judged windows, then commissioning ones
NEW_SPEED = 12  # three-01: its last windows run at a speed in no class
HI_ANOMALY = 41  # three-01: one window over its HI threshold only (score below its threshold)
# device -> (site, line, comm)
DEVICES = {"comm-01": ("north", "L1", LEARNING), "three-01": ("north", "L1", COMMISSIONED),
           "three-02": ("north", "L2", COMMISSIONED), "any-01": ("south", "L1", ANY_SPEED),
           "old-01": ("south", "L2", None)}


@dataclass
class CommDB:
    path: Path
    store: SQLiteStore
    now: int


def _result(dev: str, i: int, ts: int, comm: dict | None) -> ResultRecord:
    base = ResultRecord(dev, "b007", i, ts, 3, 0.9, 2.667, False, 400)
    if comm is None:  # an older node: the model's own threshold, nothing else
        return base
    if dev == "comm-01" and i >= JUDGED_BEFORE_RELEARN:
        return base._replace(state="commissioning")
    if dev == "three-01" and i >= WINDOWS - NEW_SPEED:
        return base._replace(score=1.4, state="uncommissioned")
    classes = comm.get("classes") or CLASSES  # comm-01 judged with its former three classes
    k = (i // 20) % len(classes)
    c = classes[k]
    hi = 1.3 * c["hi_thr"] if dev == "three-01" and i == HI_ANOMALY else 0.5 * c["hi_thr"]
    return base._replace(score=0.35 * c["thr"], thr=c["thr"], anom=hi > c["hi_thr"], hi=hi, cls=k,
                         hi_thr=c["hi_thr"])


@pytest.fixture
def comm_db(tmp_path: Path) -> Iterator[CommDB]:
    """Five nodes: commissioning, commissioned at 3 speeds with uncommissioned windows last (needs a class),
    commissioned at 3 speeds, commissioned with one any-speed class, and an older node without `comm`."""
    path = tmp_path / "fleet.db"
    store = open_store(path, synchronous="OFF")
    now = int(time.time() * 1000)
    t0 = now - WINDOWS * 5000
    store.write_batch(IngestBatch(t0 - 1000, len(DEVICES), [], [
        DeviceUpdate(d, t0 - 2000, status="online", boot="b007", fw="1.2.0" if comm else "1.1.0", model=3, slot="A",
                     thr=2.667, caps=("ota",), site=site, line=line, tags=("pump",), comm=comm)
        for d, (site, line, comm) in DEVICES.items()]))
    results = [_result(d, i, t0 + i * 5000, comm) for d, (_, _, comm) in DEVICES.items() for i in range(WINDOWS)]
    store.write_batch(IngestBatch(now, len(results) // 10, results))
    yield CommDB(path, store, now)
    store.close()


def frame_with(frames: list[pd.DataFrame], column: str) -> pd.DataFrame:
    (df,) = [f for f in frames if column in f.columns]
    return df


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    (df,) = [d.value for d in at.dataframe if column in d.value.columns]
    return df


def device_charts(at: AppTest) -> tuple[tuple[dict, list[pd.DataFrame]], tuple[dict, list[pd.DataFrame]] | None]:
    charts = [chart_data(c) for c in at.get("vega_lite_chart")]
    score = [c for c in charts if c[0]["layer"][0]["encoding"]["y"]["field"] == "score"]
    hi = [c for c in charts if c[0]["layer"][0]["encoding"]["y"]["field"] == "hi"]
    assert len(score) == 1 and len(hi) <= 1
    return score[0], (hi[0] if hi else None)


def windows_of(spec: dict, frames: list[pd.DataFrame]) -> dict[str, str]:
    """The colour each kind of window is drawn in (the circle layer's scale)."""
    (circle,) = [ly for ly in spec["layer"] if (ly["mark"]["type"] if isinstance(ly["mark"], dict)
                                                 else ly["mark"]) == "circle"]
    scale = circle["encoding"]["color"]["scale"]
    return dict(zip(scale["domain"], scale["range"]))


def covered(segments: pd.DataFrame, times: pd.Series) -> pd.Series:
    """Which of `times` lie strictly inside a threshold segment."""
    return times.map(lambda t: bool(((segments["start"] < t) & (t < segments["end"])).any()))


# ---------- loaders (no Streamlit) ----------

def test_commissioning_in_words() -> None:
    w = commissioning.comm_words
    assert w(LEARNING) == "Learning this machine's normal: 2 of 3 speeds, 17/64 windows at 1,796 rpm."
    assert w(COMMISSIONED) == "Commissioned on 2026-11-20 08:30 UTC: 3 speeds, 208 windows learned."
    assert w(ANY_SPEED).startswith("Commissioned on 2026-11-20 08:30 UTC: one class, any speed")
    assert w({"state": "commissioning", "target": 64, "progress": []}) == \
        "Learning this machine's normal: started, no progress reported yet (64 windows per speed)."
    assert w({"state": "commissioning", "target": 32, "progress": [{"rpm": 0.0, "n": 5}]}) == \
        "Learning this machine's normal: 5/32 windows (any speed)."
    assert "older firmware" in w(None)
    assert commissioning.speed_band([1706.2, 1885.8]) == "1,706–1,886 rpm"
    assert commissioning.comm_short(LEARNING) == "commissioning (64/64 at 1,500 rpm, 64/64 at 1,200 rpm, 17/64 at 1,796 rpm)"


def test_classes_coverage_and_window_counts(comm_db) -> None:
    scores = device.score_frame(comm_db.store, "three-01")
    counts = commissioning.window_counts(scores)
    assert counts == {"normal": WINDOWS - NEW_SPEED - 1, "anomalous": 1, "commissioning": 0,
                      "uncommissioned": NEW_SPEED, "judged": WINDOWS - NEW_SPEED, "windows": WINDOWS}
    classes = commissioning.class_frame(COMMISSIONED, scores)
    assert classes["class"].tolist() == ["0", "1", "2", "no class"]
    assert classes["speed"].tolist()[:3] == ["1,140–1,260 rpm", "1,425–1,575 rpm", "1,706–1,886 rpm"]
    assert classes["thr"].tolist()[:3] == [2.31, 2.667, 3.05] and classes["hi_thr"].tolist()[:3] == [1.62, 1.71, 1.84]
    assert classes["windows"].sum() == WINDOWS and classes["windows"].iloc[-1] == NEW_SPEED
    assert classes["share"].sum() == pytest.approx(1.0)
    assert commissioning.needs_class(COMMISSIONED, scores)
    assert not commissioning.needs_class(COMMISSIONED, device.score_frame(comm_db.store, "three-02"))
    progress = commissioning.progress_frame(LEARNING)
    assert progress["windows"].tolist() == [64, 64, 17] and progress["progress"].tolist()[2] == pytest.approx(17 / 64)


def test_thresholds_per_class_and_none_without_a_verdict(comm_db) -> None:
    scores = device.score_frame(comm_db.store, "three-01")
    segs = device.threshold_segments(scores, "thr")
    assert set(segs["thr"]) == {2.31, 2.667, 3.05}
    assert len(segs) == len(range(0, WINDOWS - NEW_SPEED, 20))  # a class change every 20 windows
    for r in segs.itertuples():  # each segment at the threshold of the windows it spans
        inside = scores[(scores["time"] >= r.start) & (scores["time"] < r.end)]
        assert set(inside["thr"]) == {r.thr} and set(inside["cls"]) == {r.cls}
    off = scores[scores["state"] == "uncommissioned"]
    assert not covered(segs, off["time"]).any()
    hi = device.threshold_segments(scores, "hi_thr")
    assert set(hi["hi_thr"]) == {1.62, 1.71, 1.84}
    # the trend, like the alarm service, fits judged windows only, against the newest judged threshold
    learning = device.score_frame(comm_db.store, "comm-01")
    assert device.trend_threshold(learning) == float(learning[learning["state"] == ""]["thr"].iloc[-1])
    trend = device.trend_line(learning, 2.667)
    fit = trend.points[trend.points["part"] == "fit"]
    assert fit["ts"].max() == learning["ts"].iloc[JUDGED_BEFORE_RELEARN - 1]  # the newest judged window
    facts = device.device_status(comm_db.store.device("three-01"), comm_db.now, scores)
    assert (facts["threshold"], facts["class"]) == ("none", "none (uncommissioned)")
    facts = device.device_status(comm_db.store.device("three-02"), comm_db.now,
                                 device.score_frame(comm_db.store, "three-02"))
    k = ((WINDOWS - 1) // 20) % 3
    assert facts["threshold"] == f"{CLASSES[k]['thr']:.4g}"
    assert facts["class"] == f"{k} ({commissioning.speed_band(CLASSES[k]['rpm'])})"


def test_fleet_commissioning_counts(comm_db) -> None:
    df = fleet.fleet_frame(comm_db.store, comm_db.now)
    recent = commissioning.recent_window_states(comm_db.store, df.loc[df["comm"] == "commissioned", "device"])
    df = commissioning.with_commissioning(df, recent)
    assert commissioning.comm_counts(df) == {"commissioned": 2, "needs a class": 1, "commissioning": 1, "unknown": 1}
    by = df.set_index("device")
    assert by.loc["three-01", "commissioning"] == "needs a class" and by.loc["three-01", "recent_uncommissioned"] == NEW_SPEED
    assert by.loc["comm-01", "state"] == "commissioning" and by.loc["comm-01", "colour"] == "#9467bd"
    assert fleet.fleet_counts(df)["commissioning"] == 1 and fleet.fleet_counts(df)["healthy"] == 0
    table = commissioning.commissioning_table(df)
    assert table["device"].tolist() == ["three-01", "comm-01"]
    assert fleet.attention(df).empty  # nothing alarming or degrading: no rows (not one empty row per machine)
    assert table["detail"].iloc[0] == f"{NEW_SPEED} of its last {commissioning.RECENT_WINDOWS} windows at a speed " \
                                      "in no learned class"


def test_sample_plant_commissioning_roles(fleet_db) -> None:
    """The sample plant: a re-learning machine, a 3-speed one, one needing a class, older nodes."""
    f = fleet_db.fleet
    s = fleet_db.store
    df = fleet.fleet_frame(s, int(time.time() * 1000))
    df = commissioning.with_commissioning(df, commissioning.recent_window_states(
        s, df.loc[df["comm"] == "commissioned", "device"]))
    by = df.set_index("device")
    assert by.loc[f.commissioning[0], "state"] == "commissioning"
    assert commissioning.comm_words(s.device(f.commissioning[0]).comm) == \
        "Learning this machine's normal: 2 of 3 speeds, 17/64 windows at 1,796 rpm."
    assert [by.loc[d, "commissioning"] for d in f.needs_class] == ["needs a class"]
    assert len(s.device(f.multi_speed[0]).comm["classes"]) == 3 and f.multi_speed[0] in f.alarm
    assert {by.loc[d, "commissioning"] for d in f.older} == {"unknown"}
    c = commissioning.comm_counts(df)
    assert c == {"commissioned": len(f.devices) - len(f.older) - 2, "needs a class": 1, "commissioning": 1,
                 "unknown": len(f.older)}


def test_target_devices_and_command_words(comm_db) -> None:
    assert commissioning.target_devices(comm_db.store, "line=L1") == ["any-01", "comm-01", "three-01"]
    assert commissioning.target_devices(comm_db.store, "site=south") == ["any-01", "old-01"]
    assert len(commissioning.target_devices(comm_db.store, "all")) == len(DEVICES)
    with pytest.raises(EdgefleetError, match="no device in the store matches target site=west"):
        commissioning.target_devices(comm_db.store, "site=west")
    with pytest.raises(EdgefleetError, match="use all, site=NAME"):
        commissioning.target_devices(comm_db.store, "floor=3")
    assert commissioning.command_words({"op": "commission", "rpm": 1200.0, "windows": 128}) == \
        "learn the class around 1,200 rpm (other classes kept), 128 windows per class"
    assert commissioning.command_words({"op": "commission_end"}).startswith("end commissioning")


# ---------- pages ----------

def test_device_page_commissioning_node(monkeypatch, comm_db) -> None:
    at = open_page(monkeypatch, comm_db.path, ui.PAGE_DEVICE, device="comm-01")
    assert any("Learning this machine's normal: 2 of 3 speeds, 17/64 windows at 1,796 rpm." in i.value
               for i in at.info)
    assert any("commissioning" in md.value and "comm-01" in md.value for md in at.markdown)  # the state badge
    assert metrics(at)["Threshold"] == "none"  # its newest window has no verdict
    progress = table_with(at, "progress")
    assert progress["windows"].tolist() == [64, 64, 17] and progress["target"].tolist() == [64] * 3
    assert any("commissioning **90**" in md.value for md in at.markdown)
    (spec, frames), hi = device_charts(at)
    colours = windows_of(spec, frames)
    assert set(colours) == {"normal", "commissioning"} and colours["commissioning"] != colours["normal"]
    scores = frame_with(frames, "seq")
    assert (scores["window"] == "commissioning").sum() == WINDOWS - JUDGED_BEFORE_RELEARN
    assert spec["layer"][0]["encoding"]["detail"]["field"] == "run" and scores["run"].nunique() == 2  # line breaks
    segs = frame_with(frames, "start")
    assert not covered(segs, scores.loc[scores["window"] == "commissioning", "time"]).any()  # no threshold there
    assert hi is not None  # its judged windows before re-learning carry an HI


def test_device_page_three_classes_with_uncommissioned_windows(monkeypatch, comm_db) -> None:
    at = open_page(monkeypatch, comm_db.path, ui.PAGE_DEVICE, device="three-01")
    assert any("Commissioned on 2026-11-20 08:30 UTC: 3 speeds" in md.value and "needs a class" in md.value
               for md in at.markdown)
    classes = table_with(at, "learned_windows")
    assert classes["class"].tolist() == ["0", "1", "2", "no class"]
    assert classes["thr"].tolist()[:3] == [2.31, 2.667, 3.05] and classes["windows"].iloc[-1] == NEW_SPEED
    assert any(f"{NEW_SPEED} of the {WINDOWS} windows shown ran at a speed in no learned class" in w.value
               for w in at.warning)
    (spec, frames), hi = device_charts(at)
    colours = windows_of(spec, frames)
    assert set(colours) == {"normal", "anomalous", "uncommissioned"}
    assert len(set(colours.values())) == 3 and colours["anomalous"] == "#d62728"
    scores = frame_with(frames, "seq")
    assert scores.loc[scores["seq"] == HI_ANOMALY, "window"].item() == "anomalous"  # over its HI threshold only
    segs = frame_with(frames, "start")
    assert set(segs["thr"]) == {2.31, 2.667, 3.05}  # each class its own threshold
    assert not covered(segs, scores.loc[scores["window"] == "uncommissioned", "time"]).any()
    assert hi is not None
    _, hi_frames = hi
    assert set(frame_with(hi_frames, "start")["hi_thr"]) == {1.62, 1.71, 1.84}
    hi_points = frame_with(hi_frames, "seq")
    assert hi_points["hi"].notna().all() and len(hi_points) == WINDOWS - NEW_SPEED
    recent = table_with(at, "window")
    assert recent["window"].iloc[0] == "uncommissioned" and pd.isna(recent["cls"].iloc[0])


def test_device_page_older_node_has_no_classes_and_one_threshold(monkeypatch, comm_db) -> None:
    at = open_page(monkeypatch, comm_db.path, ui.PAGE_DEVICE, device="old-01")
    assert any("older firmware" in c.value for c in at.caption)
    (spec, frames), hi = device_charts(at)
    assert hi is None and set(windows_of(spec, frames)) == {"normal"}
    segs = frame_with(frames, "start")
    assert segs["thr"].tolist() == [2.667]
    assert not [d for d in at.dataframe if "learned_windows" in d.value.columns]
    assert "cls" not in table_with(at, "window").columns  # no class, HI columns for an older node


def test_fleet_page_commissioning_counts_and_grid(monkeypatch, comm_db) -> None:
    at = open_page(monkeypatch, comm_db.path, ui.PAGE_FLEET)
    m = metrics(at)
    assert (m["Commissioned"], m["Needs a class"], m["Commissioning"], m["Older nodes"]) == ("2", "1", "1", "1")
    assert m["Healthy"] == "0" and m["Alarming"] == "0"  # the commissioning machine is neither
    (grid,) = [c for c in at.get("vega_lite_chart") if '"rect"' in c.proto.spec]
    spec, (tiles,) = chart_data(grid)
    scale = spec["encoding"]["color"]["scale"]
    colour = dict(zip(scale["domain"], scale["range"]))
    state = dict(zip(tiles["device"], tiles["state"]))
    assert state["comm-01"] == "commissioning"
    assert colour["commissioning"] not in (colour["ok"], colour["alarm"], colour["degrading"], colour["unknown"])
    assert dict(zip(tiles["device"], tiles["commissioning"]))["three-01"] == "needs a class"
    table = table_with(at, "detail")
    assert table["device"].tolist() == ["three-01", "comm-01"]
    assert any("No machine is alarming or degrading" in s.value for s in at.success)


def test_commission_one_device_from_its_page(monkeypatch, comm_db) -> None:
    at = open_page(monkeypatch, comm_db.path, ui.PAGE_DEVICE, device="three-01")
    at.number_input(key="comm_dev_windows").set_value(128)
    at.number_input(key="comm_dev_rpm").set_value(1000.0)
    at.text_input(key="comm_dev_by").input("ann")
    at.button(key="FormSubmitter:comm_device-Commission").click().run()
    assert not at.exception and not at.error
    reg = OtaRegistry(comm_db.path)
    try:
        ((_, dev, body),) = reg.pending_commands()
        assert dev == "three-01"
        assert {k: v for k, v in body.items() if k != "id"} == {"op": "commission", "windows": 128, "rpm": 1000.0}
        assert body["id"].startswith("comm-")
        assert reg.commands("three-01")[0]["note"] == "dashboard: ann"
    finally:
        reg.close()
    msg = "Queued for 1 device (three-01): learn the class around 1,000 rpm (other classes kept), 128 windows per class."
    assert any(msg in s.value for s in at.success)
    at.run()  # the next refresh keeps the message (and the Commands table shows the queued command)
    assert any(msg in s.value for s in at.success)
    cmds = table_with(at, "sent")
    assert cmds["command"].iloc[0].startswith("learn the class around 1,000 rpm") and pd.isna(cmds["sent"].iloc[0])


@pytest.mark.parametrize(("fields", "end", "error"), [
    ({"comm_dev_windows": 5}, False, "windows per class must be between 16 and 4096, got 5"),
    ({"comm_dev_rpm": -50.0}, False, "a speed class must be a speed in rev/min above 0, got -50"),
    ({"comm_dev_rpm": 1200.0}, True, "ending commissioning takes no window count or speed class"),
])
def test_bad_commission_input_shows_the_error_and_queues_nothing(monkeypatch, comm_db, fields, end, error) -> None:
    at = open_page(monkeypatch, comm_db.path, ui.PAGE_DEVICE, device="comm-01")
    for key, value in fields.items():
        at.number_input(key=key).set_value(value)
    label = "End commissioning" if end else "Commission"
    at.button(key=f"FormSubmitter:comm_device-{label}").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [error]
    reg = OtaRegistry(comm_db.path)
    try:
        assert reg.pending_commands() == []
    finally:
        reg.close()


def test_end_commissioning_from_the_device_page(monkeypatch, comm_db) -> None:
    at = open_page(monkeypatch, comm_db.path, ui.PAGE_DEVICE, device="comm-01")
    at.button(key="FormSubmitter:comm_device-End commissioning").click().run()
    reg = OtaRegistry(comm_db.path)
    try:
        ((_, dev, body),) = reg.pending_commands()
    finally:
        reg.close()
    assert dev == "comm-01" and body["op"] == "commission_end" and set(body) == {"id", "op"}
    assert any("Queued for 1 device (comm-01): end commissioning" in s.value for s in at.success)


def test_commission_a_target_from_the_fleet_page(monkeypatch, comm_db) -> None:
    at = open_page(monkeypatch, comm_db.path, ui.PAGE_FLEET)
    at.text_input(key="comm_fleet_target").input("line=L1")
    at.button(key="FormSubmitter:comm_fleet-Commission").click().run()  # not confirmed: refused
    assert any("tick the confirmation first" in e.value for e in at.error)
    reg = OtaRegistry(comm_db.path)
    try:
        assert reg.pending_commands() == []
        at.text_input(key="comm_fleet_target").input("floor=3")
        at.checkbox(key="comm_fleet_confirm").check()
        at.button(key="FormSubmitter:comm_fleet-Commission").click().run()  # a bad target: the target's own error
        assert [e.value for e in at.error] == ["target 'floor=3': use all, site=NAME, line=NAME or tag=NAME"]
        assert reg.pending_commands() == []

        at.text_input(key="comm_fleet_target").input("line=L1")
        at.checkbox(key="comm_fleet_confirm").check()
        at.number_input(key="comm_fleet_windows").set_value(96)
        at.button(key="FormSubmitter:comm_fleet-Commission").click().run()
        assert not at.exception and not at.error
        pending = reg.pending_commands()
        assert sorted(d for _, d, _ in pending) == ["any-01", "comm-01", "three-01"]
        bodies = [b for _, _, b in pending]
        assert all(b == bodies[0] for b in bodies)  # one command, the same id for every device
        assert {k: v for k, v in bodies[0].items() if k != "id"} == {"op": "commission", "windows": 96}
        assert any(s.value.startswith("Queued for 3 devices (any-01, comm-01, three-01): commission every speed "
                                      "from scratch, 96 windows per class.") for s in at.success)
        assert at.checkbox(key="comm_fleet_confirm").value is False  # confirm again for the next one

        at.text_input(key="comm_fleet_target").input("site=south")
        at.number_input(key="comm_fleet_windows").set_value(None)
        at.button(key="FormSubmitter:comm_fleet-End commissioning").click().run()  # ending needs no confirmation
        ends = [(d, b["op"]) for _, d, b in reg.pending_commands()[3:]]
        assert ends == [("any-01", "commission_end"), ("old-01", "commission_end")]
        assert any("Queued for 2 devices (any-01, old-01): end commissioning" in s.value for s in at.success)
    finally:
        reg.close()


@pytest.mark.parametrize("windows", [200, 900])  # the newest windows, then (>= 20 rollups of 30) the rollups
def test_trend_is_the_alarm_services_fit_of_the_ratio(windows) -> None:
    """Across classes with different thresholds the score jumps; the ratio the alarm service fits does not."""
    from edgefleet.service.alarms import AlarmPolicy, AlarmTracker

    t0 = 1_800_000_000_000
    recs = []
    for i in range(windows):
        c = CLASSES[(i // 25) % 3]
        ratio = 0.3 * 1.002 ** i  # rising, under the threshold all along
        recs.append(ResultRecord("m", "b", i, t0 + i * 5000, 3, ratio * c["thr"], c["thr"], False, 400, state="",
                                 hi=0.5 * ratio * c["hi_thr"], cls=(i // 25) % 3, hi_thr=c["hi_thr"]))
    recs.insert(windows // 2, recs[0]._replace(seq=10**6, ts=t0 + windows // 2 * 5000 + 1, score=50.0,
                                               state="uncommissioned", hi=None, cls=None, hi_thr=None))
    tracker = AlarmTracker(AlarmPolicy())
    assert tracker.observe_many(recs) == []
    health = tracker.health("m")
    scores = device.results_frame(recs)
    tl = device.trend_line(scores, device.trend_threshold(scores))
    assert tl is not None and health.slope_per_h == pytest.approx(tl.slope_per_h, rel=1e-9)
    if health.eta_s is not None:  # the service also drops a forecast it does not trust; when it keeps one, the same
        assert health.eta_s == pytest.approx(tl.eta_s, rel=1e-6)
    ts, _, groups = device.ratio_points(scores)
    rollups = tracker._devices["m"].rollups
    assert len(ts) == (len(rollups) if len(rollups) >= 20 else min(windows, 120))
    assert groups[-1] == recs[-1].cls
    fc = tl.points[tl.points["part"] == "fit"]
    assert fc["score"].iloc[-1] == pytest.approx(0.3 * 1.002 ** (windows - 1) * recs[-1].thr, rel=0.05)
