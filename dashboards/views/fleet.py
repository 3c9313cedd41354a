"""Fleet overview: headline counts, every machine as a tile coloured by health, models in use."""

import pandas as pd
import streamlit as st

from dashboards import charts, loaders, ui

st.title("Fleet overview")
db = ui.require_db()


@st.fragment(run_every=ui.REFRESH_S)
def overview() -> None:
    df = ui.fleet(db)
    if df.empty:
        st.info("The store has no devices yet: waiting for the first status or result messages.")
        return
    counts = loaders.fleet.fleet_counts(df)
    active, unacked = ui.active_alarm_count(db)
    cols = st.columns(6)
    cols[0].metric("Devices", counts["devices"])
    cols[1].metric("Healthy", counts["healthy"])
    cols[2].metric("Degrading", counts["degrading"])
    cols[3].metric("Alarming", counts["alarming"])
    cols[4].metric("Offline", counts["offline"])
    cols[5].metric("Unacknowledged", unacked, help=f"alarms nobody has acknowledged yet; {active} active in total")

    st.subheader("Machines by site and line")
    event = st.altair_chart(charts.fleet_grid(df), width="stretch", on_select="rerun", key="fleet_grid")
    picked = (event.selection.get("pick") or [{}])[0].get("device") if event else None
    if picked:
        st.switch_page(ui.PAGE_DEVICE, query_params={"device": picked})
    st.caption("Click a machine to open its score history.")

    left, right = st.columns([2, 1])
    with left:
        st.subheader("Needs attention")
        att = loaders.fleet.attention(df)
        if att.empty:
            st.success("No machine is alarming or degrading.")
        else:
            att["eta"] = att["eta_s"].map(lambda s: loaders.common.fmt_eta(None if pd.isna(s) else s))
            st.dataframe(att.drop(columns=["eta_s"]), hide_index=True, width="stretch", column_config={
                "score_ratio": st.column_config.NumberColumn("score / thr", format="%.2f"),
                "eta": st.column_config.TextColumn("early warning")})
    with right:
        st.subheader("Model versions")
        st.altair_chart(charts.model_bars(loaders.fleet.model_versions(df)), width="stretch")
    ui.refreshed_caption()


overview()
