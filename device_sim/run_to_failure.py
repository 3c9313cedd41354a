"""Run-to-failure machines: from install to failure over simulated days, as snapshot recordings.

Each machine, after install:
- runs in: its structural noise starts up to 40 % higher and settles over a few hours;
- breathes with the temperature: a daily swing of its housing resonance (+-2 %) and noise (+-10 %);
- changes load every few hours (its speed follows through the motor's slip);
- develops a fault at a random onset that grows exponentially until failure (severity 1 at the
  failure time; the classic shape of a spall that widens faster as it grows). Machines take `kinds`
  in turn: the three bearing defects by default (sized by `peak_g`), or shaft faults (unbalance,
  misalignment, looseness, bent shaft; sized by `peak_mm_s`, the velocity added at failure);
- optionally suffers a sensor fault from a random time on (`sensor_fault`, one of SENSOR_FAULTS):
  a loose mount (the mount's transmissibility changes: high frequencies amplified by a factor that
  wanders from snapshot to snapshot, and rattling impacts at the mount's own resonance), a
  saturating sensor (clipped at a level below the healthy signal's peaks), a dead channel (flat at
  a constant, or only the sensor's own noise floor) or intermittent dropouts (stretches of zeros,
  sometimes a whole snapshot). The machine underneath is the same as without the sensor fault (its
  random draws come after the machine's), so a run with and one without compare window for window.

A node that wakes to measure takes one short snapshot every `every_s` seconds; the recordings are
in the replay format (`snaps`, `t_s`, `fs`, `rpm`, `machine`), with the truth beside them
(`severity`, `onset_s`, `failure_s`, `label`; `sensor_fault` ("" for none) and `sensor_onset_s`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device_sim.physics import (
    BEARING_FAULTS,
    FAULT_LABELS,
    Fault,
    is_shaft_fault,
    make_machines,
    synthesize,
    vary_machines,
)


@dataclass(frozen=True)
class RunToFailure:
    name: str
    fs: float
    snaps: np.ndarray  # [n, m] float32, g
    t_s: np.ndarray  # [n] snapshot times, seconds since install
    rpm: np.ndarray  # [n]
    severity: np.ndarray  # [n] true defect severity 0..1 (0 before onset)
    onset_s: float
    failure_s: float
    fault: str
    sensor_fault: str = ""  # "" or one of SENSOR_FAULTS
    sensor_onset_s: float = float("inf")  # when the sensor fault starts (inf: never)

    def npz_fields(self) -> dict[str, np.ndarray]:
        return {"snaps": self.snaps, "t_s": self.t_s, "fs": np.float64(self.fs), "rpm": self.rpm,
                "machine": np.str_(self.name), "severity": self.severity,
                "onset_s": np.float64(self.onset_s), "failure_s": np.float64(self.failure_s),
                "label": np.str_(self.fault), "sensor_fault": np.str_(self.sensor_fault),
                "sensor_onset_s": np.float64(self.sensor_onset_s)}


SENSOR_FAULTS = ("loose_mount", "saturating", "dead_flat", "dead_noise", "dropouts")
SENSOR_NOISE_G = (0.002, 0.006)  # a MEMS sensor's own noise floor (IIS3DWB: ~6 mg RMS over its band)


def _rattle(m: int, fs: float, shaft_hz: float, rate: float, amp: float, f_mount: float,
            rng: np.random.Generator) -> np.ndarray:
    """Rattling impacts of a loose mount: about `rate` per revolution, each a ringing of the
    mount's resonance `f_mount` decaying in ~1 ms, random in time and size."""
    out = np.zeros(m)
    n_imp = rng.poisson(rate * shaft_hz * m / fs)
    ring = np.arange(int(0.006 * fs)) / fs
    kernel = np.sin(2 * np.pi * f_mount * ring) * np.exp(-ring / 0.001)
    for at in rng.integers(0, m, n_imp):
        seg = kernel[:m - at] * amp * rng.uniform(0.3, 1.0)
        out[at:at + len(seg)] += seg
    return out


def apply_sensor_fault(snaps: np.ndarray, t_s: np.ndarray, rpm: np.ndarray, fs: float, kind: str, onset_s: float,
                       rng: np.random.Generator) -> np.ndarray:
    """The snapshots [n, m] as a faulty sensor reads them from `onset_s` on (a new array)."""
    if kind not in SENSOR_FAULTS:
        raise ValueError(f"unknown sensor fault {kind!r} (one of {', '.join(SENSOR_FAULTS)})")
    x = np.array(snaps, np.float32)
    hit = np.flatnonzero(t_s >= onset_s)
    before = snaps[t_s < onset_s] if (t_s < onset_s).any() else snaps[:1]
    healthy_std = float(np.median(before.std(axis=1)))
    m = x.shape[1]
    if kind == "loose_mount":
        f = np.fft.rfftfreq(m, 1 / fs)
        f_cut, f_mount = float(rng.uniform(800, 1500)), float(rng.uniform(2000, 4500))
        gain, rate = float(rng.uniform(1.5, 3.0)), float(rng.uniform(0.3, 1.5))
        for i in hit:  # non-stationary: how much the mount amplifies and rattles changes every snapshot
            g = gain * float(rng.lognormal(0.0, 0.4))
            shape = 1 + (g - 1) / (1 + (f_cut / np.maximum(f, 1.0)) ** 4)  # amplified above f_cut
            y = np.fft.irfft(np.fft.rfft(x[i]) * shape, m)
            on = rng.random() < 0.8  # some snapshots do not rattle
            amp = healthy_std * float(rng.uniform(2.0, 6.0))
            x[i] = y + (_rattle(m, fs, float(rpm[i]) / 60, rate, amp, f_mount, rng) if on else 0.0)
    elif kind == "saturating":
        level = float(rng.uniform(0.5, 0.8)) * float(np.median(np.abs(before).max(axis=1)))
        x[hit] = np.clip(x[hit], -level, level)
    elif kind == "dead_flat":
        x[hit] = np.float32(rng.uniform(-0.5, 0.5))  # stuck at an offset
    elif kind == "dead_noise":
        x[hit] = rng.normal(0.0, rng.uniform(*SENSOR_NOISE_G), (len(hit), m))
    else:  # dropouts: a stretch of zeros in some snapshots, now and then the whole snapshot
        p = float(rng.uniform(0.2, 0.6))
        for i in hit:
            if rng.random() < p:
                if rng.random() < 0.1:
                    x[i] = 0.0
                else:
                    ln = int(rng.uniform(0.005, 0.06) * fs)
                    a = int(rng.integers(0, max(1, m - ln)))
                    x[i, a:a + ln] = 0.0
    return x.astype(np.float32)


