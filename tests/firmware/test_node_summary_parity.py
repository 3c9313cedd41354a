"""Summary mode on the C node (host ef_node --summary-every, the core's ef_summary_period that the MCU node
runs too) against the simulated node's accumulation (device_sim VirtualNode._summarize) on the same windows:
the same summaries byte for byte. The windows come from the same node in result mode (ts, model, thr, anom,
state) with its exact float32 scores (--scores) and, on a v2 front end, velocity RMS (--readings).

The run crosses every rule of a period: periods aligned to multiples of --summary-every, commissioning
windows (no verdict, the model's threshold) then a class's threshold, anomalous fault windows, a model switch
(an OTA trial with the same front end), and the open period at the end, which is not sent."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from device_sim.node import Verdict, VirtualNode
from edgefleet.protocol import codec
from edgefleet.runtime.artifact import Artifact
from edgefleet.toolchain.datasets import load_folder
from fw_helpers import REPO, run

MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
MODEL_V2 = REPO / "edgefleet" / "models" / "fleet-v2" / "model.efm"
BOOT, T0, N = "5a11ab1e", 1767225600000, 960  # 80 ms windows at 12 kHz


@pytest.fixture(scope="module")
def cwru(cwru_dir) -> dict:
    return {r.name: r for r in load_folder(cwru_dir)}


def ef_node(fw, tmp: Path, model: Path, signal: np.ndarray, n_windows: int, *args) -> list[bytes]:
    np.ascontiguousarray(signal, "<f4").tofile(tmp / "s.f32")
    np.full(n_windows, 1796.0, "<f4").tofile(tmp / "rpm.f32")
    proc = run([fw.tool("ef_node"), model, tmp / "s.f32", "12000", "--protocol", BOOT, "--t0", str(T0),
                "--rpm", tmp / "rpm.f32", *args])
    return [line.encode() for line in proc.stdout.decode().splitlines() if line.startswith('{"v"')]


def windows_of(lines: list[bytes], scores: np.ndarray, vrms: np.ndarray | None) -> list[dict]:
    """Each window of a result-mode run: what the node judged it by, with its exact score."""
    out = []
    for line in lines:
        if b'"res"' not in line:
            continue
        m = codec.decode("result", line)
        (r,) = m["res"]
        out.append({"ts": r["ts"], "model": m["model"], "thr": m["thr"], "anom": r["anom"],
                    "state": r.get("state", ""), "score": float(scores[r["seq"]]),
                    "vrms": None if vrms is None else float(vrms[r["seq"]])})
    return out


class _Said:
    """The window's readings as the simulated node passes them (its `vrms`, here the node's exact one)."""

    def __init__(self, vrms):
        self.vrms = vrms

    def fields(self, anom: bool) -> dict:
        return {} if self.vrms is None else {"vrms": self.vrms}


def simulated(windows: list[dict], every_ms: int) -> list[bytes]:
    """The same windows through the simulated node in summary mode: the summaries in its ring."""
    sim = VirtualNode("n1", 12000.0, windows[0]["model"], windows[0]["thr"], boot=BOOT, summary_every_ms=every_ms)
    for w in windows:
        sim.model_version = w["model"]
        sim.add_result(w["ts"], w["score"], 0, verdict=Verdict(state=w["state"], anom=w["anom"], thr=w["thr"]),
                       reading=_Said(w["vrms"]))
    return [item[2] for item in sim.ring]


def cmd(at: int, **body) -> list:
    return ["--cmd", str(at), json.dumps({"v": 1, "seq": at, "id": f"c{at}", **body}, separators=(",", ":"))]


def test_v1_node_summaries_are_the_simulated_nodes(fw, cwru, tmp_path):
    art = Artifact.from_bytes(MODEL.read_bytes())
    retrained = tmp_path / "m2.efm"  # an OTA trial's model with the same front end: the record stays
    retrained.write_bytes(dataclasses.replace(art, model_version=2, _raw=None).to_bytes())
    normal = cwru["normal_0hp_97"].signal[: 44 * N]
    faults = np.concatenate([cwru[f].signal[: 10 * N] for f in ("ir007_0hp_105", "or021at6_0hp_234")])
    sig = np.concatenate([normal, normal, faults, normal[: 20 * N]])  # 128 windows
    args = [*cmd(0, op="commission", windows=16), "--model-at", "105", retrained]
    res = ef_node(fw, tmp_path, MODEL, sig, 128, *args, "--scores", tmp_path / "S.f32")
    wins = windows_of(res, np.fromfile(tmp_path / "S.f32", "<f4"), None)
    assert len(wins) == 128
    assert {w["state"] for w in wins[:16]} == {"commissioning"} and {w["state"] for w in wins[16:]} == {""}
    assert any(w["anom"] for w in wins) and len({(w["model"], w["thr"]) for w in wins}) >= 3

    got = [m for m in ef_node(fw, tmp_path, MODEL, sig, 128, *args, "--summary-every", "1000")
           if b'"period"' in m]
    want = simulated(wins, 1000)
    assert got == want
    bodies = [codec.decode("summary", m) for m in got]
    assert [b["seq"] for b in bodies] == list(range(len(bodies)))
    # 128 windows of 80 ms in 1 s periods (12 or 13 windows), closed early by the class threshold (window 16)
    # and the model (105); the open period at the end (windows 125-127) is not sent, as the simulated node
    # keeps it
    assert [b["n"] for b in bodies] == [13, 3, 9, 13, 12, 13, 12, 13, 12, 5, 8, 12]
    assert [b["ts"] - T0 for b in bodies][:3] == [960, 1200, 1920] and bodies[-1]["ts"] - T0 == 9920
    assert sum(b["anom"] for b in bodies) == sum(w["anom"] for w in wins[:125]) > 0
    assert [b["model"] for b in bodies] == [1] * 10 + [2] * 2
    assert bodies[1]["thr"] != bodies[2]["thr"]  # the model's own threshold, then the class's


def test_v2_node_summaries_carry_the_velocity_the_simulated_node_would(fw, tmp_path):
    """A v2 front end (about 1 s windows): vrms (mean) and vrms_max over the period, as the simulated node."""
    from device_sim.physics import synthesize
    from device_sim.plant import make_plant

    n2 = 12512  # fleet-v2's window at 12 kHz
    plant = make_plant(1, seed=7, rates=(12000.0,))
    sig = synthesize(plant.machines, 5.0, 10 * n2, 12000.0, np.random.default_rng(3))[0]
    res = ef_node(fw, tmp_path, MODEL_V2, sig, 10, "--no-commission", "--scores", tmp_path / "S.f32",
                  "--readings", tmp_path / "R.f32")
    vrms = np.fromfile(tmp_path / "R.f32", "<f4").reshape(-1, 4)[:, 0].astype(np.float64)
    wins = windows_of(res, np.fromfile(tmp_path / "S.f32", "<f4"), vrms)
    assert len(wins) == 10
    got = [m for m in ef_node(fw, tmp_path, MODEL_V2, sig, 10, "--no-commission", "--summary-every", "3000")
           if b'"period"' in m]
    assert got == simulated(wins, 3000) and len(got) >= 2
    assert all("vrms" in codec.decode("summary", m) for m in got)


def test_a_period_over_1024_windows_goes_in_pieces(fw, cwru, tmp_path):
    """Where the MCU departs from the simulator (RAM): a period of more than 1,024 windows is sent in pieces;
    the first holds windows 0-1023, computed as protocol.summary_of_scores computes them."""
    from edgefleet import protocol

    sig = np.tile(cwru["normal_0hp_97"].signal[: 44 * N], 24)  # 1,056 windows, all in one hour-long period
    res = ef_node(fw, tmp_path, MODEL, sig, 1056, "--no-commission", "--scores", tmp_path / "S.f32")
    wins = windows_of(res, np.fromfile(tmp_path / "S.f32", "<f4"), None)
    got = [m for m in ef_node(fw, tmp_path, MODEL, sig, 1056, "--no-commission", "--summary-every", "3600000")
           if b'"period"' in m]
    first = wins[:1024]
    want = protocol.summary_of_scores(BOOT, 0, first[-1]["ts"], 3600000, 1, first[0]["thr"],
                                      [w["score"] for w in first], sum(w["anom"] for w in first))
    assert got == [codec.encode("summary", want)]  # the other 32 windows: the open period, not sent
    assert simulated(wins, 3600000) == []  # the simulated node keeps all 1,056 in its open period
