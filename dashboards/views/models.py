"""Models & OTA: the model registry with cards, campaigns with live progress, start and abort.

Reads and writes the OTA registry (`edgefleet.service.ota.registry.OtaRegistry`) in the same SQLite
file as the store. Starting or aborting only writes the registry, as the CLI does; the OTA
manager inside `edgefleet serve` carries campaigns out. Both need the engineer role, checked in the
write itself (ui.start_campaign, ui.abort_campaign via auth.perform) and recorded in the audit log.
"""

import streamlit as st

from dashboards import charts, loaders, ui
from edgefleet.errors import EdgefleetError
from edgefleet.service.ota.registry import Campaign

CAMPAIGN_BADGE = {"running": "blue", "aborting": "orange", "aborted": "red", "completed": "green"}
TIME = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")
RATE = st.column_config.NumberColumn(format="percent")
MSG = "ota_msg"  # Start a campaign: shown below its form
ABORT_MSG = "ota_abort_msg_"  # + campaign id: shown under that campaign's Abort button


# ---------- writes (widget callbacks: they run before the rerun that draws the result) ----------

def _start(db: str) -> None:
    s = st.session_state
    try:
        policy = loaders.models.rollout_policy(s["ota_stages"], trial_min=s["ota_trial"], shadow_min=s["ota_shadow"],
                                               abort_failures_pct=s["ota_fails"], abort_anomaly_shift=s["ota_shift"],
                                               stage_timeout_min=s["ota_timeout"])
        if s.get("ota_version") is None:
            raise EdgefleetError("no model to roll out: publish one with `edgefleet ota publish MODEL_DIR`")
        c = ui.start_campaign(db, s["ota_version"], s["ota_target"], policy, s["ota_id"].strip() or None)
    except EdgefleetError as exc:
        ui.set_message(MSG, "error", str(exc))
        return
    s["ota_campaign"] = c.id
    ui.set_message(MSG, "success", (f"Campaign {c.id} started: model v{c.model} to {c.target} in stages "
                                    f"{' / '.join(f'{x:.0%}' for x in c.policy.stages)}. The OTA manager in "
                                    "`edgefleet serve` runs it."))


def _abort(db: str, cid: str) -> None:
    try:
        ui.abort_campaign(db, cid)
    except EdgefleetError as exc:
        ui.set_message(ABORT_MSG + cid, "error", str(exc))
        return
    ui.set_message(ABORT_MSG + cid, "warning", (f"Campaign {cid} is aborting: the OTA manager clears its offers "
                                    "and rolls back devices that took the model."))


# ---------- the page ----------

st.title("Models & OTA")
db = ui.require_db()


@st.fragment(run_every=ui.REFRESH_S)
def live() -> None:
    frame, cards = ui.models(db)
    st.subheader("Model registry")
    if frame.empty:
        st.info("No model published yet: `edgefleet ota publish MODEL_DIR` (after `edgefleet model train`).")
    else:
        st.dataframe(frame, hide_index=True, width="stretch", key="ota_models_table", column_config={
            "created": TIME, "size": st.column_config.NumberColumn("size (B)"),
            "auc_int8": st.column_config.NumberColumn("AUC int8", format="%.4f"),
            "artifact_bytes": st.column_config.NumberColumn("artifact (B)"),
            "activation_ram_bytes": st.column_config.NumberColumn("activation RAM (B)"),
            "tflm_arena_bytes": st.column_config.NumberColumn("TFLM arena (B)"),
            "threshold": st.column_config.NumberColumn(format="%.4g")})
        for v, mid in zip(frame["version"], frame["model_id"]):
            with st.expander(f"Model card: {mid} v{v}"):
                st.markdown(cards[int(v)])

    cs, states = ui.campaigns(db)
    st.subheader("Campaigns")
    if not cs:
        st.info("No campaign yet: start one below or with `edgefleet ota rollout VERSION`.")
        ui.refreshed_caption()
        return
    table = loaders.models.campaigns_frame(cs, states)
    # states nobody is in: hidden
    shown = [c for c in table.columns if c not in loaders.models.OTA_STATES or table[c].any()]
    st.dataframe(table[shown], hide_index=True, width="stretch", key="ota_campaigns_table",
                 column_config={"created": TIME, "updated": TIME})
    long = loaders.models.campaign_counts_long(table)
    if not long.empty:
        st.altair_chart(charts.campaign_states(long, list(table["campaign"])), width="stretch")

    ids = [c.id for c in reversed(cs)]
    running = [c.id for c in cs if c.state in ("running", "aborting")]
    if st.session_state.get("ota_campaign") not in ids:
        st.session_state["ota_campaign"] = running[0] if running else ids[0]
    cid = st.selectbox("Campaign", ids, key="ota_campaign")
    campaign(next(c for c in cs if c.id == cid), states.get(cid, {}))
    ui.refreshed_caption()


