"""Device detail: one machine's commissioning, its score (and HI) timeline against the threshold of each
window's operating class, health trend, status, recent results; commission it."""

import pandas as pd
import streamlit as st

from dashboards import charts, loaders, timebar, ui
from edgefleet.errors import EdgefleetError
from edgefleet.service import iso20816

MSG = "comm_device_msg-"  # + device: each machine's own outcome, under its Commission form
SETTINGS_MSG = "machine_settings_msg-"  # + device: under its Save button
TIME = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")
FACTS_CSS = "<style>.st-key-device_facts [data-testid='stMetricValue'] { font-size: 1.6rem; }</style>"

st.title("Device detail")
st.html(FACTS_CSS)
db = ui.require_db()

machines = ui.fleet(db)
if machines.empty:
    st.info("The store has no devices yet.")
    st.stop()
names = machines.sort_values("device")["device"].tolist()
state_of = dict(zip(machines["device"], machines["state"]))
name_of = dict(zip(machines["device"], machines["name"]))
tags_of = dict(zip(machines["device"], machines["tags"]))
wanted = st.query_params.get("device")
if wanted not in names:  # default: the most urgent machine
    urgent = loaders.fleet.attention(machines)
    wanted = urgent["device"].iloc[0] if not urgent.empty else names[0]

left, mid, right = st.columns([2, 1, 1])
name = left.selectbox("Device", names, index=names.index(wanted), key="device_pick",
                      format_func=lambda d: f"{loaders.fleet.label(d, name_of.get(d))}  ({state_of.get(d, '?')})")
mid.page_link(ui.PAGE_COMPARE, label="Compare machines", icon=":material/stacked_line_chart:",
              query_params={"devices": name})
log_y = right.toggle("Log scale", key="device_log")
show_hi = right.toggle("Health indicator", value=True, key="device_hi",
                       help="a commissioned node's distance from its class's normal (unclipped), under the score")
st.query_params["device"] = name
time_range = timebar.picker()


def health_words(dev, now: int) -> None:
    """Stage, since when, remaining life and the alarm service's trend, in plain words (issue 19)."""
    stage = loaders.health.stage_of(dev.health, dev.alarm_severity, dev.rul_s)
    if stage is None or dev.comm_state == "commissioning":
        return
    colour = loaders.health.STAGE_COLOURS[stage]
    since = ""
    if stage != "healthy":
        raised = ui.active_alarm(db, dev.device).raised_ts if dev.alarm_severity else None
        since = loaders.health.since_words(loaders.health.attention_since(dev.degrading_since, raised), now,
                                           "needs attention since")
    life = loaders.health.remaining_life_words(dev.rul_s, dev.rul_low_s, dev.rul_high_s, dev.health_ts, now)
    lines = [f"<span style='background:{colour};color:white;padding:1px 8px;border-radius:5px'>{stage}</span> "
             f"{loaders.health.STAGE_HELP[stage]}" + (f"; {since}" if since else "") + ".",
             "**Remaining life:** " + (f"{life}, until its health indicator's trend reaches the failure level "
                                       "(the alarm service's, calibrated on run-to-failure histories)." if life else
                                       "no estimate (no significant rising trend)."),
             "**Trend:** " + loaders.health.trend_words(dev.slope_per_h, dev.eta_s) + ".",
             "**Long-term trend:** " + loaders.health.forecast_words(long_trend(db, dev.device, now - now % 60_000)) + "."]
    with st.container(key="device_health"):
        st.markdown("<br>".join(lines), unsafe_allow_html=True)


@st.cache_data(ttl=300, show_spinner=False)
def long_trend(db: str, name: str, now: int):
    """The days-to-weeks forecast from the device's hourly rollups (issue 18), beside the short-term trend
    above; hourly data, so five minutes of cache cost nothing."""
    from edgefleet.service.alarms import LONG_DAYS, long_forecast
    from edgefleet.service.rollups import HOUR_MS

    rows = ui.store(db).rollup_rows(name, HOUR_MS, now - int(LONG_DAYS * 86_400_000), now)
    return long_forecast(rows, now)


