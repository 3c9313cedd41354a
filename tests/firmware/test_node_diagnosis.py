"""A v2 host node explains its anomalies and classes its windows by the speed it estimates:

- why and hint: for every anomalous judged window, the node's `why` items and `hint` equal the Python
  reference's (`diagnosis.contributors` + `fault_hint`) on the same z (the node's features standardized
  by the class in its record), with the bearing geometry of its config (`--bearing`, refused when it
  cannot be, as `BearingGeometry`); CWRU bearing faults and simulated shaft faults (fleet-v2);
- classes by estimated speed: a simulated machine at three speeds with no rpm input commissions three
  classes (one per running speed, from the front end's estimate) and flags a light unbalance at each,
  the classes and verdicts equal to Python's `score_windows(..., estimated=True)`; a v1 node keeps one
  any-speed class.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from device_sim.physics import Fault, at_speed, make_machines, synthesize, vary_machines, with_faults
from edgefleet.errors import FeatureError
from edgefleet.protocol import codec
from edgefleet.runtime import baseline as bl
from edgefleet.runtime import diagnosis
from edgefleet.runtime.artifact import load_artifact
from edgefleet.toolchain.datasets import load_folder
from fw_helpers import REPO, run

FLEET_V2 = REPO / "edgefleet" / "models" / "fleet-v2" / "model.efm"
FLEET_V1 = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
BOOT, T0, FS = "0badc0de", 1767225600000, 12000.0
N = 12512  # fleet-v2's window at 12 kHz
CWRU_BEARING = (9, 7.94, 39.04, 0.0)  # SKF 6205 (CWRU drive end)


@pytest.fixture(scope="module")
def params():
    return load_artifact(FLEET_V2).features.params


def record_of(flash: Path) -> bl.Baseline:
    """The record in force in the node's records area (two 4 KB copies, the higher valid sequence)."""
    raw = flash.read_bytes()
    best = None
    for off in (0, len(raw) // 2):
        magic, seq, size, inv = struct.unpack_from("<4sIII", raw, off)
        if magic != b"EFBR" or size != (~inv & 0xFFFFFFFF) or size > len(raw) // 2 - 16:
            continue
        try:
            b = bl.Baseline.from_bytes(raw[off + 16: off + 16 + size])
        except bl.BaselineError:
            continue
        if best is None or seq > best[0]:
            best = (seq, b)
    assert best is not None, "no valid record on the node's flash"
    return best[1]


def run_node(fw, tmp: Path, signal: np.ndarray, *, model: Path = FLEET_V2, rpm: float | None = None,
             windows: int = 16, hop: int | None = None, bearing=None) -> dict:
    np.ascontiguousarray(signal, "<f4").tofile(tmp / "s.f32")
    flash = tmp / "rec.bin"
    if flash.exists():
        flash.unlink()
    cmd = json.dumps({"v": 1, "seq": 0, "id": "c0", "op": "commission", "windows": windows}, separators=(",", ":"))
    args = [fw.tool("ef_node", sanitized=False), model, tmp / "s.f32", repr(FS), "--protocol", BOOT, "--t0", str(T0),
            "--cmd", "0", cmd, "--features", tmp / "F.f32", "--readings", tmp / "R.f32", "--flash", flash]
    if rpm is not None:
        np.array([rpm], np.float32).tofile(tmp / "rpm.f32")
        args += ["--rpm", tmp / "rpm.f32"]
    if hop:
        args += ["--hop", str(hop)]
    if bearing:
        args += ["--bearing", ",".join(map(repr, bearing))]
    proc = run(args)
    lines = [line for line in proc.stdout.decode().splitlines() if line.startswith('{"v"')]
    for line in lines:  # canonical, schema-valid messages
        kind = "result" if '"res"' in line else "status"
        assert codec.encode(kind, codec.decode(kind, line.encode())) == line.encode()
    msgs = [json.loads(line) for line in lines]
    res = [(m, m["res"][0]) for m in msgs if "res" in m]
    n_in = load_artifact(model).features.params.n_features
    return {"results": res, "births": [m for m in msgs if "res" not in m],
            "features": np.fromfile(tmp / "F.f32", "<f4").reshape(len(res), n_in),
            "readings": np.fromfile(tmp / "R.f32", "<f4").reshape(len(res), 4),
            "record": record_of(flash), "stderr": proc.stderr.decode()}


def python_why(out: dict, params, *, rpm: float | None, bearing=None) -> list[tuple[int, list, str, list, str, bool]]:
    """(window, node why, node hint, Python why, Python hint, near tie) of every anomalous judged window."""
    geom = None if bearing is None else diagnosis.BearingGeometry(
        bearing[0], *(float(np.float32(v)) for v in bearing[1:]))
    rows = []
    for i, (head, r) in enumerate(out["results"]):
        if not r["anom"]:
            assert "why" not in r and "hint" not in r
            continue
        c = out["record"].classes[head["cls"]]
        z = bl.standardize(out["features"][i], c.center, c.spread)
        err = diagnosis.excess(z)
        used = float(np.float32(rpm)) if rpm is not None else float(np.float32(60.0 * float(out["readings"][i, 1])))
        why = [w.to_message() for w in diagnosis.contributors(err, params)]
        hint = diagnosis.fault_hint(err, params, used / 60.0, geom)
        top = np.sort(err)[::-1][:4]
        tie = bool(np.any(np.abs(np.diff(top)) <= 1e-6 * top[0]))  # two shares within float32 noise
        rows.append((i, r.get("why"), r.get("hint"), why, hint, tie))
    return rows


def check_parity(rows) -> tuple[int, int]:
    same = 0
    for i, why_c, hint_c, why_py, hint_py, tie in rows:
        if why_c == why_py and hint_c == hint_py:
            same += 1
        else:
            assert tie, (i, why_c, hint_c, why_py, hint_py)
    return same, len(rows)


def cwru_signal(cwru_dir, names=None):
    recs = {r.name: r for r in load_folder(cwru_dir)}
    names = names or sorted(n for n in recs if not n.startswith("normal"))
    return np.concatenate([recs["normal_0hp_97"].signal] + [recs[n].signal for n in names])


def test_why_and_hint_equal_python_on_cwru(fw, cwru_dir, params, tmp_path):
    sig = cwru_signal(cwru_dir)  # every CWRU fault recording (0 and 1 hp), all of it
    out = run_node(fw, tmp_path, sig, rpm=1796.0, hop=1900, bearing=CWRU_BEARING)
    rows = python_why(out, params, rpm=1796.0, bearing=CWRU_BEARING)
    same, n = check_parity(rows)
    print(f"CWRU: {same} of {n} anomalous windows with the same why and hint; hints",
          {h: sum(1 for r in rows if r[2] == h) for h in {r[2] for r in rows}})
    assert n >= 500 and same == n, (same, n)
    assert {h for _, _, h, _, _, _ in rows} & {"bearing", "bearing_outer_race", "bearing_inner_race", "bearing_ball"}
    # without the geometry: the same windows, no named defect
    out2 = run_node(fw, tmp_path, sig, rpm=1796.0, hop=1900)
    rows2 = python_why(out2, params, rpm=1796.0)
    assert check_parity(rows2) == (n, n)
    assert not {h for _, _, h, _, _, _ in rows2} & {"bearing_outer_race", "bearing_inner_race", "bearing_ball"}


def shaft_machine(seed: int):
    rng = np.random.default_rng(seed)
    return vary_machines(make_machines(1, rng, bearing=None), rng), rng


def synth(m, rng, seconds: int, t0: float) -> np.ndarray:
    return np.concatenate([synthesize(m, np.array([t0 + i]), 12000, FS, rng)[0] for i in range(seconds)])


@pytest.mark.parametrize("speed_input", [True, False], ids=["rpm", "estimated"])
def test_why_and_hint_equal_python_on_simulated_shaft_faults(fw, params, tmp_path, speed_input):
    rows, hints = [], set()
    for seed in (3, 8):
        m, rng = shaft_machine(seed)
        rpm = float(m.shaft_hz(0.0)[0] * 60)
        # 36 s of normal for 16 commissioning windows: the settle test may restart once where the speed
        # wanders (seed 8's estimate slides 0.4 % in 16 s, and the line fitted on the newer half says so)
        parts = [synth(m, rng, 36, 0.0)]
        for k, kind in enumerate((Fault.UNBALANCE, Fault.MISALIGNMENT, Fault.LOOSENESS, Fault.BENT_SHAFT)):
            for peak in (1.0, 3.0):
                parts.append(synth(with_faults(m, [0], kind, onset_s=-1, ramp_s=1e-6, peak_mm_s=peak), rng, 6,
                                   100.0 + 10 * k))
        out = run_node(fw, tmp_path, np.concatenate(parts), rpm=rpm if speed_input else None)
        assert len(out["record"].classes) == 1
        got = python_why(out, params, rpm=rpm if speed_input else None)
        rows += got
        hints |= {h for _, _, h, _, _, _ in got}
    same, n = check_parity(rows)
    print(f"simulated ({'rpm' if speed_input else 'estimated'}): {same} of {n} equal; hints",
          {h: sum(1 for r in rows if r[2] == h) for h in hints})
    assert n >= 60 and same == n, (same, n)
    assert {"unbalance", "misalignment", "looseness"} <= hints or not speed_input


def test_bearing_config_refused_as_python(fw, tmp_path):
    np.zeros(2 * N, "<f4").tofile(tmp_path / "s.f32")
    good = (9, 7.94, 39.04, 0.0)
    for bad in [(2, 7.94, 39.04, 0.0), (61, 7.94, 39.04, 0.0), (9, 39.04, 7.94, 0.0), (9, 0.0, 39.04, 0.0),
                (9, 7.94, 39.04, 60.0), (9, 7.94, 39.04, -1.0), (9, float("nan"), 39.04, 0.0),
                (9, 7.94, float("inf"), 0.0), (9, 20.0, 40.0, 0.0)]:
        with pytest.raises(FeatureError):
            diagnosis.BearingGeometry(*bad)
        proc = run([fw.tool("ef_node"), FLEET_V2, tmp_path / "s.f32", repr(FS), "--protocol", BOOT, "--bearing",
                    ",".join(map(repr, bad))], check=False)
        assert proc.returncode == 2 and "bad-bearing" in proc.stderr.decode(), bad
    diagnosis.BearingGeometry(*good)
    proc = run([fw.tool("ef_node"), FLEET_V2, tmp_path / "s.f32", repr(FS), "--protocol", BOOT, "--bearing",
                ",".join(map(repr, good))])
    assert proc.returncode == 0


LEARN_S = 72


def three_speeds(seed: int, *, light: float = 1.5):
    """One machine at 0.55, 0.75 and 1.0 of its speed: 72 s of normal each (commissioning: a new speed's
    class is learned with the default 64 windows), then per speed 8 s of held-out normal and 8 s with a
    light unbalance; no speed input. Returns the signal, its segments (label, speed index, samples) and
    the three speeds (rpm)."""
    rng = np.random.default_rng(seed)
    m = vary_machines(make_machines(1, rng, bearing=None), rng)
    learn, judge, segs, truth = [], [], [], []
    for s, factor in enumerate((0.55, 0.75, 1.0)):
        one = at_speed(m, factor, 0.5)
        truth.append(float(one.shaft_hz(0.0)[0] * 60))
        learn.append(synth(one, rng, LEARN_S, 100.0 * s))
        segs.append(("learn", s, learn[-1].size))
    for s, factor in enumerate((0.55, 0.75, 1.0)):
        one = at_speed(m, factor, 0.5)
        judge.append(synth(one, rng, 12, 100.0 * s + 80))
        segs.append(("normal", s, judge[-1].size))
        fault = with_faults(one, [0], Fault.UNBALANCE, onset_s=-1, ramp_s=1e-6, peak_mm_s=light)
        judge.append(synth(fault, rng, 12, 100.0 * s + 95))
        segs.append(("unbalance", s, judge[-1].size))
    return np.concatenate(learn + judge), segs, truth


def window_labels(segs, n_windows: int) -> list[tuple[str, int] | None]:
    """Each back-to-back window's (label, speed), None where it straddles two segments."""
    ends = np.cumsum([n for _, _, n in segs])
    out = []
    for i in range(n_windows):
        a, b = np.searchsorted(ends, i * N, "right"), np.searchsorted(ends, (i + 1) * N - 1, "right")
        out.append(segs[a][:2] if a == b else None)
    return out


def test_three_speeds_without_a_speed_input_commission_three_classes(fw, params, tmp_path):
    sig, segs, truth = three_speeds(5)
    out = run_node(fw, tmp_path, sig, windows=64)
    res, feats, rd = out["results"], out["features"], out["readings"]
    rec = out["record"]
    assert len(rec.classes) == 3 and rec.rpm_keyed
    for c, rpm in zip(rec.classes, truth):  # one class around each running speed
        assert c.rpm_lo < rpm < c.rpm_hi
    done = [b["comm"] for b in out["births"] if b["comm"]["state"] == "commissioned"]
    assert len(done[-1]["classes"]) == 3
    labels = window_labels(segs, len(res))
    tail = next(i for i, lb in enumerate(labels) if lb and lb[0] != "learn")
    # the judged windows: class and verdict as Python's score_windows on the node's estimates
    est = np.float32(60.0 * rd[tail:, 1].astype(np.float64)).astype(np.float64)
    py = bl.score_windows(rec, feats[tail:], est, load_detector().score_standardized, estimated=True)
    c_cls = [h.get("cls", -1) if "state" not in r else -1 for h, r in res[tail:]]
    assert c_cls == py.cls.tolist()
    assert [r["anom"] for _, r in res[tail:]] == py.anom.tolist()
    anom = np.array([r["anom"] for _, r in res[tail:]])
    keep = [i for i, lb in enumerate(labels[tail:]) if lb]
    lab = np.array([labels[tail + i][0] for i in keep])
    spd = np.array([labels[tail + i][1] for i in keep])
    assert (py.cls[keep][lab == "normal"] == spd[lab == "normal"]).all()  # judged by its own speed's class
    assert anom[keep][lab == "normal"].mean() <= 0.05
    flagged = [float(anom[keep][(lab == "unbalance") & (spd == s)].mean()) for s in range(3)]
    ratio = py.ratio[keep]
    norm, bad = ratio[lab == "normal"], ratio[lab == "unbalance"]
    auc = float(((bad[:, None] > norm[None, :]).sum() + 0.5 * (bad[:, None] == norm[None, :]).sum())
                / (bad.size * norm.size))
    print("three speeds: classes", [(round(c.rpm_lo), round(c.rpm_hi)) for c in rec.classes], "truth",
          [round(t) for t in truth], "false alarms", float(anom[keep][lab == "normal"].mean()), "unbalance flagged",
          flagged, "AUC", auc)
    assert auc > 0.97 and min(flagged) >= 0.6 and np.mean(flagged) >= 0.85  # the slowest: 0.3x the velocity
    # rpm on the results: the estimate the node used
    assert all(abs(r["rpm"] - 60.0 * float(rd[i, 1])) <= 1e-4 * r["rpm"] for i, (_, r) in enumerate(res) if "rpm" in r)


def load_detector():
    from edgefleet.runtime.engine import Detector
    return Detector(load_artifact(FLEET_V2))


def test_v1_node_without_speed_keeps_one_any_speed_class(fw, tmp_path):
    sig, _, _ = three_speeds(6)
    np.ascontiguousarray(sig[: 3 * LEARN_S * 12000], "<f4").tofile(tmp_path / "s.f32")
    cmd = json.dumps({"v": 1, "seq": 0, "id": "c0", "op": "commission", "windows": 64}, separators=(",", ":"))
    proc = run([fw.tool("ef_node", sanitized=False), FLEET_V1, tmp_path / "s.f32", repr(FS), "--protocol", BOOT,
                "--cmd", "0", cmd])
    msgs = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith('{"v"')]
    done = [m["comm"] for m in msgs if "res" not in m and m["comm"]["state"] == "commissioned"]
    assert done and all(len(c["classes"]) == 1 and c["classes"][0]["rpm"] == [0.0, 0.0] for c in done)
    assert all("rpm" not in m["res"][0] and "why" not in m["res"][0] for m in msgs if "res" in m)


