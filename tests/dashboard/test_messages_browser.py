"""Messages after a user action, in real headless Chromium at 1280x800 (issue 17, item 6): on every page with
one, the message sits right below the control that caused it, is still shown after the page's own refresh
(its fragment re-ran) and after a full rerun, cuts no label, and goes only when dismissed.

Pages and their actions: Fleet (Commission without the confirmation: an error), Device (Commission: queued),
Alarms (Acknowledge: done), Models & OTA (Start campaign with no model: an error), System (a bad time range in
the URL: the time bar's warning, on every page with a time axis), Users (sign-in on, as an admin: Add with a
short password: an error). Compare and Audit log write nothing.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from dashboards.snapshot import Browser, chromium, dashboard
from edgefleet.clock import now_ms
from edgefleet.service.accounts import hash_password

from .test_layout_1280 import CUT_JS, READY_JS

if shutil.which("chromium") is None:  # scripts/apt-packages.txt installs it; a missing browser is a failure
    pytest.fail("chromium is not installed (apt-get install chromium; it is in scripts/apt-packages.txt)",
                pytrace=False)

WIDTH, HEIGHT = 1280, 800
REFRESH_S = 2.0  # the default: idle between two refreshes, so the 'r' key is taken
ADMIN, ADMIN_PW = "ada", "quiet-harbor-pine-64"

RUNNING_JS = "!!document.querySelector('[data-testid=\"stStatusWidget\"]')"
UPDATED_JS = ("(Array.from(document.querySelectorAll('[data-testid=\"stCaptionContainer\"]'))"
              ".map(e => e.innerText).find(t => t.startsWith('Updated ')) || '')")


def _button(label: str) -> str:
    return (f"Array.from(document.querySelectorAll('[data-testid=\"stMain\"] button'))"
            f".find(b => b.innerText.trim() === {json.dumps(label)})")


def _msg(key: str) -> str:
    return f"document.querySelector('.st-key-msg-{key}')"


def open_page(browser: Browser, url: str, expect: str) -> None:
    browser.open(url, WIDTH, HEIGHT)
    browser.wait_for(f"document.body.innerText.includes({json.dumps(expect)})", 60, repr(expect))
    browser.wait_for(READY_JS, 30, "the page to finish running")


def click(browser: Browser, label: str) -> str:
    """Click a button of the page by its text; returns the label (where the message should be)."""
    browser.wait_for(f"!!{_button(label)} && !{_button(label)}.disabled", 30, f"the {label!r} button")
    browser.eval(f"(() => {{ const b = {_button(label)}; b.scrollIntoView({{block: 'center'}}); b.click(); }})()")
    return label


def shown(browser: Browser, key: str, text: str) -> bool:
    return bool(browser.eval(f"!!{_msg(key)} && {_msg(key)}.innerText.includes({json.dumps(text)})"))


def wait_refreshes(browser: Browser, n: int = 1) -> None:
    """Wait until the page's refreshing fragment has re-run n times after now (its 'Updated HH:MM:SS' changed)."""
    seen = [browser.wait_for(UPDATED_JS, 30, "the page's 'Updated' caption (a page that refreshes itself)")]
    deadline = time.monotonic() + 30
    while len(set(seen)) <= n:
        assert time.monotonic() < deadline, f"the page did not refresh {n} times: {seen}"
        time.sleep(0.25)
        seen.append(browser.eval(UPDATED_JS))


def full_rerun(browser: Browser) -> None:
    """Streamlit's 'r' key: the whole script runs again in the same session (as after any widget change). Pressed
    while nothing runs (between two refreshes), and again if no run followed."""
    for _ in range(3):
        browser.wait_for(READY_JS, 30, "the page to be idle")
        browser.eval("document.activeElement && document.activeElement.blur()")
        for kind in ("keyDown", "keyUp"):
            browser.send("Input.dispatchKeyEvent", {"type": kind, "key": "r", "code": "KeyR", "text": "r",
                                                    "windowsVirtualKeyCode": 82})
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not browser.eval(RUNNING_JS):
            time.sleep(0.05)
        if browser.eval(RUNNING_JS):
            break
    browser.wait_for(READY_JS, 30, "the rerun to finish")
    time.sleep(0.5)


