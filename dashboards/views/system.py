"""System: ingest rate, node-to-store lag, duplicates and rejected messages by reason."""

import streamlit as st

from dashboards import charts, loaders, ui

WINDOWS = {"last 10 min": (600.0, 10), "last hour": (3600.0, 60), "last 6 h": (21600.0, 300),
           "last 24 h": (86400.0, 900)}

st.title("System")
db = ui.require_db()
window = st.selectbox("Window", list(WINDOWS), index=0, key="system_window")


@st.fragment(run_every=ui.REFRESH_S)
def system(window_s: float, bucket_s: int) -> None:
    ing = ui.ingest(db, window_s, bucket_s)
    tot = loaders.system.window_totals(ing)
    done = ing[ing["complete"]]
    last = done.tail(max(1, 60 // bucket_s))
    rate = loaders.system.ingest_rate(ing, bucket_s)
    lag = float(last["lag_ms_avg"].mean()) if last["lag_ms_avg"].notna().any() else None
    lag_max = float(last["lag_ms_max"].max()) if last["lag_ms_max"].notna().any() else None
    since_commit = (ui.now_ms() - int(ing["ts"].iloc[-1]) - bucket_s * 1000) / 1000.0 if not ing.empty else None
    cols = st.columns(6)
    cols[0].metric("Results/s", f"{rate:,.1f}" if rate is not None else "-",
                   help="ingest rate over the newest complete minute (or bucket)")
    cols[1].metric("Lag (avg)", f"{lag / 1000:.2f} s" if lag is not None else "-",
                   help="node timestamp to commit in the store")
    cols[2].metric("Lag (max)", f"{lag_max / 1000:.2f} s" if lag_max is not None else "-")
    cols[3].metric("Results stored", f"{tot['results']:,}", help="in this window")
    cols[4].metric("Duplicates dropped", f"{tot['duplicates']:,}", help="in this window")
    cols[5].metric("Rejected", f"{tot['rejected']:,}", help="in this window")
    if done.empty:
        st.info("No complete ingest interval in this window yet.")
    else:
        if since_commit is not None and since_commit > 30:
            st.warning(f"Nothing committed for about {since_commit:.0f} s: is `edgefleet serve` running?")
        a, b = st.columns(2)
        a.altair_chart(charts.rate_line(done, {"results_per_s": "results/s", "messages_per_s": "messages/s"},
                                        "per second"), width="stretch")
        lag_s = done.assign(avg=done["lag_ms_avg"] / 1000.0, max=done["lag_ms_max"] / 1000.0)
        b.altair_chart(charts.rate_line(lag_s, {"avg": "lag avg", "max": "lag max"}, "lag (s)"), width="stretch")

    rej = ui.rejects(db, window_s, bucket_s)
    st.subheader("Rejected messages by reason")
    if rej.latest.empty:
        st.success("No message was rejected in this window.")
    else:
        if rej.truncated:
            st.caption(f"Reasons from the newest {len(rej.latest):,} rejects; exact totals per bucket: "
                       f"{int(ing['rejected'].sum()):,} in this window.")
        st.altair_chart(charts.rejects_by_reason(rej.by_reason), width="stretch")
        st.dataframe(rej.latest.head(100), hide_index=True, width="stretch", height=240,
                     column_config={"time": st.column_config.DatetimeColumn(format="HH:mm:ss")})
    st.caption(f"Store `{db}` · retention {ui.retention_days(db):g} days · lifetime totals: "
               f"`edgefleet stats --db {db}`")
    ui.refreshed_caption()


system(*WINDOWS[window])
