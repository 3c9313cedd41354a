"""Drift after commissioning in C (core ef_baseline_drift, ef_baseline_drift_moved) against the Python reference
(edgefleet/runtime/baseline.py `drift`, which the simulated node and the replay use): on the same
centres, origins, spreads, healthy rows and time steps, the same new centre, integer for integer.

Cases cover odd and even row counts (the even median is the floor of the middle two's mean, negative
values too), steps that round exactly half-way (dt = TAU / 2 with odd differences: ties to even), a
step of a whole time constant or more (f capped at 1), tiny steps that round to nothing, the cap at
one spread from the commissioned centre on both sides, no rows and dt <= 0 (unchanged)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
from fw_helpers import FIRMWARE, REPO, run

from edgefleet.runtime import baseline as bl

DRIVER = REPO / "tests" / "firmware" / "c" / "ef_drift_check.c"


def cases(rng: np.random.Generator) -> list[tuple]:
    out = []
    tau = bl.DRIFT_TAU_S
    dts = [tau / 2, tau, 2 * tau, 3600.0, 32 * 1800.0, 1e-3, 0.0, -5.0, 57600.0, 19200.0]
    for i in range(600):
        n = int(rng.integers(1, 40))
        m = int(rng.integers(0, 70)) if i % 10 else 0
        spread = rng.integers(bl.SPREAD_FLOOR_Q, 400, n).astype(np.int16)
        origin = rng.integers(-6000, 6000, n).astype(np.int16)
        center = np.clip(origin + rng.integers(-1, 2, n) * rng.integers(0, 2 * spread.astype(int) + 1), -32768,
                         32767).astype(np.int16)
        offset = rng.integers(-3, 4) * spread.astype(int) // 2
        rows = (origin.astype(int) + offset + rng.normal(0, 1, (m, n)) * spread).astype(np.int16)
        if i % 7 == 0 and m:  # odd differences to the target: halves at dt = TAU / 2
            rows = (center.astype(int) + 2 * rng.integers(-50, 50, (m, n)) + 1).astype(np.int16)
        dt = dts[i % len(dts)] if i % 3 else float(rng.uniform(0, 2 * tau))
        if i % 7 == 0 and m:
            dt = tau / 2
        near = (spread.astype(int) * (0.3 if i % 2 else 0.02)).astype(int) + 1  # half the cases barely moved
        noted = np.clip(center.astype(int) + rng.integers(-1, 2, n) * rng.integers(0, near), -32768, 32767).astype(np.int16)
        out.append((center, origin, spread, noted, rows.reshape(m, n), dt))
    return out


def test_c_drift_equals_python_on_the_same_inputs(fw, tmp_path):
    exe = tmp_path / "ef_drift_check"
    run([shutil.which("cc") or "gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-ffp-contract=off",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-I{FIRMWARE / 'core/include'}",
         DRIVER, fw.san / "lib.a", "-lm", "-o", exe])
    cs = cases(np.random.default_rng(19))
    lines = []
    for center, origin, spread, noted, rows, dt in cs:
        lines.append(f"{len(center)} {len(rows)} {float(dt).hex()}")
        for a in (center, origin, spread, noted, rows.ravel()):
            lines.append(" ".join(str(int(x)) for x in a))
    proc = subprocess.run([exe], input=("\n".join(lines) + "\n").encode(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    got = proc.stdout.decode().splitlines()
    assert len(got) == len(cs)
    ties = moved = capped = noted_moves = 0
    for (center, origin, spread, noted, rows, dt), line in zip(cs, got):
        *c_new, c_changed, c_moved = (int(x) for x in line.split()[:-1])
        c_shift = float.fromhex(line.split()[-1])
        cls = bl.ClassBaseline(0.0, 0.0, 64, 1.0, 1.5, center, spread)
        new = bl.drift(cls, origin, rows, dt)
        assert c_new == new.center.tolist(), (len(rows), dt)
        assert c_changed == int(new is not cls)
        # the report rule of DriftFollower.step: moved a tenth of a spread since the last report
        sp = spread.astype(np.int64)
        py_moved = (np.abs(new.center.astype(np.int64) - noted.astype(np.int64)) / sp).max() >= 0.1
        assert c_moved == int(py_moved)
        if py_moved:
            assert c_shift == float((np.abs(new.center.astype(np.int64) - origin.astype(np.int64)) / sp).max())
            noted_moves += 1
        moved += new is not cls
        capped += int((np.abs(new.center.astype(int) - origin) == spread).any())
        if len(rows) and dt == bl.DRIFT_TAU_S / 2:
            ties += 1
    assert moved > 200 and capped > 20 and ties > 20 and 100 < noted_moves < len(cs) - 100, \
        (moved, capped, ties, noted_moves)
