"""Dashboard loaders: plain functions from a `Store` to DataFrames and small dicts.

Nothing here imports Streamlit, so every loader is tested against a real store
without a browser. Pages (dashboards/views/) wrap these in short-TTL caches
(dashboards/ui.py) and only draw. Times in the store are UTC milliseconds; the
frames carry them both as ms and as timezone-aware datetimes for the charts.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from edgefleet.alarms import SEVERITY_RANK, AlarmPolicy, fit_log_trend, time_to_threshold
from edgefleet.ota.campaign import IN_FLIGHT, TERMINAL_BAD, TERMINAL_OK, Policy, Target, stage_size
from edgefleet.ota.registry import Campaign, ModelEntry, OtaRegistry
from edgefleet.protocol import ResultRecord
from edgefleet.store import Device, Store

DEFAULT_DB = Path(__file__).resolve().parents[1] / "var" / "demo" / "fleet.db"  # where `edgefleet demo` writes

# What an operator sees per machine, most urgent first, and its colour.
STATES = ("alarm", "offline", "degrading", "ok", "unknown")
STATE_COLOURS = {
    "alarm": "#d62728",  # red
    "offline": "#7f7f7f",  # grey
    "degrading": "#ff9f1c",  # amber
    "ok": "#2ca02c",  # green
    "unknown": "#c7c7c7",  # light grey: registered, no health yet
}
OFFLINE_STATUSES = ("offline", "lost", "stale")
ALARM_STATES = ("active", "active, unacknowledged", "cleared", "all")


# ---------- where the database is ----------

def resolve_db(argv: Sequence[str], env: dict[str, str] | os._Environ) -> tuple[Path, str]:
    """The store path and where it came from: `--db PATH` after `streamlit run app.py --`,
    else $EDGEFLEET_DB, else the demo's database."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--db")
    known, _ = parser.parse_known_args(list(argv))
    if known.db:
        return Path(known.db), "--db"
    if env.get("EDGEFLEET_DB"):
        return Path(env["EDGEFLEET_DB"]), "EDGEFLEET_DB"
    return DEFAULT_DB, "default"


def missing_db_message(path: Path, source: str) -> str | None:
    """None when `path` is a store file; otherwise what to do about it."""
    if path.is_file():
        return None
    if path.exists():
        return f"{path} (from {source}) is not a file."
    return (f"No fleet database at `{path}` (from {source}) yet. Start the fleet service "
            f"(`edgefleet serve --db {path} ...` or `edgefleet demo`), or point the dashboard at an "
            "existing store with `EDGEFLEET_DB=PATH` or `streamlit run dashboards/app.py -- --db PATH`. "
            "This page retries by itself.")


# ---------- fleet overview ----------

def display_state(d: Device) -> str:
    """One state per machine for the grid: an active alarm wins, then being unreachable."""
    if d.health == "alarm" or d.alarm_severity is not None:
        return "alarm"
    if d.status in OFFLINE_STATUSES:
        return "offline"
    if d.health in ("degrading", "ok"):
        return d.health
    return "unknown"


GRID_WIDTH = 40  # tiles per grid row; a longer line wraps onto continuation rows


