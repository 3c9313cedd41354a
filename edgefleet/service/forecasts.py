"""Both trend forecasts of one device, each with its horizon (issue 18 item 4): the short-term one from its
newest windows (or, for a node in summary mode, its newest summaries) and the long one from two weeks of
1-hour rollups. The math is alarms.short_forecast / long_forecast (pure); this reads the store."""

from __future__ import annotations

from typing import Any

from edgefleet.service.alarms import (
    LONG_DAYS,
    AlarmPolicy,
    Forecast,
    long_forecast,
    short_forecast,
)
from edgefleet.service.rollups import HOUR_MS
from edgefleet.service.store import summary_sql


def device_forecasts(store: Any, device: str, now_ms: int, policy: AlarmPolicy = AlarmPolicy()) -> list[Forecast]:
    """[short-term, long-term] for `device`: what `edgefleet stats --device` prints."""
    recent = store.recent_results(device, policy.trend_points)
    source = "windows"
    if not recent:  # a node in summary mode: its summaries, scored at their p95 as the tracker sees them
        recent = [summary_sql.as_result(s) for s in summary_sql.summaries(store, device, limit=policy.trend_points)]
        source = "summaries"
    rows = store.rollup_rows(device, HOUR_MS, now_ms - int(LONG_DAYS * 86_400_000), now_ms)
    return [short_forecast(recent, now_ms, policy, source), long_forecast(rows, now_ms, policy)]


__all__ = ["device_forecasts"]