def baseline_moves(db: str, name: str) -> pd.DataFrame:
    """Each drift move of a class centre the node reported (status `comm.drift`), once, newest first."""
    seen: dict[tuple[int, int], float] = {}
    for e in ui.store(db).events(name, kind="status", limit=500):
        d = (e.body.get("comm") or {}).get("drift")
        if isinstance(d, dict):
            seen.setdefault((int(d["ts"]), int(d["cls"])), float(d["max_shift_spreads"]))
    rows = sorted(((ts, cls, x) for (ts, cls), x in seen.items()), reverse=True)
    df = pd.DataFrame(rows, columns=["ts", "class", "shift (spreads)"])
    df.insert(0, "time", pd.to_datetime(df.pop("ts"), unit="ms", utc=True))
    return df


def commissioning_headline(dev, needs_class: bool) -> None:
    words = loaders.commissioning.comm_words(dev.comm)
    if dev.comm_state == "commissioning":
        st.info(words + " Its windows get no verdict (no alarms) until it has learned.", icon=":material/school:")
    elif dev.comm_state == "commissioned":
        st.markdown(f":material/verified: {words}" + (" :orange-badge[:material/add_circle: needs a class]"
                                                        if needs_class else ""))
    else:
        st.caption(words)


def commissioning_detail(dev, scores: pd.DataFrame, newest_only: bool = False) -> None:
    """Classes and how the shown windows spread over them (commissioned), or progress (commissioning); with
    `newest_only`, `scores` are the newest windows of a bucketed range."""
    if dev.comm_state == "unknown":
        return
    counts = loaders.commissioning.window_counts(scores)
    st.subheader("Operating classes" if dev.comm_state == "commissioned" else "Commissioning progress")
    if dev.comm_state == "commissioned":
        classes = loaders.commissioning.class_frame(dev.comm, scores)
        st.dataframe(classes, hide_index=True, width="stretch", key="device_classes", column_config={
            "speed": st.column_config.TextColumn("speed band"),
            "learned_windows": st.column_config.NumberColumn("windows learned"),
            "thr": st.column_config.NumberColumn("score threshold", format="%.4g"),
            "hi_thr": st.column_config.NumberColumn("HI threshold", format="%.4g"),
            "learned": st.column_config.DatetimeColumn("learned", format="YYYY-MM-DD"),
            "windows": st.column_config.NumberColumn("windows shown", help="of the windows in the selected time "
                                                     "window, how many this class judged"),
            "share": st.column_config.NumberColumn("share of shown", format="percent")})
        hash_ = dev.comm.get("hash")
        if hash_:
            st.caption(f"Baseline {hash_} (first 16 hex digits of the SHA-256 of the node's baseline record).")
    else:
        progress = loaders.commissioning.progress_frame(dev.comm)
        if progress.empty:
            st.caption(f"The node has not reported its progress per speed since it started ({counts['commissioning']:,} "
                       "commissioning windows shown); its status carries it when it sends one.")
        else:
            st.dataframe(progress, hide_index=True, width="stretch", key="device_progress", column_config={
                "windows": st.column_config.NumberColumn("windows learned"),
                "target": st.column_config.NumberColumn("target", help="windows per class that end commissioning"),
                "progress": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0)})
    shown = (f"Newest {counts['windows']:,} windows of the range" if newest_only else
             f"Windows shown: **{counts['windows']:,}**")
    st.markdown(f"{shown} · judged **{counts['judged']:,}** "
                f"({counts['anomalous']:,} anomalous) · commissioning **{counts['commissioning']:,}** · "
                f"uncommissioned **{counts['uncommissioned']:,}** (speed in no learned class: no verdict)")
    if dev.comm_state == "commissioned" and counts["uncommissioned"]:
        st.warning(f"{counts['uncommissioned']:,} of the {counts['windows']:,} windows shown ran at a speed in no "
                   "learned class and got no verdict: this machine needs a class for that speed. Add one below "
                   "(*Commission this machine*, with the speed in rpm).", icon=":material/add_circle:")


