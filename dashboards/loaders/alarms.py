"""Alarms: the page's filters as store queries, and the alarm table."""

from __future__ import annotations

import pandas as pd

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
