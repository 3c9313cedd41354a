"""Alarms: the page's filters as store queries, and the alarm table."""

from __future__ import annotations

import pandas as pd

from edgefleet.clock import now_ms
from edgefleet.service.store import Store

ALARM_STATES = ("active", "active, unacknowledged", "cleared", "all")


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
            "acked_by", "acked", "note", "shelved"]
    shelves = active_shelves(store)
    rows = []
    for a in alarms:
        shelf = shelves.get(a.id)
        rows.append({
            "id": a.id, "device": a.device, "site": a.site, "line": a.line, "severity": a.severity,
            "state": ("active" if a.active else "cleared") + (", acked" if a.acked_ts is not None else ""),
            "raised": pd.to_datetime(a.raised_ts, unit="ms", utc=True),
            "cleared": pd.to_datetime(a.cleared_ts, unit="ms", utc=True) if a.cleared_ts is not None else pd.NaT,
            "score_ratio": a.score / a.thr if a.thr else None, "peak_ratio": a.peak_score / a.thr if a.thr else None,
            "acked_by": a.acked_by, "acked": pd.to_datetime(a.acked_ts, unit="ms", utc=True)
            if a.acked_ts is not None else pd.NaT, "note": a.note,
            "shelved": shelf_text(shelf) if shelf is not None and a.active else "",
        })
    return pd.DataFrame(rows, columns=cols)


def in_range(df: pd.DataFrame, start_ms: int, end_ms: int) -> pd.DataFrame:
    """The alarms that were active at some time in [start_ms, end_ms]: raised before its end and not cleared
    before its start (an alarm still active shows in every range after its raise)."""
    if df.empty:
        return df
    start, end = pd.Timestamp(start_ms, unit="ms", tz="UTC"), pd.Timestamp(end_ms, unit="ms", tz="UTC")
    raised, cleared = pd.to_datetime(df["raised"], utc=True), pd.to_datetime(df["cleared"], utc=True)
    keep = (raised <= end) & (cleared.isna() | (cleared >= start))
    return df[keep].reset_index(drop=True)


def active_shelves(store: Store, now: int | None = None) -> dict:
    """Health alarm id -> its shelf in force now (stores without shelves: none)."""
    if not hasattr(store, "shelves"):
        return {}
    now = now_ms() if now is None else now
    return {s.alarm_id: s for s in reversed(store.shelves(kind="health", active_at=now))}


def shelf_text(shelf) -> str:
    """'until 2026-12-06 19:30 UTC by ana: bearing ordered'"""
    until = pd.to_datetime(shelf.until_ts, unit="ms", utc=True).strftime("%Y-%m-%d %H:%M UTC")
    return f"until {until} by {shelf.by}: {shelf.reason}"


def notification_frame(store: Store, limit: int = 50) -> tuple[dict[str, int], pd.DataFrame]:
    """The notification delivery log: rows per state, and the newest `limit` rows (docs/notifications.md)."""
    cols = ["queued", "state", "event", "kind", "alarm", "device", "route", "channel", "attempts", "sent", "error"]
    if not hasattr(store, "outbox"):
        return {}, pd.DataFrame(columns=cols)
    rows = [{"queued": pd.to_datetime(r.created_ms, unit="ms", utc=True), "state": r.state, "event": r.event,
             "kind": r.kind, "alarm": (f"loss-{r.alarm_id}" if r.kind == "data-loss" else str(r.alarm_id)),
             "device": r.device, "route": r.route, "channel": r.channel, "attempts": r.attempts,
             "sent": pd.to_datetime(r.sent_ms, unit="ms", utc=True) if r.sent_ms is not None else pd.NaT,
             "error": r.last_error if r.state != "sent" else ""} for r in store.outbox(limit=limit)]
    return store.outbox_counts(), pd.DataFrame(rows, columns=cols)


def sites(store: Store) -> list[str]:
    """Site names known to the registry ('' for devices without one)."""
    return sorted({d.site or "" for d in store.devices()})


LOSS_COLS = ["alarm", "id", "device", "state", "raised", "cleared", "missing", "rate", "acked_by", "acked", "note",
             "shelved"]


def loss_alarm_frame(store: Store, state: str = "active", now: int | None = None) -> pd.DataFrame:
    """Data-loss alarms (results that never arrived, store/loss.py) for the same state filter as the health
    alarms, newest first: `alarm` is the id the CLI takes (loss-N)."""
    q = alarm_query(state)
    if not hasattr(store, "loss_alarms"):
        return pd.DataFrame(columns=LOSS_COLS)
    now = now_ms() if now is None else now
    shelves = ({s.alarm_id: s for s in reversed(store.shelves(kind="data-loss", active_at=now))}
               if hasattr(store, "shelves") else {})
    rows = []
    for a in store.loss_alarms(q["active"]):
        if q["acked"] is False and a.get("acked_ts") is not None:
            continue
        active = a["cleared_ts"] is None
        shelf = shelves.get(a["id"])
        rows.append({
            "alarm": f"loss-{a['id']}", "id": a["id"], "device": a["device"],
            "state": ("active" if active else "cleared") + (", acked" if a.get("acked_ts") is not None else ""),
            "raised": pd.to_datetime(a["raised_ts"], unit="ms", utc=True),
            "cleared": pd.to_datetime(a["cleared_ts"], unit="ms", utc=True) if not active else pd.NaT,
            "missing": a["missing"], "rate": a["rate"], "acked_by": a.get("acked_by"),
            "acked": pd.to_datetime(a["acked_ts"], unit="ms", utc=True) if a.get("acked_ts") is not None else pd.NaT,
            "note": a.get("note") or "", "shelved": shelf_text(shelf) if shelf is not None and active else "",
        })
    return pd.DataFrame(rows, columns=LOSS_COLS)


def shelved_now(store: Store, now: int | None = None) -> pd.DataFrame:
    """Every shelf in force now, health and data-loss alike: what the Unshelve form offers (`alarm`: N or
    loss-N, as `edgefleet alarms unshelve` takes it)."""
    cols = ["alarm", "kind", "id", "device", "until", "by", "reason"]
    if not hasattr(store, "shelves"):
        return pd.DataFrame(columns=cols)
    now = now_ms() if now is None else now
    devices = {a["id"]: a["device"] for a in store.loss_alarms(True)} if hasattr(store, "loss_alarms") else {}
    health = {a.id: a.device for a in store.alarms(active=True, limit=1_000_000)}
    rows = []
    for s in store.shelves(active_at=now):
        device = (health if s.kind == "health" else devices).get(s.alarm_id)
        if device is None:
            continue  # the alarm cleared: its shelf no longer matters
        rows.append({"alarm": f"loss-{s.alarm_id}" if s.kind == "data-loss" else str(s.alarm_id), "kind": s.kind,
                     "id": s.alarm_id, "device": device, "until": pd.to_datetime(s.until_ts, unit="ms", utc=True),
                     "by": s.by, "reason": s.reason})
    return pd.DataFrame(rows, columns=cols).drop_duplicates("alarm")