def vibration(dev, scores: pd.DataFrame, bearing: dict | None, x_domain: tuple[int, int],
              newest: pd.DataFrame) -> None:
    """Velocity RMS against the ISO 20816 zones of the machine's class, the windows that say why; the spectrum of
    the newest debug capture with its order and bearing marks."""
    cls, source = loaders.readings.machine_class(ui.machine_classes(db), dev)
    vr = loaders.readings.vrms_of(scores, cls)
    st.subheader("Vibration (ISO 20816)")
    st.caption(loaders.readings.class_words(cls, source) + ". Zone boundaries A/B, B/C, C/D: "
               + " / ".join(f"{x:g}" for x in iso20816.BOUNDARIES[cls]) + " mm/s RMS (10-1,000 Hz). "
               "Change it under *Machine settings* below.")
    if vr.empty:
        st.caption("No velocity readings in the selected window: this node does not report `vrms` (feature "
                   "definition v1, or older firmware).")
    else:
        markers = loaders.readings.why_markers(newest, bearing)  # buckets carry no why: the newest raw windows do
        top = max(float(vr["vrms"].max()) * 1.1, 1.5 * iso20816.BOUNDARIES[cls][2])
        st.altair_chart(charts.vrms_timeline(vr, loaders.readings.zone_bands(cls, top), markers, x_domain),
                        width="stretch", key="device_vrms")
        last = vr.iloc[-1]
        rpm = "" if pd.isna(last["rpm"]) else f" at {last['rpm']:,.0f} rpm"
        st.caption(f"Newest reading: {loaders.readings.zone_words(float(last['vrms']), cls)}{rpm}. "
                   + (f"Purple diamonds: anomalous windows that say why ({len(markers):,} shown; hover for the fault "
                      "hint and the bands that rose most above this machine's normal)." if not markers.empty else
                      "No anomalous window with a why in the selected window."))
    cap = ui.capture(db, dev.device)
    st.subheader("Spectrum of the last debug capture")
    if cap is None:
        st.caption("No debug capture with raw samples stored for this machine: a node sends one (`debug` message) "
                   "when asked with a `debug` command.")
        return
    rpm = loaders.readings.rpm_near(scores, cap.ts)
    spec = loaders.readings.spectrum_frame(cap.samples, cap.fs)
    marks = loaders.readings.order_marks(rpm, bearing, cap.fs / 2)
    log_x = st.toggle("Log frequency axis", value=True, key="device_spec_log")
    st.altair_chart(charts.spectrum(spec, marks, log_x), width="stretch", key="device_spectrum")
    when = pd.to_datetime(cap.ts, unit="ms", utc=True).strftime("%Y-%m-%d %H:%M:%S UTC")
    speed = (f"running speed {rpm:,.0f} rpm (from the result nearest the capture): 1x/2x/3x marked"
             if rpm else "no running speed reported: no order marks")
    geometry = ("; bearing " + ", ".join(f"{k} {v:g}" for k, v in bearing.items()) + ": BPFO, BPFI, BSF marked"
                if bearing and rpm else "; no bearing geometry set: no defect marks" if rpm else "")
    st.caption(f"Captured {when}: {len(cap.samples):,} samples at {cap.fs:,.0f} Hz"
               + (f", score {cap.score:.4g}" if cap.score is not None else "") + f"; {speed}{geometry}.")


