"""The shared time range (presets, absolute from/to, zoom, kept in the session and the URL), results bucketed in
the database for long ranges, and the compare view: loaders on a real store, pages under AppTest, and the
controls and a zoom by dragging across a chart in Chromium."""

from __future__ import annotations

import json
import shutil
import time

import pandas as pd
import pytest

from dashboards import ui
from dashboards.loaders import timerange as tr
from dashboards.loaders import timeseries
from edgefleet.errors import EdgefleetError
from edgefleet.protocol import ResultRecord
from edgefleet.service.store import IngestBatch, SQLiteStore

from .conftest import chart_data, open_page

H = 3_600_000


def test_ranges_from_the_url_and_back() -> None:
    assert tr.from_query({}) is None
    assert tr.from_query({"range": "6h"}) == tr.TimeRange("6h")
    r = tr.from_query({"from": "2026-12-06T08:00:00Z", "to": "2026-12-06 09:30"})
    assert (r.start_ms, r.end_ms) == (tr.parse_time("2026-12-06T08:00:00+00:00"), tr.parse_time("2026-12-06T09:30Z"))
    assert tr.from_query(r.to_query()) == r and tr.from_query(tr.TimeRange("7d").to_query()) == tr.TimeRange("7d")
    for bad, says in (({"range": "2w"}, "unknown range"), ({"from": "2026-12-06"}, "both from= and to="),
                      ({"from": "yesterday", "to": "today"}, "not a date-time"),
                      ({"from": "2026-12-06T10:00Z", "to": "2026-12-06T09:00Z"}, "after its start")):
        with pytest.raises(EdgefleetError, match=says):
            tr.from_query(bad)


