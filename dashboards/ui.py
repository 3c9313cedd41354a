"""The Streamlit side of the loaders: which database, one cached store and registry, short-TTL cached frames.

Pages call these instead of `dashboards.loaders` directly so that several open tabs
and the 2-second self-refresh share one query per TTL. Anything that writes
(acknowledge an alarm, start or abort a campaign, queue a commission command) goes
through here too and then clears the caches it made stale.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboards import auth, loaders
from edgefleet.clock import now_ms
from edgefleet.service.commissioning import command_body, queue
from edgefleet.service.ota.campaign import Policy
from edgefleet.service.ota.registry import Campaign, OtaRegistry
from edgefleet.service.store import Device, Store, open_store

REFRESH_S = float(os.environ.get("EDGEFLEET_DASH_REFRESH_S", "2"))  # fragment run_every
TTL_S = min(1.0, REFRESH_S)  # loaders; a new alarm is at most REFRESH_S + TTL_S old on screen
STALE_S = 120.0  # an online device silent this long counts as offline
RECENT_TTL_S = 5.0  # "needs a class" reads each commissioned machine's newest windows: one query per machine

# Pages by path, so a page can link to another (and st.navigation / AppTest use the same paths).
PAGE_FLEET = "views/fleet.py"
PAGE_DEVICE = "views/device.py"
PAGE_COMPARE = "views/compare.py"
PAGE_ALARMS = "views/alarms.py"
PAGE_SYSTEM = "views/system.py"
PAGE_MODELS = "views/models.py"


def require_db() -> str:
    """The store path, or a clear message (and a page that waits for the file) when it does not exist yet."""
    path, source = loaders.common.resolve_db(sys.argv[1:], os.environ)
    msg = loaders.common.missing_db_message(path, source)
    if msg is not None:
        st.warning(msg, icon=":material/database_off:")
        _wait_for(path)
        st.stop()
    return str(path)


@st.fragment(run_every=REFRESH_S)
def _wait_for(path: Path) -> None:
    if path.is_file():
        st.rerun(scope="app")


@st.cache_resource(show_spinner=False)
def store(db: str) -> Store:
    """One store (one SQLite connection, WAL readers don't block ingest) per database for all sessions."""
    return open_store(db)


def refreshed_caption() -> None:
    st.caption(f"Updated {time.strftime('%H:%M:%S')} · refreshes every {REFRESH_S:g} s")


def set_message(key: str, kind: str, text: str) -> None:
    """Keep the outcome of a write (kind: success, info, warning, error) for `show_message`."""
    st.session_state[key] = (kind, text, time.strftime("%H:%M:%S"))


def dismiss_message(key: str) -> None:
    st.session_state.pop(key, None)


def show_message(key: str) -> None:
    """Draw the kept outcome of the last write, with a button that dismisses it. It is kept in the session (not
    popped), so the page's refresh and any rerun draw it again: it stays until dismissed or replaced by the next
    write. Pages call it right below the form or button that wrote (issue 17: messages sit next to their
    control); the container's key (`msg-KEY`, a CSS class `st-key-msg-KEY`) lets a browser test find it."""
    msg = st.session_state.get(key)
    if not msg:
        return
    kind, text, at = msg
    with st.container(key=f"msg-{key}"):
        body, close = st.columns([24, 1], vertical_alignment="center")
        getattr(body, kind)(f"{text} ({at})" if kind != "error" else text)
        close.button("", icon=":material/close:", key=f"msg-{key}-dismiss", help="Dismiss this message",
                     on_click=dismiss_message, args=(key,))


# ---------- fleet overview and device detail ----------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def fleet(db: str) -> pd.DataFrame:
    return loaders.fleet.fleet_frame(store(db), now_ms(), STALE_S)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def active_alarm_count(db: str) -> tuple[int, int]:
    return loaders.fleet.alarm_counts(store(db))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def device(db: str, name: str) -> Device | None:
    return store(db).device(name)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def scores(db: str, name: str, window_s: float | None) -> pd.DataFrame:
    since = None if window_s is None else now_ms() - int(window_s * 1000)
    return loaders.device.score_frame(store(db), name, since_ms=since)


LONG_SPAN_MS = 6 * 3_600_000  # ranges longer than this re-read at most every LONG_TTL_S (a bucketed scan)
LONG_TTL_S = 5.0  # with the bucket cache a refresh reads only the newest buckets


def series(db: str, name: str, start_ms: int, end_ms: int) -> loaders.timeseries.Series:
    """A device's results in a time range, bounded (`loaders.timeseries.device_series`)."""
    f = _series_long if end_ms - start_ms > LONG_SPAN_MS else _series_short
    return f(db, name, start_ms, end_ms)


@st.cache_resource(show_spinner=False)
def bucket_cache(db: str) -> loaders.timeseries.BucketCache:
    """The settled buckets of long ranges, shared by every session: a refresh reads only the newest ones."""
    return loaders.timeseries.BucketCache()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _series_short(db: str, name: str, start_ms: int, end_ms: int) -> loaders.timeseries.Series:
    return loaders.timeseries.device_series(store(db), name, start_ms, end_ms, cache=bucket_cache(db))


@st.cache_data(ttl=LONG_TTL_S, show_spinner=False)
def _series_long(db: str, name: str, start_ms: int, end_ms: int) -> loaders.timeseries.Series:
    return loaders.timeseries.device_series(store(db), name, start_ms, end_ms, cache=bucket_cache(db))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def compare(db: str, names: tuple[str, ...], start_ms: int, end_ms: int) -> pd.DataFrame:
    """2-6 machines' HI, score ratio and velocity per bucket on one time axis."""
    return loaders.timeseries.compare_frame(store(db), names, start_ms, end_ms, cache=bucket_cache(db))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def events(db: str, name: str) -> pd.DataFrame:
    return loaders.device.events_frame(store(db), name)


# ---------- readings and why (device detail, fleet grid by ISO zone) ----------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def machine_classes(db: str) -> dict[str, dict[str, str]]:
    return store(db).machine_classes()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def bearings(db: str) -> dict[str, dict]:
    return store(db).bearings()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def active_alarm(db: str, name: str):
    return store(db).active_alarm(name)


@st.cache_data(ttl=RECENT_TTL_S, show_spinner=False)
def capture(db: str, name: str) -> loaders.readings.Capture | None:
    return loaders.readings.last_capture(store(db), name)


@st.cache_data(ttl=RECENT_TTL_S, show_spinner=False)
def fleet_zones(db: str) -> pd.DataFrame:
    """The fleet frame with each machine's velocity (median of its newest readings), ISO class and zone."""
    return loaders.readings.fleet_zones(fleet(db), store(db).latest_vrms(), machine_classes(db))


def set_machine_class(db: str, cls: str | None, *, device: str | None = None, site: str | None = None) -> None:
    """Write a machine class (MachineClassError / StoreError say what is wrong), then drop the caches it changes.
    Engineers only (auth.perform: checked here, recorded in the audit log)."""
    s = store(db)
    auth.perform(s, "machine.class", f"device {device}" if device is not None else f"site {site}", {"class": cls},
                 lambda _who: s.set_machine_class(cls, device=device, site=site))
    machine_classes.clear()
    fleet_zones.clear()


def set_bearing(db: str, device: str, geometry: dict | None) -> None:
    """Write a device's bearing geometry (FeatureError / StoreError say what is wrong), then drop its cache.
    Engineers only (auth.perform)."""
    s = store(db)
    auth.perform(s, "machine.bearing", f"device {device}", {"geometry": geometry},
                 lambda _who: s.set_bearing(device, geometry))
    bearings.clear()


# ---------- results that never arrived (system page) ----------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def loss(db: str, start_ms: int, end_ms: int) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    s = store(db)
    lost = loaders.system.loss_frame(s, start_ms)
    return (loaders.system.loss_totals(s, now_ms()), lost[lost["ts"] <= end_ms], loaders.system.loss_alarm_frame(s))


# ---------- commissioning (fleet overview and device detail) ----------

@st.cache_data(ttl=RECENT_TTL_S, show_spinner=False)
def recent_windows(db: str) -> pd.DataFrame:
    """Each commissioned machine's newest windows by state: which machines need a class."""
    df = fleet(db)
    names = df.loc[df["comm"] == "commissioned", "device"].tolist()
    return loaders.commissioning.recent_window_states(store(db), names)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def commands(db: str, name: str) -> pd.DataFrame:
    """The newest commands queued for a device (the outbox `edgefleet serve` sends from)."""
    reg, lock = registry(db)
    with lock:
        entries = reg.commands(name, limit=10)
    return loaders.commissioning.commands_frame(entries)


def commission(db: str, devices: list[str] | None, target: str | None, *, windows: int | None, rpm: float | None,
               end: bool, who: str) -> tuple[dict, list[str]]:
    """Queue a commission command (`edgefleet.service.commissioning`: the CLI's checks and outbox) for the
    given devices or every device a target names; EdgefleetError says what is wrong and nothing is queued.
    Returns the command body and the devices; clears the caches it makes stale. Engineers only (auth.perform;
    `who` counts only with sign-in disabled: otherwise the signed-in name is recorded)."""
    body = command_body(windows=windows, rpm=rpm, end=end)
    names = list(devices) if devices else loaders.commissioning.target_devices(store(db), target or "")
    reg, lock = registry(db)

    def write(name: str) -> None:
        with lock:
            queue(reg, names, body, name)
    auth.perform(store(db), "commission", target or ",".join(names), {"devices": len(names), "body": body}, write,
                 by=who)
    commands.clear()
    device.clear()
    fleet.clear()
    recent_windows.clear()
    return body, names


# ---------- alarms ----------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def alarms(db: str, state: str, site: str | None, min_severity: str | None, start_ms: int | None = None,
           end_ms: int | None = None) -> pd.DataFrame:
    df = loaders.alarms.alarm_frame(store(db), state, site, min_severity)
    return df if start_ms is None else loaders.alarms.in_range(df, start_ms, end_ms)


