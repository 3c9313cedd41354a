"""The dashboard in real headless Chromium (Debian's), driven over the DevTools protocol.

Starts `streamlit run` on a free port against a populated store, waits for charts to
draw, checks the screenshot is a real picture with red alarm tiles in it, that machine
names are on the page, and that a new alarm reaches the open page by itself.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

from dashboards import ui
from dashboards.loaders.fleet import STATE_COLOURS
from dashboards.snapshot import CHART_DRAWN_JS, Browser, chromium, dashboard, render
from edgefleet.service.alarms import AlarmTracker
from edgefleet.service.store import IngestBatch

if shutil.which("chromium") is None:  # scripts/apt-packages.txt installs it; a missing browser is a failure
    pytest.fail("chromium is not installed (apt-get install chromium; it is in scripts/apt-packages.txt)",
                pytrace=False)

RED = tuple(int(STATE_COLOURS["alarm"][i:i + 2], 16) for i in (1, 3, 5))
METRICS_JS = ("JSON.stringify(Object.fromEntries(Array.from(document.querySelectorAll('[data-testid=\"stMetric\"]'))"
              ".map(e => e.innerText.split('\\n').filter(Boolean)).map(p => [p[0], p[p.length - 1]])))")
GRID_TEXT_JS = "Array.from(document.querySelectorAll('[role=gridcell]')).map(e => e.textContent).join('\\n')"


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def page_metrics(browser: Browser) -> dict[str, str]:
    return json.loads(browser.eval(METRICS_JS) or "{}")


def raise_alarm(fleet_db, device: str) -> None:
    """What ingest and the alarm service do when a machine starts failing: results, then the alarm."""
    last = fleet_db.store.recent_results(device, 1)[0]
    now = int(time.time() * 1000)
    burst = [last._replace(seq=last.seq + i, ts=now - (5 - i) * 200, score=20.0, anom=True) for i in range(1, 6)]
    out = fleet_db.store.write_batch(IngestBatch(now, 1, burst))
    tracker = AlarmTracker()
    changes = tracker.observe_many(out.new)
    assert [c.op for c in changes] == ["raise"]
    fleet_db.store.apply_alarm_changes(changes, [tracker.health(device)])


@pytest.mark.timeout(180)
def test_dashboard_renders_in_chromium_and_refreshes_itself(fleet_db, tmp_path) -> None:
    f = fleet_db.fleet
    with dashboard(fleet_db.path) as url, chromium() as browser:
        png, text = render(url, browser, expect=("Fleet overview", "Machines by site and line"))
        (tmp_path / "fleet.png").write_bytes(png)
        img = pixels(png)
        assert img.shape[:2] == (1000, 1440)
        assert img.std() > 20, "screenshot is (nearly) blank"
        red = np.all(np.abs(img - np.array(RED)) <= 6, axis=-1).sum()
        assert red > 200 * len(f.alarm), f"only {red} alarm-red pixels for {len(f.alarm)} alarming machines"
        m = page_metrics(browser)
        assert m["Devices"] == str(len(f.devices)) and m["Alarming"] == str(len(f.alarm))
        table = browser.eval(GRID_TEXT_JS)
        assert all(d in table for d in f.alarm), "alarming machines missing from 'Needs attention'"

        # a machine starts failing while the page is open: the fragment refresh shows it
        healthy = next(d for d in f.devices if d not in f.alarm + f.degrading + f.offline + f.commissioning + f.needs_class)
        t0 = time.monotonic()
        raise_alarm(fleet_db, healthy)
        browser.wait_for(f"{METRICS_JS}.includes('\"Alarming\":\"{len(f.alarm) + 1}\"')", timeout=15,
                         what="the new alarm to show on the open page")
        seen_after = time.monotonic() - t0
        assert seen_after < ui.REFRESH_S + ui.TTL_S + 5.0, f"new alarm took {seen_after:.1f} s to show"
        print(f"new alarm visible on the open fleet page after {seen_after:.2f} s")

        # clicking a red tile opens that machine's detail page
        x, y = red_tile_centre(pixels(browser.screenshot()))
        browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            browser.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})
        href = browser.wait_for("location.href.includes('/device?device=') && location.href", 20, "device page")
        clicked = parse_qs(urlsplit(href).query)["device"][0]  # the URL also carries the time range
        assert clicked in f.alarm + [healthy]
        browser.wait_for(CHART_DRAWN_JS, 30, "the score timeline")
        browser.wait_for(f"document.body.innerText.includes('Recent results') && "
                         f"document.body.innerText.includes({json.dumps(clicked)})", 30, "the device page")

        # device detail by URL: the machine's name, its state and a drawn score chart
        dev = f.alarm[0]
        png, text = render(f"{url}/device?device={dev}", browser, expect=(dev, "Recent results"))
        assert dev in text
        assert pixels(png).std() > 20
        assert page_metrics(browser)["Alarm"] in ("warning", "major", "critical")


def red_tile_centre(img: np.ndarray) -> tuple[int, int]:
    """A point inside a red grid tile (tiles are wide; the legend's red dot is not)."""
    mask = np.all(np.abs(img - np.array(RED)) <= 6, axis=-1)
    rows = np.nonzero(mask.sum(axis=1) >= 20)[0]
    assert rows.size, "no red tile on the page"
    y = int(rows[rows.size // 2])
    xs = np.nonzero(mask[y])[0]
    return int(xs[xs.size // 2]), y


@pytest.mark.timeout(120)
def test_dashboard_started_before_the_store_picks_it_up(tmp_path) -> None:
    """`edgefleet demo` may start the dashboard before ingest has created the database."""
    from dashboards.sample_fleet import populate
    from edgefleet.service.store import open_store

    db = tmp_path / "later.db"
    with dashboard(db) as url, chromium() as browser:
        browser.open(url)
        browser.wait_for("document.body.innerText.includes('No fleet database at')", 60, "the missing-DB message")
        assert str(db) in browser.text()
        staging = tmp_path / "staging.db"  # fill it elsewhere, then appear at once, as a finished store
        store = open_store(staging)
        fleet = populate(store, per_line=2, n_alarm=1, n_degrading=1, n_offline=1)
        store.close()
        staging.rename(db)
        browser.wait_for(CHART_DRAWN_JS, 30, "the fleet page to load the new store by itself")
        browser.wait_for(f"{METRICS_JS}.includes('\"Devices\":\"{len(fleet.devices)}\"')", 30, "the device count")