def fleet_frame(store: Store, now_ms: int, stale_s: float = 120.0, width: int = GRID_WIDTH) -> pd.DataFrame:
    """One row per device with its display state, colour and grid cell: `row` is its site / line
    (with a continuation mark past `width` machines), `col` its position in that row."""
    devs = store.devices(now_ms=now_ms, stale_s=stale_s)
    rows = []
    for d in devs:
        state = display_state(d)
        ratio = (d.last_score / d.thr) if d.last_score is not None and d.thr else None
        rows.append({
            "device": d.device, "site": d.site or "(no site)", "line": d.line or "-", "status": d.status,
            "health": d.health, "state": state, "colour": STATE_COLOURS[state], "severity": d.alarm_severity,
            "model": d.model, "fw": d.fw, "last_score": d.last_score, "thr": d.thr, "score_ratio": ratio,
            "eta_s": d.eta_s, "slope_per_h": d.slope_per_h, "results": d.results,
            "last_seen_ms": d.last_seen, "age_s": (now_ms - d.last_seen) / 1000.0 if d.last_seen else None,
        })
    cols = ["device", "site", "line", "status", "health", "state", "colour", "severity", "model", "fw",
            "last_score", "thr", "score_ratio", "eta_s", "slope_per_h", "results", "last_seen_ms", "age_s"]
    df = pd.DataFrame(rows, columns=cols)
    line_key = df["site"] + " / " + df["line"]
    pos = df.groupby(line_key).cumcount() if len(df) else pd.Series(dtype="int64")
    wrap = pos // width
    df["row"] = line_key + wrap.map(lambda k: "" if k == 0 else f" ({k + 1})")
    df["col"] = pos % width
    return df


def fleet_counts(df: pd.DataFrame) -> dict[str, int]:
    """The headline numbers: devices, healthy, degrading, alarming, offline."""
    return {"devices": len(df), "healthy": int((df["state"] == "ok").sum()),
            "degrading": int((df["state"] == "degrading").sum()), "alarming": int((df["state"] == "alarm").sum()),
            "offline": int(df["status"].isin(OFFLINE_STATUSES).sum())}


def model_versions(df: pd.DataFrame) -> pd.DataFrame:
    """Model version -> devices running it (devices that never reported one are left out)."""
    known = df.dropna(subset=["model"])
    out = known.groupby(known["model"].astype(int)).size().rename("devices").reset_index()
    out["model"] = "v" + out["model"].astype(str)
    return out


def attention(df: pd.DataFrame) -> pd.DataFrame:
    """Machines an operator should look at: alarming first (by severity), then degrading by ETA."""
    sev = df["severity"].map(SEVERITY_RANK).fillna(0)
    out = df[df["state"].isin(("alarm", "degrading"))].assign(_sev=sev)
    out = out.sort_values(["_sev", "eta_s"], ascending=[False, True], na_position="last")
    out = out.assign(severity=out["severity"].fillna("-"))
    return out[["device", "site", "line", "state", "severity", "score_ratio", "eta_s", "model"]].reset_index(drop=True)


# ---------- device detail ----------

def results_frame(results: Sequence[ResultRecord]) -> pd.DataFrame:
    cols = list(ResultRecord._fields)
    df = pd.DataFrame([tuple(r) for r in results], columns=cols)
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    return df


def score_frame(store: Store, device: str, since_ms: int | None = None, limit: int = 5000) -> pd.DataFrame:
    """A device's score timeline (oldest first), newest `limit` points since `since_ms`."""
    return results_frame(store.score_history(device, since_ms=since_ms, limit=limit))


@dataclass(frozen=True)
class TrendLine:
    """The fitted health trend over the newest windows and its forecast to the threshold."""

    points: pd.DataFrame  # time, score, part ("fit" | "forecast")
    slope_per_h: float  # d log(score) / dt
    eta_s: float | None  # seconds from the newest window to the threshold; 0 if above; None if not rising


