"""A v2 node (feature definition v2, ~1 s windows streamed through the C front end) on the host build:
it commissions its baseline from its own v2 features (51 inputs, the v2 front-end CRC), and its record
and verdicts are the Python reference's (a healthy machine's held-out windows pass, a strong 1x line is
flagged); results carry vrms and rpm."""

from __future__ import annotations

import json

import numpy as np

from edgefleet.protocol import codec
from edgefleet.runtime import baseline as bl
from edgefleet.runtime.engine import Detector
from edgefleet.runtime.features import analyze, frame, plan
from fw_helpers import run
from v2_helpers import standardizing, synthetic, v2_params

BOOT, T0, FS, RPM = "0badc0de", 1767225600000, 12000.0, 1482.0


def test_v2_node_commissions_from_its_own_features_as_python(fw, tmp_path):
    params = v2_params()
    n = plan(params, FS).n_samples
    healthy = synthetic(FS, 26 * n / FS, speed_hz=RPM / 60, dc=1.0, noise=0.03, seed=21)
    faulty = synthetic(FS, 4 * n / FS, speed_hz=RPM / 60, dc=1.0, noise=0.03, amps=(0.4, 0.03, 0.02), seed=22)
    sig = np.concatenate([healthy, faulty])
    windows = frame(sig, n)
    a = analyze(np.asarray(windows, np.float64), FS, params)
    art = standardizing(params, a.features[:16], threshold=5.0)
    (tmp_path / "m.efm").write_bytes(art.to_bytes())
    sig.astype("<f4").tofile(tmp_path / "s.f32")
    np.full(len(windows), RPM, np.float32).tofile(tmp_path / "rpm.f32")
    cmd = json.dumps({"v": 1, "seq": 0, "id": "c0", "op": "commission", "windows": 16}, separators=(",", ":"))
    proc = run([fw.tool("ef_node"), tmp_path / "m.efm", tmp_path / "s.f32", repr(FS), "--protocol", BOOT, "--t0",
                str(T0), "--rpm", tmp_path / "rpm.f32", "--cmd", "0", cmd, "--features", tmp_path / "F.f32"])
    lines = [line for line in proc.stdout.decode().splitlines() if line.startswith('{"v"')]
    msgs = [json.loads(line) for line in lines]
    for line in lines:
        kind = "result" if '"res"' in line else "status"
        assert codec.encode(kind, codec.decode(kind, line.encode())) == line.encode()
    res = [(m, m["res"][0]) for m in msgs if "res" in m]
    births = [m for m in msgs if "res" not in m]
    assert len(res) == len(windows) == 30
    assert all(x["state"] == "commissioning" for _, x in res[:16])
    done = births[-1]["comm"]
    assert done["state"] == "commissioned" and done["classes"][0]["n"] == 16
    # every result carries the readings: vrms within the contract of Python's, rpm the speed input
    assert all(x["rpm"] == RPM for _, x in res)
    assert np.allclose([x["vrms"] for _, x in res], a.vrms_mm_s, rtol=5e-3)
    # the record is the Python reference's from the node's own features, with the v2 front-end CRC
    feats = np.fromfile(tmp_path / "F.f32", "<f4").reshape(30, params.n_features)
    assert np.abs(feats - a.features).max() <= 2e-3
    det = Detector(art)
    com = bl.Commissioner(params.n_features, target=16)
    for row in feats[:16]:
        com.add(row, RPM)
    ref = com.finish(det.score_standardized, frontend=bl.frontend_crc(params), learned_ms=done["learned"])
    assert done["hash"] == ref.digest()
    py = bl.score_windows(ref, feats[16:], np.full(14, RPM), det.score_standardized)
    assert [x["anom"] for _, x in res[16:]] == py.anom.tolist()
    assert np.allclose([x["hi"] for _, x in res[16:]], py.hi, rtol=1e-5)
    assert np.allclose([x["score"] for _, x in res[16:]], py.score, rtol=1e-5)
    assert not any(x["anom"] for _, x in res[16:26]) and all(x["anom"] for _, x in res[26:])
