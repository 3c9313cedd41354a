"""Dashboard sign-in and roles: who is signed in, whether their session still holds, and the gate every
write goes through (`perform`).

Two ways in:
- OIDC via Streamlit's `st.login` when `.streamlit/secrets.toml` has an `[auth]` section (docs/security.md);
  roles come from `[edgefleet.roles]` (e-mail -> role) or `edgefleet.default_role`.
- Otherwise local accounts (`edgefleet users add NAME --role ROLE`), checked against their scrypt hash.

`EDGEFLEET_DASHBOARD_AUTH=off` turns sign-in off (the local demo sets it): every page then shows a
"sign-in disabled" banner and writes are recorded with the name typed into the form.

The signed-in user is kept in the Streamlit session (one browser tab's websocket); each write and each
full page run re-reads the account, so a removed user, a changed role or a new password takes effect
at once, and a session ends after EDGEFLEET_DASHBOARD_SESSION_HOURS (default 8).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import streamlit as st
from streamlit.errors import StreamlitAuthError

from edgefleet.errors import ConfigError
from edgefleet.service import audit
from edgefleet.service.accounts import ROLES, dummy_hash, verify_password
from edgefleet.service.audit import VIA_DASHBOARD, VIA_NO_AUTH, VIA_OIDC, Actor

T = TypeVar("T")

AUTH_ENV = "EDGEFLEET_DASHBOARD_AUTH"
SESSION_ENV = "EDGEFLEET_DASHBOARD_SESSION_HOURS"
DEFAULT_SESSION_H = 8.0
KEY = "ef_auth"  # session_state: {"name", "via", "since"} (epoch s)
EXPIRED_KEY = "ef_auth_expired"
MAX_FAILURES, LOCKOUT_S = 5, 60.0  # per user name, in this dashboard process
_OIDC_SHARED = {"redirect_uri", "cookie_secret", "expose_tokens", "client_id", "client_secret",
                "server_metadata_url", "client_kwargs"}


# ---------- settings (pure) ----------

def enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Sign-in is on unless EDGEFLEET_DASHBOARD_AUTH says off (0, false, no)."""
    return env.get(AUTH_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def session_seconds(env: Mapping[str, str] = os.environ) -> float:
    raw = env.get(SESSION_ENV, "")
    try:
        hours = float(raw) if raw.strip() else DEFAULT_SESSION_H
    except ValueError:
        hours = -1.0
    if not 0 < hours <= 24 * 30:
        raise ConfigError(f"{SESSION_ENV}={raw!r}: hours between 0 and 720 (e.g. 8, or 0.5)")
    return hours * 3600.0


def oidc_providers(secrets: Mapping[str, Any]) -> list[str | None] | None:
    """The providers `st.login` can use from the secrets' `[auth]` section (None: the default provider), or
    None when no identity provider is configured."""
    section = secrets.get("auth")
    if not isinstance(section, Mapping):
        return None
    named = [k for k, v in section.items() if isinstance(v, Mapping) and k not in _OIDC_SHARED]
    out: list[str | None] = [None] if "client_id" in section else []
    return out + named or None


def oidc_role(claims: Mapping[str, Any], secrets: Mapping[str, Any]) -> str | None:
    """The role of an OIDC user: `[edgefleet.roles]` by e-mail (case-insensitive), else `edgefleet.default_role`,
    else none (signed in, but may see nothing). An e-mail the provider marks unverified (`email_verified`
    false) gets none: at some providers a user can set any address on their own account."""
    if str(claims.get("email_verified", "")).lower() == "false":
        return None
    cfg = secrets.get("edgefleet") or {}
    email = str(claims.get("email") or "").lower()
    roles = {str(k).lower(): v for k, v in (cfg.get("roles") or {}).items()}
    role = roles.get(email, cfg.get("default_role"))
    return role if role in ROLES else None


def oidc_since(claims: Mapping[str, Any], now: float) -> float:
    """When an OIDC sign-in happened (epoch s): the id_token's auth_time, else its iat, never in the future;
    `now` when neither is a number. The session's lifetime counts from there, so a reload (a new Streamlit
    session reading the same 30-day identity cookie) does not start it afresh."""
    for k in ("auth_time", "iat"):
        v = claims.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return min(float(v), now)
    return now


def provider_problem(secrets: Mapping[str, Any], provider: str | None, timeout: float = 5.0) -> str | None:
    """Why `st.login` cannot work now (one line), or None: the provider's discovery document is read first,
    so a provider that is down or misnamed gives a message on the page instead of Streamlit's bare
    'Authentication error' page."""
    section = secrets.get("auth") or {}
    sub = section.get(provider) if provider else section
    url = str((sub or {}).get("server_metadata_url") or "")
    if not url.startswith(("https://", "http://")):
        return f"[auth{'.' + provider if provider else ''}] server_metadata_url is missing or not an http(s) URL."
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            meta = json.loads(r.read(1 << 20))
        if not isinstance(meta, dict) or not meta.get("authorization_endpoint"):
            raise ValueError("no authorization_endpoint in it")
    except (OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or exc
        return (f"The identity provider does not answer ({url}: {why}). Try again later, or sign in with a "
                "local account.")
    return None


class _Failures:
    """Failed sign-ins per user name: after MAX_FAILURES in a row the name is locked for LOCKOUT_S."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, tuple[int, float]] = {}

    def locked_for(self, name: str, now: float) -> float:
        with self._lock:
            n, last = self._by_name.get(name, (0, 0.0))
        return max(0.0, last + LOCKOUT_S - now) if n >= MAX_FAILURES else 0.0

    def failed(self, name: str, now: float) -> None:
        with self._lock:
            n, last = self._by_name.get(name, (0, 0.0))
            self._by_name[name] = (1 if n >= MAX_FAILURES and now - last >= LOCKOUT_S else n + 1, now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._by_name.pop(name, None)


@st.cache_resource(show_spinner=False)
def _failures() -> _Failures:
    return _Failures()


def _secrets() -> Mapping[str, Any]:
    """st.secrets as a plain mapping; empty when there is no secrets file."""
    try:
        return {k: st.secrets[k] for k in st.secrets.keys()}
    except Exception:  # no secrets.toml (FileNotFoundError / StreamlitSecretNotFoundError) or a broken one
        return {}


# ---------- who is signed in ----------

def _sign_out(expired: bool = False) -> None:
    st.session_state.pop(KEY, None)
    if expired:
        st.session_state[EXPIRED_KEY] = True


def actor(store: Any, by: str = "") -> Actor:
    """Who performs a write now, checked on the server: the session's user with the role the store (or the
    OIDC mapping) gives them now; nobody (role None) when signed out, expired, removed or re-keyed.
    With sign-in disabled: the name typed into the form, with every right."""
    if not enabled():
        return Actor(by.strip() or "anonymous", "admin", VIA_NO_AUTH)
    s = st.session_state.get(KEY)
    if not s:
        return Actor("anonymous", None, VIA_DASHBOARD)
    if time.time() - s["since"] > session_seconds():
        _sign_out(expired=True)
        return Actor(s["name"], None, s["via"])
    if s["via"] == VIA_OIDC:
        if not getattr(st.user, "is_logged_in", False):
            _sign_out()
            return Actor(s["name"], None, s["via"])
        return Actor(s["name"], oidc_role(st.user.to_dict(), _secrets()), VIA_OIDC)
    u = store.user(s["name"])
    if u is None or u.updated_ms > s["since"] * 1000:  # removed, or its password changed after this sign-in
        _sign_out(expired=u is not None)
        return Actor(s["name"], None, s["via"])
    return Actor(u.name, u.role, VIA_DASHBOARD)


def perform(store: Any, action: str, target: str, detail: dict, write: Callable[[str], T], by: str = "") -> T:
    """Run a write as the current actor (its name passed to `write`): refused unless the role allows it,
    and recorded in the audit log either way (`edgefleet.service.audit.perform`)."""
    who = actor(store, by)
    return audit.perform(store, who, action, target, detail, lambda: write(who.name))


def sign_in(store: Any, name: str, password: str) -> str | None:
    """Check a local account; start the session and return None, or return why not (one line)."""
    name, now = name.strip(), time.time()
    fails = _failures()
    wait = fails.locked_for(name, now)
    if wait > 0:
        return f"Too many wrong passwords for {name!r}: try again in {wait:.0f} s."
    u = store.user(name) if name else None
    ok = verify_password(password, u.pw_hash if u else dummy_hash())  # same cost for an unknown name
    who = Actor(name or "(empty)", u.role if u else None, VIA_DASHBOARD)
    if not (ok and u):
        fails.failed(name, now)
        audit.record(store, who, "sign-in", name, {}, "failed: wrong user name or password")
        return "Wrong user name or password."
    fails.succeeded(name)
    st.session_state[KEY] = {"name": u.name, "via": VIA_DASHBOARD, "since": now}
    st.session_state.pop(EXPIRED_KEY, None)
    audit.record(store, who, "sign-in", name, {}, "ok")
    return None


# ---------- the gate (app.py calls it before any page runs) ----------

def gate(store_of: Callable[[], Any]) -> Actor:
    """Show the sign-in (and stop the run) unless someone with a role is signed in; their Actor.
    `store_of` opens the store only when sign-in is on (with it off, pages say what is missing)."""
    if not enabled():
        st.warning(f"**Sign-in disabled** ({AUTH_ENV}=off): anyone who can reach this page can acknowledge "
                   "alarms and start or abort rollouts. For a local demo only.", icon=":material/lock_open:")
        return actor(None)
    try:
        session_seconds()
    except ConfigError as exc:
        st.error(str(exc))
        st.stop()
    store = store_of()
    secrets = _secrets()
    providers = oidc_providers(secrets)
    if providers and getattr(st.user, "is_logged_in", False) and KEY not in st.session_state \
            and not st.session_state.get(EXPIRED_KEY):
        _adopt_oidc(store, secrets)
    who = actor(store)
    if who.role is None:  # the sign-in as the only page: no other page runs, and their links go away too
        st.navigation([st.Page(lambda: _sign_in_page(store, providers, who), title="Sign in", url_path="signin",
                               icon=":material/login:")], position="hidden").run()
        st.stop()
    with st.sidebar:
        st.caption(f"Signed in as **{who.name}** ({who.role})")
        if st.button("Sign out", key="ef_sign_out", icon=":material/logout:"):
            audit.record(store, who, "sign-out", who.name, {}, "ok")
            _sign_out()
            if who.via == VIA_OIDC:
                st.logout()  # the browser goes to /auth/logout (cookie cleared), then the provider's end-session
                st.stop()  # not st.rerun(): that could drop the redirect before the browser gets it
            st.rerun()
    _watch_expiry()
    return who


def _adopt_oidc(store: Any, secrets: Mapping[str, Any]) -> None:
    """Start the session of the user Streamlit's identity cookie names; its sign-in goes to the audit log
    (denied when the e-mail has no role). An expired one is left for `actor` to end, without a record."""
    claims, now = st.user.to_dict(), time.time()
    name = str(claims.get("email") or claims.get("sub") or "oidc user")
    since = oidc_since(claims, now)
    st.session_state[KEY] = {"name": name, "via": VIA_OIDC, "since": since}
    if now - since > session_seconds():
        return
    role = oidc_role(claims, secrets)
    audit.record(store, Actor(name, role, VIA_OIDC), "sign-in", name, {}, "ok" if role else "denied: no role")


def _watch_expiry() -> None:
    """Pages refresh in fragments, which do not pass the gate again: this one re-runs the whole app once the
    session has expired, so a page left open stops showing data. Its period follows short sessions."""
    @st.fragment(run_every=max(1.0, min(15.0, session_seconds() / 4)))
    def expiry() -> None:
        s = st.session_state.get(KEY)
        if s and time.time() - s["since"] > session_seconds():
            st.rerun(scope="app")  # the full run finds the session expired and shows the sign-in

    with st.sidebar:
        expiry()


def _login(secrets_of: Mapping[str, Any], provider: str | None) -> None:
    """`st.login`, once the provider answers; otherwise (or with secrets Streamlit refuses) one line on the page."""
    problem = provider_problem(secrets_of, provider)
    if problem:
        st.error(problem)
        return
    try:
        st.login(provider) if provider else st.login()
    except StreamlitAuthError as exc:  # secrets Streamlit refuses, or Authlib missing (StreamlitMissingAuthlibError)
        st.error(f"Sign-in with the identity provider is not set up right: {' '.join(str(exc).split())}")


def _sign_in_page(store: Any, providers: list[str | None] | None, who: Actor) -> None:
    st.title("edgefleet: sign in")
    expired = st.session_state.pop(EXPIRED_KEY, False)
    if expired:
        st.warning(f"Your session of {who.name} has ended (expired, or the password changed): sign in again.")
    elif who.role is None and KEY in st.session_state:
        st.warning("This account has no role here.")
    if providers and getattr(st.user, "is_logged_in", False) and not expired:
        st.error(f"{st.user.get('email', 'This account')} is signed in with the identity provider but has no "
                 "edgefleet role ([edgefleet.roles] in the dashboard's secrets).")
        if st.button("Sign out", key="ef_oidc_out"):
            st.logout()
        return
    for p in providers or []:
        if st.button(f"Sign in with {p or 'the identity provider'}", key=f"ef_login_{p}", type="primary"):
            _login(secrets_of=_secrets(), provider=p)
    if providers:
        st.caption("Or with a local account:")
    with st.form("ef_sign_in"):
        st.text_input("User", key="ef_user", autocomplete="username")
        st.text_input("Password", key="ef_password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        msg = sign_in(store, st.session_state.get("ef_user", ""), st.session_state.get("ef_password", ""))
        if msg:
            st.error(msg)
        else:
            st.rerun()
    if not store.users():
        st.info("No local account yet: an administrator adds one with `edgefleet users add NAME --role admin`.")
