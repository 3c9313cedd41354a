"""Fleet overview: headline counts, every machine as a tile coloured by health, what needs attention (stage,
since when, remaining life, trend in words), search by id, name, site, line or tag, commissioning, models in
use; commission a target (all, a site, a line, a tag)."""

import pandas as pd
import streamlit as st

from dashboards import charts, loaders, ui
from edgefleet.errors import EdgefleetError

MSG = "comm_fleet_msg"
WIDTHS = [1, 1, 1, 1, 1, 1.4]  # the headline metrics; "Unacknowledged" fits a 1280 px window
COMM_HELP = {
    "commissioned": "nodes that have learned their machine's normal and judge every recent window",
    "needs a class": f"commissioned, but some of their newest {loaders.commissioning.RECENT_WINDOWS} windows ran at a "
                     "speed in no learned class (no verdict for those): commission that speed",
    "commissioning": "learning their machine's normal: no verdict, no alarm until they finish",
    "unknown": "older firmware that reports no commissioning: judged against the model's own threshold",
}

st.title("Fleet overview")
db = ui.require_db()
if "fleet_search" not in st.session_state:  # ?q=...: a bookmark or a link from elsewhere
    st.session_state["fleet_search"] = st.query_params.get("q", "")
query = st.text_input("Search machines", key="fleet_search", placeholder="device id, name, site, line or tag "
                      "(e.g. pump, north, type=fan); every word must match",
                      help="Names and tags are set with `edgefleet machine name|tag`; the node's own tags match too.")
if query.strip():
    st.query_params["q"] = query.strip()
elif "q" in st.query_params:
    del st.query_params["q"]


def search_results(df: pd.DataFrame, query: str) -> None:
    """The machines the search matched, with their stage and where they are; a link opens one."""
    st.subheader(f"Machines matching \u201c{query.strip()}\u201d: {len(df)}")
    if df.empty:
        st.caption("No machine matches every word. Search looks at the device id, its name, site, line and tags.")
        return
    table = df.assign(open=[f"./device?device={d}" for d in df["device"]])[
        ["device", "name", "site", "line", "tags", "state", "stage", "open"]]
    st.dataframe(table, hide_index=True, width="stretch", key="fleet_search_results", column_config={
        "open": st.column_config.LinkColumn("open", display_text="details")})


@st.fragment(run_every=ui.REFRESH_S)
def overview(query: str) -> None:
    df = ui.fleet(db)
    if df.empty:
        st.info("The store has no devices yet: waiting for the first status or result messages.")
        return
    df = loaders.commissioning.with_commissioning(df, ui.recent_windows(db))
    shown = loaders.fleet.search(df, query)
    counts = loaders.fleet.fleet_counts(df)
    active, unacked = ui.active_alarm_count(db)
    cols = st.columns(WIDTHS)
    cols[0].metric("Devices", counts["devices"])
    cols[1].metric("Healthy", counts["healthy"])
    cols[2].metric("Degrading", counts["degrading"])
    cols[3].metric("Alarming", counts["alarming"])
    cols[4].metric("Offline", counts["offline"])
    cols[5].metric("Unacknowledged", unacked, help=f"alarms nobody has acknowledged yet; {active} active in total")
    if query.strip():
        search_results(shown, query)
    comm = loaders.commissioning.comm_counts(df)
    cols = st.columns(WIDTHS)
    for col, key in zip(cols, loaders.commissioning.COMM_STATES):
        col.metric(loaders.commissioning.COMM_LABELS[key], comm[key], help=COMM_HELP[key])

    head, pick_by = st.columns([3, 2])
    head.subheader("Machines by site and line")
    default = "ISO zone" if st.query_params.get("colour") == "zone" else "health"  # ?colour=zone: a bookmark
    by = pick_by.segmented_control("Colour by", ["health", "ISO zone"], default=default, key="fleet_colour_by",
                                   help="ISO 20816 zone of each machine's velocity RMS (median of its newest 5 "
                                        "readings) for its class: set per machine or site, default class II")
    if by == "ISO zone":
        zones = ui.fleet_zones(db)[["device", "vrms", "iso_class", "zone"]]
        df = df.merge(zones, on="device", how="left").fillna({"zone": loaders.readings.NO_READING})
    if query.strip() and not shown.empty:
        df = df[df["device"].isin(shown["device"])]  # the grid and the attention list show the matches only
    event = st.altair_chart(charts.fleet_grid(df, "zone" if by == "ISO zone" else "state"), width="stretch",
                            on_select="rerun", key="fleet_grid")
    picked = (event.selection.get("pick") or [{}])[0].get("device") if event else None
    if picked:
        st.switch_page(ui.PAGE_DEVICE, query_params={"device": picked})
    st.caption("Click a machine to open its score history. Purple: commissioning (learning its normal, no "
               "verdict yet)." if by != "ISO zone" else
               "Click a machine to open it. ISO 20816 zones of velocity RMS for each machine's class: A as new, B "
               "long-term operation, C plan a repair, D damage likely; grey: no velocity reading (older nodes).")

    left, right = st.columns([5, 2])
    with left:
        st.subheader("Needs attention")
        att = loaders.fleet.attention(df, ui.now_ms())
        if att.empty:
            st.success("No machine is alarming or degrading" + (" among those matching the search." if query.strip()
                                                                 else "."))
        else:
            st.dataframe(att[["device", "name", "stage", "since", "remaining", "trend", "severity", "site", "line"]],
                         hide_index=True, width="stretch", column_config={
                             "name": st.column_config.TextColumn("name"),
                             "stage": st.column_config.TextColumn("stage", help="; ".join(
                                 f"{k}: {v}" for k, v in loaders.health.STAGE_HELP.items())),
                             "since": st.column_config.TextColumn("needs attention", help="since it left healthy "
                                                                  "(degrading or alarm), whichever came first"),
                             "remaining": st.column_config.TextColumn("remaining life", help="until the fitted trend "
                                                                      "reaches the failure level (alarm service), "
                                                                      "with its interval"),
                             "trend": st.column_config.TextColumn("trend", width="large")})
    with right:
        st.subheader("Model versions")
        st.altair_chart(charts.model_bars(loaders.fleet.model_versions(df)), width="stretch")

    table = loaders.commissioning.commissioning_table(df)
    if not table.empty:
        st.subheader("Commissioning")
        st.dataframe(table, hide_index=True, width="stretch", key="fleet_commissioning",
                     column_config={"commissioning": st.column_config.TextColumn("state")})
    ui.refreshed_caption()


