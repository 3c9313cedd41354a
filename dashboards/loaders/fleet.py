"""Fleet overview: one display state per machine, the grid layout, headline counts, what needs attention."""

from __future__ import annotations

import pandas as pd

from dashboards.loaders.commissioning import comm_short
from edgefleet.service.alarms import SEVERITY_RANK
from edgefleet.service.store import Device, Store

# What an operator sees per machine, most urgent first, and its colour (the device page's badge too).
STATES = ("alarm", "offline", "commissioning", "degrading", "ok", "unknown")
STATE_COLOURS = {
    "alarm": "#d62728",  # red
    "offline": "#7f7f7f",  # grey
    "commissioning": "#9467bd",  # purple: learning its normal, no verdict yet (neither ok nor alarm)
    "degrading": "#ff9f1c",  # amber
    "ok": "#2ca02c",  # green
    "unknown": "#c7c7c7",  # light grey: registered, no health yet
}
OFFLINE_STATUSES = ("offline", "lost", "stale")
GRID_WIDTH = 40  # tiles per grid row; a longer line wraps onto continuation rows


def display_state(d: Device) -> str:
    """One state per machine for the grid: an active alarm wins, then being unreachable, then commissioning
    (its windows get no verdict, so it is neither ok nor degrading; an alarm raised before it started
    commissioning stays until cleared)."""
    if d.health == "alarm" or d.alarm_severity is not None:
        return "alarm"
    if d.status in OFFLINE_STATUSES:
        return "offline"
    if d.comm_state == "commissioning":
        return "commissioning"
    if d.health in ("degrading", "ok"):
        return d.health
    return "unknown"


def fleet_frame(store: Store, now_ms: int, stale_s: float = 120.0, width: int = GRID_WIDTH) -> pd.DataFrame:
    """One row per device with its display state, colour and grid cell: `row` is its site / line
    (with a continuation mark past `width` machines), `col` its position in that row."""
    devs = store.devices(now_ms=now_ms, stale_s=stale_s)
    rows = []
    for d in devs:
        state = display_state(d)
        ratio = (d.last_score / d.thr) if d.last_score is not None and d.thr and state != "commissioning" else None
        rows.append({
            "device": d.device, "site": d.site or "(no site)", "line": d.line or "-", "status": d.status,
            "health": d.health, "state": state, "colour": STATE_COLOURS[state], "severity": d.alarm_severity,
            "model": d.model, "fw": d.fw, "last_score": d.last_score, "thr": d.thr, "score_ratio": ratio,
            "eta_s": d.eta_s, "slope_per_h": d.slope_per_h, "results": d.results,
            "last_seen_ms": d.last_seen, "age_s": (now_ms - d.last_seen) / 1000.0 if d.last_seen else None,
            "comm": d.comm_state, "comm_detail": comm_short(d.comm),
        })
    cols = ["device", "site", "line", "status", "health", "state", "colour", "severity", "model", "fw",
            "last_score", "thr", "score_ratio", "eta_s", "slope_per_h", "results", "last_seen_ms", "age_s",
            "comm", "comm_detail"]
    df = pd.DataFrame(rows, columns=cols)
    line_key = df["site"] + " / " + df["line"]
    pos = df.groupby(line_key).cumcount() if len(df) else pd.Series(dtype="int64")
    wrap = pos // width
    df["row"] = line_key + wrap.map(lambda k: "" if k == 0 else f" ({k + 1})")
    df["col"] = pos % width
    return df


def fleet_counts(df: pd.DataFrame) -> dict[str, int]:
    """The headline numbers: devices, healthy, degrading, alarming, offline, commissioning."""
    return {"devices": len(df), "healthy": int((df["state"] == "ok").sum()),
            "commissioning": int((df["state"] == "commissioning").sum()),
            "degrading": int((df["state"] == "degrading").sum()), "alarming": int((df["state"] == "alarm").sum()),
            "offline": int(df["status"].isin(OFFLINE_STATUSES).sum())}


def alarm_counts(store: Store) -> tuple[int, int]:
    """(active, unacknowledged) alarms; there is at most one active alarm per device."""
    active = store.alarms(active=True, limit=1_000_000)
    return len(active), sum(a.acked_ts is None for a in active)


def model_versions(df: pd.DataFrame) -> pd.DataFrame:
    """Model version -> devices running it (devices that never reported one are left out)."""
    known = df.dropna(subset=["model"])
    out = known.groupby(known["model"].astype(int)).size().rename("devices").reset_index()
    out["model"] = "v" + out["model"].astype(str)
    return out


def attention(df: pd.DataFrame) -> pd.DataFrame:
    """Machines an operator should look at: alarming first (by severity), then degrading by ETA."""
    out = df[df["state"].isin(("alarm", "degrading"))]
    out = out.assign(_sev=out["severity"].map(SEVERITY_RANK).fillna(0))  # (a Series would give an empty frame rows)
    out = out.sort_values(["_sev", "eta_s"], ascending=[False, True], na_position="last")
    out = out.assign(severity=out["severity"].fillna("-"))
    return out[["device", "site", "line", "state", "severity", "score_ratio", "eta_s", "model"]].reset_index(drop=True)