@st.fragment(run_every=ui.REFRESH_S)
def detail(name: str, time_range: loaders.timerange.TimeRange, log_y: bool, show_hi: bool) -> None:
    dev = ui.device(db, name)
    if dev is None:
        st.error(f"Device {name} is no longer in the registry.")
        return
    start, end = time_range.bounds(ui.now_ms())
    series = ui.series(db, name, start, end)
    scores, newest = series.frame, series.newest  # newest: raw results (all of them unless bucketed)
    facts = loaders.device.device_status(dev, ui.now_ms(), newest)
    needs_class = loaders.commissioning.needs_class(dev.comm, newest)
    state = loaders.fleet.display_state(dev)
    colour = loaders.fleet.STATE_COLOURS[state]
    friendly = name_of.get(name) or ""
    st.markdown(f"### {name}{(' &middot; ' + friendly) if friendly else ''} &nbsp;<span style='background:{colour};"
                f"color:white;padding:2px 10px;border-radius:6px;font-size:0.8em'>{state}</span>",
                unsafe_allow_html=True)
    if tags_of.get(name):
        st.caption(f"Tags: {tags_of[name]}")
    helps = {"threshold": "the score threshold of the newest window" + (
        f", class {facts['class']}: thresholds differ per operating class" if facts["class"] != "-" else "")}
    if facts["threshold"] == "none":
        helps["threshold"] = "the newest window got no verdict (commissioning, or a speed in no learned class)"
    with st.container(key="device_facts"):  # FACTS_CSS: six values fit a 1280 px window
        for col, key in zip(st.columns(6), ("status", "alarm", "last score", "threshold", "early warning",
                                            "last seen")):
            col.metric(key.capitalize(), facts[key], help=helps.get(key))
    health_words(dev, ui.now_ms())
    commissioning_headline(dev, needs_class)
    bearing = ui.bearings(db).get(name)
    alarm = ui.active_alarm(db, name) if dev.alarm_severity else None
    rpm_raised = loaders.readings.rpm_near(scores, alarm.raised_ts) if alarm is not None else None
    why = loaders.readings.alarm_why(alarm, rpm_raised, bearing)  # orders at the speed the machine ran when raised
    if why:
        st.error(f"**Alarm ({alarm.severity})**: {why}", icon=":material/troubleshoot:")

    x_domain = (start, end)
    if scores.empty:
        st.info(f"No results from this device in the {time_range.label()}.")
    else:
        thr = loaders.device.trend_threshold(scores)
        trend = loaders.device.trend_line(scores, thr) if thr and not series.bucketed else None
        if trend is not None:
            x_domain = (start, max(end, int(trend.points["ts"].max())))
        event = st.altair_chart(charts.with_zoom(charts.score_timeline(
            scores, loaders.device.threshold_segments(scores, "thr"), trend, log_y, x_domain)),
            width="stretch", key=f"device_scores_{timebar.token(time_range)}", on_select="rerun")
        timebar.zoom_to_selection(event)
        if series.bucketed:
            st.caption(f":material/compress: {series.total:,} results in this range, drawn from "
                       f"**{series.label}** as {len(scores):,} points (each the bucket's highest score "
                       "and HI, mean velocity; anomalous when any window was). Zoom in for single windows.")
        else:
            st.caption(f"Resolution: **{series.label}** (every window).")
        has_hi = bool(scores["hi"].notna().any())
        if show_hi and has_hi:
            st.altair_chart(charts.hi_timeline(scores, loaders.device.threshold_segments(scores, "hi_thr"), log_y,
                                               x_domain), width="stretch", key="device_hi_chart")
        note = ("Trend line: fitted on ranges of single windows (zoom in)." if series.bucketed else
                f"Trend line (the alarm service's fit over the judged windows shown): "
                f"{loaders.health.trend_words(trend.slope_per_h, trend.eta_s)}." if trend else
                "Trend line: too few judged windows for a fit yet.")
        st.caption(loaders.commissioning.chart_legend(scores, trend is not None, show_hi and has_hi) + " " + note)

    vibration(dev, scores, bearing, x_domain, newest)
    commissioning_detail(dev, newest, series.bucketed)

    a, b = st.columns([3, 2])
    with a:
        st.subheader("Recent results")
        recent = newest.tail(50).iloc[::-1]
        recent = recent.assign(hint=recent["hint"].map(loaders.readings.hint_words, na_action="ignore"))
        shown = ["time", "seq", "window", "score", "thr", "hi", "hi_thr", "cls", "vrms", "rpm", "hint", "model",
                 "inf_us", "boot"]
        shown = [c for c in shown if c not in ("hi", "hi_thr", "cls", "vrms", "rpm", "hint") or recent[c].notna().any()]
        st.dataframe(recent[shown], hide_index=True, width="stretch", height=300,
                     column_config={"time": st.column_config.DatetimeColumn(format="HH:mm:ss"),
                                    "score": st.column_config.NumberColumn(format="%.4g"),
                                    "hi": st.column_config.NumberColumn("HI", format="%.4g"),
                                    "hi_thr": st.column_config.NumberColumn("HI thr", format="%.4g"),
                                    "cls": st.column_config.NumberColumn("class", format="%d"),
                                    "vrms": st.column_config.NumberColumn("vrms (mm/s)", format="%.2f"),
                                    "rpm": st.column_config.NumberColumn("rpm", format="%.0f")})
    with b:
        st.subheader("Status")
        st.dataframe({"": list(facts), "value": list(facts.values())}, hide_index=True, width="stretch")
        st.subheader("History")
        ev = ui.events(db, name)
        if ev.empty:
            st.caption("No status, OTA or debug messages stored.")
        else:
            st.dataframe(ev, hide_index=True, width="stretch", height=200, column_config={"time": TIME})
        moves = baseline_moves(db, name)
        if not moves.empty:
            st.subheader("Baseline moved")
            st.caption("Benign slow drift (warm-up, run-in) moved a class's normal, from healthy windows only, at "
                       "most 1 spread from where commissioning put it (docs/baseline.md); newest first.")
            st.dataframe(moves, hide_index=True, width="stretch", height=150, key="device_baseline_moves",
                         column_config={"time": TIME, "shift (spreads)": st.column_config.NumberColumn(format="%.3f")})
        cmds = ui.commands(db, name)
        if not cmds.empty:
            st.subheader("Commands")
            st.dataframe(cmds, hide_index=True, width="stretch", key="device_commands",
                         column_config={"queued": TIME, "sent": st.column_config.DatetimeColumn(
                             "sent", format="YYYY-MM-DD HH:mm:ss", help="empty: waiting for `edgefleet serve`")})
    ui.refreshed_caption()


