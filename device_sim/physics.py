"""Vibration physics of rotating machines with rolling-element bearings.

Pure numpy, vectorised over many machines (a struct of arrays, one row per
machine). Nothing here does I/O or keeps state between calls: the caller owns
time, the random generator and the machine table.

What a window holds, per machine (in g, at the sensor's sampling rate):

* shaft-synchronous vibration: residual unbalance at 1x, misalignment at 2x and 3x,
  and a decaying series of higher harmonics; the shaft speed drops with load
  (induction-motor slip) and wanders slowly. The 1x velocity grows with speed squared
  (the unbalance force m e w^2), the others' velocity with load; amplitudes are stated
  at the machine's rated speed (`rated_hz`), where a healthy machine's overall velocity
  (10-1,000 Hz) is 0.5-2.4 mm/s RMS, in zones A/B of ISO 20816-3 (see `make_machines`);
* electrical vibration at twice the mains frequency;
* structural noise: white noise coloured by the housing's resonance (AR(2));
* broadband sensor noise;
* a localised bearing defect, if present, as a train of impacts at its defect
  frequency (BPFO, BPFI or 2xBSF) with random slip jitter, each impact ringing
  the structural resonance as a decaying sinusoid; impacts are amplitude
  modulated at the shaft speed (inner race) or the cage speed (ball) as the
  defect passes through the load zone; its size is the impact amplitude in g;
* or a shaft fault, as lines locked to the shaft angle (`SHAFT_ORDERS`): unbalance
  (1x, growing with speed squared), misalignment (2x above 1x, with 3x and 4x), looseness
  (a rocking foot whose displacement is truncated at its seat: sub-harmonics 0.5x, 1.5x, ...
  and every half order to 10x) or
  a bent shaft (1x and 2x); its size is the velocity it adds, mm/s RMS;
* the fault grows over time: severity ramps from 0 at the fault onset to its
  maximum after the ramp time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import IntEnum

import numpy as np

G0 = 9.80665  # m/s^2 per g


class Fault(IntEnum):
    """Fault kinds. 1-3 are localised bearing defects (sized in g of impact), 4-7 shaft faults
    (sized in mm/s RMS of added velocity). The values are stable: recordings and reports keep them."""

    NONE = 0
    OUTER_RACE = 1
    INNER_RACE = 2
    BALL = 3
    UNBALANCE = 4
    MISALIGNMENT = 5
    LOOSENESS = 6
    BENT_SHAFT = 7


FAULT_LABELS = {Fault.NONE: "normal", Fault.OUTER_RACE: "outer_race",
                Fault.INNER_RACE: "inner_race", Fault.BALL: "ball",
                Fault.UNBALANCE: "unbalance", Fault.MISALIGNMENT: "misalignment",
                Fault.LOOSENESS: "looseness", Fault.BENT_SHAFT: "bent_shaft"}
BEARING_FAULTS = (Fault.OUTER_RACE, Fault.INNER_RACE, Fault.BALL)
SHAFT_FAULTS = (Fault.UNBALANCE, Fault.MISALIGNMENT, Fault.LOOSENESS, Fault.BENT_SHAFT)
SPEED_SQUARED_FAULTS = (Fault.UNBALANCE, Fault.BENT_SHAFT)  # a force m e w^2 (a bow is an eccentric mass)


def fault_from_label(text: str) -> Fault:
    """The Fault named by its label (`unbalance`, `outer_race`, ...; `-` for `_` and any case)."""
    key = text.strip().lower().replace("-", "_")
    for kind, label in FAULT_LABELS.items():
        if label == key:
            return kind
    raise ValueError(f"unknown fault {text!r}; one of {', '.join(FAULT_LABELS.values())}")


def is_shaft_fault(kind) -> np.ndarray:
    """True where `kind` (a Fault or an array of them) is a shaft fault, sized in mm/s."""
    return np.isin(np.asarray(kind), np.array(SHAFT_FAULTS, np.int64))


@dataclass(frozen=True)
class DefectFrequencies:
    """Bearing defect frequencies in Hz (arrays, one per machine)."""

    bpfo: np.ndarray  # ball pass frequency, outer race
    bpfi: np.ndarray  # ball pass frequency, inner race
    bsf: np.ndarray  # ball spin frequency
    ftf: np.ndarray  # fundamental train (cage) frequency


def defect_frequencies(shaft_hz, n_balls, ball_d, pitch_d, contact_deg=0.0) -> DefectFrequencies:
    """Kinematic defect frequencies of a bearing with a rotating inner race, stationary outer.

    `ball_d` and `pitch_d` in the same unit; every argument broadcasts.
    """
    fr = np.asarray(shaft_hz, np.float64)
    n = np.asarray(n_balls, np.float64)
    ratio = np.asarray(ball_d, np.float64) / np.asarray(pitch_d, np.float64)
    c = ratio * np.cos(np.deg2rad(np.asarray(contact_deg, np.float64)))
    return DefectFrequencies(
        bpfo=n * fr / 2.0 * (1.0 - c),
        bpfi=n * fr / 2.0 * (1.0 + c),
        bsf=fr / (2.0 * ratio) * (1.0 - c * c),
        ftf=fr / 2.0 * (1.0 - c),
    )


# SKF 6205-2RS JEM, the CWRU drive-end bearing: 9 balls, 7.94 mm balls on a 39.04 mm pitch.
SKF_6205 = dict(n_balls=9, ball_d=7.94, pitch_d=39.04, contact_deg=0.0)
# SKF 6203 (CWRU fan end) and a larger 6309 for variety across a plant.
SKF_6203 = dict(n_balls=8, ball_d=6.75, pitch_d=28.5, contact_deg=0.0)
SKF_6309 = dict(n_balls=8, ball_d=17.46, pitch_d=72.5, contact_deg=0.0)
BEARINGS = {"6205": SKF_6205, "6203": SKF_6203, "6309": SKF_6309}


@dataclass(frozen=True)
class Machines:
    """A table of machines, one row each (every field is a float64/int array of length n)."""

    rpm: np.ndarray  # synchronous-ish speed at no load, rev/min
    load: np.ndarray  # 0..1 of rated load
    slip: np.ndarray  # fractional speed drop at full load (0.04 -> 1797 -> 1725 rpm)
    wander: np.ndarray  # relative speed wander amplitude (slow sinusoid)
    wander_period_s: np.ndarray
    imbalance_g: np.ndarray  # 1x amplitude at the rated speed (velocity grows with speed^2)
    misalignment_g: np.ndarray  # 2x amplitude at the rated speed and half load (3x gets half)
    harmonics_g: np.ndarray  # 4x amplitude, same; higher ones decay by 1/h
    line_hz: np.ndarray  # mains frequency (50 or 60): vibration at 2x line
    line_g: np.ndarray
    structural_g: np.ndarray  # RMS of resonance-coloured noise
    noise_g: np.ndarray  # RMS of white sensor noise
    resonance_hz: np.ndarray  # structural resonance the impacts ring
    damping: np.ndarray  # damping ratio of that resonance
    n_balls: np.ndarray
    ball_d: np.ndarray
    pitch_d: np.ndarray
    contact_deg: np.ndarray
    fault: np.ndarray  # int, Fault
    fault_onset_s: np.ndarray  # severity starts growing here (simulation time)
    fault_ramp_s: np.ndarray  # time from onset to full severity
    fault_g: np.ndarray  # bearing faults: peak impact amplitude at full severity, g
    jitter: np.ndarray  # impact timing jitter, fraction of the impact period (slip)
    phase: np.ndarray  # per-machine phase offset of the shaft harmonics, rad
    # what the node reads per g of structure-borne vibration (bearing impacts, the housing's resonance,
    # noise): transmission path and mounting. The shaft lines (< 1 kHz, the housing moving as a rigid
    # body) reach the sensor unchanged, so the velocity it reads is the machine's.
    gain: np.ndarray
    rated_hz: np.ndarray  # shaft speed at the rated operating point: shaft-line amplitudes hold here
    fault_mm_s: np.ndarray  # shaft faults: velocity added at full severity (at rated speed), mm/s RMS

    def __len__(self) -> int:
        return int(self.rpm.shape[0])

    def take(self, idx) -> Machines:
        """The rows `idx` (index array or boolean mask) as a new table."""
        return Machines(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def with_(self, **changes) -> Machines:
        """A copy with whole columns replaced (e.g. a new load profile)."""
        return replace(self, **{k: np.asarray(v) for k, v in changes.items()})

    def shaft_hz(self, t_s=0.0) -> np.ndarray:
        """Shaft speed in Hz at time t: slip grows with load, plus a slow wander."""
        t = np.asarray(t_s, np.float64)
        base = self.rpm / 60.0 * (1.0 - self.slip * self.load)
        return base * (1.0 + self.wander * np.sin(2 * np.pi * t / self.wander_period_s + self.phase))

    def shaft_turns(self, t_s) -> np.ndarray:
        """Shaft revolutions since t=0: the integral of shaft_hz, so phase is continuous in time."""
        t = np.asarray(t_s, np.float64)
        base = self.rpm / 60.0 * (1.0 - self.slip * self.load)
        w = 2 * np.pi / self.wander_period_s
        return base * (t - self.wander / w * (np.cos(w * t + self.phase) - np.cos(self.phase)))

    def shaft_hz_rate(self, t_s) -> np.ndarray:
        """d(shaft_hz)/dt, Hz/s (the wander's slope)."""
        t = np.asarray(t_s, np.float64)
        base = self.rpm / 60.0 * (1.0 - self.slip * self.load)
        w = 2 * np.pi / self.wander_period_s
        return base * self.wander * w * np.cos(w * t + self.phase)

    def defects(self, t_s=0.0) -> DefectFrequencies:
        return defect_frequencies(self.shaft_hz(t_s), self.n_balls, self.ball_d, self.pitch_d,
                                  self.contact_deg)

    def speed_ratio(self, t_s=0.0) -> np.ndarray:
        """Shaft speed over the rated speed (what the speed-dependent amplitudes scale with)."""
        return self.shaft_hz(t_s) / self.rated_hz

    def severity(self, t_s) -> np.ndarray:
        """0..1 fault severity at time t (0 for healthy machines); linear ramp after onset."""
        t = np.asarray(t_s, np.float64)
        ramp = np.clip((t - self.fault_onset_s) / np.maximum(self.fault_ramp_s, 1e-9), 0.0, 1.0)
        return np.where(self.fault == Fault.NONE, 0.0, ramp)


# Healthy 1x (residual unbalance) velocity at the rated speed, mm/s RMS. With the other shaft lines
# (2x-6x, mains) and the noise, a healthy machine's overall velocity (10-1,000 Hz) at its rated
# speed is 0.5-2.4 mm/s: zones A and B of ISO 20816-3 for group 2 machines (15-300 kW; zone
# boundaries A/B 1.4, B/C 2.8, C/D 4.5 mm/s on rigid foundations; 2.3, 4.5, 7.1 on flexible ones).
# A machine commissioned new sits in A, one in unrestricted long-term operation in B; a plant
# holds both, so the range spans them and stops below the B/C boundary of rigid mounting.
HEALTHY_1X_MM_S = (0.45, 2.2)


def make_machines(n: int, rng: np.random.Generator, *, bearing: str | None = "6205",
                  rpm: float | tuple[float, float] = (1430.0, 1800.0),
                  load: float | tuple[float, float] = (0.2, 0.9)) -> Machines:
    """n healthy machines with plausible, individually different parameters.

    Ranges are chosen so a healthy machine has an RMS of roughly 0.05-0.15 g, like the
    CWRU normal baseline (0.07 g), and an overall velocity of 0.5-2.4 mm/s RMS (10-1,000 Hz,
    ISO 20816 zones A/B, `HEALTHY_1X_MM_S`) at its rated speed, which is the speed it is
    made at; each machine's normal vibration differs, which is why nodes calibrate their own
    threshold.
    """
    def pick(v):
        if isinstance(v, tuple):
            return rng.uniform(v[0], v[1], n)
        return np.full(n, float(v))

    if bearing is None:
        names = rng.choice(sorted(BEARINGS), n)
        geo = {k: np.array([BEARINGS[b][k] for b in names], np.float64) for k in SKF_6205}
    else:
        geo = {k: np.full(n, float(v)) for k, v in BEARINGS[bearing].items()}
    rpm_, load_ = pick(rpm), pick(load)
    slip = rng.uniform(0.02, 0.05, n)
    rated_hz = rpm_ / 60.0 * (1.0 - slip * load_)
    wander = rng.uniform(0.0005, 0.003, n)
    wander_period_s = rng.uniform(20.0, 120.0, n)
    v1 = rng.uniform(*HEALTHY_1X_MM_S, n)  # 1x velocity, mm/s RMS -> acceleration amplitude in g
    return Machines(
        rpm=rpm_, load=load_, slip=slip, wander=wander, wander_period_s=wander_period_s,
        imbalance_g=v1 * np.sqrt(2.0) * 2 * np.pi * rated_hz / 1000.0 / G0,
        misalignment_g=rng.uniform(0.005, 0.03, n),
        harmonics_g=rng.uniform(0.002, 0.01, n),
        line_hz=rng.choice([50.0, 60.0], n),
        line_g=rng.uniform(0.002, 0.01, n),
        structural_g=rng.uniform(0.02, 0.06, n),
        noise_g=rng.uniform(0.005, 0.015, n),
        resonance_hz=rng.uniform(2500.0, 4000.0, n),
        damping=rng.uniform(0.03, 0.08, n),
        n_balls=geo["n_balls"], ball_d=geo["ball_d"], pitch_d=geo["pitch_d"],
        contact_deg=geo["contact_deg"],
        fault=np.zeros(n, np.int64),
        fault_onset_s=np.full(n, np.inf),
        fault_ramp_s=np.ones(n),
        fault_g=np.zeros(n),
        jitter=rng.uniform(0.005, 0.02, n),
        phase=rng.uniform(0.0, 2 * np.pi, n),
        gain=np.ones(n),  # varied by `vary_machines` (drawn apart, so seeded plants stay as they were)
        rated_hz=rated_hz,
        fault_mm_s=np.zeros(n),
    )


def vary_machines(m: Machines, rng: np.random.Generator, *, gain: tuple[float, float] = (0.5, 2.0),
                  resonance_hz: tuple[float, float] = (1500.0, 5000.0),
                  noise_g: tuple[float, float] = (0.003, 0.03)) -> Machines:
    """Machines that differ as real ones do beyond speed and load: the structure-borne path and
    mounting (a factor on what the node reads of impacts, resonance and noise; not on the shaft
    lines, so the velocity stays the machine's), the housing resonance, and the noise floor."""
    n = len(m)
    return m.with_(gain=rng.uniform(*gain, n), resonance_hz=rng.uniform(*resonance_hz, n),
                   noise_g=rng.uniform(*noise_g, n))


def at_speed(m: Machines, rpm_factor, load) -> Machines:
    """The same machines run at another speed (factor on their nominal rpm) and load: one operating
    point of a speed/load schedule (a VFD setpoint, a production step)."""
    n = len(m)
    return m.with_(rpm=m.rpm * np.broadcast_to(np.asarray(rpm_factor, np.float64), (n,)),
                   load=np.broadcast_to(np.asarray(load, np.float64), (n,)).copy())


DEFAULT_SHAFT_MM_S = 7.1  # a shaft fault's added velocity when none is given: ISO 20816-3 C/D, flexible


def with_faults(m: Machines, idx, kind: Fault | np.ndarray, *, onset_s, ramp_s, peak_g=None,
                peak_mm_s=None) -> Machines:
    """A copy of `m` where rows `idx` develop a fault of `kind` from `onset_s` over `ramp_s`.

    Bearing faults are sized by `peak_g` (impact amplitude at full severity, g; required), shaft
    faults by `peak_mm_s` (velocity they add at full severity, mm/s RMS, at the rated speed for
    unbalance and bent shaft; default `DEFAULT_SHAFT_MM_S`). Each argument broadcasts over `idx`;
    with mixed kinds, each row takes the size in its own unit and ignores the other.
    """
    rows = np.arange(len(m))[idx]
    kinds = np.broadcast_to(np.asarray(kind, np.int64), rows.shape)
    shaft = is_shaft_fault(kinds)
    bearing = (kinds != Fault.NONE) & ~shaft
    if np.any(bearing) and peak_g is None:
        raise ValueError("bearing faults need peak_g (impact amplitude in g at full severity)")
    g = np.broadcast_to(np.asarray(0.0 if peak_g is None else peak_g, np.float64), rows.shape)
    mm_s = np.broadcast_to(np.asarray(DEFAULT_SHAFT_MM_S if peak_mm_s is None else peak_mm_s,
                                      np.float64), rows.shape)
    cols = {name: getattr(m, name).copy() for name in ("fault", "fault_onset_s", "fault_ramp_s",
                                                       "fault_g", "fault_mm_s")}
    cols["fault"][rows] = kinds
    cols["fault_onset_s"][rows] = onset_s
    cols["fault_ramp_s"][rows] = ramp_s
    cols["fault_g"][rows] = np.where(bearing, g, 0.0)
    cols["fault_mm_s"][rows] = np.where(shaft, mm_s, 0.0)
    return replace(m, **cols)


def impact_rate(m: Machines, t_s) -> np.ndarray:
    """Impacts per second of each machine's defect (0 when healthy)."""
    d = m.defects(t_s)
    rate = np.select([m.fault == Fault.OUTER_RACE, m.fault == Fault.INNER_RACE, m.fault == Fault.BALL],
                     [d.bpfo, d.bpfi, 2.0 * d.bsf], 0.0)
    return rate


N_HARMONICS = 6


def _harmonics(m: Machines, t_start: np.ndarray, n_samples: int, fs: float) -> np.ndarray:
    """Shaft-synchronous (1x..6x) and electrical (2x line) lines, [n, N] float32.

    sin(h*theta) by the Chebyshev recurrence (one sin and one cos per sample), in place and
    in float32: the phase at the window start is reduced mod 2*pi in float64 first, so float32
    keeps ~1e-5 rad over any window the features accept.
    """
    fr = m.shaft_hz(t_start)
    fdot = m.shaft_hz_rate(t_start)
    tau = np.arange(n_samples) / fs
    t = tau.astype(np.float32)
    # shaft angle = 2*pi * (turns at the window start + f*tau + f'*tau^2/2): continuous across
    # windows and chunks as the speed wanders (third-order error, < 0.01 rad over 0.5 s)
    phase0 = np.mod(2 * np.pi * m.shaft_turns(t_start) + m.phase, 2 * np.pi)
    theta = (2 * np.pi * fr).astype(np.float32)[:, None] * t[None, :]
    theta += (np.pi * fdot).astype(np.float32)[:, None] * (tau * tau).astype(np.float32)[None, :]
    theta += phase0.astype(np.float32)[:, None]
    s_cur = np.sin(theta)
    two_c = np.cos(theta, out=theta)
    two_c *= 2.0
    ratio = fr / m.rated_hz
    # residual unbalance: force m e w^2, velocity ~ speed^2, acceleration ~ speed^3; the other
    # lines' forces grow with load (torque), their velocity held at a given load (acceleration ~ speed)
    scale = (0.5 + m.load) * ratio
    amps = [m.imbalance_g * ratio ** 3, m.misalignment_g * scale, 0.5 * m.misalignment_g * scale]
    amps += [m.harmonics_g * scale * 4.0 / h for h in range(4, N_HARMONICS + 1)]
    out = s_cur * amps[0].astype(np.float32)[:, None]
    s_prev = np.zeros_like(s_cur)
    s_next = np.empty_like(s_cur)
    for a in amps[1:]:
        np.multiply(two_c, s_cur, out=s_next)  # s_{h+1} = 2cos(theta) s_h - s_{h-1}
        s_next -= s_prev
        s_prev, s_cur, s_next = s_cur, s_next, s_prev
        out += a.astype(np.float32)[:, None] * s_cur
    line_phase = np.mod(4 * np.pi * m.line_hz * t_start + 2 * m.phase, 2 * np.pi)
    line = (4 * np.pi * m.line_hz).astype(np.float32)[:, None] * t[None, :]
    line += line_phase.astype(np.float32)[:, None]
    np.sin(line, out=line)
    line *= m.line_g.astype(np.float32)[:, None]
    out += line
    return out


MAX_HALF_ORDER = 20  # shaft-fault lines at k/2 x shaft speed, k = 1..20 (0.5x to 10x)


def _looseness_orders() -> np.ndarray:
    """Half-order phasors of structural looseness, from its mechanism rather than a list of lines.

    A loose foot or bearing cap rocks (1x plus a 0.5x component: it lifts higher on alternate
    turns) and can lift off its seat but not sink into it: the displacement is truncated at the
    seat. Each landing is a kink in displacement, a jump in velocity (an impact), so the
    acceleration keeps its harmonics out to 10x at every half order and the velocity falls off
    only ~1/order (0.5x 0.39, 1.5x 0.47, 2x 0.69, 2.5x 0.20, 3.5x 0.30 of the 1x). The spectrum is
    cut at 10x (band-limited: no aliasing at any sensor rate).
    """
    n = 4096
    psi = 2 * np.pi * np.arange(n) / n  # half the shaft angle: one period = two turns
    x = np.maximum(np.sin(2 * psi) + 0.5 * np.sin(psi + 0.6), 0.0)
    k = np.arange(1, MAX_HALF_ORDER + 1)
    disp = np.fft.rfft(x)[k] * (2.0 / n)  # x = sum Re(disp_k e^{j k psi})
    # acceleration ~ -(k w)^2 disp_k e^{j k psi}; as |.| sin(k psi + phi): phi = angle(disp) - pi/2
    vel = k * np.abs(disp)
    phi = np.angle(disp) - np.pi / 2
    phi = phi - k * phi[1] / 2  # shift the waveform so its 1x is in phase with the machine's own 1x
    return vel * np.exp(1j * phi)


def _orders(lines: dict[float, float]) -> np.ndarray:
    out = np.zeros(MAX_HALF_ORDER, np.complex128)
    for order, v in lines.items():
        out[int(round(2 * order)) - 1] = v
    return out


def _unit_rms(p: np.ndarray) -> np.ndarray:
    return p / np.sqrt(np.sum(np.abs(p) ** 2))


# Per shaft fault: velocity phasors (mm/s RMS, total 1) at half orders k/2 x shaft speed, index k-1;
# the phase is that of the acceleration line sin(k psi + phi) against the shaft angle (2 psi), so
# every line is phase-locked to the shaft. Unbalance, misalignment and bent shaft add in phase with
# the machine's own 1x-4x lines (a growing fault never first cancels them).
SHAFT_ORDERS = {
    Fault.UNBALANCE: _unit_rms(_orders({1.0: 1.0})),  # a heavy spot: pure 1x, radial
    # angular and parallel misalignment: 2x above 1x, some 3x and 4x (axially the 2x would be larger
    # still; the node reads one radial axis)
    Fault.MISALIGNMENT: _unit_rms(_orders({1.0: 0.5, 2.0: 1.0, 3.0: 0.4, 4.0: 0.15})),
    Fault.LOOSENESS: _unit_rms(_looseness_orders()),
    Fault.BENT_SHAFT: _unit_rms(_orders({1.0: 1.0, 2.0: 0.6})),  # 1x from the bow, 2x from its stiffness
}


def shaft_fault_velocity(m: Machines, t_s) -> np.ndarray:
    """Velocity each machine's shaft fault adds at time t, mm/s RMS (0 for healthy machines and
    bearing faults): its size x severity, x (speed / rated speed)^2 for unbalance and bent shaft."""
    t = np.asarray(t_s, np.float64)
    speed = np.where(np.isin(m.fault, np.array(SPEED_SQUARED_FAULTS, np.int64)), m.speed_ratio(t) ** 2, 1.0)
    return np.where(is_shaft_fault(m.fault), m.fault_mm_s * m.severity(t) * speed, 0.0)


def _shaft_faults(m: Machines, t_start: np.ndarray, n_samples: int, fs: float, out: np.ndarray) -> None:
    """Add each machine's shaft-fault lines (g) to `out` [n, N]; rows without one are left alone.

    sum_k |A_k| sin(k psi + phi_k) = Im(sum_k A_k z^k), z = e^{j psi}, by Horner's rule (one complex
    multiply-add per half order and sample), psi half the shaft angle (continuous, as in _harmonics).
    """
    v = shaft_fault_velocity(m, t_start + 0.5 * n_samples / fs)
    rows = np.flatnonzero(v > 0)
    if rows.size == 0:
        return
    fr = m.shaft_hz(t_start)[rows]
    fdot = m.shaft_hz_rate(t_start)[rows]
    psi0 = np.mod(np.pi * m.shaft_turns(t_start)[rows] + 0.5 * m.phase[rows], 2 * np.pi)
    tau = np.arange(n_samples) / fs
    psi = psi0[:, None] + np.pi * fr[:, None] * tau + 0.5 * np.pi * fdot[:, None] * tau * tau
    z = np.exp(1j * psi).astype(np.complex64)  # angle in float64; the lines in single precision, like _harmonics
    table = np.stack([SHAFT_ORDERS[Fault(int(k))] for k in m.fault[rows]])
    k = np.arange(1, MAX_HALF_ORDER + 1)
    # velocity phasor (mm/s RMS) -> acceleration amplitude in g at k/2 x shaft speed
    coef = table * (v[rows] * np.sqrt(2.0) / 1000.0 / G0)[:, None] * (np.pi * k[None, :] * fr[:, None])
    coef = coef.astype(np.complex64)
    top = int(np.flatnonzero(np.any(coef != 0, axis=0))[-1])
    acc = coef[:, top][:, None] * z
    for j in range(top - 1, -1, -1):
        acc += coef[:, j][:, None]
        acc *= z
    out[rows] += acc.imag.astype(out.dtype, copy=False)


def _noise(m: Machines, n_samples: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Structural noise (white noise through the housing resonance, an AR(2) spectrum, RMS
    structural_g) plus white sensor noise (RMS noise_g), [n, N] float32.

    Both are Gaussian and independent, so their sum is one Gaussian process whose power
    spectrum is the sum of theirs: drawn at once in the frequency domain (random-phase
    spectrum with that magnitude, one inverse FFT), which is a periodic stationary process
    with exactly that spectrum, whatever the number of distinct resonances.
    """
    nfft = 1 << max(1, (n_samples - 1).bit_length())
    r = np.exp(-2 * np.pi * m.resonance_hz * m.damping / fs)
    a1 = -2.0 * r * np.cos(2 * np.pi * m.resonance_hz / fs)
    a2 = r * r
    gain2 = (1 + a2) / ((1 - a2) * ((1 + a2) ** 2 - a1 * a1))  # AR(2) output variance
    w = 2 * np.pi * np.arange(nfft // 2 + 1) / nfft
    c1, c2, s1, s2 = np.cos(w), np.cos(2 * w), np.sin(w), np.sin(2 * w)
    re = 1.0 + a1[:, None] * c1 + a2[:, None] * c2
    im = a1[:, None] * s1 + a2[:, None] * s2
    psd = (m.structural_g ** 2 / gain2)[:, None] / (re * re + im * im) + (m.noise_g ** 2)[:, None]
    amp = (np.sqrt(psd * (nfft / 2.0))).astype(np.float32)
    shape = (len(m), nfft // 2 + 1)
    spec = np.empty(shape, np.complex64)
    spec.real = rng.standard_normal(shape, dtype=np.float32) * amp
    spec.imag = rng.standard_normal(shape, dtype=np.float32) * amp
    return np.fft.irfft(spec, nfft, axis=1)[:, :n_samples].astype(np.float32, copy=False)


def _impacts(m: Machines, t_start: np.ndarray, n_samples: int, fs: float,
             rng: np.random.Generator) -> np.ndarray:
    """Defect impact trains ringing the resonance, [n, N]; zero rows for healthy machines."""
    n = len(m)
    out = np.zeros(n * n_samples)
    sev = m.severity(t_start + 0.5 * n_samples / fs)
    rate = impact_rate(m, t_start)
    active = np.flatnonzero((sev > 0) & (rate > 0) & (m.fault_g > 0))
    if active.size == 0:
        return out.reshape(n, n_samples)
    alpha = 2 * np.pi * m.resonance_hz * m.damping  # decay rate 1/s
    ring_s = 7.0 / alpha  # exp(-7) ~ 1e-3 of the first peak
    L = int(np.ceil(ring_s[active].max() * fs)) + 1
    dur = n_samples / fs
    fr = m.shaft_hz(t_start)
    ftf = m.defects(t_start).ftf
    rows, times, amps = [], [], []
    for i in active:
        # impact k happens at (k + jitter_k) / rate; include earlier ones whose ring reaches in
        k0 = int(np.floor((t_start[i] - ring_s[i]) * rate[i])) - 1
        k1 = int(np.ceil((t_start[i] + dur) * rate[i])) + 1
        k = np.arange(k0, k1)
        tk = (k + rng.normal(0.0, m.jitter[i], k.size)) / rate[i]
        a = m.fault_g[i] * sev[i] * rng.uniform(0.85, 1.15, k.size)
        if m.fault[i] == Fault.INNER_RACE:  # defect rotates with the shaft through the load zone
            a *= 0.6 + 0.4 * np.cos(2 * np.pi * fr[i] * tk + m.phase[i])
        elif m.fault[i] == Fault.BALL:  # ball carried by the cage through the load zone
            a *= 0.6 + 0.4 * np.cos(2 * np.pi * ftf[i] * tk + m.phase[i])
        rows.append(np.full(k.size, i))
        times.append(tk - t_start[i])
        amps.append(a)
    row = np.concatenate(rows)
    tk = np.concatenate(times)
    amp = np.concatenate(amps)
    first = np.ceil(tk * fs).astype(np.int64)  # first sample at or after the impact
    idx = first[:, None] + np.arange(L)[None, :]
    tau = idx / fs - tk[:, None]  # exact time since impact (fractional delay)
    resp = (amp[:, None] * np.exp(-alpha[row][:, None] * tau)
            * np.sin(2 * np.pi * m.resonance_hz[row][:, None] * tau))
    ok = (idx >= 0) & (idx < n_samples)
    flat = (row[:, None] * n_samples + idx)[ok]
    out += np.bincount(flat, weights=resp[ok], minlength=n * n_samples)
    return out.reshape(n, n_samples)


def synthesize(m: Machines, t_start, n_samples: int, fs: float, rng: np.random.Generator,
               *, dtype=np.float32) -> np.ndarray:
    """One window per machine starting at t_start (s): [n, n_samples] acceleration in g.

    All machines in one call share the sensor rate `fs`; group machines by rate.
    """
    t0 = np.broadcast_to(np.asarray(t_start, np.float64), (len(m),)).copy()
    x = _noise(m, n_samples, fs, rng)
    x += _impacts(m, t0, n_samples, fs, rng)
    x *= m.gain.astype(np.float32)[:, None]  # the structure-borne path; shaft lines reach the sensor as they are
    x += _harmonics(m, t0, n_samples, fs)
    _shaft_faults(m, t0, n_samples, fs, x)
    return x.astype(dtype, copy=False)


def envelope_spectrum(x: np.ndarray, fs: float, band: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Squared-envelope spectrum of x band-passed to `band` (Hz): (freqs, magnitude).

    The classic bearing diagnostic (Randall & Antoni): band-pass around the resonance the
    impacts excite, take the analytic signal's squared magnitude, then its spectrum.
    """
    from scipy.signal import butter, hilbert, sosfiltfilt

    sos = butter(4, band, btype="bandpass", fs=fs, output="sos")
    y = sosfiltfilt(sos, np.asarray(x, np.float64))
    env = np.abs(hilbert(y)) ** 2
    env -= env.mean()
    spec = np.abs(np.fft.rfft(env * np.hanning(env.size)))
    return np.fft.rfftfreq(env.size, 1.0 / fs), spec


__all__ = ["Fault", "FAULT_LABELS", "BEARING_FAULTS", "SHAFT_FAULTS", "SHAFT_ORDERS", "DEFAULT_SHAFT_MM_S",
           "HEALTHY_1X_MM_S", "G0", "fault_from_label", "is_shaft_fault", "shaft_fault_velocity",
           "DefectFrequencies", "defect_frequencies", "Machines", "make_machines", "vary_machines",
           "at_speed", "with_faults", "impact_rate", "synthesize", "envelope_spectrum",
           "BEARINGS", "SKF_6205", "SKF_6203", "SKF_6309"]
