"""Fleet overview: one display state per machine, the grid layout, headline counts, what needs attention
(with its stage, since when, remaining life and trend in words), search by id, name, site, line or tag."""

from __future__ import annotations

import pandas as pd

from dashboards.loaders import health as hl
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
    meta = store.machine_meta() if hasattr(store, "machine_meta") else {}
    raised = {a.device: a.raised_ts for a in store.alarms(active=True, limit=1_000_000)}
    rows = []
    for d in devs:
        state = display_state(d)
        m = meta.get(d.device, {})
        ratio = (d.last_score / d.thr) if d.last_score is not None and d.thr and state != "commissioning" else None
        rows.append({
            "device": d.device, "site": d.site or "(no site)", "line": d.line or "-", "status": d.status,
            "health": d.health, "state": state, "colour": STATE_COLOURS[state], "severity": d.alarm_severity,
            "model": d.model, "fw": d.fw, "last_score": d.last_score, "thr": d.thr, "score_ratio": ratio,
            "eta_s": d.eta_s, "slope_per_h": d.slope_per_h, "results": d.results,
            "last_seen_ms": d.last_seen, "age_s": (now_ms - d.last_seen) / 1000.0 if d.last_seen else None,
            "comm": d.comm_state, "comm_detail": comm_short(d.comm),
            "name": m.get("name") or "", "tags": tags_text(d.tags, m.get("tags")),
            "stage": hl.stage_of(d.health, d.alarm_severity, d.rul_s) or "",
            "attention_since_ms": hl.attention_since(d.degrading_since if d.health != "ok" else None,
                                                     raised.get(d.device)),
            "rul_s": d.rul_s, "rul_low_s": d.rul_low_s, "rul_high_s": d.rul_high_s, "health_ts": d.health_ts,
        })
    cols = ["device", "site", "line", "status", "health", "state", "colour", "severity", "model", "fw",
            "last_score", "thr", "score_ratio", "eta_s", "slope_per_h", "results", "last_seen_ms", "age_s",
            "comm", "comm_detail", "name", "tags", "stage", "attention_since_ms", "rul_s", "rul_low_s", "rul_high_s",
            "health_ts"]
    df = pd.DataFrame(rows, columns=cols)
    line_key = df["site"] + " / " + df["line"]
    pos = df.groupby(line_key).cumcount() if len(df) else pd.Series(dtype="int64")
    wrap = pos // width
    df["row"] = line_key + wrap.map(lambda k: "" if k == 0 else f" ({k + 1})")
    df["col"] = pos % width
    return df


def tags_text(node_tags: tuple[str, ...] | list[str] | None, meta_tags: dict | None) -> str:
    """A machine's tags as one searchable text: the node's own ('fan') and those people set ('type=pump')."""
    return ", ".join([*sorted(node_tags or ()), *(f"{k}={v}" for k, v in sorted((meta_tags or {}).items()))])


def search(df: pd.DataFrame, query: str | None) -> pd.DataFrame:
    """The machines matching every word of `query` (case-insensitive) in their id, name, site, line or tags;
    `key=value` matches a tag. An empty query matches every machine."""
    words = (query or "").lower().split()
    if not words or df.empty:
        return df
    hay = (df["device"].astype(str) + "\n" + df["name"].astype(str) + "\n" + df["site"].astype(str) + "\n"
           + df["line"].astype(str) + "\n" + df["tags"].astype(str)).str.lower()
    keep = pd.Series(True, index=df.index)
    for w in words:
        keep &= hay.str.contains(w, regex=False)
    return df[keep]


def label(device: str, name: str | None) -> str:
    """'pump-0007 (Pump 3)', or the id alone for an unnamed machine: how pickers name a machine."""
    return f"{device} ({name})" if name else device


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


def attention(df: pd.DataFrame, now_ms: int | None = None) -> pd.DataFrame:
    """Machines an operator should look at: alarming first (by severity), then degrading by ETA; with their
    stage, since when they need attention, remaining life and trend in words (`health`)."""
    out = df[df["state"].isin(("alarm", "degrading"))]
    out = out.assign(_sev=out["severity"].map(SEVERITY_RANK).fillna(0))  # (a Series would give an empty frame rows)
    out = out.sort_values(["_sev", "eta_s"], ascending=[False, True], na_position="last")
    out = out.assign(severity=out["severity"].fillna("-"))
    rows = list(out.itertuples(index=False))
    now = now_ms if now_ms is not None else (int(max(df["last_seen_ms"].max(), 0)) if len(df) else 0)
    out = out.assign(
        stage=[r.stage or r.state for r in rows],
        since=[hl.since_words(r.attention_since_ms, now, "since") for r in rows],
        remaining=[hl.remaining_life_words(r.rul_s, r.rul_low_s, r.rul_high_s, r.health_ts, now) or "no estimate"
                   for r in rows],
        trend=[hl.trend_words(None if pd.isna(r.slope_per_h) else r.slope_per_h,
                              None if pd.isna(r.eta_s) else r.eta_s) for r in rows])
    return out[["device", "name", "site", "line", "state", "stage", "severity", "since", "remaining", "trend",
                "score_ratio", "eta_s", "model"]].reset_index(drop=True)
