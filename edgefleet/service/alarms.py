"""Alarms and health trends: pure functions plus one stateful tracker.

- Raise: at least `k` of the last `n` windows of a device are anomalous.
- Clear: `m` consecutive normal windows after that.
- Severity: from score / threshold of the anomalous windows (median ratio).
- Health trend: a least-squares line through log(score) over recent windows; where it
  rises, its crossing of log(threshold) gives an early-warning time to threshold.

The tracker only decides; the store persists its AlarmChange and DeviceHealth output,
and operators acknowledge alarms in the store.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import median

from edgefleet.protocol import ResultRecord
from edgefleet.service.store.base import (HEALTH_STATES, SEVERITIES, SEVERITY_RANK, AlarmChange,
                                          DeviceHealth)

__all__ = ["HEALTH_STATES", "SEVERITIES", "SEVERITY_RANK", "AlarmChange", "AlarmPolicy", "AlarmTracker",
           "DeviceHealth", "Trend"]

LOG_FLOOR = 1e-12


@dataclass(frozen=True)
class AlarmPolicy:
    """k-of-n raise, m-normal clear, severity bounds on score/threshold, trend settings."""

    k: int = 3
    n: int = 5
    m: int = 5
    major_ratio: float = 2.0  # score/threshold at or above: major
    critical_ratio: float = 5.0  # at or above: critical
    severity_deadband: float = 1.25  # step an active alarm down only below a bound / this (no flapping)
    trend_points: int = 120  # windows kept per device for the trend fit
    trend_min_points: int = 20
    horizon_s: float = 24 * 3600.0  # an ETA within this horizon marks a device degrading
    min_trend_t: float = 4.0  # a rising trend counts only if its slope is this many standard errors
    max_extrapolation: float = 10.0  # and the ETA lies within this many times the fitted span
    ewma_alpha: float = 0.1
    rollup_every: int = 30  # windows per rollup point (their median ratio): trends over hours to weeks
    rollup_points: int = 480  # rollup points kept per device
    failure_ratio: float = 10.0  # end of life for the remaining-life estimate: 10x the threshold

    def __post_init__(self) -> None:
        if not (1 <= self.k <= self.n):
            raise ValueError(f"need 1 <= k <= n, got k={self.k} n={self.n}")
        if self.m < 1:
            raise ValueError(f"need m >= 1, got {self.m}")
        if not (1.0 < self.major_ratio < self.critical_ratio):
            raise ValueError("need 1 < major_ratio < critical_ratio")
        if not self.severity_deadband >= 1.0:
            raise ValueError("need severity_deadband >= 1")
        if not (0.0 < self.ewma_alpha <= 1.0):
            raise ValueError("need 0 < ewma_alpha <= 1")
        if self.trend_min_points < 3 or self.trend_points < self.trend_min_points:
            raise ValueError("need 3 <= trend_min_points <= trend_points")


@dataclass(frozen=True)
class Trend:
    """log(score) ~ level + slope * (t - t_ref), times in seconds."""

    slope_per_s: float
    level: float  # fitted log(score) at t_ref
    t_ref_ms: int  # time of the newest point
    n: int
    r2: float
    t_stat: float = math.inf  # slope / its standard error: how sure we are it is not noise
    span_s: float = 0.0  # time covered by the fitted points


# ---------- pure functions ----------

def severity_for(ratio: float, policy: AlarmPolicy = AlarmPolicy()) -> str:
    """Severity of an alarm whose anomalous windows score `ratio` times the threshold."""
    if ratio >= policy.critical_ratio:
        return "critical"
    if ratio >= policy.major_ratio:
        return "major"
    return "warning"


def next_severity(current: str, ratio: float, policy: AlarmPolicy = AlarmPolicy()) -> str:
    """An active alarm's severity after a new median ratio: up as soon as the ratio reaches a
    higher band, down only once it is below the band's bound by the deadband factor, so a
    score hovering at a bound does not flip the alarm (and the operator's pager) each window."""
    up = severity_for(ratio, policy)
    if SEVERITIES.index(up) > SEVERITIES.index(current):
        return up
    down = severity_for(ratio * policy.severity_deadband, policy)
    return down if SEVERITIES.index(down) < SEVERITIES.index(current) else current


def ratio_of(rec: ResultRecord) -> float:
    """How far over its limits a window is: score/thr, or with a commissioned node's health
    indicator the larger of that and hi/hi_thr (the HI keeps rising where the score saturates)."""
    r = rec.score / rec.thr if rec.thr > 0 else math.inf
    if rec.hi is not None and rec.hi_thr:
        r = max(r, rec.hi / rec.hi_thr)
    return r


def k_of_n(flags: Iterable[bool], k: int) -> bool:
    return sum(1 for f in flags if f) >= k


def ewma(values: Iterable[float], alpha: float, start: float | None = None) -> float | None:
    """Exponentially weighted moving average; None for no values."""
    acc = start
    for v in values:
        acc = v if acc is None else acc + alpha * (v - acc)
    return acc


def fit_log_trend(ts_ms: Sequence[int], scores: Sequence[float],
                  groups: Sequence[object] | None = None) -> Trend | None:
    """Least-squares line through log(score) against time; None if < 3 points or no time spread.

    With `groups` (a commissioned node's operating class of each point), one slope is fitted within
    the groups (each gets its own level: a fixed-effects regression), so that moving between speed
    classes whose ratios sit at different levels is not read as a trend; the level returned is the
    newest point's group's."""
    n = len(ts_ms)
    if n < 3 or n != len(scores):
        return None
    t_ref = max(ts_ms)
    xs = [(t - t_ref) / 1000.0 for t in ts_ms]
    ys = [math.log(max(s, LOG_FLOOR)) for s in scores]
    gs = list(groups) if groups is not None else [0] * n
    sums: dict[object, list[float]] = {}
    for x, y, g in zip(xs, ys, gs):
        a = sums.setdefault(g, [0.0, 0.0, 0.0])
        a[0] += x
        a[1] += y
        a[2] += 1
    mean = {g: (a[0] / a[2], a[1] / a[2]) for g, a in sums.items()}
    dx = [x - mean[g][0] for x, g in zip(xs, gs)]
    dy = [y - mean[g][1] for y, g in zip(ys, gs)]
    sxx = sum(v * v for v in dx)
    if sxx <= 0:
        return None
    sxy = sum(a * b for a, b in zip(dx, dy))
    syy = sum(v * v for v in dy)
    slope = sxy / sxx
    last = gs[xs.index(max(xs))]
    level = mean[last][1] - slope * mean[last][0]  # the newest group's value at x = 0 = t_ref
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0 else 1.0
    dof = n - 1 - len(sums)
    resid = max(syy - slope * sxy, 0.0)
    se = math.sqrt(resid / dof / sxx) if dof > 0 else 0.0
    t_stat = slope / se if se > 0 else math.copysign(math.inf, slope) if slope else 0.0
    return Trend(slope, level, t_ref, n, r2, t_stat, max(xs) - min(xs))


def time_to_threshold(trend: Trend, thr: float, now_ms: int | None = None) -> float | None:
    """Seconds from `now_ms` (default: the trend's newest point) until the fitted score reaches
    `thr`: 0 if already above, None if the trend is flat or falling."""
    now_ms = trend.t_ref_ms if now_ms is None else now_ms
    level_now = trend.level + trend.slope_per_s * (now_ms - trend.t_ref_ms) / 1000.0
    gap = math.log(thr) - level_now
    if gap <= 0:
        return 0.0
    if trend.slope_per_s <= 0:
        return None
    return gap / trend.slope_per_s


def remaining_life(trend: Trend, failure_ratio: float, now_ms: int | None = None
                   ) -> tuple[float, float, float] | None:
    """Remaining useful life under an exponential degradation model: the health ratio grows as
    exp(level + slope * t) (the classic model of a bearing's defect growth once it has started,
    Gebraeel et al. 2005), so life ends when the fitted line reaches log(failure_ratio). Returns
    (RUL, low, high) in seconds, the interval from the slope +- 2 standard errors (high = inf when
    the lower slope is not rising); None while the trend is not rising significantly."""
    if trend.slope_per_s <= 0:
        return None
    now_ms = trend.t_ref_ms if now_ms is None else now_ms
    level_now = trend.level + trend.slope_per_s * (now_ms - trend.t_ref_ms) / 1000.0
    gap = math.log(failure_ratio) - level_now
    if gap <= 0:
        return 0.0, 0.0, 0.0
    se = trend.slope_per_s / trend.t_stat if math.isfinite(trend.t_stat) and trend.t_stat > 0 else 0.0
    fast, slow = trend.slope_per_s + 2 * se, trend.slope_per_s - 2 * se
    return gap / trend.slope_per_s, gap / fast, (gap / slow if slow > 0 else math.inf)


def health_state(alarm_active: bool, eta_s: float | None, horizon_s: float) -> str:
    if alarm_active:
        return "alarm"
    if eta_s is not None and eta_s <= horizon_s:
        return "degrading"
    return "ok"


# ---------- the tracker ----------

@dataclass
class _DeviceState:
    flags: deque[bool]
    ratios: deque[float]
    points: deque[tuple[int, float, object]]  # (ts, ratio, operating class or None)
    whys: deque = field(default_factory=deque)  # (why, hint) of each window in `flags` (None, None: none said)
    thr: float = 1.0
    active: bool = False
    severity: str = ""
    peak: float = 0.0
    normal_run: int = 0
    ewma_score: float | None = None
    last_ts: int = 0
    buckets: dict = field(default_factory=dict)  # per operating class: ratios of the rollup being filled
    rollups: deque = field(default_factory=lambda: deque(maxlen=480))  # (ts, median ratio, class)


@dataclass
class AlarmTracker:
    """Feeds results in order per device; returns the alarm changes they cause."""

    policy: AlarmPolicy = field(default_factory=AlarmPolicy)
    _devices: dict[str, _DeviceState] = field(default_factory=dict)

    def known(self, device: str) -> bool:
        return device in self._devices

    def _state(self, device: str) -> _DeviceState:
        st = self._devices.get(device)
        if st is None:
            p = self.policy
            st = _DeviceState(deque(maxlen=p.n), deque(maxlen=p.n), deque(maxlen=p.trend_points),
                              deque(maxlen=p.n), rollups=deque(maxlen=p.rollup_points))
            self._devices[device] = st
        return st

    def prime(self, device: str, history: Sequence[ResultRecord], active_severity: str | None,
              peak_score: float = 0.0) -> None:
        """Rebuild a device's state after a restart from its stored recent results (oldest
        first) and its active alarm (None if none), without emitting changes."""
        st = self._state(device)
        history = [r for r in history if r.judged]
        for rec in history:
            self._push(st, rec)
        st.active = active_severity is not None
        st.severity = active_severity or ""
        st.peak = peak_score
        if st.active:  # the normal run that would clear it is the tail of the history
            run = 0
            for rec in reversed(history):
                if rec.anom:
                    break
                run += 1
            st.normal_run = run

    def _push(self, st: _DeviceState, rec: ResultRecord) -> None:
        st.flags.append(rec.anom)
        st.whys.append((rec.why, rec.hint) if rec.anom else (None, None))
        st.ratios.append(ratio_of(rec))
        ratio = st.ratios[-1]
        st.points.append((rec.ts, ratio, rec.cls))  # the trend runs on score/threshold (or the HI ratio)
        bucket = st.buckets.setdefault(rec.cls, [])
        bucket.append(ratio)
        if len(bucket) >= self.policy.rollup_every:  # rollups within one class: each its own level
            st.rollups.append((rec.ts, median(bucket), rec.cls))
            bucket.clear()
        st.thr = rec.thr
        st.last_ts = max(st.last_ts, rec.ts)
        st.ewma_score = ewma([rec.score], self.policy.ewma_alpha, st.ewma_score)

    def observe(self, rec: ResultRecord) -> AlarmChange | None:
        """Account one result (in seq order per device); return the change it causes, if any."""
        if not rec.judged:  # commissioning or uncommissioned: no verdict, so no alarm either way
            return None
        p = self.policy
        st = self._state(rec.device)
        self._push(st, rec)
        if not st.active:
            if k_of_n(st.flags, p.k):
                bad = [r for r, f in zip(st.ratios, st.flags) if f]
                st.active, st.severity, st.normal_run = True, severity_for(median(bad), p), 0
                st.peak = rec.score
                # what the raising window said, else the newest anomalous window of the k that said anything
                why, hint = next((w for w in reversed(st.whys) if w != (None, None)), (None, None))
                return AlarmChange("raise", rec.device, rec.ts, st.severity, rec.score, rec.thr, st.peak, why, hint)
            return None
        if rec.anom:
            st.normal_run = 0
            st.peak = max(st.peak, rec.score)
            bad = [r for r, f in zip(st.ratios, st.flags) if f]
            sev = next_severity(st.severity, median(bad), p)
            if sev != st.severity:
                st.severity = sev
                return AlarmChange("update", rec.device, rec.ts, sev, rec.score, rec.thr, st.peak)
            return None
        st.normal_run += 1
        if st.normal_run >= p.m:
            change = AlarmChange("clear", rec.device, rec.ts, st.severity, rec.score, rec.thr, st.peak)
            st.active, st.severity, st.normal_run, st.peak = False, "", 0, 0.0
            st.flags.clear()
            st.ratios.clear()
            st.whys.clear()
            return change
        return None

    def observe_many(self, records: Iterable[ResultRecord]) -> list[AlarmChange]:
        return [c for c in map(self.observe, records) if c is not None]

    def health(self, device: str, now_ms: int | None = None) -> DeviceHealth | None:
        """Trend and early-warning estimate for one device (None if never seen)."""
        st = self._devices.get(device)
        if st is None or not st.points:
            return None
        p = self.policy
        slope_h = eta = rul = None
        # the rollups when there are enough of them (hours to weeks), else the latest windows
        pts = st.rollups if len(st.rollups) >= p.trend_min_points else st.points
        if len(pts) >= p.trend_min_points:
            trend = fit_log_trend([t for t, _, _ in pts], [s for _, s, _ in pts], [g for _, _, g in pts])
            if trend is not None:
                slope_h = trend.slope_per_s * 3600.0
                eta = time_to_threshold(trend, 1.0, now_ms)
                significant = trend.t_stat >= p.min_trend_t
                # noise on a flat score fits a random slope: forecast only a real, nearby crossing
                if eta is not None and eta > 0 and (not significant or eta > p.max_extrapolation * trend.span_s):
                    eta = None
                if significant:
                    rul = remaining_life(trend, p.failure_ratio, now_ms)
        state = health_state(st.active, eta, p.horizon_s)
        return DeviceHealth(device, st.last_ts, float(st.ewma_score or 0.0), slope_h, eta, state,
                            *(rul or (None, None, None)))
