"""System: ingest rate, node-to-store lag, results that never arrived, duplicates and rejected messages."""

import streamlit as st

from dashboards import charts, loaders, timebar, ui
from edgefleet.service.store.url import mask_url

st.title("System")
db = ui.require_db()
time_range = timebar.picker()


@st.fragment(run_every=ui.REFRESH_S)
def system(time_range: loaders.timerange.TimeRange) -> None:
    start, end = time_range.bounds(ui.now_ms())
    bucket_s = max(10, loaders.timerange.bucket_ms(end - start, 90) // 1000)  # 10 s (15 min) to 12 h (30 d)
    ing = ui.ingest(db, start, end, bucket_s)
    tot = loaders.system.window_totals(ing)
    done = ing[ing["complete"]]
    last = done.tail(max(1, 60 // bucket_s))
    rate = loaders.system.ingest_rate(ing, bucket_s)
    lag = float(last["lag_ms_avg"].mean()) if last["lag_ms_avg"].notna().any() else None
    lag_max = float(last["lag_ms_max"].max()) if last["lag_ms_max"].notna().any() else None
    since_commit = (ui.now_ms() - int(ing["ts"].iloc[-1]) - bucket_s * 1000) / 1000.0 if not ing.empty else None
    cols = st.columns([1, 1, 1, 1.2, 1.4, 1])  # "Duplicates dropped" needs the room at 1280 px (test_layout_1280)
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

    totals, lost, alarms = ui.loss(db, start, end)
    st.subheader("Results that never arrived")
    c = st.columns(4)
    c[0].metric("Missing", f"{totals['missing']:,}", help="holes in a boot's sequence numbers older than the "
                "settle window (15 min), less what the nodes said their own rings dropped")
    c[1].metric("Pending", f"{totals['pending_gaps']:,}", help="younger holes: store-and-forward may still fill them")
    c[2].metric("Dropped on nodes", f"{totals['dropped_on_node']:,}", help="the nodes' rings overflowed while offline")
    c[3].metric("Counter jumps", f"{totals['seq_jumps']:,}", help="sequence numbers that jumped by more than "
                "100,000: a broken or hostile node (not counted as missing)")
    if not alarms.empty:
        st.error(f"{len(alarms)} device(s) keep losing results: data-loss alarms (apart from machine health)")
        st.dataframe(alarms, hide_index=True, width="stretch",
                     column_config={"rate": st.column_config.NumberColumn(format="percent"),
                                    "raised": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})
    if lost.empty:
        st.success("Nothing missing in this window.")
    else:
        by = st.radio("Loss by", ["site", "device"], horizontal=True, key="loss_by")
        st.altair_chart(charts.loss_over_time(lost, by), width="stretch")

    rej = ui.rejects(db, start, end, bucket_s)
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
    shown = mask_url(db)  # a postgresql:// URL without its password
    st.caption(f"Store `{shown}` · retention {ui.retention_days(db):g} days · lifetime totals: "
               f"`edgefleet stats --db {shown}`")
    ui.refreshed_caption()


system(time_range)
