"""Simulated recordings in the `shared/data` `.npz` format (keys signal, fs, label, rpm, ...).

So the fleet model can be trained on the simulator's healthy machines with the same
toolchain as on CWRU: `write_dataset(folder, ...)` then `edgefleet model train --data folder`.
Faulty recordings (fully developed faults) are written too, for the evaluation step: labelled
with the fault's name (`FAULT_LABELS`: outer_race, inner_race, ball, unbalance, misalignment,
looseness, bent_shaft) and sized in `fault_size_in` as the impact in g (bearing faults, e.g.
`0.812g`) or the velocity added in mm/s RMS (shaft faults, e.g. `6.20mm/s`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device_sim.physics import (
    BEARING_FAULTS,
    FAULT_LABELS,
    Fault,
    Machines,
    at_speed,
    is_shaft_fault,
    make_machines,
    synthesize,
    vary_machines,
    with_faults,
)
from device_sim.schedule import Schedule

CHUNK_S = 0.5  # synthesize long recordings in pieces (bounded memory, smooth speed wander)


@dataclass(frozen=True)
class SimRecording:
    """One recording, keyed like the CWRU `.npz` files."""

    name: str
    signal: np.ndarray  # float32, g
    fs: float
    label: str
    rpm: float
    load: float
    fault_size_in: str
    machine: int
    seed: int
    machine_name: str = ""  # written as `machine` when set: which recordings share one machine

    def npz_fields(self) -> dict[str, np.ndarray]:
        extra = {"machine": np.str_(self.machine_name)} if self.machine_name else {}
        return {**extra,
            "signal": self.signal.astype(np.float32), "fs": np.float64(self.fs),
            "label": np.str_(self.label), "rpm": np.float64(self.rpm),
            "load_hp": np.str_(f"{self.load:.2f}"), "fault_size_in": np.str_(self.fault_size_in),
            "fault_location": np.str_(self.label.replace("_", " ")), "channel": np.str_("SIM"),
            "units": np.str_("g"), "fs_original": np.float64(self.fs),
            "source": np.str_(f"device_sim seed={self.seed} machine={self.machine}"),
            "dataset": np.str_("device_sim"),
        }


def _record(m: Machines, row: int, seconds: float, fs: float, rng: np.random.Generator,
            t0: float) -> np.ndarray:
    """A continuous recording of one machine (chunks share the clock, so lines stay coherent)."""
    one = m.take([row])
    total = int(round(seconds * fs))
    step = int(CHUNK_S * fs)
    parts = [synthesize(one, t0 + i / fs, min(step, total - i), fs, rng)[0]
             for i in range(0, total, step)]
    return np.concatenate(parts)


def normal_windows(n_machines: int, seconds: float, fs: float = 12000.0, seed: int = 0, *,
                   bearing: str | None = None) -> list[SimRecording]:
    """`n_machines` healthy machines (each its own speed, load, imbalance, resonance, noise),
    one continuous `seconds`-long recording each at rate `fs`."""
    rng = np.random.default_rng(seed)
    m = make_machines(n_machines, rng, bearing=bearing)
    out = []
    for i in range(n_machines):
        sig = _record(m, i, seconds, fs, rng, t0=float(rng.uniform(0, 1000)))
        out.append(SimRecording(f"sim_normal_{int(fs)}_{seed}_{i:03d}", sig, fs, "normal",
                                float(m.shaft_hz(0.0)[i] * 60), float(m.load[i]), "0.000", i, seed))
    return out


def fault_size(kind: Fault, peak_g: float, peak_mm_s: float) -> str:
    """The `fault_size_in` text of a recording: impact in g (bearing) or velocity added (shaft)."""
    return f"{peak_mm_s:.2f}mm/s" if is_shaft_fault(kind) else f"{peak_g:.3f}g"


def _sizes(u: np.ndarray, peak_g: tuple[float, float], peak_mm_s: tuple[float, float]):
    """Both units' sizes from one uniform draw (as uniform(lo, hi) would give), so adding shaft
    kinds leaves a seed's other recordings as they were."""
    return peak_g[0] + (peak_g[1] - peak_g[0]) * u, peak_mm_s[0] + (peak_mm_s[1] - peak_mm_s[0]) * u


