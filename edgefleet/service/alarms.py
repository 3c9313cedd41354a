"""Alarms and health trends: pure functions plus one stateful tracker.

- Raise: at least `k` of the last `n` windows of a device are anomalous.
- Clear: `m` consecutive normal windows after that.
- Severity: from score / threshold of the anomalous windows (median ratio); critical whatever
  the ratio when k of the last n windows measure ISO 20816 zone D ("severe: damage likely") for
  the machine's class. A zone-D window counts as anomalous even where the node's own normal was
  learned on an already-rough machine: mm/s is an absolute scale, the baseline is not.
- Health trend: a least-squares line through log(score) over recent windows; where it
  rises, its crossing of log(threshold) gives an early-warning time to threshold.
- Remaining life: a broken-stick (hinge) line through the health-indicator ratio: flat until
  the knee where degradation began, then rising linearly; life ends where it reaches the fleet's
  failure level (docs/health.md, "Remaining life").

The tracker only decides; the store persists its AlarmChange and DeviceHealth output,
and operators acknowledge alarms in the store.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from statistics import median

import numpy as np

from edgefleet.protocol import ResultRecord
from edgefleet.service.iso20816 import DEFAULT_CLASS, zone
from edgefleet.service.rollups import hist_parse, quantile
from edgefleet.service.store.base import (
    HEALTH_STATES,
    SEVERITIES,
    SEVERITY_RANK,
    AlarmChange,
    DeviceHealth,
)

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
    # End of life for the remaining-life estimate, as the health-indicator ratio (HI / its class
    # limit) at failure: (low, typical, high) over a fleet's run-to-failure histories. The default is
    # the 5th, 50th and 95th percentile measured on 40 simulated bearing failures (seed 7, 64-window commissioning) with the
    # shipped model (`benchmarks/run_to_failure.py --calibrate`); a fleet with its own failures
    # should set its own.
    failure_hi: tuple[float, float, float] = (4.5, 6.6, 8.5)
    life_points: int = 60  # newest points (windows, or rollups over long histories) the hinge is fitted to
    life_min_after: int = 6  # points after the knee, at least
    life_min_t: float = 3.0  # the rise after the knee must be this many standard errors
    # A commissioned node (it reports a HI) is degrading only once the HI ratio's fitted level is at least
    # this: on healthy machines it sits at 0.3-0.6
    # of its limit (the limit is median + 6 robust sigmas), and a daily temperature swing fits
    # significant rises there (measured: 30 of 100 healthy run-to-failure machines 'degrading' without it).
    degrading_level: float = 0.7
    # A device that starts more than this many new boots within boot_window_s raises no new alarm until
    # its boots calm down: a replay of anomalous results under fresh boot ids (the dedupe key is
    # device, boot, seq) must not manufacture alarms. Its results are still stored; a real machine
    # reboots a few times a day, not every few minutes.
    max_new_boots: int = 3
    boot_window_s: float = 600.0

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
        lo, mid, hi = self.failure_hi
        if not (1.0 < lo <= mid <= hi and math.isfinite(hi)):
            raise ValueError("need 1 < failure_hi low <= typical <= high (finite)")
        if self.life_min_after < 3 or self.life_points < 2 * self.life_min_after:
            raise ValueError("need 3 <= life_min_after and life_points >= 2 * life_min_after")


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


def score_ratio_of(rec: ResultRecord) -> float:
    """The anomaly score over the threshold it was judged against (inf for a zero threshold)."""
    return rec.score / rec.thr if rec.thr > 0 else math.inf


def ratio_of(rec: ResultRecord) -> float:
    """How far over its limits a window is: score/thr, or with a commissioned node's health
    indicator the larger of that and hi/hi_thr (the HI keeps rising where the score saturates)."""
    if rec.hi is not None and rec.hi_thr:
        return max(score_ratio_of(rec), rec.hi / rec.hi_thr)
    return score_ratio_of(rec)


def hi_ratio_of(rec: ResultRecord) -> float:
    """The health indicator over its class limit, where the node reports one (commissioned nodes);
    else the score ratio (the only health figure such a node has)."""
    if rec.hi is not None and rec.hi_thr:
        return rec.hi / rec.hi_thr
    return score_ratio_of(rec)


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


@dataclass(frozen=True)
class Life:
    """A fitted degradation: the HI ratio flat until `knee_ms`, then rising `slope_per_s`."""

    knee_ms: int  # where degradation began (the best hinge), ms
    slope_per_s: float  # of the straight line fitted to the points after the knee
    se: float  # its standard error
    level: float  # that line's value at t_ref_ms
    t_ref_ms: int  # the newest point
    n_after: int  # points after the knee
    # a parabola through the same points, where it bends upwards (an accelerating rise): its value,
    # slope (per s) and half its curvature (per s^2) at t_ref; None where it does not bend up
    accel: tuple[float, float, float] | None = None

    @property
    def t_stat(self) -> float:
        return self.slope_per_s / self.se if self.se > 0 else (math.inf if self.slope_per_s > 0 else 0.0)


def fit_hinge(ts_ms: Sequence[int], values: Sequence[float], min_after: int = 6) -> Life | None:
    """The broken stick that fits best: y = c + b * max(t - knee, 0), the knee tried at every point
    that leaves `min_after` points after it (least squares, closed form for each knee); then a plain
    line through the points after the best knee, whose slope and standard error the life estimate
    uses. None with too few points or no time spread.

    Why a hinge and a line: the features are log band powers, so the HI is on a log scale of
    vibration energy, and a defect that grows exponentially (the classic model of spall growth,
    Gebraeel et al. 2005) makes it rise linearly once the defect dominates the machine's own noise;
    before that it sits on the healthy floor. Fitting only after the knee keeps the floor out of the
    slope (a line through both reads the rise too slow and the life too long)."""
    n = len(ts_ms)
    if n != len(values) or n < 2 * min_after:
        return None
    t_ref = max(ts_ms)
    x = (np.asarray(ts_ms, np.float64) - t_ref) / 1000.0
    y = np.asarray(values, np.float64)
    if not np.all(np.isfinite(y)) or np.ptp(x) <= 0:
        return None
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    knees = x[: n - min_after]
    u = np.maximum(x[None, :] - knees[:, None], 0.0)  # [knees, n]
    du = u - u.mean(axis=1, keepdims=True)
    suu = (du * du).sum(axis=1)
    suy = (du * (y - y.mean())).sum(axis=1)
    ok = suu > 0
    if not ok.any():
        return None
    gain = np.where(ok, suy * suy / np.where(ok, suu, 1.0), -np.inf)  # SSE = Syy - gain: most gain, least SSE
    j = int(np.argmax(gain))
    xs, ys = x[j:], y[j:]
    dx = xs - xs.mean()
    sxx = float((dx * dx).sum())
    if sxx <= 0:
        return None
    b = float((dx * (ys - ys.mean())).sum() / sxx)
    resid = ys - (ys.mean() + b * dx)
    se = math.sqrt(float((resid * resid).sum()) / max(len(xs) - 2, 1) / sxx)
    level = float(ys.mean() + b * (0.0 - xs.mean()))
    accel = None
    if len(xs) >= 8:  # x = 0 at t_ref, so the coefficients are the value, slope and half-curvature there
        c0, c1, c2 = np.linalg.lstsq(np.stack([np.ones_like(xs), xs, xs * xs], 1), ys, rcond=None)[0]
        if c2 > 0 and c1 > 0:
            accel = (float(c0), float(c1), float(c2))
    return Life(int(t_ref + knees[j] * 1000.0), b, se, level, int(t_ref), len(xs), accel)


def remaining_life(life: Life, failure: tuple[float, float, float], now_ms: int | None = None, k: float = 2.0
                   ) -> tuple[float, float, float] | None:
    """(RUL, low, high) in seconds until the fitted line reaches the failure level: RUL at the typical
    level and the fitted slope; low at the fleet's lowest failure level and the slope + k standard
    errors; high at the highest level and the slope - k standard errors (inf when that is not rising).
    Where the rise is still accelerating (the parabola bends up), the low end is also the time the
    parabola takes to the lowest level, whichever is sooner: early in a defect's growth a line reads
    the rise too slow. None while the line is not rising."""
    if life.slope_per_s <= 0:
        return None
    now_ms = life.t_ref_ms if now_ms is None else now_ms
    level_now = life.level + life.slope_per_s * (now_ms - life.t_ref_ms) / 1000.0
    lo, mid, hi = failure
    fast, slow = life.slope_per_s + k * life.se, life.slope_per_s - k * life.se
    rul = max(mid - level_now, 0.0) / life.slope_per_s
    low = max(lo - level_now, 0.0) / fast
    high = max(hi - level_now, 0.0) / slow if slow > 0 else math.inf
    if life.accel is not None:
        c0, c1, c2 = life.accel
        dt = (now_ms - life.t_ref_ms) / 1000.0
        v, b = c0 + c1 * dt + c2 * dt * dt, c1 + 2 * c2 * dt  # the parabola's value and slope now
        gap = lo - v
        if b > 0:
            low = min(low, 0.0 if gap <= 0 else (-b + math.sqrt(b * b + 4 * c2 * gap)) / (2 * c2))
    return rul, low, high


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
    points: deque[tuple[int, float, object, float]]  # (ts, ratio, operating class or None, HI ratio)
    whys: deque = field(default_factory=deque)  # (why, hint) of each window in `flags` (None, None: none said)
    zone_d: deque = field(default_factory=deque)  # each window in `flags`: measured ISO 20816 zone D
    thr: float = 1.0
    active: bool = False
    severity: str = ""
    peak: float = 0.0
    normal_run: int = 0
    ewma_score: float | None = None
    has_hi: bool = False  # the newest window carried a health indicator (a commissioned node)
    boot: str = ""  # the newest result's boot id
    boot_changes: deque = field(default_factory=lambda: deque(maxlen=64))  # ts of each change to a new boot
    last_ts: int = 0
    buckets: dict = field(default_factory=dict)  # per operating class: ratios of the rollup being filled
    hi_buckets: dict = field(default_factory=dict)  # per operating class: HI ratios of the rollup being filled
    rollups: deque = field(default_factory=lambda: deque(maxlen=480))  # (ts, median ratio, class, median HI ratio)


@dataclass
class AlarmTracker:
    """Feeds results in order per device; returns the alarm changes they cause."""

    policy: AlarmPolicy = field(default_factory=AlarmPolicy)
    iso_class_of: Callable[[str], str] = lambda device: DEFAULT_CLASS  # a device's ISO 20816 machine class
    _devices: dict[str, _DeviceState] = field(default_factory=dict)

    def known(self, device: str) -> bool:
        return device in self._devices

    def _state(self, device: str) -> _DeviceState:
        st = self._devices.get(device)
        if st is None:
            p = self.policy
            st = _DeviceState(deque(maxlen=p.n), deque(maxlen=p.n), deque(maxlen=p.trend_points),
                              deque(maxlen=p.n), deque(maxlen=p.n), rollups=deque(maxlen=p.rollup_points))
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
                if rec.anom or self._zone_d(rec):
                    break
                run += 1
            st.normal_run = run

    def _zone_d(self, rec: ResultRecord) -> bool:
        if rec.vrms is None or not math.isfinite(rec.vrms) or rec.vrms < 0:
            return False
        try:
            return zone(rec.vrms, self.iso_class_of(rec.device)) == "D"
        except Exception:  # a bad class setting must not stop the alarms: judge by the default class
            return zone(rec.vrms) == "D"

    def _push(self, st: _DeviceState, rec: ResultRecord) -> None:
        severe = self._zone_d(rec)
        st.zone_d.append(severe)
        st.flags.append(rec.anom or severe)
        st.whys.append((rec.why, rec.hint) if rec.anom else (None, None))
        st.ratios.append(ratio_of(rec))
        ratio = st.ratios[-1]
        hi_ratio = hi_ratio_of(rec)
        st.has_hi = rec.hi is not None and bool(rec.hi_thr)
        if rec.boot != st.boot:
            if st.boot:  # the first boot the tracker sees is not a change
                st.boot_changes.append(rec.ts)
            st.boot = rec.boot
        st.points.append((rec.ts, ratio, rec.cls, hi_ratio))  # the trend runs on score/threshold (or the HI ratio)
        bucket = st.buckets.setdefault(rec.cls, [])
        hi_bucket = st.hi_buckets.setdefault(rec.cls, [])
        bucket.append(ratio)
        hi_bucket.append(hi_ratio)
        if len(bucket) >= self.policy.rollup_every:  # rollups within one class: each its own level
            st.rollups.append((rec.ts, median(bucket), rec.cls, median(hi_bucket)))
            bucket.clear()
            hi_bucket.clear()
        st.thr = rec.thr
        st.last_ts = max(st.last_ts, rec.ts)
        st.ewma_score = ewma([rec.score], self.policy.ewma_alpha, st.ewma_score)

    def boots_suspect(self, device: str) -> bool:
        """More than `max_new_boots` new boot ids within the last `boot_window_s` (to the device's newest
        window): no new alarm from it until they age out."""
        st = self._devices.get(device)
        if st is None or not st.boot_changes:
            return False
        recent = sum(1 for t in st.boot_changes if st.last_ts - t <= self.policy.boot_window_s * 1000)
        return recent > self.policy.max_new_boots

    def _severity(self, st: _DeviceState, by_ratio: str) -> str:
        """Critical whatever the ratio while k of the last n windows are in ISO zone D."""
        return "critical" if k_of_n(st.zone_d, self.policy.k) else by_ratio

    def observe(self, rec: ResultRecord) -> AlarmChange | None:
        """Account one result (in seq order per device); return the change it causes, if any."""
        if not rec.judged:  # commissioning or uncommissioned: no verdict, so no alarm either way
            return None
        p = self.policy
        st = self._state(rec.device)
        self._push(st, rec)
        if not st.active:
            if k_of_n(st.flags, p.k) and not self.boots_suspect(rec.device):
                bad = [r for r, f in zip(st.ratios, st.flags) if f]
                st.active, st.severity, st.normal_run = True, self._severity(st, severity_for(median(bad), p)), 0
                st.peak = rec.score
                # what the raising window said, else the newest anomalous window of the k that said anything
                why, hint = next((w for w in reversed(st.whys) if w != (None, None)), (None, None))
                return AlarmChange("raise", rec.device, rec.ts, st.severity, rec.score, rec.thr, st.peak, why, hint)
            return None
        if st.flags[-1]:
            st.normal_run = 0
            st.peak = max(st.peak, rec.score)
            bad = [r for r, f in zip(st.ratios, st.flags) if f]
            sev = self._severity(st, next_severity(st.severity, median(bad), p))
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
            st.zone_d.clear()
            return change
        return None

    def observe_many(self, records: Iterable[ResultRecord]) -> list[AlarmChange]:
        return [c for c in map(self.observe, records) if c is not None]

    def _life(self, st: _DeviceState) -> Life | None:
        """The degradation fitted to the HI ratio's newest windows; where their rise is not yet clear
        (a slow degradation under frequent windows), to the newest rollups, which span longer."""
        p = self.policy
        for series in (st.points, st.rollups):
            pts = list(series)[-p.life_points:]
            life = fit_hinge([q[0] for q in pts], [q[3] for q in pts], p.life_min_after)
            if life is not None and life.t_stat >= p.life_min_t:
                return life
        return None

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
            trend = fit_log_trend([q[0] for q in pts], [q[1] for q in pts], [q[2] for q in pts])
            if trend is not None:
                slope_h = trend.slope_per_s * 3600.0
                eta = time_to_threshold(trend, 1.0, now_ms)
                significant = trend.t_stat >= p.min_trend_t
                # noise on a flat score fits a random slope: forecast only a real, nearby crossing
                if eta is not None and eta > 0 and (not significant or eta > p.max_extrapolation * trend.span_s):
                    eta = None
        life = self._life(st)
        level = st.points[-1][3] if life is None else life.level
        state = health_state(st.active, eta, p.horizon_s)
        if state == "degrading" and st.has_hi and level < p.degrading_level:
            state = "ok"  # a rise within the healthy band: the daily swing, not a fault
        elif state == "ok" and life is not None and level >= p.degrading_level:
            state = "degrading"  # the HI climbs clear of the healthy band: a fault starting
        if state != "ok" and life is not None:  # remaining life once degrading (noise fits random knees)
            rul = remaining_life(life, p.failure_hi, now_ms)
        return DeviceHealth(device, st.last_ts, float(st.ewma_score or 0.0), slope_h, eta, state,
                            *(rul or (None, None, None)))


# ---------- forecasts with their horizon (issue 18 item 4) ----------

@dataclass(frozen=True)
class Forecast:
    """A trend forecast and the data it came from: `horizon` says it in words ("from the last 14 days of hourly
    rollups", "from the last 2 minutes of windows"), so two forecasts shown side by side are never confused."""

    source: str  # "windows", "summaries" or "rollup_1h"
    horizon: str
    points: int
    span_s: float  # time the fitted points cover
    level_ratio: float | None  # fitted score / threshold now (None: no fit)
    slope_per_day: float | None  # of log(score / threshold)
    t_stat: float | None
    eta_s: float | None  # seconds until the fitted score reaches the threshold; None: not forecast
    state: str  # "rising" (a significant, nearby crossing), "above" (already there), "flat" (no forecast), "too_few"

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def span_words(span_s: float) -> str:
    """A span as people say it: '2 minutes', '5 hours', '14 days'."""
    for unit, secs in (("day", 86_400.0), ("hour", 3_600.0), ("minute", 60.0)):
        if span_s >= 2 * secs:
            return f"{span_s / secs:.0f} {unit}s"
    return f"{max(span_s, 0.0):.0f} seconds"


def forecast_from(ts_ms: Sequence[int], ratios: Sequence[float], source: str, what: str, now_ms: int,
                  policy: AlarmPolicy = AlarmPolicy(), min_points: int | None = None) -> Forecast:
    """A log-linear trend of score/threshold ratios (fit_log_trend) and its crossing of 1, with the same guards
    as the tracker's health: a crossing is forecast only where the slope is min_trend_t standard errors from
    zero and the crossing lies within max_extrapolation times the fitted span. `what` names the points
    ("windows", "hourly rollups") for the horizon's words."""
    n = len(ts_ms)
    span = (max(ts_ms) - min(ts_ms)) / 1000.0 if n else 0.0
    if n == 0:
        horizon = f"no {what}"
    elif n == 1:  # no span to speak of, nothing to fit
        horizon = f"from 1 point of {what}"
    elif span <= 0:
        horizon = f"from {n} points of {what}, all at one time"
    else:
        horizon = f"from the last {span_words(span)} of {what} ({n} points)"
    need = policy.trend_min_points if min_points is None else min_points
    trend = fit_log_trend(ts_ms, ratios) if n >= need else None
    if trend is None:
        return Forecast(source, horizon, n, span, None, None, None, None, "too_few")
    level = math.exp(trend.level + trend.slope_per_s * (now_ms - trend.t_ref_ms) / 1000.0)
    eta = time_to_threshold(trend, 1.0, now_ms)
    state = "flat"
    if eta == 0.0:
        state = "above"
    elif eta is not None and trend.t_stat >= policy.min_trend_t and eta <= policy.max_extrapolation * trend.span_s:
        state = "rising"
    else:
        eta = None
    return Forecast(source, horizon, n, span, level, trend.slope_per_s * 86_400.0, trend.t_stat, eta, state)


def short_forecast(recent: Sequence[ResultRecord], now_ms: int, policy: AlarmPolicy = AlarmPolicy(),
                   source: str = "windows") -> Forecast:
    """The short-term trend: the newest judged windows (or a summary-mode node's summaries, as
    store/summary_sql.as_result gives them), score / threshold against time."""
    pts = [r for r in recent if r.judged][-policy.trend_points:]
    return forecast_from([r.ts for r in pts], [ratio_of(r) for r in pts], source,
                         "windows" if source == "windows" else "summaries", now_ms, policy)


LONG_DAYS = 14.0  # the long horizon: two weeks of hourly rollups
LONG_MIN_POINTS = 48  # hours with results, at least: two days


def long_forecast(hour_rows: Sequence[Sequence], now_ms: int, policy: AlarmPolicy = AlarmPolicy(),
                  days: float = LONG_DAYS, min_points: int = LONG_MIN_POINTS) -> Forecast:
    """The trend over days to weeks, from a device's 1-hour rollup rows (rollups.COLUMNS, any order): each
    hour's median score / its highest threshold (the histogram's median: one spiky window does not move it,
    and a node's summaries count with their stand-in histograms), fitted over the last `days` to `now_ms`.
    Hours with no judged window are left out."""
    lo = now_ms - int(days * 86_400_000)
    ts, ratios = [], []
    for r in sorted(hour_rows, key=lambda r: int(r[1])):
        if int(r[1]) < lo or int(r[1]) > now_ms or int(r[5]) <= 0 or not float(r[10]) > 0:
            continue
        med = quantile(hist_parse(r[9]), 0.5, float(r[6]), float(r[8]))
        if med is None:
            continue
        ts.append(int(r[2]))  # the hour's newest window
        ratios.append(med / float(r[10]))
    return forecast_from(ts, ratios, "rollup_1h", "hourly rollups", now_ms, policy, min_points)


__all__ += ["Forecast", "forecast_from", "long_forecast", "short_forecast", "span_words"]
