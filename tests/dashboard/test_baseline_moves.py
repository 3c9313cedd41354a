"""A node's drift moves on the Device page (docs/baseline.md, "Drift after commissioning"): status births of
a simulated node carrying `comm.drift`, through ingest's decoder into a real SQLite store, listed once each
under "Baseline moved"."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dashboards import ui
from device_sim.node import VirtualNode
from edgefleet.runtime import baseline as bl
from edgefleet.service.ingest import Inbound, decode_into
from edgefleet.service.store import IngestBatch, open_store

from .conftest import open_page


def test_device_page_lists_each_baseline_move_once(monkeypatch, tmp_path: Path) -> None:
    n = 4
    c = bl.ClassBaseline(0.0, 0.0, 64, 2.0, 1.6, np.zeros(n, np.int16), np.full(n, 40, np.int16))
    node = VirtualNode("drift-01", 12000.0, 3, 2.0)
    node.baseline = bl.Baseline(1, 1_700_000_000_000, (c,), n)
    now = int(time.time() * 1000)
    births = [node.birth(now - 5000)]  # commissioned, no move yet
    for k, (shift, ago) in enumerate([(0.125, 4000), (0.31, 2000)]):
        node.drift_note = {"cls": 0, "max_shift_spreads": shift, "ts": now - ago}
        births += [node.birth(now - ago), node.birth(now - ago + 500 + k)]  # a later birth repeats the note
    batch = IngestBatch(now)
    for b in births:
        assert decode_into(batch, Inbound(b.topic, b.payload, 1, 0, 0, now)) is None
    path = tmp_path / "fleet.db"
    store = open_store(path, synchronous="OFF")
    store.write_batch(batch)
    store.close()
    at = open_page(monkeypatch, path, ui.PAGE_DEVICE, device="drift-01")
    assert "Baseline moved" in [h.value for h in at.subheader]
    (moves,) = [d.value for d in at.dataframe if "shift (spreads)" in d.value.columns]
    assert moves["shift (spreads)"].tolist() == [0.31, 0.125] and moves["class"].tolist() == [0, 0]