def _commission(end: bool) -> None:
    """Form callback: resolve the target, queue the command, keep the outcome (it outlives the refresh)."""
    s = st.session_state
    who = f"dashboard: {s['comm_fleet_by'].strip()}" if s.get("comm_fleet_by", "").strip() else "dashboard"
    try:
        if not end and not s.get("comm_fleet_confirm"):
            raise EdgefleetError("tick the confirmation first: machines that start commissioning give no verdict "
                                 "and raise no alarm until they have learned")
        body, devices = ui.commission(db, None, s.get("comm_fleet_target", ""), windows=s.get("comm_fleet_windows"),
                                      rpm=s.get("comm_fleet_rpm"), end=end, who=who)
    except EdgefleetError as exc:
        ui.set_message(MSG, "error", str(exc))
        return
    s["comm_fleet_confirm"] = False
    ui.set_message(MSG, "success", loaders.commissioning.queued_message(body, devices))


overview(query)

st.subheader("Commission machines")
with st.form("comm_fleet", border=True):
    a, b, c, d = st.columns(4)
    a.text_input("Target", key="comm_fleet_target", placeholder="all, site=NAME, line=NAME or tag=NAME",
                 help="every device the store knows that matches, as `edgefleet commission --target`")
    b.number_input("Windows per class", value=None, step=1, key="comm_fleet_windows", placeholder="node default (64)",
                   help="windows per operating class that end commissioning (16-4096)")
    c.number_input("Speed class (rpm)", value=None, step=10.0, key="comm_fleet_rpm", placeholder="every speed",
                   help="learn or re-learn only the class around this speed; the other classes are kept")
    d.text_input("By", key="comm_fleet_by", placeholder="your name (optional)")
    st.checkbox("I understand: machines that start commissioning give no verdict and raise no alarm until they have "
                "learned (not needed to end commissioning).", key="comm_fleet_confirm")
    x, y, _ = st.columns([1, 1, 3])
    x.form_submit_button("Commission", type="primary", on_click=_commission, args=(False,))
    y.form_submit_button("End commissioning", on_click=_commission, args=(True,))
ui.show_message(MSG)  # below the buttons; it stays until dismissed
st.caption("The command is queued in the fleet database for every matching machine; `edgefleet serve` sends it. "
           "Each machine's progress shows on its Device page.")