def test_why_and_hint_equal_python_on_simulated_bearing_faults(fw, params, tmp_path):
    """Bearing defects with the machine's geometry in the node's config: the hint may name the defect."""
    rows = []
    geom = (9, 7.94, 39.04, 0.0)
    for seed in (11, 12):
        rng = np.random.default_rng(seed)
        m = vary_machines(make_machines(1, rng, bearing="6205"), rng)
        rpm = float(m.shaft_hz(0.0)[0] * 60)
        # 36 s of normal for 16 commissioning windows: the settle test may restart once where the speed
        # wanders (seed 8's estimate slides 0.4 % in 16 s, and the line fitted on the newer half says so)
        parts = [synth(m, rng, 36, 0.0)]
        for k, kind in enumerate((Fault.OUTER_RACE, Fault.INNER_RACE, Fault.BALL)):
            for peak in (0.05, 0.2, 1.0):
                parts.append(synth(with_faults(m, [0], kind, onset_s=-1, ramp_s=1e-6, peak_g=peak), rng, 5,
                                   100.0 + 10 * k))
        out = run_node(fw, tmp_path, np.concatenate(parts), rpm=rpm, bearing=geom)
        rows += python_why(out, params, rpm=rpm, bearing=geom)
    same, n = check_parity(rows)
    print(f"simulated bearings: {same} of {n} equal; hints", {h: sum(1 for r in rows if r[2] == h)
                                                             for h in {r[2] for r in rows}})
    assert n >= 30 and same == n, (same, n)