def trend_line(scores: pd.DataFrame, thr: float, policy: AlarmPolicy = AlarmPolicy(),
               max_forecast_s: float | None = None) -> TrendLine | None:
    """The same log-score fit the alarm service runs (last `policy.trend_points` windows), as chart points.

    The forecast runs to the threshold crossing, capped at `max_forecast_s` (default: the span
    of the fitted windows) so a far-off estimate does not squash the chart; None with too few points.
    """
    tail = scores.tail(policy.trend_points)
    if len(tail) < policy.trend_min_points or not thr > 0:
        return None
    trend = fit_log_trend(tail["ts"].tolist(), tail["score"].tolist())
    if trend is None:
        return None
    eta = time_to_threshold(trend, thr)
    t0 = int(tail["ts"].iloc[0])
    span_s = (trend.t_ref_ms - t0) / 1000.0
    cap = span_s if max_forecast_s is None else max_forecast_s
    rows = [(t0 + (trend.t_ref_ms - t0) * i // 20, "fit") for i in range(21)]  # exp() of a line: a curve
    if eta is not None and eta > 0 and trend.slope_per_s > 0:
        end = trend.t_ref_ms + int(min(eta, cap) * 1000)
        rows += [(trend.t_ref_ms + (end - trend.t_ref_ms) * i // 20, "forecast") for i in range(21)]
    pts = pd.DataFrame(rows, columns=["ts", "part"])
    pts["score"] = [math.exp(trend.level + trend.slope_per_s * (t - trend.t_ref_ms) / 1000.0) for t in pts["ts"]]
    pts["time"] = pd.to_datetime(pts["ts"], unit="ms", utc=True)
    return TrendLine(pts, trend.slope_per_s * 3600.0, eta)


def device_status(d: Device, now_ms: int) -> dict[str, str]:
    """Human-readable status facts of one device for the detail page."""
    return {
        "status": d.status, "health": d.health, "alarm": d.alarm_severity or "none",
        "model": f"v{d.model}" if d.model is not None else "-", "firmware": d.fw or "-", "slot": d.slot or "-",
        "threshold": f"{d.thr:.4g}" if d.thr is not None else "-",
        "last score": f"{d.last_score:.4g}" if d.last_score is not None else "-",
        "last seen": fmt_age((now_ms - d.last_seen) / 1000.0) if d.last_seen else "never",
        "early warning": fmt_eta(d.eta_s, short=True),
        "site / line": f"{d.site or '-'} / {d.line or '-'}", "results": f"{d.results:,}",
    }


def events_frame(store: Store, device: str, limit: int = 50) -> pd.DataFrame:
    """Status, OTA and debug history of one device, newest first."""
    evs = store.events(device, limit=limit)
    df = pd.DataFrame([(e.ts, e.kind, e.body) for e in evs], columns=["ts", "kind", "body"])
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    df["body"] = df["body"].map(lambda b: ", ".join(f"{k}={v}" for k, v in b.items() if k not in ("v",)))
    return df[["time", "kind", "body"]]


# ---------- alarms ----------

def alarm_query(state: str) -> dict[str, bool | None]:
    """The store filter for one of ALARM_STATES."""
    if state not in ALARM_STATES:
        raise ValueError(f"unknown alarm state filter {state!r} (one of {', '.join(ALARM_STATES)})")
    return {"active": {"active": True, "active, unacknowledged": True, "cleared": False, "all": None}[state],
            "acked": False if state == "active, unacknowledged" else None}


def alarm_frame(store: Store, state: str = "active", site: str | None = None, min_severity: str | None = None,
                limit: int = 500) -> pd.DataFrame:
    """Alarms matching the filters, active first then newest first."""
    alarms = store.alarms(**alarm_query(state), site=site, min_severity=min_severity, limit=limit)
    cols = ["id", "device", "site", "line", "severity", "state", "raised", "cleared", "score_ratio", "peak_ratio",
            "acked_by", "acked", "note"]
    rows = []
    for a in alarms:
        rows.append({
            "id": a.id, "device": a.device, "site": a.site, "line": a.line, "severity": a.severity,
            "state": ("active" if a.active else "cleared") + (", acked" if a.acked_ts is not None else ""),
            "raised": pd.to_datetime(a.raised_ts, unit="ms", utc=True),
            "cleared": pd.to_datetime(a.cleared_ts, unit="ms", utc=True) if a.cleared_ts is not None else pd.NaT,
            "score_ratio": a.score / a.thr if a.thr else None, "peak_ratio": a.peak_score / a.thr if a.thr else None,
            "acked_by": a.acked_by, "acked": pd.to_datetime(a.acked_ts, unit="ms", utc=True)
            if a.acked_ts is not None else pd.NaT, "note": a.note,
        })
    return pd.DataFrame(rows, columns=cols)


def sites(store: Store) -> list[str]:
    """Site names known to the registry ('' for devices without one)."""
    return sorted({d.site or "" for d in store.devices()})


# ---------- system ----------

def ingest_frame(store: Store, since_ms: int, bucket_s: int = 10, now_ms: int | None = None) -> pd.DataFrame:
    """Per time bucket: results/s, messages/s, duplicates, rejects and node-to-commit lag.

    `complete` is False for the bucket still filling at `now_ms` (its rate would read low).
    """
    buckets = store.ingest_series(since_ms, bucket_s)
    df = pd.DataFrame([b.__dict__ for b in buckets],
                      columns=["ts", "messages", "results", "duplicates", "rejected", "lag_ms_avg", "lag_ms_max"])
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    df["results_per_s"] = df["results"] / bucket_s
    df["messages_per_s"] = df["messages"] / bucket_s
    df["complete"] = True if now_ms is None else (df["ts"] + bucket_s * 1000 <= now_ms)
    return df


def ingest_rate(df: pd.DataFrame, bucket_s: int, over_s: float = 60.0) -> float | None:
    """Results per second over the newest complete buckets covering `over_s` (at least one bucket)."""
    done = df[df["complete"]]
    if done.empty:
        return None
    tail = done.tail(max(1, int(over_s // bucket_s)))
    return float(tail["results"].sum()) / (len(tail) * bucket_s)


@dataclass(frozen=True)
class RejectSeries:
    by_reason: pd.DataFrame  # time, code, count (per bucket)
    latest: pd.DataFrame  # newest rejects: time, topic, code, reason, size, payload excerpt
    truncated: bool  # True when more rejects exist in the window than were read


def reject_series(store: Store, since_ms: int, bucket_s: int = 10, limit: int = 5000) -> RejectSeries:
    """Rejects by reason per time bucket, from the newest `limit` rejected messages in the window.

    Built on `store.rejects()` (no per-reason aggregate exists in the store interface); the
    exact total per bucket is in `ingest_frame()['rejected']`.
    """
    recs = store.rejects(limit=limit, since_ms=since_ms)
    df = pd.DataFrame([(r.ts, r.topic, r.code, r.reason, r.size, r.payload[:64]) for r in recs],
                      columns=["ts", "topic", "code", "reason", "size", "payload"])
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    df["payload"] = df["payload"].map(lambda b: b.decode("utf-8", "replace"))
    b = bucket_s * 1000
    grouped = (df.assign(bucket=(df["ts"] // b) * b).groupby(["bucket", "code"]).size()
               .rename("count").reset_index())
    grouped["time"] = pd.to_datetime(grouped["bucket"], unit="ms", utc=True)
    return RejectSeries(grouped[["time", "code", "count"]], df[["time", "topic", "code", "reason", "size", "payload"]],
                        len(recs) >= limit)


def window_totals(ingest: pd.DataFrame) -> dict[str, int]:
    """Messages, results stored, duplicates dropped and rejects in an `ingest_frame` window.

    From the ingest statistics (indexed by time), not `Store.counts()`: counting every stored
    result is a full scan that grows with retention, too slow to repeat every refresh.
    """
    return {k: int(ingest[k].sum()) for k in ("messages", "results", "duplicates", "rejected")}


def alarm_counts(store: Store) -> tuple[int, int]:
    """(active, unacknowledged) alarms; there is at most one active alarm per device."""
    active = store.alarms(active=True, limit=1_000_000)
    return len(active), sum(a.acked_ts is None for a in active)


# ---------- formatting ----------

def fmt_age(seconds: float) -> str:
    """'12 s ago', '3 min ago', '2.5 h ago'."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} d ago"


def fmt_eta(eta_s: float | None, short: bool = False) -> str:
    """The early-warning estimate in words ('threshold in ~7 min'; short: '~7 min')."""
    if eta_s is None:
        return "not rising"
    if eta_s <= 0:
        return "crossed" if short else "above threshold"
    if eta_s < 90:
        when = f"~{eta_s:.0f} s"
    elif eta_s < 5400:
        when = f"~{eta_s / 60:.0f} min"
    elif eta_s < 2 * 86400:
        when = f"~{eta_s / 3600:.1f} h"
    else:
        when = f"~{eta_s / 86400:.0f} d"
    return when if short else f"threshold in {when}"


# ---------- models & OTA (issue 6) ----------
# Loaders over `edgefleet.ota.registry.OtaRegistry` (same SQLite file as the store): no Streamlit,
# no writes except `start_campaign`, which builds its policy with `rollout_policy` exactly as
# `edgefleet ota rollout` does.

OTA_PENDING = "pending"  # in the campaign's rollout order, not offered yet (its stage has not come)
OTA_STATES = ("confirmed", "trial", "shadow", "verifying", "downloading", "accepted", "offered", OTA_PENDING,
              "rejected", "failed", "reverted", "timeout")  # progress order for tables and charts


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


def anomaly_comparison(store: Store, campaign: Campaign, states: dict[str, dict],
                       limit: int = 2000) -> pd.DataFrame:
    """Per offered device: anomaly rate under the old model(s) vs the campaign's model, from stored results.

    Same window as the OTA manager's model-health check: from an hour before the first offer.
    (Shadow-mode outcomes, both models on the same windows, are in `shadow_frame`.)
    `counts` says whether the device enters the canary check (`min_windows` new-model results).
    """
    cols = ["device", "state", "old_model", "old_rate", "old_windows", "new_rate", "new_windows", "shift", "counts"]
    offered = [s["offered_ms"] for s in states.values() if s["offered_ms"]]
    if not offered:
        return pd.DataFrame(columns=cols)
    since = min(offered) - 3_600_000
    rows = []
    for d in sorted(states):
        res = store.score_history(d, since_ms=since, limit=limit)
        old = [r for r in res if r.model != campaign.model]
        new = [r for r in res if r.model == campaign.model]
        old_rate = sum(r.anom for r in old) / len(old) if old else None
        new_rate = sum(r.anom for r in new) / len(new) if new else None
        olds = sorted({r.model for r in old})
        rows.append({"device": d, "state": states[d]["state"],
                     "old_model": ", ".join(f"v{m}" for m in olds) if olds else "-",
                     "old_rate": old_rate, "old_windows": len(old), "new_rate": new_rate, "new_windows": len(new),
                     "shift": new_rate / max(old_rate, campaign.policy.anomaly_floor)
                     if old_rate is not None and new_rate is not None else None,
                     "counts": old_rate is not None and len(new) >= campaign.policy.min_windows})
    return pd.DataFrame(rows, columns=cols)


def canary_health(campaign: Campaign, comparison: pd.DataFrame) -> dict[str, float] | None:
    """The manager's model-health numbers over the counted devices: mean old (floored) and new rate,
    and the abort limit; None when no device has enough windows under both models yet."""
    rows = comparison[comparison["counts"].astype(bool)] if not comparison.empty else comparison
    if rows.empty:
        return None
    old = max(float(rows["old_rate"].mean()), campaign.policy.anomaly_floor)
    new = float(rows["new_rate"].mean())
    return {"devices": len(rows), "old_rate": old, "new_rate": new, "limit": campaign.policy.abort_anomaly_shift,
            "shift": new / old}


SHADOW_COLS = ["device", "ts", "old_score", "old_thr", "old_anom", "new_score", "new_thr", "new_anom"]


def shadow_frame(store: Store, campaign: Campaign, states: dict[str, dict], limit: int = 20_000) -> pd.DataFrame:
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
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["model", "log10_score", "log10_thr"])


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