def _commission(name: str, end: bool) -> None:
    """Form callback: queue the command, keep the outcome for `ui.show_message` (it outlives the refresh)."""
    s = st.session_state
    who = f"dashboard: {s['comm_dev_by'].strip()}" if s.get("comm_dev_by", "").strip() else "dashboard"
    try:
        body, devices = ui.commission(db, [name], None, windows=s.get("comm_dev_windows"), rpm=s.get("comm_dev_rpm"),
                                      end=end, who=who)
    except EdgefleetError as exc:
        ui.set_message(MSG + name, "error", str(exc))
        return
    ui.set_message(MSG + name, "success", loaders.commissioning.queued_message(body, devices))


detail(name, time_range, log_y, show_hi)


def _settings(name: str, site: str | None) -> None:
    """Form callback: the machine's ISO class (this machine or its site) and bearing geometry; one line on bad input."""
    s = st.session_state
    try:
        cls = s.get("ms_class")
        scope = s.get("ms_scope", "this machine")
        if scope == "its site" and not site:
            raise EdgefleetError("this machine has no site: set the class for the machine itself")
        value = None if cls == "unset" else cls
        if scope == "its site":
            ui.set_machine_class(db, value, site=site)
        else:
            ui.set_machine_class(db, value, device=name)
        n, ball, pitch = s.get("ms_balls"), s.get("ms_ball_d"), s.get("ms_pitch_d")
        if n or ball or pitch:
            if not (n and ball and pitch):
                raise EdgefleetError("a bearing geometry needs rolling elements, ball and pitch diameters "
                                     "(leave all three empty to keep it as it is)")
            ui.set_bearing(db, name, {"n_balls": int(n), "ball_d_mm": float(ball), "pitch_d_mm": float(pitch),
                                      "contact_deg": float(s.get("ms_contact") or 0.0)})
        elif s.get("ms_clear_bearing"):
            ui.set_bearing(db, name, None)
    except EdgefleetError as exc:
        ui.set_message(SETTINGS_MSG + name, "error", str(exc))
        return
    ui.set_message(SETTINGS_MSG + name, "success", f"Saved: class {value or f'unset (default {iso20816.DEFAULT_CLASS})'} "
                   f"for {'site ' + site if scope == 'its site' else name}.")