def test_hint_rules_equal_python_on_crafted_inputs(fw, params, tmp_path):
    """Every rule of fault_hint, bearing defects included, on crafted z (excess at the bands holding
    1x, 2x, sub- and higher harmonics, a bearing's defect orders, HF, kurtosis, crest), random speeds
    and geometries: the C diagnosis (ef_diag_explain, centre 0 and spread 1 so z is the row) and Python
    agree on every why item and hint."""
    import shutil

    from fw_helpers import FIRMWARE

    exe = tmp_path / "ef_diag_check"
    cmsis = FIRMWARE / "third_party" / "cmsisdsp-1.10.3"
    run([shutil.which("cc") or "gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-ffp-contract=off",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-I{FIRMWARE / 'core/include'}",
         f"-I{cmsis / 'Include'}", REPO / "tests/firmware/c/ef_diag_check.c", fw.san / "lib.a", "-lm", "-o", exe])
    rng = np.random.default_rng(7)
    nb, nl, n = params.n_bands, params.lf.n_bands, params.n_features
    le = np.asarray(params.lf.edges_hz)
    rows, geoms = [], []
    for t in range(6000):
        speed = float(np.float32(rng.uniform(5.0, 45.0)))
        z = rng.normal(0.0, 0.7, n)
        if rng.random() < 0.5:
            geom = (int(rng.integers(6, 16)), float(rng.uniform(5, 15)), float(rng.uniform(35, 90)),
                    float(rng.choice([0.0, 15.0, 40.0])))
        else:
            geom = (0, 0.0, 0.0, 0.0)
        orders = [1.0, 2.0, 0.5, 1.5, 3.0, 4.0]
        if geom[0]:
            g = diagnosis.BearingGeometry(geom[0], *(float(np.float32(v)) for v in geom[1:]))
            orders += [k * o for o in g.orders().values() for k in (1, 2, 3)]
        for _ in range(int(rng.integers(1, 5))):
            f = rng.choice(orders) * speed
            hit = np.nonzero((le[:-1] <= f) & (f < le[1:]))[0]
            if hit.size:
                z[nb + hit[0]] += rng.uniform(2, 12)
        if rng.random() < 0.3:
            z[rng.integers(0, nb, 3)] += rng.uniform(2, 10, 3)
        if rng.random() < 0.2:
            z[nb + nl + rng.integers(0, 3)] += rng.uniform(2, 10)
        if rng.random() < 0.02:
            z[:] = -1.0  # nothing rose: no why
        if rng.random() < 0.02:
            z[3] = np.nan
        if rng.random() < 0.02:
            z[[nb + 2, nb + 5]] = 5.0  # an exact tie: the lower index first
        rows.append(np.concatenate([[speed, *geom], z]).astype(np.float32))
        geoms.append(geom)
    np.asarray(rows, "<f4").tofile(tmp_path / "rows.f32")
    out = [json.loads(line) for line in run([exe, FLEET_V2, tmp_path / "rows.f32"]).stdout.decode().splitlines()]
    assert len(out) == len(rows)
    hints = {}
    for row, geom, c in zip(rows, geoms, out):
        assert c["st"] == "ok"
        g = None if not geom[0] else diagnosis.BearingGeometry(int(row[1]), float(row[2]), float(row[3]), float(row[4]))
        err = diagnosis.excess(row[5:])
        why = [w.to_message() for w in diagnosis.contributors(err, params)]
        assert c["why"] == why, (c, why)
        if why:
            hint = diagnosis.fault_hint(err, params, float(row[0]), g)
            assert c["hint"] == hint, (c, hint, row[:5])
            hints[hint] = hints.get(hint, 0) + 1
        else:
            assert c["hint"] is None
    print("crafted hints", hints)
    assert set(hints) == set(diagnosis.HINTS)


def test_steady_speed_tolerances_equal_python():
    """The C node's ramp rule on measured and on estimated speeds is Python's (steady_speed)."""
    import re

    from fw_helpers import FIRMWARE

    h = (FIRMWARE / "core" / "include" / "ef" / "baseline.h").read_text()
    val = lambda name: float(re.search(rf"#define {name} ([0-9.]+)", h).group(1))  # noqa: E731
    assert val("EF_BASELINE_STEADY_SPEED") == bl.STEADY_SPEED
    assert val("EF_BASELINE_STEADY_SPEED_ESTIMATED") == bl.STEADY_SPEED_ESTIMATED