@st.cache_data(ttl=10.0, show_spinner=False)
def sites(db: str) -> list[str]:
    return loaders.alarms.sites(store(db))


def acknowledge(db: str, alarm_id: int, by: str, note: str) -> bool:
    """Write the acknowledgement through the store, then drop the cached views it changes. Operators and up
    (auth.perform: AccessDenied otherwise); the name recorded is the signed-in user's (`by` only counts
    with sign-in disabled)."""
    s = store(db)
    ok = auth.perform(s, "alarm.ack", f"alarm {alarm_id}", {"note": note.strip()},
                      lambda who: s.ack_alarm(alarm_id, who, now_ms(), note.strip()), by=by.strip() or "operator")
    alarms.clear()
    active_alarm_count.clear()
    fleet.clear()
    return ok


@st.cache_data(ttl=TTL_S, show_spinner=False)
def notifications(db: str) -> tuple[dict[str, int], pd.DataFrame]:
    return loaders.alarms.notification_frame(store(db))


def shelve(db: str, alarm_id: int, hours: float, by: str, reason: str) -> None:
    """Shelve a health alarm through the store (notifications and escalation stop until it ends). Operators and
    up (auth.perform); `by` only counts with sign-in disabled."""
    now, s = now_ms(), store(db)
    auth.perform(s, "alarm.shelve", f"alarm {alarm_id}", {"hours": hours, "reason": reason.strip()},
                 lambda who: s.shelve_alarm("health", alarm_id, by=who, reason=reason.strip(), ts=now,
                                            until_ts=now + int(hours * 3_600_000)), by=by)
    alarms.clear()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def loss_alarms(db: str, state: str) -> pd.DataFrame:
    return loaders.alarms.loss_alarm_frame(store(db), state)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def shelved(db: str) -> pd.DataFrame:
    return loaders.alarms.shelved_now(store(db))