def campaign(c: Campaign, states: dict[str, dict]) -> None:
    """One campaign: state, stages with progress, abort, per-device states, old vs new anomaly rate."""
    head, button = st.columns([4, 1])
    head.markdown(f"**{c.id}** · model v{c.model} → `{c.target}` · :{CAMPAIGN_BADGE.get(c.state, 'gray')}"
                  f"-badge[{c.state}] · stage {c.stage + 1} of {len(c.policy.stages)}")
    if c.state == "running":
        button.button("Abort campaign", key="ota_abort", type="primary", on_click=_abort, args=(db, c.id),
                      help="stop offering; devices that took the model roll back")
    ui.show_message(ABORT_MSG + c.id)  # under the button; kept until dismissed (the 2-s refresh redraws it)
    if c.reason:
        (st.error if c.state in ("aborting", "aborted") else st.info)(f"Reason: {c.reason}")
    if not c.devices:
        st.caption("The OTA manager has not chosen the campaign's devices yet (is `edgefleet serve` running?).")
    stages = loaders.models.stage_frame(c, states)
    for r in stages.itertuples():
        marker = " ← current" if r.current and c.state == "running" else ""
        st.progress(float(r.done), text=f"Stage {r.stage} ({r.fraction}): {r.devices} devices · {r.confirmed} "
                    f"confirmed · {r.failed} failed · {r.in_flight} in flight · {r.pending} pending{marker}")

    st.markdown("**Devices**")
    dev = loaders.models.device_state_frame(c, states)
    st.dataframe(dev, hide_index=True, width="stretch", height=min(400, 38 + 35 * max(1, len(dev))),
                 key="ota_devices_table", column_config={"offered": TIME, "updated": TIME})

    if c.policy.shadow:
        shadow_comparison(c, states)

    st.markdown("**Anomaly rate: old vs new model** (results before vs after each device switched)")
    check = ui.model_health(db, c.id)
    health, cmp = check.health, check.comparison
    if health is not None:
        a, b, d = st.columns(3)
        a.metric("Old model anomaly rate", f"{health.old_rate:.1%}",
                 help=f"mean over the {health.devices} devices the OTA manager's check counts (shadow outcomes "
                 f"where a device has them, else before vs after), floored at {c.policy.anomaly_floor:.0%}")
        b.metric("New model anomaly rate", f"{health.new_rate:.1%}")
        d.metric("Shift", f"{health.shift:.2g}x", help=f"the campaign aborts above {health.limit:g}x")
    if cmp.empty or cmp["new_windows"].sum() == 0:
        st.caption("No results under the new model yet.")
        return
    long = cmp.melt(id_vars=["device"], value_vars=["old_rate", "new_rate"], var_name="model",
                    value_name="anomaly_rate").dropna()
    long["model"] = long["model"].map({"old_rate": "old", "new_rate": f"new (v{c.model})"})
    st.bar_chart(long, x="device", y="anomaly_rate", color="model", stack=False, height=240, y_label="anomaly rate")
    st.dataframe(cmp, hide_index=True, width="stretch", key="ota_shadow_table",
                 column_config={"old_rate": RATE, "new_rate": RATE,
                                "shift": st.column_config.NumberColumn(format="%.2fx"),
                                "counts": st.column_config.CheckboxColumn(
                                    "in health check", help="counted by the OTA manager's check: a device of the "
                                    f"current stage with ≥ {c.policy.min_windows} windows under the new model, "
                                    "from shadow mode if it has them, else running the new model (trial or "
                                    "confirmed)")})


