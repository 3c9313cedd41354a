"""Speed and load schedules: machines that change operating point as real ones do.

A machine holds one operating point (a speed factor on its nominal rpm, and a load) for a while,
then moves to the next, linearly over `ramp_s` seconds (a VFD ramp; 0 = a step). Each machine
cycles through its own points with its own hold time and phase, so a fleet never changes speed
in lockstep. Pure and vectorised: `point(t)` gives every machine's factor and load at time t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device_sim.physics import Machines, at_speed


@dataclass(frozen=True)
class Schedule:
    factors: np.ndarray  # [n, k] rpm factor of each operating point
    loads: np.ndarray  # [n, k] load (0..1) of each operating point
    hold_s: np.ndarray  # [n] seconds each point is held (the ramp included)
    offset_s: np.ndarray  # [n] where in its cycle each machine starts
    ramp_s: float = 0.0

    @classmethod
    def constant(cls, n: int) -> Schedule:
        return cls(np.ones((n, 1)), np.full((n, 1), 0.5), np.full(n, np.inf), np.zeros(n))

    @classmethod
    def stepped(cls, n: int, rng: np.random.Generator, *, speeds: int = 3,
                factor_range: tuple[float, float] = (0.5, 1.0), load: tuple[float, float] = (0.2, 0.9),
                hold_s: tuple[float, float] = (1800.0, 4 * 3600.0), ramp_s: float = 0.0) -> Schedule:
        """`speeds` distinct operating points per machine, spread over `factor_range` (at least
        15 % apart, so each is its own speed class), each with its own load."""
        base = np.linspace(factor_range[0], factor_range[1], speeds)
        jitter = rng.uniform(-0.03, 0.03, (n, speeds)) * (speeds > 1)
        factors = np.clip(base[None, :] + jitter, 0.05, None)
        return cls(factors, rng.uniform(*load, (n, speeds)), rng.uniform(*hold_s, n),
                   rng.uniform(0.0, 1.0, n) * speeds * hold_s[1], ramp_s)

    @property
    def n_points(self) -> int:
        return int(self.factors.shape[1])

    def level(self, t_s: float) -> np.ndarray:
        """Index of the operating point each machine is at (or ramping to) at time t."""
        seg = np.floor((t_s + self.offset_s) / self.hold_s)
        seg = np.where(np.isfinite(seg), seg, 0).astype(np.int64)
        return seg % self.n_points

    def point(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(rpm factor [n], load [n]) at time t, ramping linearly from the previous point."""
        rows = np.arange(self.factors.shape[0])
        lv = self.level(t_s)
        f, ld = self.factors[rows, lv], self.loads[rows, lv]
        if self.ramp_s > 0 and self.n_points > 1:
            into = np.mod(t_s + self.offset_s, self.hold_s)
            prev = (lv - 1) % self.n_points
            a = np.clip(into / self.ramp_s, 0.0, 1.0)
            f = self.factors[rows, prev] + a * (f - self.factors[rows, prev])
            ld = self.loads[rows, prev] + a * (ld - self.loads[rows, prev])
        return f, ld

    def machines_at(self, m: Machines, t_s: float) -> Machines:
        f, ld = self.point(t_s)
        return at_speed(m, f, ld)


__all__ = ["Schedule"]
