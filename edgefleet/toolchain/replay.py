"""Replay a recording through a node's logic on the desktop, in simulated time.

A recording holds either a continuous `signal` or `snaps` [n, m] with their times `t_s` [n] (nodes
that wake to measure), plus `fs` and optionally `rpm` (a number, or one per window/snapshot) and
`machine`. The node's logic runs on it exactly as on a device: commissioning (the same
`Commissioner`), classes by speed, the model's score and the health indicator, then the service's
alarm rules through the `observe` callback the caller passes in (so this module stays below the
fleet service in the layering). This is also how an engineer reproduces a node's verdicts from a
capture.

Every input problem gets a named outcome in the report (`issues`): windows with NaN samples are
skipped and counted, clipped windows are counted (`clipped_windows`: those the sensor check calls
`sensor_saturated` from the samples alone, at a piled-up extreme, so a clean sine is not clipped),
snapshot times that do not increase are refused, gaps and speed jumps are counted; nothing is
silently dropped.

Each window's raw samples are first checked for sensor faults (`runtime/sensor_check.py`): a dead,
saturated or dropping-out sensor's window is named (`sensor_dead`, `sensor_saturated`,
`sensor_dropout`: its result state, counted in `states` and `issues`, each change listed in
`sensor`), and neither commissions, moves the drift baseline, raises nor clears an alarm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgefleet.errors import DataError, FeatureError
from edgefleet.protocol import ResultRecord
from edgefleet.runtime import baseline as bl
from edgefleet.runtime.engine import Detector
from edgefleet.runtime.features import FeatureParams, analyze, frame, plan
from edgefleet.runtime.sensor_check import OUTCOMES, SATURATED, SensorLimits, check_windows
from edgefleet.toolchain.datasets import (
    no_npz_message,
    open_npz,
    rate_hint,
    read_fs,
    read_signal,
)

GAP_FACTOR = 3.0  # snapshot intervals longer than this times the median are gaps
RPM_JUMP = 0.10  # a speed change of more than 10 % from one window to the next


@dataclass
class ReplayInput:
    name: str
    machine: str
    fs: float
    windows: np.ndarray  # [n, N] float32
    t_s: np.ndarray  # [n] end time of each window, seconds from the start
    rpm: np.ndarray | None  # [n] or None
    issues: dict[str, int] = field(default_factory=dict)


def _count(issues: dict[str, int], what: str, n: int = 1) -> None:
    if n:
        issues[what] = issues.get(what, 0) + int(n)


def load_replay(path: Path, params: FeatureParams) -> ReplayInput:
    """One `.npz` in the replay format, cut into the model's windows; DataError says what is wrong."""
    try:
        with open_npz(path) as z:
            keys = set(z.files)
            if "fs" not in keys or not ({"signal"} <= keys or {"snaps", "t_s"} <= keys):
                raise DataError(f"{path.name}: needs fs and either signal, or snaps and t_s")
            fs = read_fs(path.name, z)
            data = {k: np.asarray(z[k]) for k in ("t_s", "rpm", "segment") if k in keys}
            for k in ("signal", "snaps"):  # in g, checked before they are read (docs/features.md, Recordings)
                if k in keys:
                    data[k] = read_signal(path.name, z, k, refuse_constant=False)  # sensor_dead windows
            machine = str(z["machine"]) if "machine" in keys else path.stem
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path.name}: not a readable .npz recording ({exc})") from exc
    try:
        n = plan(params, fs).n_samples
    except FeatureError as exc:
        raise DataError(f"{path.name}: {exc}{rate_hint(fs)}") from exc
    issues: dict[str, int] = {}
    if "signal" in data and "segment" in data:  # joined snapshots (`data import --join`): never straddle two
        seg = int(data.pop("segment"))
        sig = data.pop("signal")
        if seg <= 0 or sig.ndim != 1 or sig.size % seg:
            raise DataError(f"{path.name}: segment {seg} does not divide the signal of {sig.size} samples")
        data["snaps"] = sig.reshape(-1, seg)
        data.setdefault("t_s", np.arange(sig.size // seg) * seg / fs)
    if "signal" in data:
        sig = data["signal"].astype(np.float32)
        if sig.ndim != 1:
            raise DataError(f"{path.name}: signal must be 1-D (one channel), got shape {sig.shape}; save one "
                            "channel per recording (`edgefleet data import FILE --channel N`)")
        if sig.size < n:  # nothing to judge; the report says so, and this names why
            _count(issues, f"shorter_than_one_{n}_sample_window", 1)
        windows = np.array(frame(sig, n))
        t_s = (np.arange(len(windows)) + 1) * n / fs
    else:
        snaps, t_s = data["snaps"].astype(np.float32), data["t_s"].astype(np.float64)
        if snaps.ndim != 2 or t_s.shape != (snaps.shape[0],):
            raise DataError(f"{path.name}: snaps must be [n, m] and t_s [n], got {snaps.shape} and {t_s.shape}")
        if snaps.shape[1] < n:
            raise DataError(f"{path.name}: snapshots of {snaps.shape[1]} samples are shorter than one "
                            f"{params.window_s:g} s window ({n} samples at {fs:g} Hz)")
        if len(t_s) > 1 and not np.all(np.diff(t_s) > 0):
            raise DataError(f"{path.name}: snapshot times t_s must increase strictly")
        windows = snaps[:, :n]
        t_s = t_s + n / fs
        if len(t_s) > 2:
            d = np.diff(t_s)
            _count(issues, "gaps", int((d > GAP_FACTOR * np.median(d)).sum()))
    rpm = None
    if "rpm" in data:
        r = data["rpm"].astype(np.float64)
        rpm = np.full(len(windows), float(r)) if r.ndim == 0 else r
        if rpm.shape != (len(windows),):
            if "signal" in data and r.ndim == 1 and r.size > 0:  # one per sample block: take each window's end
                idx = np.minimum(((np.arange(len(windows)) + 1) * n * r.size) // max(1, data["signal"].size), r.size - 1)
                rpm = r[idx]
            else:
                raise DataError(f"{path.name}: rpm must be a number or one per window/snapshot")
        bad = ~np.isfinite(rpm) | (rpm <= 0)
        _count(issues, "rpm_missing", int(bad.sum()))
        rpm = np.where(bad, 0.0, rpm)
        ok = (rpm[1:] > 0) & (rpm[:-1] > 0)
        _count(issues, "rpm_jumps", int((ok & (np.abs(np.diff(rpm)) > RPM_JUMP * rpm[:-1])).sum()))
    finite = np.isfinite(windows).all(axis=1)
    _count(issues, "nan_windows_skipped", int((~finite).sum()))
    # clipped: one rule with the node's sensor check (a piled-up extreme, runtime/sensor_check.py), not a
    # second one; samples within 0.1 % of the peak called every window of a clean sine clipped
    clipped = check_windows(windows).outcome == SATURATED if len(windows) else np.zeros(0, bool)
    _count(issues, "clipped_windows", int((clipped & finite).sum()))
    keep = finite
    return ReplayInput(path.stem, machine, fs, windows[keep], t_s[keep], None if rpm is None else rpm[keep], issues)


def replay_paths(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise DataError(no_npz_message(path))
        return files
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    return [path]


def _vrms_summary(vrms: np.ndarray) -> dict | None:
    """Velocity RMS (mm/s, 10-1,000 Hz) over the recording, what an operator reads against ISO 20816:
    a recording in the wrong unit shows here first (9.81x for m/s^2 read as g). None for v1 models."""
    v = vrms[np.isfinite(vrms)]
    if not v.size:
        return None
    return {"median": round(float(np.median(v)), 4), "p95": round(float(np.percentile(v, 95)), 4),
            "max": round(float(v.max()), 4)}


class Tracker(Protocol):
    """The fleet service's alarm tracker, passed in (this module sits below the service)."""

    def observe(self, rec: ResultRecord) -> object: ...  # an AlarmChange or None

    def health(self, device: str, now_ms: int | None = None) -> object: ...  # a DeviceHealth or None


def replay(detector: Detector, rec: ReplayInput, tracker: Tracker, *, commission_windows: int = bl.DEFAULT_WINDOWS,
           batch: int = 512, health_every: int = 6, trace: bool = False, follow_drift: bool = True,
           chunk: int = 32, sensor_limits: SensorLimits = SensorLimits()) -> dict:
    """Run the node on the recording: commission, then judge; returns what happened and when:
    alarms, stages (commissioning, healthy, degrading, alarm, critical) and remaining-life
    estimates with their interval."""
    params = detector.artifact.features.params  # type: ignore[union-attr]
    com: bl.Commissioner | None = bl.Commissioner(params.n_features, target=commission_windows)
    base: bl.Baseline | None = None
    parts = [analyze(rec.windows[i:i + batch], rec.fs, params) for i in range(0, len(rec.windows), batch)]
    feats = np.concatenate([a.features for a in parts]) if parts else np.empty((0, params.n_features), np.float32)
    vrms = np.concatenate([a.vrms_mm_s for a in parts]) if parts else np.empty(0)
    rpm = rec.rpm if rec.rpm is not None else np.zeros(len(feats))
    out: dict = {"recording": rec.name, "machine": rec.machine, "windows": int(len(feats)),
                 "commissioned_at_s": None, "alarms": [], "first_alarm_s": None, "stages": [], "rul": [],
                 "classes": [], "states": {"commissioning": 0, "uncommissioned": 0, "judged": 0},
                 "issues": dict(rec.issues), "end_s": float(rec.t_s[-1]) if len(rec.t_s) else 0.0,
                 "sensor": []}
    stage = None
    sensor = [OUTCOMES[o] for o in check_windows(rec.windows, sensor_limits).outcome] if len(rec.windows) else []
    out["vrms_mm_s"] = _vrms_summary(vrms[np.array([o == "" for o in sensor], bool)])  # a dead sensor reads 0
    for name in set(sensor) - {""}:
        out["states"][name] = 0
        _count(out["issues"], f"{name}_windows", sensor.count(name))

    def note_sensor(i: int) -> str:
        """The window's sensor outcome; each change of it (back to "" too) listed in `sensor`."""
        name = sensor[i]
        if name != (out["sensor"][-1]["outcome"] if out["sensor"] else ""):
            out["sensor"].append({"t_s": round(float(rec.t_s[i]), 3), "outcome": name})
        if name:
            out["states"][name] += 1
        return name

    def set_stage(t: float, s: str) -> None:
        nonlocal stage
        if s != stage:
            stage = s
            out["stages"].append({"t_s": round(t, 3), "stage": s})

    start = 0
    while com is not None and start < len(feats):  # commissioning: until every class seen is full
        t = float(rec.t_s[start])
        set_stage(t, "commissioning")
        steady = start == 0 or bl.steady_speed(float(rpm[start]), float(rpm[start - 1]))
        o = note_sensor(start) or (com.add(feats[start], float(rpm[start])) if steady else "speed_changing")
        out["states"]["commissioning"] += 1
        if o in ("nonfinite", "class_limit", "speed_changing", "not_stationary", "speeds_apart", *OUTCOMES[1:]):
            _count(out["issues"], f"commissioning_{o}")
        start += 1
        if com.done():
            base = com.finish(detector.score_standardized, frontend=bl.frontend_crc(params), learned_ms=int(t * 1000))
            out["commissioned_at_s"] = round(t, 3)
            com = None
    if base is None:
        if com is not None and com.classes:
            try:  # the recording ended first: finish with what has enough windows, as `commission_end` does
                base = com.finish(detector.score_standardized, frontend=bl.frontend_crc(params),
                                  learned_ms=int(out["end_s"] * 1000))
                out["commissioned_at_s"] = out["end_s"]
                _count(out["issues"], "commissioning_ended_by_the_recording")
            except bl.BaselineError as exc:
                out["error"] = f"not commissioned: {exc}"
        else:
            out["error"] = "not commissioned: the recording holds no usable window"
        return out | ({"classes": base.summary()["classes"]} if base else {})
    out["classes"] = base.summary()["classes"]
    out["baseline_changes"] = []
    rest = slice(start, len(feats))
    s = score_following_drift(base, feats[rest], rpm[rest], rec.t_s[rest], detector, out["baseline_changes"],
                              chunk=chunk if follow_drift else len(feats),
                              usable=np.array([not n for n in sensor[rest]], bool))
    if trace:  # every judged window's numbers, for analysis beside the truth
        out["trace"] = {"t_s": rec.t_s[rest].tolist(), "score": s.score.tolist(), "hi": s.hi.tolist(),
                        "ratio": s.ratio.tolist(), "cls": s.cls.tolist(), "sensor": sensor[rest]}
    for j in range(len(s.cls)):
        i = start + j
        t = float(rec.t_s[i])
        fault = note_sensor(i)  # a sensor fault: no verdict (the tracker neither raises nor clears on it)
        judged = s.cls[j] >= 0 and not fault
        if not fault:
            out["states"]["judged" if judged else "uncommissioned"] += 1
        c = base.classes[s.cls[j]] if judged else None
        r = ResultRecord(rec.machine, "replay00", i, int(t * 1000), detector.artifact.model_version,
                         float(s.score[j]) if judged else 0.0, float(c.threshold) if c else 1.0,
                         bool(s.anom[j]) and judged, 0, state=fault or ("" if judged else "uncommissioned"),
                         hi=float(s.hi[j]) if judged else None, cls=int(s.cls[j]) if judged else None,
                         hi_thr=float(c.hi_threshold) if c else None)
        change = tracker.observe(r)
        op = getattr(change, "op", None)
        if op in ("raise", "update"):
            sev = change.severity  # type: ignore[union-attr]
            st = "critical" if sev == "critical" else "alarm"
            out["alarms"].append({"t_s": round(t, 3), "severity": sev, "stage": st, "op": op})
            if out["first_alarm_s"] is None:
                out["first_alarm_s"] = round(t, 3)
            set_stage(t, st)
        elif op == "clear":
            set_stage(t, "healthy")
        elif stage == "commissioning" and not fault:  # a sensor fault says nothing of the machine
            set_stage(t, "healthy")
        if judged and j % health_every == health_every - 1:
            h = tracker.health(rec.machine, int(t * 1000))
            if h is not None:
                if stage == "healthy" and getattr(h, "state", "") == "degrading":
                    set_stage(t, "degrading")
                elif stage == "degrading" and getattr(h, "state", "") == "ok":
                    set_stage(t, "healthy")
                if getattr(h, "rul_s", None) is not None:
                    out["rul"].append({"t_s": round(t, 3), "rul_s": finite_or_none(h.rul_s),
                                       "low_s": finite_or_none(h.rul_low_s), "high_s": finite_or_none(h.rul_high_s)})
    return out


def score_following_drift(base: bl.Baseline, feats: np.ndarray, rpm: np.ndarray, t_s: np.ndarray,
                          detector: Detector, changes: list, *, chunk: int = 32,
                          usable: np.ndarray | None = None) -> bl.Scored:
    """Score in chunks; after each, let every class follow its healthy windows (`baseline.drift`);
    each move of a class's centre by a tenth of a spread or more is recorded in `changes`.
    `usable` (bool per window; default all): windows a sensor fault spoiled never move a centre."""
    origin = [c.center.copy() for c in base.classes]
    noted = [c.center.astype(np.int64) for c in base.classes]
    parts = []
    for a in range(0, len(feats), chunk):
        sl = slice(a, a + chunk)
        s = bl.score_windows(base, feats[sl], rpm[sl], detector.score_standardized)
        parts.append(s)
        dt = float(t_s[min(a + chunk, len(t_s)) - 1] - t_s[a]) + (float(t_s[1] - t_s[0]) if len(t_s) > 1 else 0.0)
        classes = list(base.classes)
        for k, c in enumerate(classes):
            ok = (s.cls == k) & (s.ratio < bl.DRIFT_HEALTHY) & (True if usable is None else usable[sl])
            if ok.any():
                classes[k] = bl.drift(c, origin[k], bl.to_q10(feats[sl][ok]), dt)
                moved = np.abs(classes[k].center.astype(np.int64) - noted[k]) / c.spread.astype(np.int64)
                if moved.max() >= 0.1:
                    noted[k] = classes[k].center.astype(np.int64)
                    total = np.abs(noted[k] - origin[k].astype(np.int64)) / c.spread.astype(np.int64)
                    changes.append({"t_s": round(float(t_s[min(a + chunk, len(t_s)) - 1]), 3), "cls": k,
                                    "max_shift_spreads": round(float(total.max()), 3)})
        base = bl.Baseline(base.frontend_crc, base.learned_ms, tuple(classes), base.n_features)
    if not parts:
        return bl.score_windows(base, feats, rpm, detector.score_standardized)
    cat = lambda f: np.concatenate([getattr(p, f) for p in parts])  # noqa: E731
    return bl.Scored(cat("cls"), cat("score"), cat("hi"), cat("anom"), cat("ratio"))


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x
