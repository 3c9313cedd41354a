"""Models & OTA: the model registry, campaigns and their progress, and the campaign's model-health check.

Reads `edgefleet.service.ota.registry.OtaRegistry` (the same SQLite file as the store) and the
store's results. The OTA state names and the model-health rule are not defined here: they come
from `edgefleet.service.ota.campaign`, as the OTA manager uses them, so the page shows the numbers
the manager acts on (docs/ota.md). The only write is `start_campaign`, with a policy built by
`rollout_policy` exactly as `edgefleet ota rollout` builds it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from edgefleet.service.ota.campaign import (DEVICE_STATES, IN_FLIGHT, TERMINAL_BAD, TERMINAL_OK, CanaryHealth,
                                            Policy, Rates, Target, before_after_rates, canary_health, health_rates,
                                            stage_size, shadow_rates, HEALTH_LOOKBACK_MS, RESULTS_LIMIT, SHADOW_LIMIT)
from edgefleet.service.ota.registry import Campaign, ModelEntry, OtaRegistry
from edgefleet.service.store import Store
from edgefleet.toolchain.card import to_markdown

OTA_PENDING = "pending"  # the dashboard's own: in the rollout order, not offered yet (its stage has not come)
# Every campaign state in progress order, `pending` between the devices still going and those that failed.
OTA_STATES = (*(s for s in DEVICE_STATES if s not in TERMINAL_BAD), OTA_PENDING,
              *(s for s in DEVICE_STATES if s in TERMINAL_BAD))

# What the OTA manager reads for its model-health check, as `edgefleet serve` wires it up
# (`start_ota_manager` in edgefleet/commands/fleet.py, `OtaManager._anomaly` / `_shadow_anomaly`).


# ---------- the model registry ----------

def models_frame(models: Sequence[ModelEntry]) -> pd.DataFrame:
    """One row per registered model, newest version first, with the card's key numbers."""
    rows = []
    for m in models:
        card, fp = m.card or {}, (m.card or {}).get("footprint") or {}
        rows.append({"version": m.version, "model_id": m.model_id, "size": m.size,
                     "created": pd.to_datetime(m.created_ms, unit="ms", utc=True),
                     "auc_int8": (card.get("evaluation") or {}).get("auc_int8"),
                     "artifact_bytes": fp.get("artifact_bytes"), "activation_ram_bytes": fp.get("activation_ram_bytes"),
                     "tflm_arena_bytes": card.get("tflm_arena_bytes"), "threshold": card.get("threshold"),
                     "sha256": m.sha256[:16]})
    cols = ["version", "model_id", "size", "created", "auc_int8", "artifact_bytes", "activation_ram_bytes",
            "tflm_arena_bytes", "threshold", "sha256"]
    return pd.DataFrame(rows, columns=cols).sort_values("version", ascending=False).reset_index(drop=True)


def model_cards(models: Sequence[ModelEntry]) -> dict[int, str]:
    """Each model's card as Markdown, by version."""
    return {m.version: to_markdown(m.card) for m in models}


# ---------- campaigns and their progress ----------

def state_counts(campaign: Campaign, states: dict[str, dict]) -> dict[str, int]:
    """Devices per OTA state, with the devices not offered yet counted as `pending`."""
    counts: dict[str, int] = {}
    for s in states.values():
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    pending = sum(1 for d in campaign.devices if d not in states)
    if pending:
        counts[OTA_PENDING] = pending
    return counts


