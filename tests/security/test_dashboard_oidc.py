"""Dashboard sign-in through a real OpenID Connect provider, in a real browser: `streamlit run` with `[auth]`
secrets naming the test provider (tests/security/oidc_provider.py: Authlib's authorization server, RS256
id_token), headless Chromium over CDP, a real SQLite store.

The browser goes to the provider and back (authorization code with PKCE; Streamlit's Authlib client checks
the id_token against the provider's JWKS); the role comes from the e-mail ([edgefleet.roles]); the operator
acknowledges but is refused a rollout by the write itself; signing out goes through the provider's
end-session endpoint and leaves no cookie behind; an e-mail with no role sees nothing; a provider that is
down gives one clear line.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from dashboards.sample_fleet import populate
from dashboards.snapshot import Browser, chromium, dashboard
from edgefleet.protocol.connect import free_port
from edgefleet.runtime import keys
from edgefleet.service.ota.registry import OtaRegistry
from edgefleet.service.store import open_store
from edgefleet.toolchain.model_folder import ModelFolder
from security.oidc_provider import OidcProvider, new_secret
from security.test_dashboard_auth import click, go_to, wait_text

ROOT = Path(__file__).resolve().parents[2]
IDP_BUTTON = "Sign in with the identity provider"

if shutil.which("chromium") is None:
    pytest.fail("chromium is not installed (apt-get install chromium; it is in scripts/apt-packages.txt)",
                pytrace=False)


def write_secrets(path: Path, provider: OidcProvider, redirect_uri: str, roles: dict[str, str]) -> None:
    """The dashboard's secrets.toml as docs/security.md tells a plant to write it."""
    q = json.dumps  # a TOML basic string is a JSON string for these values
    lines = ["[auth]", f"redirect_uri = {q(redirect_uri)}", f"cookie_secret = {q(new_secret())}",
             f"client_id = {q(provider.client.client_id)}", f"client_secret = {q(provider.client.client_secret)}",
             f"server_metadata_url = {q(provider.metadata_url)}", "", "[edgefleet.roles]",
             *(f"{q(email)} = {q(role)}" for email, role in roles.items())]
    path.write_text("\n".join(lines) + "\n")


def cookies(browser: Browser) -> list[str]:
    return sorted(c["name"] for c in browser.send("Network.getAllCookies")["cookies"])


def click_labelled(browser: Browser, text: str) -> None:
    """Click the button whose label ends with `text` (a Material icon's name comes before it)."""
    js = f"Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim().endsWith({json.dumps(text)}))"
    browser.wait_for(f"!!{js} && !{js}.disabled", 30, f"the {text!r} button")
    browser.eval(f"{js}.click()")