with st.expander("Machine settings: ISO 20816 class, bearing geometry"):
    dev_now = ui.device(db, name)
    cls_now, source_now = loaders.readings.machine_class(ui.machine_classes(db), dev_now) if dev_now else ("II", "default")
    st.caption(loaders.readings.class_words(cls_now, source_now) + ". "
               + " ".join(f"**{c}**: {w}." for c, w in iso20816.CLASS_WORDS.items()))
    with st.form("machine_settings", border=False):
        a, b = st.columns(2)
        a.selectbox("ISO 20816 class", [*iso20816.CLASSES, "unset"], key="ms_class",
                    index=iso20816.CLASSES.index(cls_now), help="unset: the site's class, else class II")
        b.radio("For", ["this machine", "its site"], key="ms_scope", horizontal=True,
                help="a machine's own class wins over its site's")
        bg = ui.bearings(db).get(name) or {}
        c, d, e, f = st.columns(4)
        c.number_input("Rolling elements", value=bg.get("n_balls"), step=1, key="ms_balls", placeholder="e.g. 9")
        d.number_input("Ball diameter (mm)", value=bg.get("ball_d_mm"), key="ms_ball_d", placeholder="e.g. 7.94")
        e.number_input("Pitch diameter (mm)", value=bg.get("pitch_d_mm"), key="ms_pitch_d", placeholder="e.g. 39.04")
        f.number_input("Contact angle (deg)", value=bg.get("contact_deg", 0.0), key="ms_contact")
        st.checkbox("Clear the bearing geometry (with the three fields empty)", key="ms_clear_bearing")
        st.form_submit_button("Save", on_click=_settings, args=(name, dev_now.site if dev_now else None))
    ui.show_message(SETTINGS_MSG + name)  # below Save; it stays until dismissed

st.subheader("Commission this machine")
with st.form("comm_device", border=True):
    a, b, c = st.columns(3)
    a.number_input("Windows per class", value=None, step=1, key="comm_dev_windows", placeholder="node default (64)",
                   help="windows per operating class that end commissioning (16-4096)")
    b.number_input("Speed class (rpm)", value=None, step=10.0, key="comm_dev_rpm", placeholder="every speed",
                   help="learn or re-learn only the class around this speed; the other classes are kept")
    c.text_input("By", key="comm_dev_by", placeholder="your name (optional)")
    x, y, _ = st.columns([1, 1, 3])
    x.form_submit_button("Commission", type="primary", on_click=_commission, args=(name, False))
    y.form_submit_button("End commissioning", on_click=_commission, args=(name, True))
ui.show_message(MSG + name)  # below the buttons; it stays until dismissed
st.caption(f"**Commission** makes {name} learn its machine's normal again (after maintenance; every speed, or with a "
           "speed only that class); its windows get no verdict until it has learned. **End commissioning** ends it "
           "now, keeping every class with at least 16 windows. The command is queued in the fleet database; "
           "`edgefleet serve` sends it (as `edgefleet commission` does).")
