"""A machine's health in plain words: its stage, since when it needs attention, its remaining life with
the interval, and the trend as a doubling time and a time to the alarm level.

Everything here is pure: the numbers come from the alarm service (`edgefleet/service/alarms.py`,
stored on the device registry: health, eta_s, slope_per_h, degrading_since, rul_s/low/high), the words
are for operators, who should not have to read "log-ratio slope +50.71 per hour".
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

# The stages of issue 19, in order of urgency (healthy < degrading < alarm < critical).
STAGES = ("healthy", "degrading", "alarm", "critical")
STAGE_COLOURS = {"healthy": "#2ca02c", "degrading": "#ff9f1c", "alarm": "#d62728", "critical": "#7b0000"}
STAGE_HELP = {
    "healthy": "no alarm and no significant upward trend",
    "degrading": "no alarm yet, but its health indicator rises significantly towards the alarm level",
    "alarm": "an active alarm: its windows are over the alarm level",
    "critical": "an active critical alarm, or its health indicator's trend has reached the failure level",
}


def stage_of(health: str | None, severity: str | None, rul_s: float | None = None) -> str | None:
    """The stage of a machine from its stored health and active alarm severity; None when unknown (no health
    yet). `critical` when the service says so, when the active alarm is critical, or when the remaining life
    estimate has run out (the fitted trend is at the failure level)."""
    if health == "critical" or (severity is not None and (severity == "critical" or (rul_s is not None and rul_s <= 0))):
        return "critical"
    if severity is not None or health == "alarm":
        return "alarm"
    if health == "degrading":
        return "degrading"
    if health == "ok":
        return "healthy"
    return None


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _unit(seconds: float) -> tuple[float, str]:
    """(divisor, unit name) that reads best for a duration."""
    if seconds < 90:
        return 1.0, "s"
    if seconds < 90 * 60:
        return 60.0, "min"
    if seconds < 36 * 3600:
        return 3600.0, "h"
    if seconds < 60 * 86400:
        return 86400.0, "days"
    return 7 * 86400.0, "weeks"


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") if x < 10 else f"{x:,.0f}"


def duration_words(seconds: float) -> str:
    """'45 s', '40 min', '2 h', '3 days', '9 weeks' (1.5 h, not 90 min; 1 day, not 1 days)."""
    seconds = max(0.0, float(seconds))
    div, unit = _unit(seconds)
    n = _num(seconds / div)
    if unit == "days" and n == "1":
        unit = "day"
    if unit == "weeks" and n == "1":
        unit = "week"
    return f"{n} {unit}"


def interval_words(low_s: float, high_s: float) -> str:
    """'2-5 days'; '20 h - 5 days' when the ends read best in different units; 'at least 2 days' when the
    slow end of the interval is not rising (high = inf)."""
    if not math.isfinite(high_s):
        return f"at least {duration_words(low_s)}"
    div_lo, unit_lo = _unit(low_s)
    div_hi, unit_hi = _unit(high_s)
    if unit_lo == unit_hi or low_s / div_hi >= 1:  # one unit when the low end reads as at least 1 of the high's
        return f"{_num(low_s / div_hi)}-{_num(high_s / div_hi)} {unit_hi}"
    return f"{duration_words(low_s)} - {duration_words(high_s)}"


def remaining_life_words(rul_s: float | None, low_s: float | None, high_s: float | None,
                         health_ts: int | None = None, now_ms: int | None = None) -> str:
    """'about 3 days left (2-5 days)': the alarm service's remaining-life estimate, counted from now (it
    was computed at `health_ts`, the newest window of its last update); '' when there is none (no
    significant rising trend)."""
    if _nan(rul_s):
        return ""
    age_s = max(0.0, (now_ms - health_ts) / 1000.0) if not _nan(health_ts) and now_ms is not None else 0.0
    rul = max(0.0, rul_s - age_s)
    if rul <= 0:
        return "at the failure level now (by the fitted trend)"
    lo = max(0.0, (low_s if not _nan(low_s) else rul_s) - age_s)
    hi = (high_s if not _nan(high_s) else rul_s) - age_s
    if hi != math.inf:
        hi = max(hi, rul)
    return f"about {duration_words(rul)} left ({interval_words(lo, hi)})"


def since_words(ts_ms: int | None, now_ms: int, what: str = "degrading since") -> str:
    """'degrading since 2026-12-03 14:20 UTC (3 days ago)'; '' for no time."""
    if _nan(ts_ms) or not ts_ms:
        return ""
    when = datetime.fromtimestamp(int(ts_ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{what} {when} ({ago_words(now_ms - int(ts_ms))})"


def ago_words(age_ms: float) -> str:
    """'just now', '12 min ago', '3 days ago'."""
    s = max(0.0, age_ms / 1000.0)
    return "just now" if s < 30 else f"{duration_words(s)} ago"


def trend_words(slope_per_h: float | None, eta_s: float | None, level: str = "the alarm level") -> str:
    """The health trend for people: 'score rising, doubling every 40 min; at this rate it reaches the alarm
    level in about 2 h'. The slope is d log(ratio) / dt per hour (the alarm service's fit), so the ratio
    doubles every ln 2 / slope hours. `eta_s` is the service's (or the chart's) time to the threshold:
    0 = above it already; None = no crossing forecast (flat, falling, or not significant)."""
    if _nan(slope_per_h):
        return "too few judged windows for a trend yet"
    if eta_s is not None and not _nan(eta_s) and eta_s <= 0:
        return f"score above {level}" + (f", still rising (doubling every {duration_words(math.log(2) / slope_per_h * 3600)})"
                                         if slope_per_h > 0 else "")
    if slope_per_h <= 0 or math.log(2) / slope_per_h > 24 * 365:  # halving, or doubling slower than once a year
        return "score steady or falling: no sign of wear"
    doubling = f"doubling every {duration_words(math.log(2) / slope_per_h * 3600)}"
    if _nan(eta_s):
        return f"score rising slowly ({doubling}), not yet a significant trend towards {level}"
    return f"score rising, {doubling}; at this rate it reaches {level} in about {duration_words(eta_s)}"


def attention_since(degrading_since: int | None, alarm_raised: int | None) -> int | None:
    """When a machine started to need attention: the earlier of leaving healthy and its active alarm's raise."""
    times = [int(t) for t in (degrading_since, alarm_raised) if not _nan(t) and t]
    return min(times) if times else None


def forecast_words(fc) -> str:
    """A long-horizon forecast (alarms.Forecast) in plain words, with the data it came from:
    'from the last 14 days of hourly rollups (336 points): reaches the alarm level in about 5 days'."""
    said = {"rising": lambda: f"reaches the alarm level in about {duration_words(fc.eta_s)} at this trend",
            "above": lambda: "already over the alarm level",
            "flat": lambda: "no significant rise",
            "too_few": lambda: "not enough history yet (two days of hourly rollups at least)"}
    what = said.get(fc.state, lambda: fc.state)()
    return f"{fc.horizon}: {what}" if fc.state != "too_few" else what