def test_bounds_zoom_pan_and_selection() -> None:
    now = tr.parse_time("2026-12-06T12:00:00Z") + 123
    start, end = tr.TimeRange("1h").bounds(now)
    assert end - start == H and end >= now and end - now < tr.bucket_ms(H)  # rounded up: one cache key per bucket
    assert tr.TimeRange("1h").bounds(now + 1) == (start, end)
    z = tr.zoom(tr.TimeRange("1h"), 0.5, now)
    assert not z.live and z.span_ms() == H // 2 and z.end_ms <= now  # zooming in on a live range stays in the past
    assert tr.zoom(z, 2.0, now).span_ms() == H
    assert tr.zoom(tr.TimeRange(None, now - 90_000, now), 0.1, now).span_ms() == tr.MIN_SPAN_MS
    p = tr.pan(z, -0.5, now)
    assert (p.start_ms, p.end_ms) == (z.start_ms - H // 4, z.end_ms - H // 4)
    s = tr.selection(tr.TimeRange("1h"), now - 600_000, "2026-12-06T00:00:00Z")  # Vega gives ms or ISO strings
    assert s.start_ms == tr.parse_time("2026-12-06T00:00:00Z") and s.end_ms == now - 600_000
    assert tr.bucket_ms(30 * 24 * H) == 2 * H and tr.bucket_ms(15 * 60_000) == 2_000


def _long_store(tmp_path, n: int = 20_000, period_ms: int = 1000) -> tuple[SQLiteStore, int]:
    store = SQLiteStore(tmp_path / "long.db", synchronous="OFF")
    t0 = int(time.time() * 1000) - n * period_ms
    recs = [ResultRecord("m-1", "b0000001", i, t0 + i * period_ms, 1, 0.1 + (i % 97) / 1000, 1.0, i % 500 == 0, 5,
                         hi=0.5 + (i % 89) / 100, cls=0, hi_thr=3.0, vrms=1.0 + (i % 10) / 10, rpm=1500.0)
            for i in range(n)]
    for k in range(0, n, 5000):
        store.write_batch(IngestBatch(t0 + n * period_ms, 1, recs[k:k + 5000]))
    return store, t0


def test_long_ranges_are_bucketed_in_the_database(tmp_path) -> None:
    store, t0 = _long_store(tmp_path)
    start, end = t0, t0 + 20_000_000
    s = timeseries.device_series(store, "m-1", start, end)
    assert s.bucketed and s.total == 20_000 and len(s.frame) <= tr.BUCKETS and len(s.newest) == timeseries.NEWEST
    raw = pd.DataFrame(store.score_history("m-1", since_ms=start, until_ms=end, limit=100_000))
    raw["bucket"] = raw["ts"] // s.bucket_ms * s.bucket_ms  # buckets are aligned to multiples of their width
    want = raw.groupby("bucket").agg(score=("score", "max"), hi=("hi", "max"), vrms=("vrms", "mean"),
                                     n=("seq", "size"), anom=("anom", "max"))
    got = s.frame.set_index(want.index)
    assert (got["n"] == want["n"]).all() and got["score"].tolist() == want["score"].tolist()
    assert got["hi"].tolist() == want["hi"].tolist() and (got["vrms"] - want["vrms"]).abs().max() < 1e-9
    assert got["anom"].astype(bool).tolist() == want["anom"].astype(bool).tolist()
    assert set(s.frame["window"]) == {"normal", "anomalous"}
    short = timeseries.device_series(store, "m-1", end - 600_000, end)  # 10 minutes: every result
    assert not short.bucketed and len(short.frame) == short.total == 600
    # through the bucket cache: the same frame, and a refresh reads only the buckets that have not settled
    cache = timeseries.BucketCache()
    reads = []
    real = store.result_buckets
    store.result_buckets = lambda d, a, b, w: reads.append((a, b)) or real(d, a, b, w)
    first = timeseries.device_series(store, "m-1", start, end, cache=cache).frame
    again = timeseries.device_series(store, "m-1", start, end + 30_000, cache=cache).frame
    assert first["score"].tolist() == s.frame["score"].tolist() and len(again) >= len(first)
    assert reads[0][0] <= start and reads[1][0] >= end - 2 * s.bucket_ms - timeseries.SETTLE_MS, reads
    del store.result_buckets
    cmp = timeseries.compare_frame(store, ["m-1", "nope"], start, end)
    assert set(cmp["device"]) == {"m-1"} and cmp["n"].sum() == 20_000 and len(cmp) <= 300
    store.close()


def test_buckets_over_days_equal_the_raw_rows(tmp_path) -> None:
    store, t0 = _long_store(tmp_path, n=20_000, period_ms=20_000)  # 4.6 days
    end = t0 + 20_000 * 20_000
    rows = store.result_buckets("m-1", t0, end, 3_600_000)
    raw = pd.DataFrame(store.score_history("m-1", since_ms=t0, until_ms=end, limit=100_000))
    want = raw.groupby((raw["ts"] - t0) // 3_600_000).agg(n=("seq", "size"), score=("score", "max"))
    assert [r[2] for r in rows] == want["n"].tolist() and [r[4] for r in rows] == want["score"].tolist()
    store.close()


def test_the_range_is_shared_by_the_pages_and_kept_in_the_url(monkeypatch, fleet_db) -> None:
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_DEVICE, range="6h")
    assert at.query_params["range"] == ["6h"] or at.query_params["range"] == "6h"
    assert any("Showing last 6 h" in c.value for c in at.caption)
    at.switch_page(ui.PAGE_SYSTEM).run()  # moving on: the session keeps the range, the page writes it to the URL
    assert not at.exception and any("Showing last 6 h" in c.value for c in at.caption)
    at.switch_page(ui.PAGE_ALARMS).run()
    assert any("Showing last 6 h" in c.value for c in at.caption)
    assert any("active at some time in the last 6 h" in c.value for c in at.caption)
    frm, to = "2026-12-01T08:00:00Z", "2026-12-01T09:00:00Z"  # a link to an absolute range with nothing in it
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_DEVICE, **{"from": frm, "to": to})
    assert any("2026-12-01 08:00 to 2026-12-01 09:00 UTC" in c.value for c in at.caption)
    assert any("No results from this device" in i.value for i in at.info)
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_SYSTEM, range="2w")  # a bad link: one line, default range
    assert any("Time range in the URL ignored: unknown range" in w.value for w in at.warning)
    assert any("Showing last 1 h" in c.value for c in at.caption)