def pick_first(browser: Browser, label: str) -> None:
    """Type into the selectbox with this label and take its first option with Enter (as a user picks)."""
    box = ("Array.from(document.querySelectorAll('[data-testid=\"stSelectbox\"]'))"
           f".find(e => (e.querySelector('label') || {{}}).innerText === {json.dumps(label)})")
    browser.wait_for(f"!!{box} && !!{box}.querySelector('input')", 30, f"the {label!r} selectbox")
    browser.eval(f"(() => {{ const i = {box}.querySelector('input'); i.focus(); i.click(); }})()")
    browser.send("Input.insertText", {"text": "#"})  # the options start with '#<alarm id>'
    browser.wait_for("!!document.querySelector('[role=\"option\"]')", 30, f"the options of {label!r}")
    for kind in ("keyDown", "keyUp"):
        browser.send("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                                "windowsVirtualKeyCode": 13})
    browser.wait_for(f"{box}.querySelector('input').value.startsWith('#')", 30, f"an option picked in {label!r}")


def idp_sign_in(browser: Browser, url: str) -> None:
    browser.open(url)
    wait_text(browser, "edgefleet: sign in")
    click(browser, IDP_BUTTON)


@pytest.mark.timeout(180)
def test_sign_in_through_a_real_identity_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "fleet.db"
    store = open_store(db, synchronous="OFF")
    populate(store, per_line=2, minutes=10)
    reg = OtaRegistry(db)
    folder = ModelFolder(ROOT / "edgefleet" / "models" / "cwru-de-12k")
    reg.publish(folder.artifact_bytes(), folder.manifest(), folder.card(),
                keys.load_public(ROOT / "edgefleet" / "models" / "dev-signing.pub"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = OidcProvider("edgefleet-dashboard", new_secret(), f"{url}/oauth2callback").start()
    secrets = tmp_path / "secrets.toml"
    write_secrets(secrets, provider, f"{url}/oauth2callback", {"Ann@Plant.example": "operator"})
    monkeypatch.setenv("STREAMLIT_SECRETS_FILES", str(secrets))
    t0 = time.monotonic()
    try:
        with dashboard(db, port=port, auth=True) as url, chromium() as browser:
            browser.send("Network.enable")
            # the operator: to the provider and back, signed in with the role of her e-mail
            provider.user = "ann@plant.example"
            idp_sign_in(browser, url)
            wait_text(browser, "Signed in as ann@plant.example (operator)")
            assert provider.seen["/authorize"] == 1 and provider.seen["/token"] == 1 and provider.seen["/jwks"] >= 1
            assert "_streamlit_user" in cookies(browser)

            # she acknowledges (the name comes from the provider) ...
            go_to(browser, "alarms", "As ann@plant.example (operator)")
            pick_first(browser, "Alarm")
            click(browser, "Acknowledge")
            wait_text(browser, "acknowledged.")
            assert [a.acked_by for a in store.alarms(active=True) if a.acked_by] == ["ann@plant.example"]
            # ... but a rollout is refused by the write itself, not only hidden
            go_to(browser, "models", "Start a campaign")
            click(browser, "Start campaign")
            wait_text(browser, "refused: ann@plant.example is an operator and may not start OTA campaigns "
                               "(needs the engineer role)")
            assert reg.campaigns() == []

            # signing out: through the provider's end-session endpoint, back to the sign-in, no cookie left
            click_labelled(browser, "Sign out")
            wait_text(browser, "edgefleet: sign in")
            browser.wait_for("true", 1)
            deadline = time.monotonic() + 15
            while provider.seen["/logout"] == 0 and time.monotonic() < deadline:
                time.sleep(0.2)

            assert provider.seen["/logout"] == 1
            assert not [c for c in cookies(browser) if c.startswith("_streamlit_user")]
            browser.open(url)  # a fresh page: still signed out
            wait_text(browser, IDP_BUTTON)
            assert "Signed in as" not in browser.text()

            # an e-mail with no role: signed in at the provider, nothing here
            provider.user = "bob@plant.example"
            idp_sign_in(browser, url)
            wait_text(browser, "bob@plant.example is signed in with the identity provider but has no edgefleet role")
            time.sleep(1.0)
            text = browser.text()
            assert "Fleet overview" not in text and "Alarms" not in text and "Signed in as" not in text
            assert provider.seen["/authorize"] == 2

            # the provider is down: one clear line, no traceback
            click_labelled(browser, "Sign out")
            wait_text(browser, IDP_BUTTON)
            provider.stop()
            click(browser, IDP_BUTTON)
            wait_text(browser, "does not answer")
            text = browser.text()
            assert "Traceback" not in text and "Authentication error" not in text, text
            assert "Signed in as" not in text
    finally:
        provider.stop()
        reg.close()
    log = [(e.who, e.via, e.action, e.outcome) for e in reversed(store.audit()) if e.via != "cli"]
    store.close()
    print(f"OIDC browser flow: {time.monotonic() - t0:.1f} s")
    assert log[:4] == [("ann@plant.example", "dashboard (oidc)", "sign-in", "ok"), ("ann@plant.example", "dashboard (oidc)", "alarm.ack", "ok"),
                       ("ann@plant.example", "dashboard (oidc)", "campaign.start", "denied"),
                       ("ann@plant.example", "dashboard (oidc)", "sign-out", "ok")], log
    assert ("bob@plant.example", "dashboard (oidc)", "sign-in", "denied: no role") in log, log


@pytest.mark.timeout(120)
def test_an_oidc_session_ends_after_its_lifetime_even_across_a_reload(tmp_path: Path, monkeypatch) -> None:
    """The identity cookie lasts 30 days; the session counts from the id_token's sign-in time, so reloading
    the page (a new Streamlit session) does not start it afresh; signing in again at the provider does."""
    db = tmp_path / "fleet.db"
    store = open_store(db, synchronous="OFF")
    populate(store, per_line=2, minutes=2)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    secrets = tmp_path / "secrets.toml"
    monkeypatch.setenv("STREAMLIT_SECRETS_FILES", str(secrets))
    monkeypatch.setenv("EDGEFLEET_DASHBOARD_SESSION_HOURS", str(8 / 3600))  # 8 s
    with OidcProvider("edgefleet-dashboard", new_secret(), f"{url}/oauth2callback") as provider:
        write_secrets(secrets, provider, f"{url}/oauth2callback", {"ann@plant.example": "operator"})
        provider.user = "ann@plant.example"
        with dashboard(db, port=port, auth=True) as url, chromium() as browser:
            idp_sign_in(browser, url)
            wait_text(browser, "Signed in as ann@plant.example (operator)")
            wait_text(browser, "has ended (expired, or the password changed): sign in again", timeout=45)
            browser.open(url)  # a reload: the cookie is still there, the session is not
            either = "['Signed in as', 'has ended (expired'].find(t => document.body.innerText.includes(t))"
            assert browser.wait_for(either, 45, "the page after a reload") == "has ended (expired"
            time.sleep(1.0)
            assert "Signed in as" not in browser.text() and "no edgefleet role" not in browser.text()
            click(browser, IDP_BUTTON)  # the provider signs her in again: a new id_token, a new session
            wait_text(browser, "Signed in as ann@plant.example (operator)")
            assert provider.seen["/authorize"] == 2
    log = [(e.who, e.action, e.outcome) for e in reversed(store.audit()) if e.via == "dashboard (oidc)"]
    store.close()
    assert log == [("ann@plant.example", "sign-in", "ok")] * 2  # an expired cookie is not a sign-in


def test_oidc_session_age_and_a_provider_that_is_down() -> None:
    from dashboards.auth import oidc_role, oidc_since, provider_problem

    secrets = {"edgefleet": {"default_role": "viewer", "roles": {"ann@plant.example": "operator"}}}
    assert oidc_role({"email": "ann@plant.example", "email_verified": True}, secrets) == "operator"
    assert oidc_role({"email": "ann@plant.example"}, secrets) == "operator"  # providers that do not say
    assert oidc_role({"email": "ann@plant.example", "email_verified": False}, secrets) is None  # not even viewer
    assert oidc_role({"email": "ann@plant.example", "email_verified": "false"}, secrets) is None

    assert oidc_since({"auth_time": 100, "iat": 120}, 500.0) == 100.0
    assert oidc_since({"iat": 120}, 500.0) == 120.0
    assert oidc_since({"iat": 9e9}, 500.0) == 500.0  # a clock ahead of ours does not lengthen the session
    assert oidc_since({"iat": "soon"}, 500.0) == oidc_since({}, 500.0) == 500.0

    with OidcProvider("c", "s", "http://127.0.0.1:9/oauth2callback") as provider:
        up = {"auth": {"client_id": "c", "server_metadata_url": provider.metadata_url}}
        assert provider_problem(up, None) is None
        bad = {"auth": {"okta": {"server_metadata_url": f"{provider.issuer}/nothing-here"}}}
        assert "does not answer" in provider_problem(bad, "okta") and "NOT FOUND" in provider_problem(bad, "okta")
    msg = provider_problem(up, None, timeout=2)
    assert msg.startswith("The identity provider does not answer (http://127.0.0.1:") and "refused" in msg, msg
    assert "server_metadata_url is missing" in provider_problem({"auth": {"client_id": "c"}}, None)
