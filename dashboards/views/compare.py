"""Compare machines: 2-6 machines' health indicator and velocity (mm/s) overlaid on one time axis, over the shared
time range (bucketed in the database: at most 300 points per machine and series)."""

import streamlit as st

from dashboards import charts, loaders, timebar, ui

st.title("Compare machines")
db = ui.require_db()

machines = ui.fleet(db)
if machines.empty:
    st.info("The store has no devices yet.")
    st.stop()
names = machines.sort_values("device")["device"].tolist()
state_of = dict(zip(machines["device"], machines["state"]))
name_of = dict(zip(machines["device"], machines["name"]))
if "compare_pick" not in st.session_state:  # a link (?devices=a,b) or the most urgent machines
    picked = loaders.timeseries.parse_devices(st.query_params.get("devices"), names)
    if len(picked) < 2:
        urgent = loaders.fleet.attention(machines)["device"].tolist()
        picked += [d for d in urgent + names if d not in picked][:max(0, 3 - len(picked))]
    st.session_state["compare_pick"] = picked
chosen = st.multiselect("Machines (2 to 6)", names, key="compare_pick", max_selections=loaders.timeseries.MAX_COMPARE,
                        format_func=lambda d: f"{loaders.fleet.label(d, name_of.get(d))}, {state_of.get(d, '?')}",
                        placeholder="type a machine id or name",
                        help="search by id or name (`edgefleet machine name`); the list says each machine's state")
st.query_params["devices"] = ",".join(chosen)
time_range = timebar.picker()


@st.fragment(run_every=ui.REFRESH_S)
def overlay(chosen: list[str], time_range: loaders.timerange.TimeRange) -> None:
    if len(chosen) < 2:
        st.info("Pick at least two machines to compare.")
        return
    start, end = time_range.bounds(ui.now_ms())
    df = ui.compare(db, tuple(chosen), start, end)
    if df.empty:
        st.info(f"None of these machines reported in the {time_range.label()}.")
        return
    missing = [d for d in chosen if d not in set(df["device"])]
    if missing:
        st.caption("No results in this range from " + ", ".join(missing) + ".")
    bucket = loaders.timerange.bucket_ms(end - start, 300) / 1000
    has_hi = df["hi"].notna().any()
    st.subheader("Health indicator" if has_hi else "Score over threshold")
    field = "hi" if has_hi else "ratio"
    thr = (df.dropna(subset=["hi_thr"]).groupby("device", sort=False)["hi_thr"].last().rename("value").reset_index()
           if has_hi else None)
    event = st.altair_chart(charts.compare_lines(df, field, "HI (bucket max)" if has_hi else
                                                 "score / thr (bucket max)", (start, end), thresholds=thr,
                                                 zoom=True),
                            width="stretch", key=f"compare_hi_{timebar.token(time_range)}", on_select="rerun")
    timebar.zoom_to_selection(event)
    st.subheader("Velocity RMS (mm/s)")
    if df["vrms"].notna().any():
        st.altair_chart(charts.compare_lines(df, "vrms", "mm/s (bucket mean)", (start, end),
                                             height=220), width="stretch", key="compare_vrms")
    else:
        st.caption("None of these machines reports velocity (`vrms`: feature definition v2).")
    st.caption(f"**{df.attrs.get('resolution') or f'buckets of {bucket:g} s'}**: each point is a bucket's highest HI (or score over threshold) and mean "
               "velocity, computed in the database; dashed: each machine's newest HI threshold. Drag across the "
               "upper chart to zoom into a span.")
    st.dataframe(loaders.timeseries.compare_summary(df, chosen), hide_index=True, width="stretch",
                 key="compare_table", column_config={
                     "hi_newest": st.column_config.NumberColumn("HI newest", format="%.3g"),
                     "hi_max": st.column_config.NumberColumn("HI max", format="%.3g"),
                     "hi_thr": st.column_config.NumberColumn("HI threshold", format="%.3g"),
                     "vrms_mean": st.column_config.NumberColumn("vrms mean (mm/s)", format="%.2f"),
                     "vrms_max": st.column_config.NumberColumn("vrms max (mm/s)", format="%.2f")})
    ui.refreshed_caption()


overlay(chosen, time_range)
