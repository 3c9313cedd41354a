"""Dashboard sign-in and roles in a real browser: `streamlit run` with sign-in on, headless Chromium over CDP
(dashboards/snapshot.py), a real SQLite store with local accounts made by `edgefleet users add`.

Signed out nothing from the store is shown; a wrong password is refused; a viewer who submits the
Acknowledge form is refused by the write itself (and the refusal is in the audit log); an operator's
acknowledgement carries the signed-in name; a session ends on its own after its lifetime.
"""

from __future__ import annotations

import getpass
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboards.sample_fleet import populate
from dashboards.snapshot import Browser, chromium, dashboard
from edgefleet.cli import main as cli
from edgefleet.service.store import SQLiteStore, open_store

if shutil.which("chromium") is None:  # scripts/apt-packages.txt installs it; a missing browser is a failure
    pytest.fail("chromium is not installed (apt-get install chromium; it is in scripts/apt-packages.txt)",
                pytrace=False)

PASSWORDS = {"vic": "marble-cactus-wind-31", "ann": "tulip-orbit-lantern-42"}
ROLES = {"vic": "viewer", "ann": "operator"}


@pytest.fixture
def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, SQLiteStore, list[str]]]:
    """A sample plant (3 machines alarming) and two accounts, added through the CLI."""
    db = tmp_path / "fleet.db"
    store = open_store(db, synchronous="OFF")
    fleet = populate(store, per_line=2, minutes=10)
    for name, role in ROLES.items():
        monkeypatch.setenv("EDGEFLEET_PASSWORD", PASSWORDS[name])
        assert cli(["users", "add", name, "--role", role, "--db", str(db)]) == 0
    monkeypatch.delenv("EDGEFLEET_PASSWORD")
    yield db, store, list(fleet.devices)
    store.close()


def has_text(browser: Browser, text: str) -> bool:
    return bool(browser.eval(f"document.body.innerText.includes({json.dumps(text)})"))


def wait_text(browser: Browser, text: str, timeout: float = 45.0) -> None:
    browser.wait_for(f"document.body.innerText.includes({json.dumps(text)})", timeout, repr(text))


def type_into(browser: Browser, label: str, text: str) -> None:
    """Focus the input with this aria-label, clear it, type as a keyboard would."""
    sel = json.dumps(f'input[aria-label="{label}"]')
    browser.wait_for(f"document.querySelector({sel}) !== null", 30, f"the {label} input")
    browser.eval(f"(() => {{ const e = document.querySelector({sel}); e.focus(); e.select(); }})()")
    browser.send("Input.insertText", {"text": text})


def click(browser: Browser, text: str) -> None:
    js = (f"Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() === {json.dumps(text)})")
    browser.wait_for(f"!!{js} && !{js}.disabled", 30, f"the {text!r} button")
    browser.eval(f"{js}.click()")


def sign_in(browser: Browser, url: str, name: str, password: str) -> None:
    browser.open(url)
    wait_text(browser, "edgefleet: sign in")
    type_into(browser, "User", name)
    type_into(browser, "Password", password)
    click(browser, "Sign in")


def go_to(browser: Browser, page: str, title: str) -> None:
    """Follow the sidebar link (a client-side switch: the session, and so the sign-in, is kept)."""
    sel = json.dumps(f'a[href$="/{page}"]')
    browser.wait_for(f"document.querySelector({sel}) !== null", 30, f"the link to {page}")
    browser.eval(f"document.querySelector({sel}).click()")
    wait_text(browser, title)


