"""Is the sensor itself sane? A per-window check of the raw samples, before any feature.

A dead, saturating or dropping-out sensor makes windows the anomaly model cannot judge: judged,
they raise false machine alarms, train the drift baseline on garbage, or (a dead channel reads as
"quiet") clear a real alarm. So each window is first checked here, and a window with a sensor
fault gets a named outcome instead of a verdict (docs/baseline.md, "Sensor faults"):

- `sensor_dead`: the window's standard deviation is under `dead_rms` (a channel that carries only
  its own noise floor, or a constant), or at least half of its consecutive sample pairs repeat the
  same value strictly inside the window's range (a stuck or held output);
- `sensor_saturated`: at least 1 sample in 200 (and at least 4) sits exactly at a piled-up
  extreme, or at/over the sensor's known full scale (`rail`). An extreme (the window's maximum or
  minimum) is piled up when more than `SAT_PILE` (4) times as many samples sit on it as on the
  next value inside the range: clipping moves the whole tail beyond the clip level onto one
  value, while a smooth signal's extreme holds about as many samples as the values next to it.
  Counting the samples at the extremes alone flagged a clean periodic signal (a calibrator's or
  a shaker's sine with a whole number of samples per period hits its peak value once per cycle,
  and twice when two samples sit symmetric about the peak) and never commissioned it. Runs of
  equal samples at the extreme (flat tops) do not tell them apart either: a broadband signal
  clipped below its peaks has mostly single clipped samples (runs of 3 or more kept 31 % of the
  simulated saturating windows, runs of 2 kept 72 % and flag the symmetric sine), and a sine
  quantized by a 16-bit ADC has flat tops of several samples. Measured (docs/baseline.md, "Sensor
  faults"): of the simulator's saturating windows (10 machines) 98.3 % named (99.5 % when every
  sample at an extreme counted); of 2,865 exact sines with a whole period of 6-960 samples 1 (the
  old rule: 1,822); realistic 16-bit sines (0.05-1.4 g, 25-1000 Hz, +-2 to +-16 g full scale, 50
  phases each) never. Left: a quantized sine whose period is near, but not, a whole number of
  samples can still pile several cycles' peaks onto one code (2.9-3.8 % of random ones; old: 91 %);
- `sensor_dropout`: a run of at least `DROPOUT_RUN` equal samples strictly inside the range (a
  stretch of zeros or a held value), or a non-finite sample.

First match wins in that order. A loose mount (more high-frequency content, rattling impacts) is
not told apart from a machine fault here: it is judged, and alarms like one.

Every decision is exact: counts and comparisons of the samples as given, and one variance in
float32 summed in sample order (mean first, then squared deviations), so the C node
(`firmware/core/src/ef_sensor_check.c`) reaches the same outcome bit for bit on the same float32
samples. Pure functions, no state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OK, DEAD, SATURATED, DROPOUT = 0, 1, 2, 3
OUTCOMES = ("", "sensor_dead", "sensor_saturated", "sensor_dropout")  # "" = sane; the rest are result states
# Twice the noise floor of a MEMS vibration sensor: the IIS3DWB's 75 ug/sqrt(Hz) over its 6.3 kHz
# band is 6 mg RMS. The simulator's healthy machines read 0.055-0.10 g (benchmarks/sensor_faults.py).
DEAD_RMS = 0.012  # g
SAT_DEN = 200  # saturated: samples at an extreme >= n / 200 ...
SAT_MIN = 4  # ... and at least this many (a continuous signal touches each extreme once)
SAT_PILE = 4  # ... at an extreme that holds more than this many times the next inside value's samples
DROPOUT_RUN = 16  # equal samples in a row inside the range: 1.3 ms at 12 kHz
BLOCK = 512  # windows per vectorized pass (bounded memory)


@dataclass(frozen=True)
class SensorLimits:
    """What a node knows about its sensor: the RMS under which it reads nothing, and its full
    scale in the same units as the samples (0: unknown, only flat tops count)."""

    dead_rms: float = DEAD_RMS
    rail: float = 0.0


@dataclass(frozen=True)
class SensorChecks:
    """Per window: outcome code (index into OUTCOMES) and the figures that decided it."""

    outcome: np.ndarray  # int8 [k]
    rms: np.ndarray  # float32 [k]: standard deviation, float32, summed in sample order
    at_extreme: np.ndarray  # int32 [k]: samples exactly at a piled-up max or min (or at/over the rail, if more)
    longest_run: np.ndarray  # int32 [k]: longest run of one value strictly inside the range
    stuck_pairs: np.ndarray  # int32 [k]: consecutive equal pairs strictly inside the range

    def names(self) -> list[str]:
        return [OUTCOMES[int(o)] for o in self.outcome]


def _longest_runs(eq: np.ndarray) -> np.ndarray:
    """Longest run of equal samples per row, from the flags of equal consecutive pairs."""
    out = np.zeros(len(eq), np.int32)
    for i in np.flatnonzero(eq.any(axis=1)):  # rare on a live sensor: a loop is fine
        e = np.concatenate(([0], eq[i].astype(np.int8), [0]))
        d = np.diff(e)
        out[i] = int((np.flatnonzero(d == -1) - np.flatnonzero(d == 1)).max()) + 1
    return out


def _check_block(w: np.ndarray, lim: SensorLimits) -> SensorChecks:
    k, n = w.shape
    f32 = np.float32
    finite = np.isfinite(w).all(axis=1)
    x = np.where(finite[:, None], w, f32(0.0))
    mean = np.cumsum(x, axis=1, dtype=f32)[:, -1] / f32(n)  # cumsum: strictly in sample order, as C
    d = x - mean[:, None]
    ss = np.cumsum(d * d, axis=1, dtype=f32)[:, -1]
    rms = np.sqrt(ss / f32(n)).astype(f32)
    hi, lo = x.max(axis=1), x.min(axis=1)
    mid = (x > lo[:, None]) & (x < hi[:, None])
    inner = mid.any(axis=1)
    hi2 = np.where(mid, x, -np.inf).max(axis=1)  # the next values inside the range (none: -inf/+inf)
    lo2 = np.where(mid, x, np.inf).min(axis=1)
    at_hi, at_lo = (x == hi[:, None]).sum(axis=1), (x == lo[:, None]).sum(axis=1)
    at_hi2 = np.where(inner, (x == hi2[:, None]).sum(axis=1), 0).astype(np.int64)
    at_lo2 = np.where(inner, (x == lo2[:, None]).sum(axis=1), 0).astype(np.int64)
    at_ext = (np.where(at_hi > SAT_PILE * at_hi2, at_hi, 0) + np.where(at_lo > SAT_PILE * at_lo2, at_lo, 0))
    if lim.rail > 0:
        at_ext = np.maximum(at_ext, (np.abs(x) >= f32(lim.rail)).sum(axis=1))
    eq = (x[:, 1:] == x[:, :-1]) & mid[:, 1:]
    stuck = eq.sum(axis=1).astype(np.int32)
    runs = _longest_runs(eq)
    limit = f32(lim.dead_rms) * f32(lim.dead_rms) * f32(n)
    dead = (ss < limit) | (stuck.astype(np.int64) * 2 >= n - 1)
    sat = (at_ext >= SAT_MIN) & (at_ext.astype(np.int64) * SAT_DEN >= n)
    drop = (runs >= DROPOUT_RUN) | ~finite
    out = np.where(~finite, DROPOUT, np.where(dead, DEAD, np.where(sat, SATURATED, np.where(drop, DROPOUT, OK))))
    zero = lambda a: np.where(finite, a, 0).astype(a.dtype)  # noqa: E731  (a non-finite window: no figures)
    return SensorChecks(out.astype(np.int8), zero(rms), zero(at_ext.astype(np.int32)), zero(runs), zero(stuck))


def check_windows(windows: np.ndarray, limits: SensorLimits = SensorLimits()) -> SensorChecks:
    """Check every window [k, n] (float32 samples in the sensor's units; n >= 2)."""
    w = np.asarray(windows, np.float32)
    if w.ndim != 2 or w.shape[1] < 2:
        raise ValueError(f"windows must be [k, n] with n >= 2, got shape {w.shape}")
    if not len(w):
        z = np.zeros(0, np.int32)
        return SensorChecks(np.zeros(0, np.int8), np.zeros(0, np.float32), z, z, z)
    parts = [_check_block(w[a:a + BLOCK], limits) for a in range(0, len(w), BLOCK)]
    return SensorChecks(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("outcome", "rms", "at_extreme", "longest_run", "stuck_pairs")))


def check_window(window: np.ndarray, limits: SensorLimits = SensorLimits()) -> str:
    """The outcome name of one window: "" (sane) or a sensor fault (OUTCOMES)."""
    return check_windows(np.asarray(window, np.float32)[None, :], limits).names()[0]


__all__ = ["DEAD", "DEAD_RMS", "DROPOUT", "DROPOUT_RUN", "OK", "OUTCOMES", "SATURATED", "SAT_DEN", "SAT_MIN", "SAT_PILE",
           "SensorChecks", "SensorLimits", "check_window", "check_windows"]
