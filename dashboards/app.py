"""edgefleet dashboard entrypoint: registers the pages, nothing else.

    streamlit run dashboards/app.py -- --db var/demo/fleet.db    (or EDGEFLEET_DB=PATH)

One file per page under views/ (not pages/: a folder named pages/ makes Streamlit run
its legacy multipage mode on a fresh server's first request); its data loaders in
loaders/<page>.py (no Streamlit), caching in ui.py, charts in charts.py (dashboards/README.md).

Sign-in (auth.py) runs first: signed out, no page runs and nothing from the store is shown.
`EDGEFLEET_DASHBOARD_AUTH=off` (the local demo) turns it off, with a banner on every page.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts only dashboards/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st

from dashboards import auth, ui

st.set_page_config(page_title="edgefleet", page_icon=":material/precision_manufacturing:", layout="wide")
who = auth.gate(lambda: ui.store(ui.require_db()))
page = st.navigation({
    "Fleet": [
        st.Page(ui.PAGE_FLEET, title="Fleet overview", icon=":material/factory:", default=True),
        st.Page(ui.PAGE_DEVICE, title="Device detail", icon=":material/sensors:"),
        st.Page(ui.PAGE_COMPARE, title="Compare machines", icon=":material/stacked_line_chart:"),
        st.Page(ui.PAGE_ALARMS, title="Alarms", icon=":material/notifications_active:"),
    ],
    "Operations": [
        st.Page(ui.PAGE_SYSTEM, title="System", icon=":material/monitor_heart:"),
        st.Page("views/audit.py", title="Audit log", icon=":material/history:"),
        *([st.Page("views/users.py", title="Users", icon=":material/group:")]
          if auth.enabled() and who.role == "admin" else []),
    ],
    "Models": [
        st.Page(ui.PAGE_MODELS, title="Models & OTA", icon=":material/system_update_alt:"),
    ],
})
page.run()