@pytest.mark.timeout(240)
def test_signed_out_wrong_password_viewer_refused_operator_acknowledges(plant) -> None:
    db, store, devices = plant
    open_alarms = store.alarms(active=True)
    assert len(open_alarms) == 3 and all(a.acked_by is None for a in open_alarms)
    with dashboard(db, auth=True) as url, chromium() as browser:
        # signed out: the sign-in form and nothing else: no page, no machine names
        browser.open(url)
        wait_text(browser, "edgefleet: sign in")
        time.sleep(1.5)
        text = browser.text()
        assert "Fleet overview" not in text and "Alarms" not in text
        assert not any(d in text for d in devices)
        assert browser.eval("document.querySelectorAll('[data-testid=\"stDataFrame\"], .vega-embed').length") == 0

        # a wrong password (and an unknown name): refused, still nothing shown
        sign_in(browser, url, "ann", "tulip-orbit-lantern-43")
        wait_text(browser, "Wrong user name or password.")
        assert "Fleet overview" not in browser.text()

        # the viewer reads, but its Acknowledge is refused by the write itself
        sign_in(browser, url, "vic", PASSWORDS["vic"])
        wait_text(browser, "Signed in as vic (viewer)")
        wait_text(browser, "Fleet overview")
        go_to(browser, "alarms", "As vic (viewer)")
        from .test_dashboard_oidc import (
            pick_first,  # (that module imports this one's helpers)
        )

        pick_first(browser, "Alarm")  # the form preselects no alarm
        click(browser, "Acknowledge")
        wait_text(browser, "refused: vic is a viewer and may not acknowledge alarms (needs the operator role)")
        assert all(a.acked_by is None for a in store.alarms(active=True))

        # the operator: acknowledged, under the signed-in name (there is no name field to type into)
        sign_in(browser, url, "ann", PASSWORDS["ann"])
        wait_text(browser, "Signed in as ann (operator)")
        go_to(browser, "alarms", "As ann (operator)")
        assert browser.eval("document.querySelector('input[aria-label=\"By\"]') === null")
        type_into(browser, "Note", "bearing ordered")
        pick_first(browser, "Alarm")
        click(browser, "Acknowledge")
        wait_text(browser, "acknowledged.")
    acked = [a for a in store.alarms(active=True) if a.acked_by is not None]
    assert [(a.acked_by, a.note) for a in acked] == [("ann", "bearing ordered")]

    log = [(e.who, e.via, e.action, e.outcome) for e in reversed(store.audit())]
    assert log[:2] == [(getpass.getuser(), "cli", "user.add", "ok")] * 2  # `edgefleet users add`: the OS user
    dash = [r for r in log if r[1] == "dashboard"]
    assert dash == [("ann", "dashboard", "sign-in", "failed: wrong user name or password"),
                    ("vic", "dashboard", "sign-in", "ok"),
                    ("vic", "dashboard", "alarm.ack", "denied"),
                    ("ann", "dashboard", "sign-in", "ok"),
                    ("ann", "dashboard", "alarm.ack", "ok")]


@pytest.mark.timeout(180)
def test_a_session_ends_by_itself_after_its_lifetime(plant, monkeypatch) -> None:
    db, store, devices = plant
    monkeypatch.setenv("EDGEFLEET_DASHBOARD_SESSION_HOURS", str(6 / 3600))  # 6 s
    with dashboard(db, auth=True) as url, chromium() as browser:
        sign_in(browser, url, "ann", PASSWORDS["ann"])
        wait_text(browser, "Signed in as ann (operator)")
        wait_text(browser, "Fleet overview")
        signed_in = time.monotonic()
        # no click, no reload: the open page itself drops back to the sign-in once the 6 s are up
        wait_text(browser, "has ended (expired, or the password changed): sign in again", timeout=30)
        assert time.monotonic() - signed_in > 3.0
        time.sleep(1.5)
        text = browser.text()
        assert not any(t in text for t in ("Fleet overview", "Alarms", "Audit log")), text  # not even the links
        assert not any(d in text for d in devices)


def test_settings_and_the_oidc_role_mapping() -> None:
    from dashboards import auth
    from edgefleet.errors import ConfigError

    assert auth.enabled({}) and auth.enabled({"EDGEFLEET_DASHBOARD_AUTH": "on"})
    assert not auth.enabled({"EDGEFLEET_DASHBOARD_AUTH": "off"}) and not auth.enabled({"EDGEFLEET_DASHBOARD_AUTH": "0"})
    assert auth.session_seconds({}) == 8 * 3600 and auth.session_seconds({"EDGEFLEET_DASHBOARD_SESSION_HOURS": "0.5"}) == 1800
    for bad in ("0", "-1", "soon", "1e9"):
        with pytest.raises(ConfigError, match="EDGEFLEET_DASHBOARD_SESSION_HOURS"):
            auth.session_seconds({"EDGEFLEET_DASHBOARD_SESSION_HOURS": bad})

    assert auth.oidc_providers({}) is None and auth.oidc_providers({"auth": {"redirect_uri": "x"}}) is None
    assert auth.oidc_providers({"auth": {"redirect_uri": "x", "client_id": "c"}}) == [None]
    assert auth.oidc_providers({"auth": {"redirect_uri": "x", "okta": {"client_id": "c"}}}) == ["okta"]
    secrets = {"edgefleet": {"default_role": "viewer", "roles": {"Ann@Plant.example": "operator", "x@y": "root"}}}
    assert auth.oidc_role({"email": "ann@plant.example"}, secrets) == "operator"
    assert auth.oidc_role({"email": "bob@plant.example"}, secrets) == "viewer"
    assert auth.oidc_role({"email": "x@y"}, secrets) is None  # not a role: nothing, not a guess
    assert auth.oidc_role({"email": "bob@plant.example"}, {"edgefleet": {"roles": {}}}) is None
    assert auth.oidc_role({}, {}) is None


