"""Recordings pulled from the fleet (`edgefleet data pull --format npz`) are one window each: the
toolchain joins a machine's captures into one recording per speed class and never lets a window
straddle two captures."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.errors import DataError
from edgefleet.runtime.features import FeatureParams, plan
from edgefleet.toolchain.datasets import (
    PULLED,
    Recording,
    load_folder,
    merge_captures,
    windows_of,
)

FS = 12_000.0


def capture(machine: str, ts: int, n: int, rpm: float, value: float) -> Recording:
    return Recording(name=f"{machine}-{ts}", signal=np.full(n, value, np.float32), fs=FS, label="normal",
                     meta={"machine": machine, "rpm": rpm, "ts_ms": ts, "dataset": PULLED})


def test_captures_join_per_machine_and_speed_class_in_time_order() -> None:
    caps = [capture("m1", 3, 100, 1800.0, 3.0), capture("m1", 1, 100, 1790.0, 1.0), capture("m1", 2, 100, 2400.0, 2.0),
            capture("m2", 1, 100, 1800.0, 9.0)]
    other = Recording("cwru", np.zeros(50, np.float32), FS, "normal", {})
    out = {r.name: r for r in merge_captures([*caps, other])}
    assert set(out) == {"cwru", "m1-captures-0", "m1-captures-1", "m2-captures-0"}
    m1 = out["m1-captures-0"]  # 1790 and 1800 rpm: one class (within 5 %), oldest first
    assert m1.meta["captures"] == 2 and m1.meta["segment"] == 100
    assert m1.signal[:100].tolist() == [1.0] * 100 and m1.signal[100:].tolist() == [3.0] * 100
    assert out["m1-captures-1"].meta["rpm"] == 2400.0


def test_windows_never_straddle_two_captures_and_the_split_is_by_capture() -> None:
    params = FeatureParams(window_s=0.01, edges_hz=(200.0, 1000.0, 4000.0))
    n = plan(params, FS).n_samples
    rec = merge_captures([capture("m", i, n + n // 2, 1800.0, float(i)) for i in range(10)])[0]
    w = windows_of(rec, params, hop_fraction=0.25)
    per_capture = 1 + (n // 2) // max(1, round(n * 0.25))
    assert w.shape == (10 * per_capture, n)
    assert all(np.unique(row).size == 1 for row in w)  # each window inside one capture
    train, held = windows_of(rec, params, stop=0.7), windows_of(rec, params, start=0.7)
    assert {float(r[0]) for r in train} == {0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0}
    assert {float(r[0]) for r in held} == {7.0, 8.0, 9.0}
    with pytest.raises(DataError, match="capture"):
        windows_of(merge_captures([capture("m", 0, n, 1800.0, 0.0)])[0], params, stop=0.7)  # one capture: no training part


def test_a_pulled_folder_loads_as_joined_recordings(tmp_path) -> None:
    for i in range(4):
        np.savez(tmp_path / f"m-{i}.npz", signal=np.full(64, i, np.float32), fs=np.float64(FS), label=np.str_("normal"),
                 rpm=np.float64(1800.0), machine=np.str_("m"), ts_ms=np.int64(i), dataset=np.str_(PULLED))
    (rec,) = load_folder(tmp_path)
    assert rec.meta["captures"] == 4 and rec.signal.size == 256
