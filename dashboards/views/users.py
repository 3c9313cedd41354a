"""Users (admins only): the dashboard's local accounts; add one, set a password, remove one. The same as
`edgefleet users ...`; each change is checked for the admin role in the write and recorded in the audit log."""

import streamlit as st

from dashboards import auth, ui
from edgefleet.clock import now_ms
from edgefleet.errors import EdgefleetError
from edgefleet.service.accounts import (
    ROLES,
    check_name,
    hash_password,
    password_problem,
)
from edgefleet.service.audit import iso

MSG = "users_msg"  # Add a user: below its form
CHANGE_MSG = "users_change_msg"  # Change a user: below its form

st.title("Users")
db = ui.require_db()
store = ui.store(db)


def _add() -> None:
    s = st.session_state
    name, role, pw = s.get("user_new_name", "").strip(), s.get("user_new_role"), s.get("user_new_pw", "")
    try:
        check_name(name)
        problem = password_problem(pw, name)
        if problem:
            raise EdgefleetError(problem)
        pw_hash = hash_password(pw)
        auth.perform(store, "user.add", name, {"role": role}, lambda _who: store.add_user(name, role, pw_hash, now_ms()))
    except EdgefleetError as exc:
        ui.set_message(MSG, "error", str(exc))
        return
    s["user_new_pw"] = ""
    ui.set_message(MSG, "success", f"Added {name} ({role}).")


def _passwd(name: str) -> None:
    pw = st.session_state.get("user_set_pw", "")
    try:
        problem = password_problem(pw, name)
        if problem:
            raise EdgefleetError(problem)
        pw_hash = hash_password(pw)
        auth.perform(store, "user.passwd", name, {},
                     lambda _who: store.set_user_password(name, pw_hash, now_ms()) or _missing(name))
    except EdgefleetError as exc:
        ui.set_message(CHANGE_MSG, "error", str(exc))
        return
    st.session_state["user_set_pw"] = ""
    ui.set_message(CHANGE_MSG, "success", f"Password of {name} changed; its open sessions end.")


def _remove(name: str) -> None:
    try:
        auth.perform(store, "user.remove", name, {}, lambda _who: store.remove_user(name) or _missing(name))
    except EdgefleetError as exc:
        ui.set_message(CHANGE_MSG, "error", str(exc))
        return
    ui.set_message(CHANGE_MSG, "warning", f"Removed {name}; its open sessions end.")


def _missing(name: str) -> bool:
    raise EdgefleetError(f"no user {name!r}")


users = store.users()
st.dataframe([{"user": u.name, "role": u.role, "created": iso(u.created_ms), "changed": iso(u.updated_ms)}
              for u in users], hide_index=True, width="stretch", key="users_table")

with st.form("user_add"):
    st.markdown("**Add a user**")
    a, b, c = st.columns(3)
    a.text_input("Name", key="user_new_name")
    b.selectbox("Role", ROLES, key="user_new_role")
    c.text_input("Password", type="password", key="user_new_pw", help="12+ characters, no placeholder")
    st.form_submit_button("Add", on_click=_add)
ui.show_message(MSG)  # below the form; kept until dismissed

if users:
    with st.form("user_change"):
        st.markdown("**Change a user**")
        a, b = st.columns(2)
        pick = a.selectbox("User", [u.name for u in users], key="user_pick")
        b.text_input("New password", type="password", key="user_set_pw")
        c1, c2 = st.columns(2)
        c1.form_submit_button("Set password", on_click=lambda: _passwd(st.session_state["user_pick"]))
        c2.form_submit_button("Remove user", on_click=lambda: _remove(st.session_state["user_pick"]))
ui.show_message(CHANGE_MSG)  # below the form (also after the last user is gone)