def acknowledge_loss(db: str, alarm_id: int, by: str, note: str) -> bool:
    """Acknowledge a data-loss alarm as `acknowledge` a health one (operators and up, audited); False when it
    was acknowledged already or does not exist."""
    s = store(db)
    ok = auth.perform(s, "alarm.ack", f"loss alarm {alarm_id}", {"note": note.strip()},
                      lambda who: s.ack_loss_alarm(alarm_id, who, now_ms(), note.strip()), by=by.strip() or "operator")
    loss_alarms.clear()
    return ok


def unshelve(db: str, kind: str, alarm_id: int, by: str) -> bool:
    """End a health or data-loss alarm's shelf now (operators and up, audited): notifications and escalation
    resume. False when it was not shelved."""
    s = store(db)
    ok = auth.perform(s, "alarm.unshelve", f"{kind} alarm {alarm_id}", {},
                      lambda who: s.unshelve_alarm(kind, alarm_id, by=who, ts=now_ms()), by=by.strip() or "operator")
    alarms.clear()
    loss_alarms.clear()
    shelved.clear()
    return ok


# ---------- system ----------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def ingest(db: str, start_ms: int, end_ms: int, bucket_s: int) -> pd.DataFrame:
    df = loaders.system.ingest_frame(store(db), start_ms, bucket_s, now_ms())
    return df[df["ts"] < end_ms].reset_index(drop=True)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def rejects(db: str, start_ms: int, end_ms: int, bucket_s: int) -> loaders.system.RejectSeries:
    r = loaders.system.reject_series(store(db), start_ms, bucket_s)
    return loaders.system.RejectSeries(r.by_reason[r.by_reason["time"] < pd.Timestamp(end_ms, unit="ms", tz="UTC")],
                                       r.latest[r.latest["time"] <= pd.Timestamp(end_ms, unit="ms", tz="UTC")],
                                       r.truncated)