def check_message(browser: Browser, key: str, text: str, below: str | None, refreshes: bool = True) -> dict:
    """The message is there, next to its control, survives the refresh and a rerun, cuts nothing, and a click on
    its close button (only that) removes it. Returns the layout measurement taken while it was shown."""
    browser.wait_for(f"!!{_msg(key)} && {_msg(key)}.innerText.includes({json.dumps(text)})", 30,
                     f"the message {text!r}")
    if below is not None:  # right below the button that caused it (not at the top of the page), in one layout
        gap = browser.eval(f"{_msg(key)}.getBoundingClientRect().top - {_button(below)}.getBoundingClientRect().bottom")
        assert 0 <= gap <= 120, f"{key}: {gap:.0f} px below the {below!r} button"
    if refreshes:
        wait_refreshes(browser)  # drawn before: a later run of the fragment
        assert shown(browser, key, text), f"{key}: gone after the page's refresh"
    full_rerun(browser)
    assert shown(browser, key, text), f"{key}: gone after a rerun"
    layout = json.loads(browser.eval(CUT_JS))
    browser.eval(f"{_msg(key)}.scrollIntoView({{block: 'center'}})")
    browser.eval(f"document.querySelector('.st-key-msg-{key}-dismiss button').click()")
    browser.wait_for(f"!{_msg(key)}", 30, f"{key} to go when dismissed")
    if refreshes:
        wait_refreshes(browser)
    else:
        full_rerun(browser)
    assert not browser.eval(f"!!{_msg(key)}"), f"{key}: back after it was dismissed"
    return layout


@pytest.mark.timeout(300)
def test_every_pages_messages_stay_next_to_their_control_until_dismissed(fleet_db, monkeypatch) -> None:
    monkeypatch.setenv("EDGEFLEET_DASH_REFRESH_S", str(REFRESH_S))
    f = fleet_db.fleet
    fleet_db.store.add_user(ADMIN, "admin", hash_password(ADMIN_PW), now_ms())
    layouts = {}
    t0 = time.monotonic()
    with chromium() as browser:
        with dashboard(fleet_db.path) as url:
            open_page(browser, url, "Commission machines")
            at = click(browser, "Commission")
            layouts["fleet"] = check_message(browser, "comm_fleet_msg", "tick the confirmation first", at)

            open_page(browser, f"{url}/device?device={f.alarm[0]}", "Commission this machine")
            at = click(browser, "Commission")
            layouts["device"] = check_message(browser, f"comm_device_msg-{f.alarm[0]}", f"Queued for 1 device ({f.alarm[0]})", at)

            aid = fleet_db.store.alarms(active=True)[0].id  # the link notifications carry preselects it
            open_page(browser, f"{url}/alarms?alarm={aid}", "Acknowledge")
            at = click(browser, "Acknowledge")
            layouts["alarms"] = check_message(browser, "ack_msg", "acknowledged.", at)
            assert len(fleet_db.store.alarms(acked=True)) == 1  # it did acknowledge

            open_page(browser, f"{url}/models", "Start a campaign")
            at = click(browser, "Start campaign")
            layouts["models"] = check_message(browser, "ota_msg", "no model to roll out", at)

            open_page(browser, f"{url}/system?range=fortnight", "System")
            layouts["system"] = check_message(browser, "ef_time_range_msg", "Time range in the URL ignored", None)
        with dashboard(fleet_db.path, auth=True) as url:  # Users: admins only, with sign-in on
            open_page(browser, url, "edgefleet: sign in")
            for label, value in (("User", ADMIN), ("Password", ADMIN_PW)):
                sel = json.dumps(f'input[aria-label="{label}"]')
                browser.wait_for(f"document.querySelector({sel}) !== null", 30, f"the {label} input")
                browser.eval(f"(() => {{ const e = document.querySelector({sel}); e.focus(); e.select(); }})()")
                browser.send("Input.insertText", {"text": value})
            click(browser, "Sign in")
            browser.wait_for("document.querySelector('a[href$=\"/users\"]') !== null", 60, "the Users link")
            browser.eval("document.querySelector('a[href$=\"/users\"]').click()")
            browser.wait_for("document.body.innerText.includes('Add a user')", 60, "the Users page")
            browser.wait_for(READY_JS, 30, "the page to finish running")
            at = click(browser, "Add")
            layouts["users"] = check_message(browser, "users_msg", "user name '': 1-64 characters", at, refreshes=False)
    print(f"{len(layouts)} pages' messages checked in {time.monotonic() - t0:.1f} s")
    bad = {p: m for p, m in layouts.items() if m["cut"] or m["labels"] or m["doc"] > 0 or m["main"] > 0}
    assert not bad, f"cut labels or horizontal overflow with a message shown at {WIDTH} px: {bad}"
