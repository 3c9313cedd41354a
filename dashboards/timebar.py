"""The shared time range control: presets, an absolute from/to, zoom and pan buttons, and zoom by selecting a
span on a chart. One range for every page with a time axis (Device, Compare, Alarms, System), kept in the
session (it stays while moving between pages) and in the URL (`?range=6h` or `?from=...&to=...`: a link opens
the same range). The arithmetic is `loaders.timerange` (no Streamlit)."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from dashboards import ui
from dashboards.loaders.timerange import (
    PRESET_LABELS,
    PRESETS,
    TimeRange,
    from_query,
    pan,
    selection,
    zoom,
)
from edgefleet.clock import now_ms
from edgefleet.errors import EdgefleetError

STATE = "ef_time_range"  # the canonical range (not a widget key, so it survives page changes)
URL_WRITTEN = "ef_time_range_url"  # the query parameters this session last wrote
MSG = "ef_time_range_msg"
CUSTOM = "custom"
_QUERY_KEYS = ("range", "from", "to")


def current() -> TimeRange:
    """The range: what the URL names when it changed since this session wrote it (a link, an edited
    address), else the session's, else the default (last hour)."""
    s = st.session_state
    params = {k: st.query_params.get(k) for k in _QUERY_KEYS if st.query_params.get(k)}
    if params and params != s.get(URL_WRITTEN):
        try:
            r = from_query(params)
        except EdgefleetError as exc:
            ui.set_message(MSG, "warning", f"Time range in the URL ignored: {exc}")
            r = None
        if r is not None:
            s[STATE] = r
    r = s.get(STATE)
    if not isinstance(r, TimeRange):
        r = s[STATE] = TimeRange()
    _write_url(r)
    return r


def _write_url(r: TimeRange) -> None:
    q = r.to_query()
    for k in _QUERY_KEYS:
        if k not in q and k in st.query_params:
            del st.query_params[k]
    for k, v in q.items():
        if st.query_params.get(k) != v:
            st.query_params[k] = v
    st.session_state[URL_WRITTEN] = q


def set_range(r: TimeRange) -> None:
    """Change the shared range; a warning about an earlier attempt is answered by it (cleared)."""
    st.session_state[STATE] = r
    st.session_state.pop(MSG, None)
    _write_url(r)


def _pick_preset() -> None:
    choice = st.session_state.get("tr_preset")
    if choice in PRESETS:
        set_range(TimeRange(choice))


def _move(kind: str) -> None:
    r, now = st.session_state.get(STATE, TimeRange()), now_ms()
    set_range({"in": lambda: zoom(r, 0.5, now), "out": lambda: zoom(r, 2.0, now),
               "earlier": lambda: pan(r, -0.5, now), "later": lambda: pan(r, 0.5, now)}[kind]())


def _apply_absolute() -> None:
    s = st.session_state
    a, b = s.get("tr_from"), s.get("tr_to")
    try:
        if a is None or b is None:
            raise EdgefleetError("give both From and To")
        set_range(TimeRange(None, _ms(a), _ms(b)))
    except EdgefleetError as exc:
        ui.set_message(MSG, "warning", f"Time range not changed: {exc}")


def _ms(d: dt.datetime) -> int:
    """A date-time from the inputs, read as UTC."""
    d = d.replace(tzinfo=dt.timezone.utc) if d.tzinfo is None else d.astimezone(dt.timezone.utc)
    return int(d.timestamp() * 1000)


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def picker() -> TimeRange:
    """Draw the range controls (one row) and return the range; every page with a time axis calls it first."""
    r = current()
    s = st.session_state
    s["tr_preset"] = r.preset if r.preset else CUSTOM
    start, end = r.bounds(now_ms())
    synced = (r, start, end) if not r.live else (r,)
    if s.get("tr_synced") != synced:  # the from/to inputs follow the range until the operator edits them
        s["tr_from"], s["tr_to"], s["tr_synced"] = _utc(start), _utc(end), synced
    with st.container(key="time_range"):
        cols = st.columns([5, 0.55, 0.55, 0.55, 0.55, 1.6])
        cols[0].segmented_control("Time range", [*PRESETS, CUSTOM], key="tr_preset", on_change=_pick_preset,
                                  format_func=lambda k: PRESET_LABELS.get(k, "from / to"),
                                  help="shared by every page with a time axis, and kept in the URL")
        for col, (kind, icon, tip) in zip(cols[1:5], (("in", ":material/zoom_in:", "zoom in: half the span"),
                                                      ("out", ":material/zoom_out:", "zoom out: twice the span"),
                                                      ("earlier", ":material/chevron_left:", "earlier by half"),
                                                      ("later", ":material/chevron_right:", "later by half"))):
            col.button("", icon=icon, help=tip, key=f"tr_{kind}", on_click=_move, args=(kind,))
        with cols[5].popover("From / to", icon=":material/date_range:"):
            with st.form("tr_form", border=False):
                st.datetime_input("From (UTC)", key="tr_from", step=60, format="YYYY-MM-DD")
                st.datetime_input("To (UTC)", key="tr_to", step=60, format="YYYY-MM-DD")
                st.form_submit_button("Apply", type="primary", on_click=_apply_absolute)
    ui.show_message(MSG)  # under the controls, on every page with them, until dismissed or a range is set
    st.caption(f"Showing {r.label()}" + ("" if r.live else f" ({_span_words(r.span_ms())})")
               + ". Select a span on a chart to zoom in; double-click clears the selection.")
    return r


def _span_words(ms: int) -> str:
    s = ms / 1000
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def token(r: TimeRange) -> str:
    """A short key part that changes with the range: a chart keyed with it starts without a selection."""
    return r.preset or f"{r.start_ms}-{r.end_ms}"


def zoom_to_selection(event) -> None:
    """When the operator selected a span on a chart (`charts.ZOOM`), narrow the shared range to it and
    redraw the whole page (the controls too)."""
    sel = getattr(event, "selection", None) or {}
    span = (sel.get("zoom") or {}) if isinstance(sel, dict) else {}
    values = next(iter(span.values()), None) if span else None
    if not values or len(values) != 2:
        return
    try:
        set_range(selection(st.session_state.get(STATE, TimeRange()), values[0], values[1]))
    except EdgefleetError:
        return
    st.rerun(scope="app")