def exponential_severity(t: np.ndarray, onset: float, failure: float, growth: float = 4.0) -> np.ndarray:
    """0 before onset, (exp(g x) - 1) / (exp(g) - 1) with x the share of the fault's duration."""
    x = np.clip((t - onset) / (failure - onset), 0.0, 1.0)
    return np.where(t < onset, 0.0, np.expm1(growth * x) / np.expm1(growth))


def make_run(i: int, rng: np.random.Generator, *, fs: float = 12000.0, snapshot: int = 1200,
             every_s: float = 600.0, onset_days: tuple[float, float] = (1.5, 4.0),
             fault_days: tuple[float, float] = (0.5, 2.5), peak_g: tuple[float, float] = (3.0, 5.0),
             peak_mm_s: tuple[float, float] = (7.0, 11.0),
             kinds: tuple[Fault, ...] = BEARING_FAULTS, sensor_fault: str | None = None,
             sensor_at: tuple[float, float] = (0.2, 0.9), sensor_onset_s: float | None = None) -> RunToFailure:
    """One machine from install to failure; `sensor_fault` adds a sensor fault from `sensor_onset_s`
    (default: a random share `sensor_at` of the time to failure)."""
    base = vary_machines(make_machines(1, rng, bearing=None), rng)
    onset = float(rng.uniform(*onset_days)) * 86400
    failure = onset + float(rng.uniform(*fault_days)) * 86400
    t = np.arange(0.0, failure, every_s)
    n = len(t)
    kind = kinds[i % len(kinds)]
    sev = exponential_severity(t, onset, failure)
    run_in = 1.0 + 0.4 * np.exp(-t / float(rng.uniform(2, 6) * 3600))
    day = np.sin(2 * np.pi * t / 86400 + rng.uniform(0, 2 * np.pi))
    loads = rng.uniform(0.3, 0.9, int(t[-1] // (4 * 3600)) + 2)
    load = loads[(t // (4 * 3600)).astype(int)]
    rows = base.take(np.zeros(n, int))
    u = float(rng.uniform(0.0, 1.0))  # one draw sizes either kind (same value as uniform(lo, hi))
    if is_shaft_fault(kind):
        size = {"fault_mm_s": (peak_mm_s[0] + (peak_mm_s[1] - peak_mm_s[0]) * u) * sev + 1e-9,
                "fault_g": np.zeros(n)}
    else:
        size = {"fault_g": (peak_g[0] + (peak_g[1] - peak_g[0]) * u) * sev + 1e-9, "fault_mm_s": np.zeros(n)}
    rows = rows.with_(structural_g=rows.structural_g * run_in, noise_g=rows.noise_g * (1 + 0.1 * day),
                      resonance_hz=rows.resonance_hz * (1 + 0.02 * day), load=load,
                      fault=np.full(n, int(kind)), fault_onset_s=np.full(n, -1.0), fault_ramp_s=np.full(n, 1e-6),
                      **size)
    snaps = np.empty((n, snapshot), np.float32)
    for a in range(0, n, 256):  # bounded memory
        snaps[a:a + 256] = synthesize(rows.take(np.arange(a, min(n, a + 256))), t[a:a + 256], snapshot, fs, rng)
    rpm = rows.shaft_hz(t) * 60.0
    if not sensor_fault:
        return RunToFailure(f"rtf-{i:03d}", fs, snaps, t, rpm, sev, onset, failure, FAULT_LABELS[kind])
    s_on = float(rng.uniform(*sensor_at)) * failure if sensor_onset_s is None else float(sensor_onset_s)
    snaps = apply_sensor_fault(snaps, t, rpm, fs, sensor_fault, s_on, rng)
    return RunToFailure(f"rtf-{i:03d}", fs, snaps, t, rpm, sev, onset, failure, FAULT_LABELS[kind], sensor_fault, s_on)


def write_runs(folder: str | Path, n: int, seed: int = 0, **kw) -> list[Path]:
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        r = make_run(i, rng, **kw)
        p = d / f"{r.name}.npz"
        np.savez_compressed(p, **r.npz_fields())
        paths.append(p)
    return paths


__all__ = ["SENSOR_FAULTS", "RunToFailure", "apply_sensor_fault", "exponential_severity", "make_run", "write_runs"]
