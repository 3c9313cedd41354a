"""The edgefleet simulator: machine vibration physics, virtual sensor nodes, the fleet runner.

Layers, each usable alone:

* `device_sim.physics`: pure numpy vibration of rotating machines with bearing defects
  (vectorised over a table of machines);
* `device_sim.plant`: a plant of machines on sites and lines, a few developing faults;
* `device_sim.node`: one node's device logic (boot id, sequences, store-and-forward ring,
  threshold calibration, debug capture) with no networking;
* `device_sim.link`: many paho MQTT connections driven by a few selector threads;
* `device_sim.fleet`: the runner that batches physics, features and int8 inference across
  nodes and hands each node its result;
* `device_sim.dataset`: recordings in the CWRU `.npz` format for training the fleet model.

See docs/simulator.md.
"""

from device_sim.dataset import SimRecording, faulty_windows, normal_windows, write_dataset
from device_sim.fleet import Fleet, FleetOptions, score_windows
from device_sim.link import LinkOptions
from device_sim.node import Calibration, VirtualNode
from device_sim.physics import (Fault, Machines, defect_frequencies, envelope_spectrum, make_machines,
                                synthesize, with_faults)
from device_sim.plant import NodeSpec, Plant, make_plant

__all__ = [
    "Calibration", "Fault", "Fleet", "FleetOptions", "LinkOptions", "Machines", "NodeSpec", "Plant",
    "SimRecording", "VirtualNode", "defect_frequencies", "envelope_spectrum", "faulty_windows",
    "make_machines", "make_plant", "normal_windows", "score_windows", "synthesize", "with_faults",
    "write_dataset",
]
