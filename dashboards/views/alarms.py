"""Alarms: filter by state, site and severity; acknowledge and shelve (written through the store).

Who acknowledged or shelved is the signed-in user (dashboards/auth.py); the role is checked in the
write itself (ui.acknowledge, ui.shelve), so a viewer who submits the form is refused there. Only
with sign-in disabled (the demo) does the form ask for a name.
"""

import zlib

import streamlit as st

from dashboards import alarm_forms, auth, charts, loaders, timebar, ui
from edgefleet.errors import EdgefleetError
from edgefleet.service.alarms import SEVERITIES

ALL_SITES = "all sites"
ANY = "any"

st.title("Alarms")
db = ui.require_db()

c1, c2, c3 = st.columns(3)
state = c1.selectbox("State", loaders.alarms.ALARM_STATES, key="alarm_state")
site_opts = [ALL_SITES] + ui.sites(db)
site = c2.selectbox("Site", site_opts, key="alarm_site", format_func=lambda s: s or "(no site)")
sev = c3.selectbox("Severity at least", (ANY,) + SEVERITIES, key="alarm_severity")
time_range = timebar.picker()


ACK_MSG = "ack_msg"


def _acknowledge() -> None:
    """Form callback: runs before the rerun, so the table drawn next already shows the change; the outcome stays
    on screen below the form (ui.show_message) until dismissed."""
    pick = st.session_state.get("ack_alarm")
    if pick is None:  # nothing is preselected: acknowledging the wrong alarm must take a deliberate pick
        ui.set_message(ACK_MSG, "error", "Pick the alarm to acknowledge (or click its row in the table above).")
        return
    try:
        done = ui.acknowledge(db, int(pick), st.session_state.get("ack_by", ""), st.session_state.get("ack_note", ""))
    except EdgefleetError as exc:  # AccessDenied: the role does not allow it (checked in the write)
        ui.set_message(ACK_MSG, "error", str(exc))
        return
    if done:
        ui.set_message(ACK_MSG, "success", f"Alarm #{pick} acknowledged.")
        st.session_state["ack_note"] = ""
    else:
        ui.set_message(ACK_MSG, "warning", f"Alarm #{pick} was already acknowledged or no longer exists.")


def _preselect(row_pick: int | None) -> None:
    """The alarm the Acknowledge form starts on: the row just clicked in the table, else the one a link
    named (`/alarms?alarm=ID`, as notifications link), each taken once so a later pick in the form
    stands; never the newest by default (it made acknowledging the wrong alarm one click away)."""
    link = st.query_params.get("alarm")
    for source, value in (("row", row_pick), ("link", int(link) if link and link.isdigit() else None)):
        if value is not None and st.session_state.get(f"_ack_from_{source}") != value:
            st.session_state[f"_ack_from_{source}"] = value
            st.session_state["ack_alarm"] = value
            return


SHELVE_MSG = "shelve_msg"
SHELVE_HOURS = {"1 hour": 1.0, "4 hours": 4.0, "8 hours": 8.0, "1 day": 24.0, "3 days": 72.0, "7 days": 168.0}


def _shelve() -> None:
    """Form callback: shelve through the store; the outcome stays on screen (ui.show_message)."""
    pick, by = st.session_state.get("shelve_alarm"), st.session_state.get("shelve_by", "").strip()
    reason = st.session_state.get("shelve_reason", "").strip()
    if pick is None:
        return
    if (not by and not auth.enabled()) or not reason:
        ui.set_message(SHELVE_MSG, "error", "A shelf needs who (By) and why (Reason)." if not auth.enabled()
                       else "A shelf needs a reason.")
        return
    span = st.session_state.get("shelve_for", "4 hours")
    try:
        ui.shelve(db, int(pick), SHELVE_HOURS[span], by, reason)
    except EdgefleetError as exc:
        ui.set_message(SHELVE_MSG, "error", str(exc))
        return
    st.session_state["shelve_reason"] = ""
    ui.set_message(SHELVE_MSG, "success", f"Alarm #{pick} shelved for {span}: no notification or escalation "
                                          "until then.")


