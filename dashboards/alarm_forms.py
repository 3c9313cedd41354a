"""The Alarms page's data-loss alarms (table and Acknowledge, as for machine alarms) and its Unshelve form (health
and data-loss alike; before, `edgefleet alarms unshelve` only). Drawn by views/alarms.py inside its refreshing
fragment; writes go through ui (operators and up, audited) and their outcome stays on screen (ui.show_message).
"""

from __future__ import annotations

import streamlit as st

from dashboards import auth, ui
from edgefleet.errors import EdgefleetError

LOSS_MSG = "loss_ack_msg"
UNSHELVE_MSG = "unshelve_msg"
TIME = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")


def _by(key: str) -> str:
    return st.session_state.get(key, "") or ""


def _ack_loss(db: str) -> None:
    """Form callback: runs before the rerun, so the table drawn next shows the change."""
    pick = st.session_state.get("loss_ack_alarm")
    if pick is None:
        return
    try:
        ok = ui.acknowledge_loss(db, int(pick), _by("loss_ack_by"), _by("loss_ack_note"))
    except EdgefleetError as exc:
        ui.set_message(LOSS_MSG, "error", str(exc))
        return
    if ok:
        st.session_state["loss_ack_note"] = ""
        ui.set_message(LOSS_MSG, "success", f"Data-loss alarm loss-{pick} acknowledged.")
    else:
        ui.set_message(LOSS_MSG, "warning", f"Data-loss alarm loss-{pick} was already acknowledged or no longer "
                                            "exists.")


def _unshelve(db: str, choices: dict[str, tuple[str, int]]) -> None:
    pick = st.session_state.get("unshelve_alarm")
    if pick not in choices:
        return
    kind, alarm_id = choices[pick]
    try:
        ok = ui.unshelve(db, kind, alarm_id, _by("unshelve_by"))
    except EdgefleetError as exc:
        ui.set_message(UNSHELVE_MSG, "error", str(exc))
        return
    ui.set_message(UNSHELVE_MSG, "success" if ok else "warning",
                   f"Alarm {pick} unshelved: notifications and escalation resume." if ok else
                   f"Alarm {pick} was no longer shelved.")


def _who(key: str, me) -> None:
    """The By field without sign-in; with it, who acts (the signed-in user's name is recorded)."""
    if auth.enabled():
        st.caption(f"As **{me.name}** ({me.role}); this needs the operator role.")
    else:
        st.text_input("By", value="operator", key=key)


def data_loss(db: str, state: str, me) -> None:
    """Data-loss alarms for the page's state filter, and acknowledging one; the outcome below the form."""
    _data_loss(db, state, me)
    ui.show_message(LOSS_MSG)


def _data_loss(db: str, state: str, me) -> None:
    df = ui.loss_alarms(db, state)
    st.subheader("Data-loss alarms")
    st.caption("Results that never arrived from a machine (store/loss.py): its data, not its health, needs a look. "
               f"{len(df)} for the state filter; shelve one with `edgefleet alarms shelve loss-N`.")
    if df.empty:
        return
    st.dataframe(df.drop(columns=["id"]), hide_index=True, width="stretch", key="loss_alarms", column_config={
        "raised": TIME, "cleared": TIME, "acked": TIME,
        "rate": st.column_config.NumberColumn("missing share", format="percent")})
    open_ = df[df["acked_by"].isna()]
    if open_.empty:
        return
    labels = {int(r.id): f"{r.alarm} {r.device} ({r.missing:,} missing, {r.state})" for r in open_.itertuples()}
    with st.form("loss_ack_form", border=False):
        a, b = st.columns([2, 3])
        a.selectbox("Data-loss alarm", list(labels), format_func=labels.get, key="loss_ack_alarm", index=None,
                    placeholder="pick an alarm")
        b.text_input("Note", key="loss_ack_note", placeholder="e.g. switch on line 2 replaced")
        _who("loss_ack_by", me)
        st.form_submit_button("Acknowledge data-loss alarm", on_click=_ack_loss, args=(db,))


def unshelve(db: str, me) -> None:
    """Every shelf in force, health and data-loss; end one now; the outcome below the form."""
    _unshelve_form(db, me)
    ui.show_message(UNSHELVE_MSG)


def _unshelve_form(db: str, me) -> None:
    df = ui.shelved(db)
    st.subheader("Unshelve")
    if df.empty:
        st.caption("No alarm is shelved now.")
        return
    choices = {r.alarm: (r.kind, int(r.id)) for r in df.itertuples()}
    labels = {r.alarm: f"{r.alarm} {r.device} ({r.kind}, shelved by {r.by}: {r.reason})" for r in df.itertuples()}
    with st.form("unshelve_form", border=False):
        st.selectbox("Shelved alarm", list(labels), format_func=labels.get, key="unshelve_alarm", index=None,
                     placeholder="pick an alarm")
        _who("unshelve_by", me)
        st.form_submit_button("Unshelve", on_click=_unshelve, args=(db, choices))
