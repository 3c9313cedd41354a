"""A simulated plant: machines on sites and lines, each with a sensor node, a few developing faults.

Pure: `make_plant` turns a seed and a few counts into a machine table (physics) and the
nodes' identities (device id, site, line, tags, sensor rate). Nothing here connects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device_sim.physics import (
    BEARING_FAULTS,
    FAULT_LABELS,
    Fault,
    Machines,
    is_shaft_fault,
    make_machines,
    with_faults,
)

SENSOR_RATES = (12800.0, 25600.0, 12000.0)  # common MEMS/IEPE front-end rates, Hz
SITES = ("plant-north", "plant-south", "plant-east", "plant-west")
KINDS = ("motor", "pump", "fan", "compressor", "gearbox")


@dataclass(frozen=True)
class NodeSpec:
    device_id: str
    site: str
    line: str
    tags: tuple[str, ...]
    fs: float
    row: int  # this node's machine row in Plant.machines


@dataclass(frozen=True)
class Plant:
    machines: Machines
    nodes: tuple[NodeSpec, ...]

    @property
    def faulty(self) -> list[str]:
        return [n.device_id for n in self.nodes if self.machines.fault[n.row] != Fault.NONE]

    def describe(self, row: int) -> dict:
        m = self.machines
        kind = Fault(int(m.fault[row]))
        out = {"fault": FAULT_LABELS[kind], "rpm": round(float(m.rpm[row]), 1),
               "load": round(float(m.load[row]), 3)}
        if kind != Fault.NONE:
            out.update(fault_onset_s=float(m.fault_onset_s[row]), fault_ramp_s=float(m.fault_ramp_s[row]))
            if is_shaft_fault(kind):
                out["fault_peak_mm_s"] = round(float(m.fault_mm_s[row]), 2)
            else:
                out["fault_peak_g"] = round(float(m.fault_g[row]), 3)
        return out


def make_plant(n_nodes: int, *, n_faulty: int = 0, seed: int = 0, prefix: str = "sim-",
               n_sites: int = 3, lines_per_site: int = 4, rates: tuple[float, ...] = SENSOR_RATES,
               fault_onset_s: tuple[float, float] = (30.0, 90.0),
               fault_ramp_s: tuple[float, float] = (120.0, 300.0),
               fault_peak_g: tuple[float, float] = (0.8, 2.0),
               fault_peak_mm_s: tuple[float, float] = (5.0, 9.0),
               kinds: tuple[Fault, ...] = BEARING_FAULTS) -> Plant:
    """`n_nodes` machines spread over sites and lines; `n_faulty` of them (chosen by the seed)
    develop a fault starting between fault_onset_s seconds after start, reaching full severity
    after fault_ramp_s more. The faulty machines take `kinds` in turn (default the three bearing
    faults); a bearing fault's size is drawn from fault_peak_g (impact, g), a shaft fault's from
    fault_peak_mm_s (velocity it adds, mm/s RMS; the default 5-9 puts the machine in ISO 20816
    zone C/D at full severity), both from the same draw, so a seed gives the same plant whatever
    the kinds."""
    if n_nodes < 1:
        raise ValueError("a plant needs at least one node")
    if not 0 <= n_faulty <= n_nodes:
        raise ValueError(f"faulty machines must be between 0 and {n_nodes}, got {n_faulty}")
    if not 1 <= n_sites <= len(SITES):
        raise ValueError(f"sites must be 1..{len(SITES)}")
    rng = np.random.default_rng(seed)
    m = make_machines(n_nodes, rng, bearing=None)
    if not kinds or Fault.NONE in kinds:
        raise ValueError("fault kinds must be one or more faults (not normal)")
    if n_faulty:
        rows = rng.choice(n_nodes, n_faulty, replace=False)
        kind = np.array([kinds[i % len(kinds)] for i in range(n_faulty)], np.int64)
        onset = rng.uniform(*fault_onset_s, n_faulty)
        ramp = rng.uniform(*fault_ramp_s, n_faulty)
        u = rng.uniform(0.0, 1.0, n_faulty)  # one draw sizes both kinds (same values as uniform(lo, hi))
        m = with_faults(m, rows, kind, onset_s=onset, ramp_s=ramp,
                        peak_g=fault_peak_g[0] + (fault_peak_g[1] - fault_peak_g[0]) * u,
                        peak_mm_s=fault_peak_mm_s[0] + (fault_peak_mm_s[1] - fault_peak_mm_s[0]) * u)
    width = max(4, len(str(n_nodes - 1)))
    nodes = []
    for i in range(n_nodes):
        site = SITES[i % n_sites]
        line = f"L{(i // n_sites) % lines_per_site + 1}"
        kind = KINDS[int(rng.integers(len(KINDS)))]
        tags = (kind, "critical") if rng.random() < 0.1 else (kind,)
        nodes.append(NodeSpec(f"{prefix}{i:0{width}d}", site, line, tags, float(rates[i % len(rates)]), i))
    return Plant(m, tuple(nodes))


__all__ = ["NodeSpec", "Plant", "make_plant", "SENSOR_RATES", "SITES"]