@st.fragment(run_every=ui.REFRESH_S)
def alarm_list(state: str, site: str | None, sev: str | None, time_range: loaders.timerange.TimeRange) -> None:
    start, end = time_range.bounds(ui.now_ms())
    df = ui.alarms(db, state, site, sev, start, end)
    st.caption(f"{len(df)} alarm(s) active at some time in the {time_range.label()}")
    if df.empty:
        st.success("No alarms match these filters.")
    else:
        event = st.altair_chart(charts.alarms_raised(df, (start, end), zoom=True), width="stretch",
                                key=f"alarms_raised_{timebar.token(time_range)}", on_select="rerun")
        timebar.zoom_to_selection(event)
        # keyed by the listed ids: when the list changes (a new alarm on top) the selection starts over,
        # so a row position never points at another alarm than the one clicked
        ids_key = zlib.crc32(",".join(map(str, df["id"].tolist())).encode())
        table = st.dataframe(df, hide_index=True, width="stretch", key=f"alarm_rows_{ids_key}", on_select="rerun",
                             selection_mode="single-row", column_config={
            "raised": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
            "cleared": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
            "acked": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
            "score_ratio": st.column_config.NumberColumn("score / thr at raise", format="%.2f"),
            "peak_ratio": st.column_config.NumberColumn("peak / thr", format="%.2f"),
            "shelved": st.column_config.TextColumn("shelved")})
        rows = table.selection.rows if table is not None else []
        _preselect(int(df.iloc[rows[0]]["id"]) if rows else None)

    me = auth.actor(ui.store(db))
    open_ = df[df["acked_by"].isna()] if not df.empty else df
    st.subheader("Acknowledge")
    if open_.empty:
        st.caption("Nothing to acknowledge among the alarms shown.")
    else:
        labels = {int(r.id): f"#{r.id} {r.device} ({r.severity}, {r.state})" for r in open_.itertuples()}
        if st.session_state.get("ack_alarm") not in labels:  # acknowledged meanwhile, or filtered out
            st.session_state["ack_alarm"] = None
        with st.form("ack_form", border=False):
            st.selectbox("Alarm", list(labels), format_func=labels.get, key="ack_alarm", index=None,
                         placeholder="pick an alarm, or click its row in the table")
            if auth.enabled():
                st.text_input("Note", key="ack_note", placeholder="e.g. maintenance scheduled")
                st.caption(f"As **{me.name}** ({me.role}); acknowledging needs the operator role.")
            else:
                who, note = st.columns([1, 2])
                who.text_input("By", value="operator", key="ack_by")
                note.text_input("Note", key="ack_note", placeholder="e.g. maintenance scheduled")
            st.form_submit_button("Acknowledge", type="primary", on_click=_acknowledge)
    ui.show_message(ACK_MSG)  # below the form (or where it was, once nothing is left to acknowledge)

    st.subheader("Shelve")
    active = df[df["state"].str.startswith("active") & (df["shelved"] == "")] if not df.empty else df
    if active.empty:
        st.caption("No unshelved active alarm among those shown.")
    else:
        labels = {int(r.id): f"#{r.id} {r.device} ({r.severity})" for r in active.itertuples()}
        with st.form("shelve_form", border=False):
            st.caption("A shelved alarm stays active and listed, but sends no notification and no escalation "
                       "until its shelf ends.")
            c1, c2 = st.columns(2)
            c1.selectbox("Alarm", list(labels), format_func=labels.get, key="shelve_alarm", index=None,
                         placeholder="pick an alarm")
            c2.selectbox("For", list(SHELVE_HOURS), index=1, key="shelve_for")
            if auth.enabled():
                st.text_input("Reason", key="shelve_reason", placeholder="e.g. bearing ordered, runs until Friday")
                st.caption(f"As **{me.name}** ({me.role}); shelving needs the operator role.")
            else:
                who, why = st.columns([1, 2])
                who.text_input("By", key="shelve_by")
                why.text_input("Reason", key="shelve_reason", placeholder="e.g. bearing ordered, runs until Friday")
            st.form_submit_button("Shelve", on_click=_shelve)
    ui.show_message(SHELVE_MSG)

    alarm_forms.unshelve(db, me)  # dashboards/alarm_forms.py: unshelve, data-loss alarms
    alarm_forms.data_loss(db, state, me)
    counts, log = ui.notifications(db)
    with st.expander(f"Notifications sent: {counts.get('sent', 0)}, waiting: "
                     f"{counts.get('pending', 0) + counts.get('held', 0)}, failed: {counts.get('failed', 0)}"):
        if log.empty:
            st.caption("No notification queued yet (`edgefleet serve --notify-config`, docs/notifications.md).")
        else:
            st.caption("By state: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ". Newest first.")
            st.dataframe(log, hide_index=True, width="stretch", column_config={
                "queued": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
                "sent": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})
    ui.refreshed_caption()


alarm_list(state, None if site == ALL_SITES else site, None if sev == ANY else sev, time_range)
