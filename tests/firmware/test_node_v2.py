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


def test_switch_from_a_v1_to_a_v2_model_commissions_again(fw, tmp_path):
    """An OTA switch (--model-at) from the v1 fleet model to a v2 model: the v1 baseline is not kept (another
    front end: its CRC differs), the node commissions again and its windows become v2's (N samples)."""
    from fw_helpers import REPO

    v1 = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
    params = v2_params()
    n2 = plan(params, FS).n_samples
    sig = synthetic(FS, (20 * 960 + 6 * n2) / FS, speed_hz=RPM / 60, dc=1.0, noise=0.03, seed=23)
    a = analyze(np.asarray(frame(sig[20 * 960:], n2), np.float64), FS, params)
    (tmp_path / "v2.efm").write_bytes(standardizing(params, a.features, threshold=5.0).to_bytes())
    sig.astype("<f4").tofile(tmp_path / "s.f32")
    cmd = json.dumps({"v": 1, "seq": 0, "id": "c0", "op": "commission", "windows": 16}, separators=(",", ":"))
    proc = run([fw.tool("ef_node"), v1, tmp_path / "s.f32", repr(FS), "--protocol", BOOT, "--t0", str(T0),
                "--cmd", "0", cmd, "--model-at", "20", tmp_path / "v2.efm"])
    msgs = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith('{"v"')]
    res = [m for m in msgs if "res" in m]
    births = [m for m in msgs if "res" not in m]
    assert len(res) == 20 + 6
    assert any(b["comm"]["state"] == "commissioned" for b in births)  # the v1 model commissioned ...
    assert births[-1]["comm"]["state"] == "commissioning"  # ... and the v2 model starts over
    assert all("vrms" not in m["res"][0] for m in res[:20]) and all("vrms" in m["res"][0] for m in res[20:])
    assert all(m["res"][0]["state"] == "commissioning" for m in res[20:])
    assert res[21]["res"][0]["ts"] - res[20]["res"][0]["ts"] == round(1000 * n2 / FS)  # v2 windows, back to back
