"""Simulated recordings in the shared/data format, and the plant layout."""

from __future__ import annotations

import numpy as np
import pytest

from device_sim.dataset import normal_windows, write_dataset
from device_sim.plant import make_plant
from edgefleet.toolchain.datasets import load_folder, windows_of
from edgefleet.runtime.features import FeatureParams


def test_written_dataset_loads_with_the_model_toolchain_reader(tmp_path):
    paths = write_dataset(tmp_path, n_normal=3, n_faulty=3, seconds=1.0, fs=(12000.0, 25600.0), seed=3)
    assert len(paths) == 6
    recs = load_folder(tmp_path)
    labels = sorted(r.label for r in recs)
    assert labels.count("normal") == 3 and {"outer_race", "inner_race"} <= set(labels)
    assert {r.fs for r in recs} == {12000.0, 25600.0}
    for r in recs:
        assert r.signal.dtype == np.float32 and r.signal.size == int(r.fs)
        assert 600 < r.meta["rpm"] < 1900 and r.meta["dataset"] == "device_sim"
    params = FeatureParams.spaced(32, 100.0, 5000.0, window_s=0.08)
    assert windows_of(recs[0], params).shape[1] in (960, 2048)


def test_normal_machines_differ_but_a_seed_repeats():
    a = normal_windows(3, 0.5, 12800.0, seed=1)
    b = normal_windows(3, 0.5, 12800.0, seed=1)
    assert all(np.array_equal(x.signal, y.signal) for x, y in zip(a, b))
    rms = [float(np.sqrt(np.mean(r.signal.astype(float) ** 2))) for r in a]
    assert len({round(v, 4) for v in rms}) == 3 and all(r.label == "normal" for r in a)


def test_recordings_are_continuous_across_synthesis_chunks(monkeypatch):
    import device_sim.dataset as ds
    from device_sim.physics import make_machines

    m = make_machines(2, np.random.default_rng(0))
    quiet = m.with_(structural_g=np.zeros(2), noise_g=np.zeros(2))  # deterministic lines only
    coarse = ds._record(quiet, 1, 3.0, 12000.0, np.random.default_rng(1), t0=7.0)  # 0.5 s chunks
    monkeypatch.setattr(ds, "CHUNK_S", 0.05)
    fine = ds._record(quiet, 1, 3.0, 12000.0, np.random.default_rng(1), t0=7.0)
    # the shaft angle integrates the wandering speed, so chunking does not change the signal
    np.testing.assert_allclose(coarse, fine, atol=2e-4)
    assert np.abs(coarse).max() > 0.01


def test_plant_spreads_nodes_over_sites_lines_and_rates_with_the_asked_faults():
    p = make_plant(40, n_faulty=4, seed=1, n_sites=4)
    assert len(p.nodes) == 40 and len(p.faulty) == 4
    assert len({n.site for n in p.nodes}) == 4 and len({n.line for n in p.nodes}) == 4
    assert {n.fs for n in p.nodes} == {12000.0, 12800.0, 25600.0}
    assert len({n.device_id for n in p.nodes}) == 40
    d = p.describe(p.nodes[[n.device_id for n in p.nodes].index(p.faulty[0])].row)
    assert d["fault"] in ("outer_race", "inner_race", "ball") and 30 <= d["fault_onset_s"] <= 90
    assert make_plant(40, n_faulty=4, seed=1).faulty == make_plant(40, n_faulty=4, seed=1).faulty


def test_plant_refuses_impossible_counts():
    with pytest.raises(ValueError):
        make_plant(3, n_faulty=4)
    with pytest.raises(ValueError):
        make_plant(0)