@st.cache_data(ttl=10.0, show_spinner=False)
def retention_days(db: str) -> float:
    return store(db).retention_days()


# ---------- models & OTA ----------

@st.cache_resource(show_spinner=False)
def registry(db: str) -> tuple[OtaRegistry, threading.Lock]:
    """One registry connection per database for all sessions; its calls are serialised by the lock."""
    return OtaRegistry(db), threading.Lock()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def models(db: str) -> tuple[pd.DataFrame, dict[int, str]]:
    """The registered models as a table, and each one's card as Markdown."""
    reg, lock = registry(db)
    with lock:
        entries = reg.models()
    return loaders.models.models_frame(entries), loaders.models.model_cards(entries)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def campaigns(db: str) -> tuple[list[Campaign], dict[str, dict[str, dict]]]:
    """Every campaign, and each one's device states."""
    reg, lock = registry(db)
    with lock:
        cs = reg.campaigns()
        return cs, {c.id: reg.device_states(c.id) for c in cs}


def _campaign(db: str, cid: str) -> tuple[Campaign, dict[str, dict]]:
    cs, states = campaigns(db)
    return next(c for c in cs if c.id == cid), states.get(cid, {})


@st.cache_data(ttl=TTL_S, show_spinner=False)
def shadow(db: str, cid: str) -> pd.DataFrame:
    c, states = _campaign(db, cid)
    return loaders.models.shadow_frame(store(db), c, states)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def model_health(db: str, cid: str) -> loaders.models.ModelHealth:
    c, states = _campaign(db, cid)
    return loaders.models.model_health(store(db), c, states, shadow(db, cid))


def _clear_ota() -> None:
    models.clear()
    campaigns.clear()
    shadow.clear()
    model_health.clear()


def start_campaign(db: str, version: int, target: str, policy: Policy, campaign_id: str | None) -> Campaign:
    """Create a campaign in the registry (the OTA manager in `edgefleet serve` runs it), then drop stale caches.
    Engineers only (auth.perform)."""
    reg, lock = registry(db)

    def write(_who: str) -> Campaign:
        with lock:
            return loaders.models.start_campaign(reg, version, target, policy, campaign_id)
    c = auth.perform(store(db), "campaign.start", campaign_id or f"model v{version}",
                     {"model": version, "target": target, "stages": list(policy.stages)}, write)
    _clear_ota()
    return c


def abort_campaign(db: str, cid: str) -> None:
    """Mark a campaign aborting (the manager rolls it back), then drop stale caches. Engineers only (auth.perform)."""
    reg, lock = registry(db)

    def write(who: str) -> None:
        with lock:
            reg.abort(cid, reason=f"aborted by {who} (dashboard)" if auth.enabled() else "aborted by operator")
    auth.perform(store(db), "campaign.abort", cid, {}, write)
    _clear_ota()