def test_wrong_passwords_lock_the_name_for_a_while() -> None:
    from dashboards.auth import LOCKOUT_S, MAX_FAILURES, _Failures

    f = _Failures()
    for i in range(MAX_FAILURES):
        assert f.locked_for("ann", 100.0 + i) == 0
        f.failed("ann", 100.0 + i)
    assert f.locked_for("ann", 105.0) > LOCKOUT_S - 2 and f.locked_for("vic", 105.0) == 0
    assert f.locked_for("ann", 104.0 + LOCKOUT_S) == 0  # the lock ends
    f.succeeded("ann")
    assert f.locked_for("ann", 105.0) == 0


def test_sign_out_a_new_password_and_a_removed_user_end_the_session_at_once(plant, monkeypatch) -> None:
    """Under AppTest (same app, same session between runs): each run re-reads the account."""
    from streamlit.testing.v1 import AppTest

    from edgefleet.service.accounts import hash_password

    db, store, devices = plant
    monkeypatch.setenv("EDGEFLEET_DB", str(db))
    monkeypatch.setenv("EDGEFLEET_DASHBOARD_AUTH", "on")
    app = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")

    def signed_in(name: str) -> AppTest:
        at = AppTest.from_file(app, default_timeout=30)
        at.run()
        at.text_input(key="ef_user").input(name)
        at.text_input(key="ef_password").input(PASSWORDS[name])
        next(b for b in at.button if b.label == "Sign in").click().run()
        assert [t.value for t in at.title] == ["Fleet overview"], [e.value for e in at.exception]
        return at

    def titles(at: AppTest) -> list[str]:
        return [t.value for t in at.title]

    at = signed_in("ann")
    at.button(key="ef_sign_out").click().run()
    assert titles(at) == ["edgefleet: sign in"] and not at.dataframe

    at = signed_in("ann")
    time.sleep(0.01)
    assert store.set_user_password("ann", hash_password("quiet-harbor-pine-64"), int(time.time() * 1000))
    at.run()
    assert titles(at) == ["edgefleet: sign in"]
    assert any("has ended" in w.value for w in at.warning)

    at = signed_in("vic")
    assert store.remove_user("vic")
    at.run()
    assert titles(at) == ["edgefleet: sign in"] and not at.dataframe
    log = [(e.who, e.action, e.outcome) for e in reversed(store.audit()) if e.via == "dashboard"]
    assert log == [("ann", "sign-in", "ok"), ("ann", "sign-out", "ok"), ("ann", "sign-in", "ok"), ("vic", "sign-in", "ok")]


def test_an_identity_provider_in_the_secrets_adds_its_button(tmp_path: Path, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    SQLiteStore(tmp_path / "f.db").close()
    monkeypatch.setenv("EDGEFLEET_DB", str(tmp_path / "f.db"))
    monkeypatch.setenv("EDGEFLEET_DASHBOARD_AUTH", "on")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py"), default_timeout=30)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                          "client_id": "c", "client_secret": "s",
                          "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
                          "okta": {"client_id": "c2", "client_secret": "s2",
                                   "server_metadata_url": "https://okta.example/.well-known/openid-configuration"}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [b.label for b in at.button] == ["Sign in with the identity provider", "Sign in with okta", "Sign in"]
    assert any("edgefleet users add NAME --role admin" in i.value for i in at.info)  # no local account yet
