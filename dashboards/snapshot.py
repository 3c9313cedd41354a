"""Render the running dashboard in headless Chromium over the DevTools protocol and take a screenshot.

Used by the rendering test and to refresh docs/img/dashboard.png:

    python -m dashboards.snapshot --out docs/img/dashboard.png        # sample plant in a temp store
    python -m dashboards.snapshot --page 'device?device={multi_speed}' --out docs/img/device.png
    python -m dashboards.snapshot --db var/demo/fleet.db --out shot.png

A plain `chromium --screenshot` right after Streamlit starts often captures a blank
page; here the page is driven over CDP (plain JSON over a websocket, no Playwright)
and the shot is taken only once a Vega-Lite chart has drawn.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from edgefleet.protocol.connect import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--remote-debugging-port=0", "--remote-allow-origins=*")
CHART_DRAWN_JS = ("Array.from(document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks'))"
                  ".filter(e => e.getBoundingClientRect().width > 50).length")


class SnapshotError(RuntimeError):
    """The browser or the dashboard did not come up or did not render in time."""


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise SnapshotError("no chromium binary on PATH (apt-get install chromium)")


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a child started in its own session, with everything it spawned."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def dashboard(db: Path, port: int | None = None, timeout: float = 60.0, *, auth: bool = False) -> Iterator[str]:
    """`streamlit run dashboards/app.py -- --db DB` on a free port; yields its URL, stops it after. Sign-in is
    off (EDGEFLEET_DASHBOARD_AUTH=off, for screenshots of the pages) unless `auth`."""
    port = port or free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboards" / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--", "--db", str(db)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "EDGEFLEET_DASHBOARD_AUTH": "on" if auth else "off"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise SnapshotError(f"streamlit exited with {proc.returncode}: {log.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SnapshotError(f"streamlit did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        _stop(proc)
        log.close()


class Browser:
    """One headless Chromium page driven over CDP."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == msg_id:  # anything else is an event we did not ask about
                if "error" in reply:
                    raise SnapshotError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def eval(self, expression: str) -> Any:
        out = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return out.get("result", {}).get("value")

    def open(self, url: str, width: int = 1440, height: int = 1000) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.enable")
        self.send("Page.navigate", {"url": url})

    def wait_for(self, expression: str, timeout: float = 60.0, what: str = "") -> Any:
        """Poll a JS expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.25)
        raise SnapshotError(f"timed out after {timeout:.0f} s waiting for {what or expression}")

    def text(self) -> str:
        return self.eval("document.body.innerText") or ""

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])


@contextmanager
def chromium(timeout: float = 30.0) -> Iterator[Browser]:
    """Headless Chromium with a fresh profile, connected to its first page; killed (and the profile removed) after."""
    profile = Path(tempfile.mkdtemp(prefix="ef-chromium-"))
    proc = subprocess.Popen([chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SnapshotError(f"chromium did not open its DevTools port (exit {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        if not pages:
            raise SnapshotError("chromium has no page target")
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout) as ws:
            yield Browser(ws)
    finally:
        _stop(proc)
        shutil.rmtree(profile, ignore_errors=True)


def render(url: str, browser: Browser, *, expect: tuple[str, ...] = (), settle_s: float = 1.5,
           timeout: float = 60.0, width: int = 1440, height: int = 1000) -> tuple[bytes, str]:
    """Open `url` in a width x height window, wait for a drawn chart and the expected texts, let it settle;
    (png, page text)."""
    browser.open(url, width, height)
    browser.wait_for(CHART_DRAWN_JS, timeout, "a Vega-Lite chart to draw")
    for text in expect:
        browser.wait_for(f"document.body.innerText.includes({json.dumps(text)})", timeout, repr(text))
    time.sleep(settle_s)  # the fragment's first refresh and chart transitions
    return browser.screenshot(), browser.text()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Screenshot a dashboard page in headless Chromium.")
    p.add_argument("--db", type=Path, help="existing store (default: a sample plant in a temp dir)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--page", default="", help="url path of the page, e.g. device?device=x (default: fleet); with "
                   "the sample plant, {alarm}, {degrading}, {offline}, {multi_speed}, {commissioning}, "
                   "{needs_class} or {older} name its first machine of that kind")
    p.add_argument("--per-line", type=int, default=28, help="sample plant: machines per line (7 lines)")
    p.add_argument("--width", type=int, default=1440, help="browser window width, px")
    p.add_argument("--height", type=int, default=1000, help="browser window height, px (the shot's height)")
    args = p.parse_args(argv)
    page = args.page
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db
        if db is None:
            from dashboards.sample_fleet import populate
            from edgefleet.service.store import open_store
            db = Path(tmp) / "fleet.db"
            store = open_store(db)
            fleet = populate(store, per_line=args.per_line, minutes=30, n_alarm=4, n_degrading=3, n_offline=3)
            store.close()
            roles = {k: v[0] for k, v in vars(fleet).items() if isinstance(v, list) and v and isinstance(v[0], str)}
            page = page.format(**roles)
        with dashboard(db) as url, chromium() as browser:
            png, _ = render(f"{url}/{page}", browser, width=args.width, height=args.height)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    print(f"wrote {args.out} ({len(png):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