def shadow_comparison(c: Campaign, states: dict[str, dict]) -> None:
    """Shadow mode: the old model stays active while the new one scores the same windows beside it."""
    st.markdown(f"**Shadow comparison: old vs new model on the same windows** (shadow phase "
                f"{c.policy.shadow_s / 60:g} min before the trial)")
    frame = ui.shadow(db, c.id)
    totals = loaders.models.shadow_totals(frame, c.policy.anomaly_floor)
    if totals is None:
        st.caption("No shadow results yet: devices report both scores once they have verified the model.")
        return
    a, b, d, e = st.columns(4)
    a.metric("Shadow windows", f"{totals['windows']:,}", help=f"from {totals['devices']} devices")
    b.metric("Old model anomaly rate (shadow)", f"{totals['old_rate']:.1%}")
    d.metric("New model anomaly rate (shadow)", f"{totals['new_rate']:.1%}")
    e.metric("Shadow shift", f"{totals['shift']:.2g}x", help=f"old rate floored at {c.policy.anomaly_floor:.0%}; "
             f"the campaign aborts above {c.policy.abort_anomaly_shift:g}x")
    long = loaders.models.shadow_scores_long(frame, c.model)
    if not long.empty:
        st.altair_chart(charts.shadow_scores(long, c.model), width="stretch", key="ota_shadow_scores")
    summary = loaders.models.shadow_summary(frame, states, c.policy.anomaly_floor)
    st.dataframe(summary, hide_index=True, width="stretch", key="ota_shadow_compare_table",
                 column_config={"old_rate": RATE, "new_rate": RATE,
                                "shift": st.column_config.NumberColumn(format="%.2fx"),
                                "old_median": st.column_config.NumberColumn("old median score", format="%.4g"),
                                "new_median": st.column_config.NumberColumn("new median score", format="%.4g")})


live()

st.subheader("Start a campaign")
st.caption("Starting or aborting a campaign needs the engineer role; each attempt is in the audit log.")
frame, _ = ui.models(db)
versions = frame["version"].tolist()
with st.form("ota_start", border=True):
    a, b, c_ = st.columns(3)
    a.selectbox("Model version", versions, key="ota_version", format_func=lambda v: f"v{v}")
    b.text_input("Target", value="all", key="ota_target", help="all, site=NAME, line=NAME or tag=NAME")
    c_.text_input("Stages", value="5%,25%,100%", key="ota_stages", help="cumulative, ascending, ending at 100%")
    a, b, c_ = st.columns(3)
    a.number_input("Trial (minutes)", min_value=0.0, value=1.0, step=0.5, key="ota_trial",
                   help="the new model active before a device confirms")
    b.number_input("Shadow (minutes)", min_value=0.0, value=0.0, step=1.0, key="ota_shadow",
                   help="0: no shadow; otherwise a phase before the trial where the old model stays active "
                   "and the new one scores every window beside it")
    c_.number_input("Stage timeout (minutes)", min_value=0.0, value=10.0, step=1.0, key="ota_timeout")
    a, b, c_ = st.columns(3)
    a.number_input("Abort at failures (%)", min_value=0.0, max_value=100.0, value=10.0, step=1.0, key="ota_fails")
    b.number_input("Abort at anomaly shift (x)", min_value=0.0, value=3.0, step=0.5, key="ota_shift")
    c_.text_input("Campaign id (optional)", key="ota_id", placeholder="c<version>-<UTC time>")
    st.form_submit_button("Start campaign", type="primary", on_click=_start, args=(db,))
ui.show_message(MSG)  # below the button; kept until dismissed or replaced by the next start
