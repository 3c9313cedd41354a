"""Readings and why on the dashboard (feature definition v2): velocity RMS against the ISO 20816 zones of each
machine's class, the why and hint of anomalous windows and of the active alarm, the spectrum of the newest debug
capture with its order and bearing marks, the fleet grid by ISO zone; loaders on the sample plant (seeded with v2
results), the pages under AppTest, and the Device page in real Chromium."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from dashboards.loaders import device as device_loaders
from dashboards.loaders import fleet as fleet_loaders
from dashboards.loaders import readings
from edgefleet.clock import now_ms
from edgefleet.service import iso20816

from .conftest import chart_data, open_page


def frames_with(at, column: str) -> list:
    """Every dataset (as a DataFrame) of every chart on the page that has `column`."""
    out = []
    for chart in at.get("vega_lite_chart"):
        _, frames = chart_data(chart)
        out += [f for f in frames if column in f.columns]
    return out


# ---------- loaders ----------

def test_machine_classes_resolve_per_device_site_and_default(fleet_db) -> None:
    s, f = fleet_db.store, fleet_db.fleet
    classes = s.machine_classes()
    by_name = {d.device: readings.machine_class(classes, d) for d in s.devices()}
    assert by_name[f.degrading[0]] == ("I", "device")  # set for the machine
    assert all(by_name[d] == ("III", "site") for d in f.devices if d.startswith("east-") and d != f.degrading[0])
    assert all(by_name[d] == ("II", "default") for d in f.devices if d.startswith(("north-", "south-"))
               and d != f.degrading[0])
    assert "class II" in readings.class_words("II", "default") and "default" in readings.class_words("II", "default")


def test_vrms_frame_and_zone_bands(fleet_db) -> None:
    s, f = fleet_db.store, fleet_db.fleet
    worst = f.alarm[-1]
    vr = readings.vrms_frame(s, worst, "II")
    assert len(vr) > 100 and vr["ts"].is_monotonic_increasing
    assert list(vr["zone"]) == [iso20816.zone(v, "II") for v in vr["vrms"]]
    assert vr["zone"].iloc[-1] in ("C", "D") and "A" in set(vr["zone"])  # it was healthy, it is not now
    assert readings.vrms_frame(s, f.older[0], "II").empty  # v1 nodes report no velocity
    from_scores = readings.vrms_of(device_loaders.score_frame(s, worst), "II")  # what the page draws: no 2nd query
    assert from_scores[["ts", "vrms", "rpm", "zone"]].values.tolist() == vr[["ts", "vrms", "rpm", "zone"]].values.tolist()
    assert readings.vrms_of(device_loaders.score_frame(s, f.older[0]), "II").empty
    bands = readings.zone_bands("III", top=30.0)
    assert bands[["zone", "lo", "hi"]].values.tolist() == [["A", 0.0, 1.8], ["B", 1.8, 4.5], ["C", 4.5, 11.2],
                                                            ["D", 11.2, 30.0]]
    assert readings.zone_words(5.0, "II") == "5.00 mm/s: zone C (not for long-term operation: plan a repair)"


def test_why_and_hint_in_words(fleet_db) -> None:
    s, f = fleet_db.store, fleet_db.fleet
    assert readings.why_words('[{"lo":22.1,"hi":27.4,"share":0.62},{"name":"vrms","share":0.21}]', 1497) == \
        ["22.1-27.4 Hz (1x): 62%", "velocity RMS: 21%"]
    assert readings.why_words('[{"lo":2800,"hi":3400,"share":0.48}]') == ["2.80-3.40 kHz: 48%"]
    bearing = s.bearings()[f.alarm[0]]
    bpfo = readings.bearing_orders(bearing)["bpfo"] * 1497 / 60
    assert readings.why_words([{"lo": bpfo - 2, "hi": bpfo + 2, "share": 0.3}], 1497, bearing) == \
        [f"{bpfo - 2:.1f}-{bpfo + 2:.1f} Hz (BPFO): 30%"]
    for d in f.alarm:
        alarm = s.active_alarm(d)
        assert alarm.hint == f.hints[d] and alarm.why_items, d  # the alarm remembers what raised it
        scores = device_loaders.score_frame(s, d)
        words = readings.alarm_why(alarm, readings.rpm_near(scores, alarm.raised_ts), s.bearings().get(d))
        assert readings.HINT_WORDS[f.hints[d]] in words
        if f.hints[d] == "unbalance":
            assert "(1x)" in words
        if f.hints[d] == "misalignment":
            assert "(2x)" in words
        marks = readings.why_markers(scores, s.bearings().get(d))
        assert len(marks) == int(scores["anom"].sum()) > 0 and marks["hint"].eq(readings.HINT_WORDS[f.hints[d]]).all()
    assert readings.alarm_why(None) == ""


def test_spectrum_of_the_last_debug_capture(fleet_db) -> None:
    s, f = fleet_db.store, fleet_db.fleet
    assert sorted(f.captures) == sorted(f.alarm)
    for d in f.alarm:
        cap = readings.last_capture(s, d)
        assert cap is not None and cap.fs == 12000.0 and len(cap.samples) == 8192
        spec = readings.spectrum_frame(cap.samples, cap.fs)
        assert len(spec) <= readings.SPECTRUM_POINTS + 600 and spec["hz"].max() <= cap.fs / 2
        peak = float(spec.loc[spec["g"].idxmax(), "hz"])
        rpm = readings.rpm_near(device_loaders.score_frame(s, d), cap.ts)
        want = {"unbalance": rpm / 60, "misalignment": 2 * rpm / 60, "bearing_outer_race": 3000.0}[f.hints[d]]
        assert abs(peak - want) < max(3.0, 0.03 * want), (d, f.hints[d], peak, want)
        marks = readings.order_marks(rpm, s.bearings().get(d), cap.fs / 2)
        assert list(marks["mark"]) == ["1x", "2x", "3x", "BPFO", "BPFI", "BSF"]
        assert marks.loc[marks["mark"] == "2x", "hz"].item() == pytest.approx(2 * rpm / 60)
    assert readings.last_capture(s, f.older[0]) is None
    assert list(readings.order_marks(1500, None, 6000)["mark"]) == ["1x", "2x", "3x"]  # no geometry: orders only
    assert readings.order_marks(None, s.bearings()[f.alarm[0]], 6000).empty  # no speed: no marks at all


def test_fleet_zones(fleet_db) -> None:
    s, f = fleet_db.store, fleet_db.fleet
    df = readings.fleet_zones(fleet_loaders.fleet_frame(s, now_ms()), s.latest_vrms(), s.machine_classes())
    z = dict(zip(df["device"], df["zone"]))
    assert all(z[d] == readings.NO_READING for d in f.older)
    assert all(z[d] in iso20816.ZONES for d in f.devices if d not in f.older)
    row = df.set_index("device").loc[f.degrading[0]]
    assert row["iso_class"] == "I" and row["zone"] == iso20816.zone(row["vrms"], "I")


# ---------- pages ----------

def test_device_page_shows_vibration_why_and_spectrum(monkeypatch, fleet_db) -> None:
    f = fleet_db.fleet
    dev = next(d for d in f.alarm if f.hints[d] == "unbalance")
    at = open_page(monkeypatch, fleet_db.path, "views/device.py", device=dev)
    alarm_box = " ".join(e.value for e in at.error)
    assert "unbalance (or bent shaft)" in alarm_box and "(1x)" in alarm_box
    assert {"Vibration (ISO 20816)", "Spectrum of the last debug capture"} <= {h.value for h in at.subheader}
    bands = next(fr for fr in frames_with(at, "meaning"))
    assert bands[["zone", "lo"]].values.tolist()[:3] == [["A", 0.0], ["B", 1.12], ["C", 2.8]]  # class II, default
    marked = next(fr for fr in frames_with(at, "hint") if "seq" not in fr.columns)  # not the score frame
    assert len(marked) > 0 and marked["why"].str.contains("(1x)", regex=False).all()
    marks = next(fr for fr in frames_with(at, "mark"))
    assert set(marks["mark"]) == {"1x", "2x", "3x", "BPFO", "BPFI", "BSF"}
    assert any(fr["g"].max() > 0.05 for fr in frames_with(at, "g"))


def test_device_page_of_an_older_node_says_it_has_no_readings(monkeypatch, fleet_db) -> None:
    at = open_page(monkeypatch, fleet_db.path, "views/device.py", device=fleet_db.fleet.older[0])
    text = " ".join(c.value for c in at.caption)
    assert "does not report `vrms`" in text and "No debug capture" in text
    assert not frames_with(at, "mark")


def test_machine_settings_form_writes_class_and_refuses_a_bad_bearing(monkeypatch, fleet_db) -> None:
    s, f = fleet_db.store, fleet_db.fleet
    dev = f.alarm[0]
    at = open_page(monkeypatch, fleet_db.path, "views/device.py", device=dev)
    at.selectbox(key="ms_class").set_value("IV")
    at.number_input(key="ms_balls").set_value(9)
    at.number_input(key="ms_ball_d").set_value(39.04)  # swapped with the pitch: refused
    at.number_input(key="ms_pitch_d").set_value(7.94)
    at.button[[b.label for b in at.button].index("Save")].click().run()
    assert any("were they swapped" in e.value for e in at.error)
    assert s.bearings()[dev]["ball_d_mm"] == 7.94  # unchanged
    assert s.machine_classes()["device"].get(dev) == "IV"  # the class went in before the geometry was refused
    at.number_input(key="ms_ball_d").set_value(7.94)
    at.number_input(key="ms_pitch_d").set_value(39.04)
    at.radio(key="ms_scope").set_value("its site")
    at.selectbox(key="ms_class").set_value("I")
    at.button[[b.label for b in at.button].index("Save")].click().run()
    assert not at.exception and any("Saved: class I for site" in m.value for m in at.success)
    assert s.machine_classes()["site"][s.device(dev).site] == "I"
    bands = next(fr for fr in frames_with(at, "meaning"))
    assert bands["lo"].tolist()[1] == 2.8  # the machine's own class IV still wins over its site's


def test_fleet_grid_colours_by_iso_zone(monkeypatch, fleet_db) -> None:
    f = fleet_db.fleet
    at = open_page(monkeypatch, fleet_db.path)
    at.segmented_control(key="fleet_colour_by").set_value("ISO zone").run()
    assert not at.exception
    (grid_chart,) = [c for c in at.get("vega_lite_chart") if '"rect"' in c.proto.spec]
    spec, frames = chart_data(grid_chart)
    grid = next(fr for fr in frames if "zone" in fr.columns)
    assert spec["encoding"]["color"]["field"] == "zone"
    assert set(spec["encoding"]["color"]["scale"]["domain"]) == set(readings.ZONE_STATES)
    z = dict(zip(grid["device"], grid["zone"]))
    assert all(z[d] == readings.NO_READING for d in f.older) and z[f.alarm[-1]] in ("C", "D")


# ---------- real browser ----------

@pytest.mark.timeout(180)
def test_device_page_renders_vibration_and_spectrum_in_chromium(fleet_db, tmp_path) -> None:
    from dashboards.snapshot import CHART_DRAWN_JS, chromium, dashboard, render

    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed (scripts/apt-packages.txt)", pytrace=False)
    f = fleet_db.fleet
    dev = next(d for d in f.alarm if f.hints[d] == "misalignment")
    with dashboard(fleet_db.path) as url, chromium() as browser:
        png, text = render(f"{url}/device?device={dev}", browser, height=2600,
                           expect=("Vibration (ISO 20816)", "Spectrum of the last debug capture",
                                   "misalignment (or bent shaft)", "Captured"))
        (tmp_path / "device.png").write_bytes(png)
        drawn = browser.eval(CHART_DRAWN_JS)
        assert drawn >= 4, f"{drawn} charts drawn (score, HI, velocity, spectrum expected)"
        assert "(2x)" in text and "zone" in text
        img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
        assert img.std() > 20
        for zone_colour in (iso20816.ZONE_COLOURS["A"], iso20816.ZONE_COLOURS["D"]):  # shaded at opacity 0.22
            rgb = np.array([int(zone_colour[i:i + 2], 16) for i in (1, 3, 5)])
            shade = 255 + 0.22 * (rgb - 255)
            near = np.all(np.abs(img - shade) <= 8, axis=-1).sum()
            assert near > 2000, f"zone {zone_colour} band not drawn ({near} pixels)"


def test_fleet_grid_by_zone_from_a_bookmark(monkeypatch, fleet_db) -> None:
    from streamlit.testing.v1 import AppTest

    from .conftest import APP

    monkeypatch.setenv("EDGEFLEET_DB", str(fleet_db.path))
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["colour"] = "zone"  # a fresh session opened on /?colour=zone
    at.run()
    assert not at.exception
    (grid_chart,) = [c for c in at.get("vega_lite_chart") if '"rect"' in c.proto.spec]
    assert chart_data(grid_chart)[0]["encoding"]["color"]["field"] == "zone"
