"""Device detail: one machine's score timeline against its threshold, health trend, status, recent results."""

import streamlit as st

from dashboards import charts, loaders, ui

WINDOWS = {"last 15 min": 900.0, "last hour": 3600.0, "last 6 h": 21600.0, "last 24 h": 86400.0, "all": None}

st.title("Device detail")
db = ui.require_db()

machines = ui.fleet(db)
if machines.empty:
    st.info("The store has no devices yet.")
    st.stop()
names = machines.sort_values("device")["device"].tolist()
state_of = dict(zip(machines["device"], machines["state"]))
wanted = st.query_params.get("device")
if wanted not in names:  # default: the most urgent machine
    urgent = loaders.fleet.attention(machines)
    wanted = urgent["device"].iloc[0] if not urgent.empty else names[0]

left, mid, right = st.columns([2, 1, 1])
name = left.selectbox("Device", names, index=names.index(wanted), key="device_pick",
                      format_func=lambda d: f"{d}  ({state_of.get(d, '?')})")
window = mid.selectbox("Window", list(WINDOWS), index=1, key="device_window")
log_y = right.toggle("Log scale", key="device_log")
st.query_params["device"] = name


@st.fragment(run_every=ui.REFRESH_S)
def detail(name: str, window_s: float | None, log_y: bool) -> None:
    dev = ui.device(db, name)
    if dev is None:
        st.error(f"Device {name} is no longer in the registry.")
        return
    facts = loaders.device.device_status(dev, ui.now_ms())
    state = loaders.fleet.display_state(dev)
    colour = loaders.fleet.STATE_COLOURS[state]
    st.markdown(f"### {name} &nbsp;<span style='background:{colour};color:white;padding:2px 10px;"
                f"border-radius:6px;font-size:0.8em'>{state}</span>", unsafe_allow_html=True)
    cols = st.columns(6)
    for col, key in zip(cols, ("status", "alarm", "last score", "threshold", "early warning", "last seen")):
        col.metric(key.capitalize(), facts[key])

    scores = ui.scores(db, name, window_s)
    if scores.empty:
        st.info("No results from this device in the selected window.")
    else:
        trend = loaders.device.trend_line(scores, dev.thr) if dev.thr else None
        st.altair_chart(charts.score_timeline(scores, dev.thr, trend, log_y), width="stretch")
        note = (f"Trend: log-score slope {trend.slope_per_h:+.2f} per hour over the last "
                f"{min(len(scores), 120)} windows; {loaders.common.fmt_eta(trend.eta_s)}." if trend else
                "Trend: too few windows for a fit yet.")
        st.caption(f"{len(scores):,} windows · dashed red line: threshold · blue: health trend, dashed: forecast. "
                   + note)

    a, b = st.columns([3, 2])
    with a:
        st.subheader("Recent results")
        recent = scores.tail(50).iloc[::-1]
        st.dataframe(recent[["time", "seq", "score", "thr", "anom", "model", "inf_us", "boot"]], hide_index=True,
                     width="stretch", height=300,
                     column_config={"time": st.column_config.DatetimeColumn(format="HH:mm:ss"),
                                    "score": st.column_config.NumberColumn(format="%.4g")})
    with b:
        st.subheader("Status")
        st.dataframe({"": list(facts), "value": list(facts.values())}, hide_index=True, width="stretch")
        st.subheader("History")
        ev = ui.events(db, name)
        if ev.empty:
            st.caption("No status, OTA or debug messages stored.")
        else:
            st.dataframe(ev, hide_index=True, width="stretch", height=200,
                         column_config={"time": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})
    ui.refreshed_caption()


detail(name, WINDOWS[window], log_y)
