"""A ring per node (`edgefleet sim --ring-for DEVICE=N`, FleetOptions.ring_sizes): the soak test
gives the nodes it keeps offline a small ring so it overflows whatever the machine's load. Bad
values are one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from device_sim.fleet import Fleet, FleetOptions
from device_sim.link import LinkOptions
from device_sim.physics import make_machines
from device_sim.plant import NodeSpec, Plant
from edgefleet.runtime.artifact import load_artifact

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"


def test_one_node_gets_its_own_ring_and_overflows_it() -> None:
    m = make_machines(3, np.random.default_rng(1), bearing=None)
    nodes = tuple(NodeSpec(f"r-{i}", "north", "L1", (), 12000.0, i) for i in range(3))
    fleet = Fleet(Plant(m, nodes), load_artifact(MODEL), LinkOptions("127.0.0.1", 1),
                  FleetOptions(ring_size=50, ring_sizes={"r-1": 3}))
    rings = {lk.node.device_id: lk.node.ring.maxlen for lk in fleet.links}
    assert rings == {"r-0": 50, "r-1": 3, "r-2": 50}
    small = fleet.links[1].node
    for i in range(5):  # offline: nothing leaves the ring
        small.add_result(1000 + i, 0.01, 400)
    assert len(small.ring) == 3 and small.dropped == 2


def test_bad_ring_for_is_one_line_and_exit_2() -> None:
    for bad in ("sim-0001", "=5"):
        run = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--nodes", "3", "--duration", "1",
                              "--ring-for", bad], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, (bad, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "--ring-for" in lines[0] and "Traceback" not in run.stderr, (bad, run.stderr)
