"""Run-to-failure machines: from install to failure over simulated days, as snapshot recordings.

Each machine, after install:
- runs in: its structural noise starts up to 40 % higher and settles over a few hours;
- breathes with the temperature: a daily swing of its housing resonance (+-2 %) and noise (+-10 %);
- changes load every few hours (its speed follows through the motor's slip);
- develops a fault at a random onset that grows exponentially until failure (severity 1 at the
  failure time; the classic shape of a spall that widens faster as it grows). Machines take `kinds`
  in turn: the three bearing defects by default (sized by `peak_g`), or shaft faults (unbalance,
  misalignment, looseness, bent shaft; sized by `peak_mm_s`, the velocity added at failure).

A node that wakes to measure takes one short snapshot every `every_s` seconds; the recordings are
in the replay format (`snaps`, `t_s`, `fs`, `rpm`, `machine`), with the truth beside them.
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

    def npz_fields(self) -> dict[str, np.ndarray]:
        return {"snaps": self.snaps, "t_s": self.t_s, "fs": np.float64(self.fs), "rpm": self.rpm,
                "machine": np.str_(self.name), "severity": self.severity,
                "onset_s": np.float64(self.onset_s), "failure_s": np.float64(self.failure_s),
                "label": np.str_(self.fault)}


def exponential_severity(t: np.ndarray, onset: float, failure: float, growth: float = 4.0) -> np.ndarray:
    """0 before onset, (exp(g x) - 1) / (exp(g) - 1) with x the share of the fault's duration."""
    x = np.clip((t - onset) / (failure - onset), 0.0, 1.0)
    return np.where(t < onset, 0.0, np.expm1(growth * x) / np.expm1(growth))


def make_run(i: int, rng: np.random.Generator, *, fs: float = 12000.0, snapshot: int = 1200,
             every_s: float = 600.0, onset_days: tuple[float, float] = (1.5, 4.0),
             fault_days: tuple[float, float] = (0.5, 2.5), peak_g: tuple[float, float] = (3.0, 5.0),
             peak_mm_s: tuple[float, float] = (7.0, 11.0),
             kinds: tuple[Fault, ...] = BEARING_FAULTS) -> RunToFailure:
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
    return RunToFailure(f"rtf-{i:03d}", fs, snaps, t, rpm, sev, onset, failure, FAULT_LABELS[kind])


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


__all__ = ["RunToFailure", "exponential_severity", "make_run", "write_runs"]
