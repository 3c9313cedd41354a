"""The Streamlit side of the loaders: which database, one cached store, short-TTL cached frames.

Pages call these instead of `dashboards.data` directly so that several open tabs
and the 2-second self-refresh share one query per TTL. Anything that writes
(acknowledge) goes to `store()` and then clears the caches it made stale.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboards import data
from edgefleet.store import Device, Store, open_store

REFRESH_S = float(os.environ.get("EDGEFLEET_DASH_REFRESH_S", "2"))  # fragment run_every
TTL_S = min(1.0, REFRESH_S)  # loaders; a new alarm is at most REFRESH_S + TTL_S old on screen
STALE_S = 120.0  # an online device silent this long counts as offline

# Pages by path, so a page can link to another (and st.navigation / AppTest use the same paths).
PAGE_FLEET = "views/fleet.py"
PAGE_DEVICE = "views/device.py"
PAGE_ALARMS = "views/alarms.py"
PAGE_SYSTEM = "views/system.py"


def now_ms() -> int:
    return int(time.time() * 1000)


def require_db() -> str:
    """The store path, or a clear message (and a page that waits for the file) when it does not exist yet."""
    path, source = data.resolve_db(sys.argv[1:], os.environ)
    msg = data.missing_db_message(path, source)
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


@st.cache_data(ttl=TTL_S, show_spinner=False)
def fleet(db: str) -> pd.DataFrame:
    return data.fleet_frame(store(db), now_ms(), STALE_S)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def active_alarm_count(db: str) -> tuple[int, int]:
    return data.alarm_counts(store(db))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def device(db: str, name: str) -> Device | None:
    return store(db).device(name)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def scores(db: str, name: str, window_s: float | None) -> pd.DataFrame:
    since = None if window_s is None else now_ms() - int(window_s * 1000)
    return data.score_frame(store(db), name, since_ms=since)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def events(db: str, name: str) -> pd.DataFrame:
    return data.events_frame(store(db), name)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alarms(db: str, state: str, site: str | None, min_severity: str | None) -> pd.DataFrame:
    return data.alarm_frame(store(db), state, site, min_severity)


@st.cache_data(ttl=10.0, show_spinner=False)
def sites(db: str) -> list[str]:
    return data.sites(store(db))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def ingest(db: str, window_s: float, bucket_s: int) -> pd.DataFrame:
    now = now_ms()
    return data.ingest_frame(store(db), now - int(window_s * 1000), bucket_s, now)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def rejects(db: str, window_s: float, bucket_s: int) -> data.RejectSeries:
    return data.reject_series(store(db), now_ms() - int(window_s * 1000), bucket_s)


@st.cache_data(ttl=10.0, show_spinner=False)
def retention_days(db: str) -> float:
    return store(db).retention_days()


def acknowledge(db: str, alarm_id: int, by: str, note: str) -> bool:
    """Write the acknowledgement through the store, then drop the cached views it changes."""
    ok = store(db).ack_alarm(alarm_id, by.strip() or "operator", now_ms(), note.strip())
    alarms.clear()
    active_alarm_count.clear()
    fleet.clear()
    return ok


def refreshed_caption() -> None:
    st.caption(f"Updated {time.strftime('%H:%M:%S')} · refreshes every {REFRESH_S:g} s")