def faulty_windows(n_machines: int, seconds: float, fs: float = 12000.0, seed: int = 1, *,
                   kinds: tuple[Fault, ...] = BEARING_FAULTS,
                   peak_g: tuple[float, float] = (0.3, 1.5),
                   peak_mm_s: tuple[float, float] = (5.0, 9.0)) -> list[SimRecording]:
    """Machines with a fully developed fault (kinds cycled), for evaluating a detector. Bearing
    faults are sized by `peak_g` (impact, g), shaft faults by `peak_mm_s` (velocity added, mm/s
    RMS; 5-9 puts the machine in ISO 20816 zone C/D)."""
    rng = np.random.default_rng(seed)
    m = make_machines(n_machines, rng, bearing=None)
    kind = np.array([kinds[i % len(kinds)] for i in range(n_machines)], np.int64)
    g, mm_s = _sizes(rng.uniform(0.0, 1.0, n_machines), peak_g, peak_mm_s)
    m = with_faults(m, np.arange(n_machines), kind, onset_s=-1.0, ramp_s=1e-6, peak_g=g, peak_mm_s=mm_s)
    out = []
    for i in range(n_machines):
        sig = _record(m, i, seconds, fs, rng, t0=float(rng.uniform(0, 1000)))
        k = Fault(int(kind[i]))
        label = FAULT_LABELS[k]
        out.append(SimRecording(f"sim_{label}_{int(fs)}_{seed}_{i:03d}", sig, fs, label,
                                float(m.shaft_hz(0.0)[i] * 60), float(m.load[i]),
                                fault_size(k, g[i], mm_s[i]), i, seed))
    return out


def machine_recordings(n_machines: int, *, seed: int = 7, speeds: int = 3, normal_s: float = 12.0,
                       fault_s: float = 4.0, fs: float = 12000.0,
                       kinds: tuple[Fault, ...] = BEARING_FAULTS,
                       fault_g: tuple[float, float] = (0.15, 0.5),
                       fault_mm_s: tuple[float, float] = (1.0, 3.0)) -> list[SimRecording]:
    """Machines as a plant has them: each its own speed, load, sensor gain, resonance and noise,
    run at `speeds` operating points (its speed/load schedule). Per machine and operating point: a
    normal recording, and one recording per fault kind at a light severity (bearing: `fault_g`
    impact in g; shaft: `fault_mm_s` velocity added at the rated speed, mm/s RMS, about the size of
    the machine's own 0.5-2.4 mm/s). Every recording carries `machine` and its `rpm`, for
    `edgefleet model evaluate --commission` and training."""
    rng = np.random.default_rng(seed)
    m = vary_machines(make_machines(n_machines, rng, bearing=None), rng)
    sched = Schedule.stepped(n_machines, rng, speeds=speeds)
    out = []
    for i in range(n_machines):
        name = f"m{seed:02d}-{i:03d}"
        for s in range(speeds):
            one = at_speed(m.take([i]), sched.factors[i, s], sched.loads[i, s])
            rpm = float(one.shaft_hz(0.0)[0] * 60)
            t0 = float(rng.uniform(0, 1000))
            sig = _record(one, 0, normal_s, fs, rng, t0)
            out.append(SimRecording(f"{name}_s{s}_normal", sig, fs, "normal", rpm, float(one.load[0]), "0.000",
                                    i, seed, name))
            for kind in kinds:
                g, mm_s = (float(v) for v in _sizes(rng.uniform(0.0, 1.0), fault_g, fault_mm_s))
                bad = with_faults(one, [0], kind, onset_s=-1.0, ramp_s=1e-6, peak_g=g, peak_mm_s=mm_s)
                label = FAULT_LABELS[kind]
                sig = _record(bad, 0, fault_s, fs, rng, t0 + normal_s)
                out.append(SimRecording(f"{name}_s{s}_{label}", sig, fs, label, rpm, float(one.load[0]),
                                        fault_size(kind, g, mm_s), i, seed, name))
    return out


def write_recordings(folder: str | Path, recs: list[SimRecording]) -> list[Path]:
    """Each recording as `<name>.npz` in `folder` (created if missing)."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in recs:
        p = d / f"{r.name}.npz"
        np.savez_compressed(p, **r.npz_fields())
        paths.append(p)
    return paths


def write_dataset(folder: str | Path, *, n_normal: int = 20, n_faulty: int = 9,
                  seconds: float = 10.0, fs: float | tuple[float, ...] = 12000.0,
                  seed: int = 0, kinds: tuple[Fault, ...] = BEARING_FAULTS) -> list[Path]:
    """Write healthy and faulty recordings as `.npz` files (the shared/data format) into `folder`.

    `fs` may be several sensor rates: the machines are split across them (each rate its own
    seed), so a model trained on the folder sees every rate the fleet uses. The faulty machines
    take `kinds` in turn (default the bearing faults; `SHAFT_FAULTS` or both for the others).
    """
    rates = (fs,) if isinstance(fs, (int, float)) else tuple(fs)
    recs: list[SimRecording] = []
    for j, rate in enumerate(rates):
        nn = n_normal // len(rates) + (j < n_normal % len(rates))
        nf = n_faulty // len(rates) + (j < n_faulty % len(rates))
        s = seed + 100 * j
        recs += normal_windows(nn, seconds, float(rate), s) if nn else []
        recs += faulty_windows(nf, seconds, float(rate), s + 1, kinds=kinds) if nf else []
    return write_recordings(folder, recs)


__all__ = ["SimRecording", "fault_size", "faulty_windows", "machine_recordings", "normal_windows",
           "write_dataset", "write_recordings"]