def test_zoom_buttons_narrow_and_move_the_range(monkeypatch, fleet_db) -> None:
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_DEVICE, range="1h")
    at.button(key="tr_in").click().run()
    assert any("(30 min)" in c.value for c in at.caption), [c.value for c in at.caption][:2]
    assert at.query_params.get("from") and "range" not in at.query_params
    at.button(key="tr_out").click().run()
    at.button(key="tr_earlier").click().run()
    assert any("(60 min)" in c.value for c in at.caption)


def test_compare_page_overlays_machines(monkeypatch, fleet_db) -> None:
    f = fleet_db.fleet
    pick = [f.alarm[0], f.devices[0], f.devices[1]]
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_COMPARE, devices=",".join(pick), range="1h")
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2  # HI, velocity
    spec, frames = chart_data(charts[0])
    data = pd.concat(frames)
    assert set(data["device"]) == set(pick) and "zoom" in json.dumps(spec)
    summary = at.dataframe[0].value
    assert summary["device"].tolist() == pick and (summary["results"] > 0).all()
    assert summary.loc[0, "hi_max"] > summary.loc[1, "hi_max"]  # the alarming machine stands out


def test_range_controls_and_zoom_by_selection_in_chromium(fleet_db, tmp_path) -> None:
    from dashboards.snapshot import CHART_DRAWN_JS, chromium, dashboard, render

    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed (scripts/apt-packages.txt)", pytrace=False)
    f = fleet_db.fleet
    devices = ",".join([f.alarm[0], f.devices[0], f.devices[1]])
    with dashboard(fleet_db.path) as url, chromium() as browser:
        png, text = render(f"{url}/compare?devices={devices}&range=1h", browser, width=1280, height=1400,
                           expect=("Compare machines", "Health indicator", "Velocity RMS (mm/s)", "From / to"))
        (tmp_path / "compare.png").write_bytes(png)
        assert browser.eval(CHART_DRAWN_JS) >= 2
        for label in ("15 min", "1 h", "6 h", "24 h", "7 d", "30 d"):
            assert label in text, label
        for tip in ("zoom in", "zoom out"):  # the +/- buttons carry their help as a tooltip
            assert browser.eval(f"!!document.querySelector('.st-key-tr_{tip.split()[1]} button')"), tip
        # drag across the middle of the HI chart: the page narrows the range to the span selected
        box = browser.eval("(() => { const c = document.querySelector('.st-key-compare_hi_1h canvas, "
                           ".st-key-compare_hi_1h svg.marks'); const r = c.getBoundingClientRect(); "
                           "return [r.left, r.top, r.width, r.height]; })()")
        x0, y0, w, h = box
        y = y0 + h / 2
        for kind, x in (("mousePressed", x0 + w * 0.45), ("mouseMoved", x0 + w * 0.55), ("mouseMoved", x0 + w * 0.7),
                        ("mouseReleased", x0 + w * 0.7)):
            browser.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                      "buttons": 0 if kind == "mouseReleased" else 1, "clickCount": 1})
            time.sleep(0.15)
        browser.wait_for("location.search.includes('from=') && !location.search.includes('range=')", 45,
                         "the URL to carry the zoomed range")
        browser.wait_for("document.body.innerText.includes('UTC (')", 45, "the caption of an absolute range")
        shown = browser.text()
        span_min = float(shown.split("UTC (")[1].split(" min")[0])
        assert 5 <= span_min <= 40, shown[:400]  # about a quarter of the hour selected