def campaigns_frame(campaigns: Sequence[Campaign], states: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """One row per campaign (newest first): model, target, state, current stage, devices, counts per state."""
    rows = []
    for c in campaigns:
        counts = state_counts(c, states.get(c.id, {}))
        stages = [f"{s:.0%}" for s in c.policy.stages]
        rows.append({"campaign": c.id, "model": c.model, "target": c.target, "state": c.state,
                     "stage": f"{c.stage + 1}/{len(stages)} ({stages[c.stage]})", "stages": " / ".join(stages),
                     "mode": (f"shadow {c.policy.shadow_s / 60:g} min + " if c.policy.shadow else "")
                     + f"trial {c.policy.trial_s / 60:g} min",
                     "devices": len(c.devices), **{s: counts.get(s, 0) for s in OTA_STATES},
                     "reason": c.reason, "created": pd.to_datetime(c.created_ms, unit="ms", utc=True),
                     "updated": pd.to_datetime(c.updated_ms, unit="ms", utc=True)})
    cols = ["campaign", "model", "target", "state", "stage", "stages", "mode", "devices", *OTA_STATES, "reason",
            "created", "updated"]
    return pd.DataFrame(rows, columns=cols).iloc[::-1].reset_index(drop=True)


def campaign_counts_long(df: pd.DataFrame) -> pd.DataFrame:
    """`campaigns_frame` as campaign, state, count rows (non-zero only), for a stacked bar."""
    long = df.melt(id_vars=["campaign"], value_vars=list(OTA_STATES), var_name="state", value_name="count")
    return long[long["count"] > 0].reset_index(drop=True)


def stage_frame(campaign: Campaign, states: dict[str, dict]) -> pd.DataFrame:
    """Per stage: the devices it adds (stages are cumulative) and how far they got.

    `done` is confirmed + failed (any terminal state) over the stage's devices; `current`
    marks the stage the campaign is in.
    """
    n = len(campaign.devices)
    rows, start = [], 0
    for i, frac in enumerate(campaign.policy.stages):
        end = stage_size(n, frac) if n else 0
        members = campaign.devices[start:end]
        st_of = [states.get(d, {}).get("state", OTA_PENDING) for d in members]
        ok = sum(s in TERMINAL_OK for s in st_of)
        bad = sum(s in TERMINAL_BAD for s in st_of)
        rows.append({"stage": i + 1, "fraction": f"{frac:.0%}", "devices": len(members), "confirmed": ok,
                     "failed": bad, "in_flight": sum(s in IN_FLIGHT for s in st_of),
                     "pending": sum(s == OTA_PENDING for s in st_of),
                     "done": (ok + bad) / len(members) if members else 0.0, "current": i == campaign.stage})
        start = max(start, end)
    return pd.DataFrame(rows, columns=["stage", "fraction", "devices", "confirmed", "failed", "in_flight", "pending",
                                       "done", "current"])


def device_state_frame(campaign: Campaign, states: dict[str, dict]) -> pd.DataFrame:
    """Every device of a campaign in rollout order: its stage, OTA state, reason, previous model, times."""
    n, order = len(campaign.devices), {}
    for i, frac in reversed(list(enumerate(campaign.policy.stages))):
        for d in campaign.devices[:stage_size(n, frac) if n else 0]:
            order[d] = i + 1
    devices = list(campaign.devices) + sorted(d for d in states if d not in order)  # offered before a restart
    rows = []
    for d in devices:
        s = states.get(d)
        rows.append({"device": d, "stage": order.get(d), "state": s["state"] if s else OTA_PENDING,
                     "reason": s["reason"] if s else "", "old_model": s["old_model"] if s else None,
                     "offered": pd.to_datetime(s["offered_ms"], unit="ms", utc=True) if s and s["offered_ms"]
                     else pd.NaT,
                     "updated": pd.to_datetime(s["updated_ms"], unit="ms", utc=True) if s else pd.NaT})
    return pd.DataFrame(rows, columns=["device", "stage", "state", "reason", "old_model", "offered", "updated"])


# ---------- shadow mode: both models on the same windows ----------

SHADOW_COLS = ["device", "ts", "old_score", "old_thr", "old_anom", "new_score", "new_thr", "new_anom"]


def shadow_frame(store: Store, campaign: Campaign, states: dict[str, dict], limit: int = SHADOW_LIMIT) -> pd.DataFrame:
    """The campaign's shadow-mode windows since its first offer: both models' score and decision on
    each window (the old model active, the campaign's model scoring beside it)."""
    offered = [s["offered_ms"] for s in states.values() if s["offered_ms"]]
    if not campaign.policy.shadow or not offered:
        return pd.DataFrame(columns=SHADOW_COLS)
    rows = [(r.device, r.ts, r.score, r.thr, r.anom, r.shadow_score, r.shadow_thr, bool(r.shadow_anom))
            for r in store.shadow_results(campaign.model, since_ms=min(offered), limit=limit) if r.device in states]
    return pd.DataFrame(rows, columns=SHADOW_COLS)


def shadow_summary(frame: pd.DataFrame, states: dict[str, dict], anomaly_floor: float) -> pd.DataFrame:
    """Per device: windows scored by both, each model's anomaly rate and median score, and the shift
    (new rate over the old, floored as the model-health check floors it)."""
    cols = ["device", "state", "windows", "old_rate", "new_rate", "shift", "old_median", "new_median"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    g = frame.groupby("device")
    out = pd.DataFrame({"windows": g.size(), "old_rate": g["old_anom"].mean(), "new_rate": g["new_anom"].mean(),
                        "old_median": g["old_score"].median(), "new_median": g["new_score"].median()})
    out["shift"] = out["new_rate"] / out["old_rate"].clip(lower=anomaly_floor)
    out["state"] = [states.get(d, {}).get("state", OTA_PENDING) for d in out.index]
    return out.reset_index()[cols]


def shadow_totals(frame: pd.DataFrame, anomaly_floor: float) -> dict[str, float] | None:
    """Over every shadow window of the campaign: counts, both anomaly rates and the floored shift."""
    if frame.empty:
        return None
    old, new = float(frame["old_anom"].mean()), float(frame["new_anom"].mean())
    return {"windows": len(frame), "devices": int(frame["device"].nunique()), "old_rate": old, "new_rate": new,
            "shift": new / max(old, anomaly_floor)}


def shadow_scores_long(frame: pd.DataFrame, new_model: int) -> pd.DataFrame:
    """Both models' scores as (model, log10 score) rows for a distribution chart; scores are
    right-skewed squared errors, so the log axis shows both bodies and tails. Zero scores are
    dropped (no logarithm)."""
    parts = []
    for col, thr, label in (("old_score", "old_thr", "old (active)"), ("new_score", "new_thr", f"new (v{new_model})")):
        s = frame[frame[col] > 0]
        parts.append(pd.DataFrame({"model": label, "log10_score": s[col].map(math.log10),
                                   "log10_thr": s[thr].map(math.log10)}))
    return pd.concat(parts, ignore_index=True)


# ---------- the model-health check, as the OTA manager runs it ----------

@dataclass(frozen=True)
class ModelHealth:
    """The campaign's model-health check and the per-device table behind it."""

    comparison: pd.DataFrame  # per device: anomaly rate before vs after it switched, and whether it counts
    rates: Rates  # per device, what the check uses: `campaign.health_rates`
    health: CanaryHealth | None  # `campaign.canary_health` over the current stage; None before any device counts


def stage_members(campaign: Campaign) -> list[str]:
    """The devices the current stage covers (stages are cumulative): those the manager checks."""
    n = len(campaign.devices)
    return list(campaign.devices[:stage_size(n, campaign.policy.stages[campaign.stage]) if n else 0])


def model_health(store: Store, campaign: Campaign, states: dict[str, dict], shadow: pd.DataFrame,
                 limit: int = RESULTS_LIMIT) -> ModelHealth:
    """Per offered device, its anomaly rate under the old model(s) vs the campaign's model from stored
    results, and the canary check over the same inputs the OTA manager builds: before/after rates
    only for devices running the candidate, shadow outcomes (`shadow`, from `shadow_frame`) where a
    device has them, and only the current stage's devices with `min_windows` counted (`counts`)."""
    cols = ["device", "state", "old_model", "old_rate", "old_windows", "new_rate", "new_windows", "shift", "counts"]
    offered = [s["offered_ms"] for s in states.values() if s["offered_ms"]]
    if not offered:
        return ModelHealth(pd.DataFrame(columns=cols), {}, None)
    since = min(offered) - HEALTH_LOOKBACK_MS
    rows, before_after = [], {}
    for d in sorted(states):
        res = store.score_history(d, since_ms=since, limit=limit)
        if (r := before_after_rates([(x.model, x.anom) for x in res], campaign.model)) is not None:
            before_after[d] = r
        old = [x.anom for x in res if x.model != campaign.model]
        new = [x.anom for x in res if x.model == campaign.model]
        old_rate = sum(old) / len(old) if old else None
        new_rate = sum(new) / len(new) if new else None
        olds = sorted({x.model for x in res if x.model != campaign.model})
        rows.append({"device": d, "state": states[d]["state"],
                     "old_model": ", ".join(f"v{m}" for m in olds) if olds else "-",
                     "old_rate": old_rate, "old_windows": len(old), "new_rate": new_rate, "new_windows": len(new),
                     "shift": new_rate / max(old_rate, campaign.policy.anomaly_floor)
                     if old_rate is not None and new_rate is not None else None})
    shadow_by_device = shadow_rates(list(zip(shadow["device"], shadow["old_anom"], shadow["new_anom"])), set(states))
    rates = health_rates({d: s["state"] for d, s in states.items()}, before_after, shadow_by_device)
    members = stage_members(campaign)
    counted = {d for d in members if d in rates and rates[d][2] >= campaign.policy.min_windows}
    frame = pd.DataFrame(rows, columns=cols[:-1])
    frame["counts"] = frame["device"].isin(counted)
    return ModelHealth(frame[cols], rates, canary_health(campaign.policy, rates, members))


# ---------- writes ----------

def rollout_policy(stages: str, *, trial_min: float = 1.0, shadow_min: float = 0.0, abort_failures_pct: float = 10.0,
                   abort_anomaly_shift: float = 3.0, stage_timeout_min: float = 10.0) -> Policy:
    """The campaign policy from the start form, built and validated by `Policy.from_user` as
    `edgefleet ota rollout` builds it (the form takes the failure limit in percent)."""
    return Policy.from_user(stages, trial_min=trial_min, shadow_min=shadow_min, abort_failures=abort_failures_pct / 100.0,
                            abort_anomaly_shift=abort_anomaly_shift, stage_timeout_min=stage_timeout_min)


def start_campaign(reg: OtaRegistry, version: int, target: str, policy: Policy,
                   campaign_id: str | None = None) -> Campaign:
    """Create the campaign in the registry; the OTA manager in `edgefleet serve` carries it out."""
    return reg.create_campaign(int(version), Target.parse(target.strip()), policy, campaign_id or None)
