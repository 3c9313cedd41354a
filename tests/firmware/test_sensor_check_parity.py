"""The C sensor check (core ef_sensor_check, host tool ef_sensor) against the Python reference
(edgefleet/runtime/sensor_check.py): the same outcome and the same figures, bit for bit, on the
same float32 windows, including windows built to sit on every decision's boundary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fw_helpers import run  # noqa: E402

from device_sim.run_to_failure import SENSOR_FAULTS, make_run  # noqa: E402
from edgefleet.runtime.sensor_check import (  # noqa: E402
    DEAD_RMS,
    DROPOUT_RUN,
    SAT_DEN,
    SAT_PILE,
    SensorChecks,
    SensorLimits,
    check_windows,
)

N = 960


def c_check(fw, rows: np.ndarray, tmp: Path, limits: SensorLimits, *, sanitized: bool = True) -> list[dict]:
    f = tmp / "rows.f32"
    np.ascontiguousarray(rows, "<f4").tofile(f)
    args = [fw.tool("ef_sensor", sanitized=sanitized), f, rows.shape[1], repr(float(np.float32(limits.dead_rms)))]
    if limits.rail:
        args.append(repr(float(np.float32(limits.rail))))
    return [json.loads(line) for line in run(args).stdout.decode().splitlines()]


def assert_same(py: SensorChecks, c: list[dict]) -> None:
    assert len(c) == len(py.outcome)
    for i, d in enumerate(c):
        got = (d["outcome"], float.fromhex(d["rms"]), d["at_extreme"], d["longest_run"], d["stuck_pairs"])
        want = (int(py.outcome[i]), float(py.rms[i]), int(py.at_extreme[i]), int(py.longest_run[i]),
                int(py.stuck_pairs[i]))
        assert got == want, f"window {i}: C {got} != Python {want}"
        assert d["state"] == (py.names()[i] or None)


def boundary_rows(rng: np.random.Generator) -> np.ndarray:
    rows = []
    base = rng.normal(0.0, 1.0, N).astype(np.float32)
    base /= base.std()
    for s in np.linspace(0.97, 1.03, 121) * DEAD_RMS:  # the dead floor: std straddles dead_rms finely
        rows.append((base * np.float32(s)).astype(np.float32))
    x = rng.normal(0.0, 0.08, N).astype(np.float32)
    need = -(-N // SAT_DEN)  # samples at an extreme that make a window saturated
    for k in range(1, need + 3):  # at_extreme around the saturation count
        y = x.copy()
        y[np.argsort(y)[-k:]] = y.max()
        rows.append(y)
    for ln in range(DROPOUT_RUN - 3, DROPOUT_RUN + 3):  # a held value around the dropout run
        y = x.copy()
        y[100:100 + ln] = 0.01
        rows.append(y)
    y = x.copy()
    y[::2] = y[1::2]  # every other pair equal: stuck pairs around half
    rows.append(y)
    y = x.copy()
    y[1:N // 2 + 2:2] = y[0:N // 2 + 1:2]
    rows.append(y)
    rows += [np.full(N, 0.25, np.float32), np.zeros(N, np.float32), np.round(x * 50) / 50,  # coarse ADC steps
             np.where(np.arange(N) == 7, np.float32(np.inf), x), np.where(np.arange(N) == 900, np.float32(np.nan), x),
             x + np.float32(1.0)]  # gravity on the axis: a large DC offset
    return np.array(rows, np.float32)


def sine_rows() -> np.ndarray:
    """Clean sines a calibrator or shaker gives (0.1 g at 100 Hz, 120 samples per period, the peak
    on a sample or two samples symmetric about it), quantized by 16-bit ADCs, and a window whose
    extreme holds around SAT_PILE times the samples of the next value inside (the pile-up boundary)."""
    t = np.arange(N, dtype=np.float64)
    rows = [0.1 * np.sin(2 * np.pi * t / 120), 0.1 * np.cos(2 * np.pi * (t + 0.5) / 120),
            1.414 * np.sin(2 * np.pi * 159.2 * t / 12000 + 0.3)]
    for full_scale in (2.0, 16.0):
        q = full_scale / 32768
        rows += [np.round(r / q) * q for r in rows[:3]]
    x = np.random.default_rng(8).normal(0.0, 0.08, N)
    top = np.argsort(x)[::-1]
    for m in (1, 2, 3):  # the next value inside held by m samples, the top by m * SAT_PILE -1, 0, +1
        for k in range(m * SAT_PILE - 1, m * SAT_PILE + 2):
            y = x.copy()
            y[top[:k]] = x[top[0]]
            y[top[k:k + m]] = x[top[k]]
            rows.append(y)
    return np.array(rows, np.float32)


def test_clean_and_quantized_sines_are_sane_and_the_pile_up_boundary_matches(fw, tmp_path):
    rows = sine_rows()
    py = check_windows(rows)
    assert py.outcome[:9].tolist() == [0] * 9, py.names()[:9]  # no sine is saturated
    piles = py.outcome[9:].reshape(3, 3)  # per m: k = 4m - 1, 4m, 4m + 1 at the top
    assert (piles == [[0, 0, 2]] * 3).all(), piles
    assert_same(py, c_check(fw, rows, tmp_path, SensorLimits()))


def test_boundaries_and_edge_windows_match(fw, tmp_path):
    rows = boundary_rows(np.random.default_rng(4))
    py = check_windows(rows)
    assert set(py.outcome.tolist()) == {0, 1, 2, 3}  # every outcome is exercised
    assert 0 < (py.outcome[:121] == 1).sum() < 121  # the dead floor is crossed inside the sweep
    assert_same(py, c_check(fw, rows, tmp_path, SensorLimits()))


def test_simulated_sensor_faults_match_with_and_without_a_rail(fw, tmp_path):
    rows = []
    for i, kind in enumerate((None, *SENSOR_FAULTS)):
        r = make_run(i, np.random.default_rng(50 + i), sensor_fault=kind, onset_days=(0.3, 0.4),
                     fault_days=(0.2, 0.3), sensor_at=(0.3, 0.5))
        rows.append(r.snaps[::3, :N])
    rows = np.concatenate(rows)
    for lim in (SensorLimits(), SensorLimits(dead_rms=0.03, rail=0.2)):
        py = check_windows(rows, lim)
        assert len(set(py.outcome.tolist())) >= 3
        assert_same(py, c_check(fw, rows, tmp_path, lim))


@pytest.mark.parametrize("n", [2, 3, 17, 256])
def test_short_windows_match(fw, tmp_path, n):
    rng = np.random.default_rng(n)
    rows = np.array([rng.normal(0, 0.1, n), np.full(n, 0.5), rng.normal(0, 0.001, n)], np.float32)
    assert_same(check_windows(rows), c_check(fw, rows, tmp_path, SensorLimits()))


def test_sensor_states_go_on_the_wire_from_c_and_python_alike(fw):
    from test_protocol_golden import c_encode

    from edgefleet.protocol import ProtocolError, codec
    from edgefleet.runtime.sensor_check import OUTCOMES

    enum = codec.schema("result")["properties"]["res"]["items"]["properties"]["state"]["enum"]
    assert set(OUTCOMES[1:]) <= set(enum)
    res = [{"seq": i, "ts": 1767225600000 + i, "score": 0.0, "anom": False, "inf_us": 900, "state": s}
           for i, s in enumerate(OUTCOMES[1:])]
    obj = {"v": 1, "boot": "9f3a0c17", "model": 5, "thr": 1.0, "dropped": 0, "res": res}
    assert codec.check("result", obj) is None
    assert c_encode(fw, "result", obj).stdout == codec.encode("result", obj)
    recs = codec.result_records("node-1", obj)
    assert [r.state for r in recs] == list(OUTCOMES[1:]) and not any(r.judged for r in recs)
    bad = {**obj, "res": [{**res[0], "anom": True}]}  # a sensor fault has no verdict
    assert c_encode(fw, "result", bad, check=False).returncode == 2
    with pytest.raises(ProtocolError):
        codec.result_records("node-1", bad)
