"""Audit log: every write (acknowledge, shelve, campaigns, commission, users, sign-ins), allowed or refused,
newest first. Read-only: the store refuses to change or delete its rows."""

import pandas as pd
import streamlit as st

from dashboards import ui
from edgefleet.clock import now_ms
from edgefleet.service.audit import rows

SPANS = {"1 hour": 1, "8 hours": 8, "1 day": 24, "7 days": 168, "30 days": 720, "all": None}

st.title("Audit log")
db = ui.require_db()
c1, c2 = st.columns([1, 2])
span = c1.selectbox("Since", list(SPANS), index=2, key="audit_span")
text = c2.text_input("Filter", key="audit_filter", placeholder="who, action, target or outcome contains ...")
hours = SPANS[span]
entries = ui.store(db).audit(None if hours is None else now_ms() - hours * 3_600_000, limit=5000)
df = pd.DataFrame(list(reversed(rows(entries))), columns=["id", "time", "who", "via", "action", "target", "outcome",
                                                          "detail"])
if text.strip() and not df.empty:
    hit = df[["who", "action", "target", "outcome"]].apply(lambda c: c.str.contains(text.strip(), case=False,
                                                                                   regex=False)).any(axis=1)
    df = df[hit]
st.caption(f"{len(df)} entr{'y' if len(df) == 1 else 'ies'} (times UTC). Also: `edgefleet audit --since 8h`.")
if df.empty:
    st.info("No audit entries in this span.")
else:
    denied = int((df["outcome"] != "ok").sum())
    if denied:
        st.caption(f"{denied} not ok (denied, failed or no change).")
    st.dataframe(df, hide_index=True, width="stretch", key="audit_table")
