"""Commissioning on the host node (ports/host ef_node --protocol: the core's ef_commission with the QEMU
node's flash layout) on CWRU recordings, against docs/baseline.md and the Python reference:

- a node without a baseline commissions by itself (results `state: commissioning`, no verdict), then
  judges every window by its class (`cls`, `hi_thr`, `hi`): held-out normal windows pass, fault windows
  are anomalous; the record it wrote is the Python reference's from the node's own features;
- the record survives a reset (the records' flash area kept in a file); a corrupt one makes the node
  commission again, naming the fault;
- `cmd commission` (windows, one class by rpm) and `commission_end`; bad arguments are refused and the
  baseline in force is kept;
- after a model switch (an OTA trial) the baseline is kept when the front end is the same, else the
  node commissions again.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edgefleet.protocol import codec
from edgefleet.runtime import baseline as bl
from edgefleet.runtime.artifact import Artifact, load_artifact
from edgefleet.runtime.engine import Detector
from edgefleet.toolchain.datasets import load_folder
from fw_helpers import REPO, run

MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
BOOT, T0, N = "0badc0de", 1767225600000, 960  # 0.08 s at 12 kHz
FAULTS = ("ir007_0hp_105", "b014_0hp_185", "or021at6_0hp_234")


@pytest.fixture(scope="module")
def cwru(cwru_dir) -> dict:
    return {r.name: r for r in load_folder(cwru_dir)}


def windows(rec, k: int | None = None) -> np.ndarray:
    n = rec.signal.size // N if k is None else k
    return rec.signal[: n * N]


class Run:
    def __init__(self, proc):
        self.stderr = proc.stderr.decode()
        self.msgs = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith('{"v"')]
        for line in proc.stdout.decode().splitlines():
            if line.startswith('{"v"'):  # every message canonical and schema-valid
                kind = "result" if '"res"' in line else "status"
                assert codec.encode(kind, codec.decode(kind, line.encode())) == line.encode()
        self.results = [(m, m["res"][0]) for m in self.msgs if "res" in m]
        self.births = [m for m in self.msgs if "res" not in m]


def node(fw, tmp: Path, signal: np.ndarray, rpm=None, *args, model: Path = MODEL, check=True) -> Run:
    np.ascontiguousarray(signal, "<f4").tofile(tmp / "s.f32")
    extra = []
    if rpm is not None:
        np.ascontiguousarray(np.broadcast_to(np.asarray(rpm, np.float32), (signal.size // N,)), "<f4").tofile(
            tmp / "rpm.f32")
        extra = ["--rpm", tmp / "rpm.f32"]
    proc = run([fw.tool("ef_node"), model, tmp / "s.f32", "12000", "--protocol", BOOT, "--t0", str(T0),
                *extra, *args], check=check)
    return Run(proc)


def cmd(at: int, **body) -> list:
    return ["--cmd", str(at), json.dumps({"v": 1, "seq": at, "id": f"c{at}", **body}, separators=(",", ":"))]


def states(r: Run) -> list:
    return [res.get("state", m.get("cls")) for m, res in r.results]


def test_node_commissions_by_itself_then_judges_every_window(fw, cwru, tmp_path):
    normal = windows(cwru["normal_0hp_97"])  # 44 windows at 1796 rpm
    faults = np.concatenate([windows(cwru[f], 10) for f in FAULTS])
    sig = np.concatenate([normal, normal, faults])  # 88 normal windows, then 30 fault windows
    np.ascontiguousarray(sig, "<f4").tofile(tmp_path / "s.f32")
    r = node(fw, tmp_path, sig, 1796.0, "--features", tmp_path / "F.f32")
    res = r.results
    assert len(res) == 118
    # 64 windows (the default target) learning, no verdict, the model's own threshold
    thr0 = float(load_artifact(MODEL).scoring.threshold)
    for m, x in res[:64]:
        assert x["state"] == "commissioning" and not x["anom"] and "cls" not in m and "hi" not in x
        assert m["thr"] == pytest.approx(thr0, rel=1e-5)
    # births: commissioning (target 64) at the start, commissioned after window 63
    assert r.births[0]["comm"] == {"state": "commissioning", "target": 64, "progress": []}
    assert r.births[0]["caps"] == ["commission"]
    done = r.births[-1]["comm"]
    assert done["state"] == "commissioned" and len(done["classes"]) == 1
    assert done["classes"][0]["rpm"] == [1706.2, 1885.8] and done["classes"][0]["n"] == 64
    assert done["learned"] == res[63][1]["ts"]
    # then every window judged by class 0: the held-out normal ones pass, every fault window is flagged
    for m, x in res[64:]:
        assert m["cls"] == 0 and "state" not in x and x["hi"] > 0
        assert m["thr"] == pytest.approx(done["classes"][0]["thr"]) and m["hi_thr"] == pytest.approx(
            done["classes"][0]["hi_thr"])
    assert not any(x["anom"] for _, x in res[64:88])
    assert all(x["anom"] for _, x in res[88:])
    # the node's record is the Python reference's, learned from the node's own features
    feats = np.fromfile(tmp_path / "F.f32", "<f4").reshape(118, -1)
    det = Detector(load_artifact(MODEL))
    com = bl.Commissioner(feats.shape[1])
    for row in feats[:64]:
        com.add(row, 1796.0)
    ref = com.finish(det.score_standardized, frontend=bl.frontend_crc(det.artifact.features.params),
                     learned_ms=done["learned"])
    assert done["hash"] == ref.digest()
    wire = {**r.births[-1], "comm": {"state": "commissioned", **ref.summary()}}  # Python's summary, encoded
    assert codec.encode("status", wire) == codec.encode("status", r.births[-1])
    # and its verdicts on the judged windows are the reference's
    py = bl.score_windows(ref, feats[64:], np.full(54, 1796.0), det.score_standardized)
    assert [x["anom"] for _, x in res[64:]] == py.anom.tolist()
    assert [x["score"] for _, x in res[64:]] == pytest.approx(py.score.tolist(), rel=1e-5)
    assert [x["hi"] for _, x in res[64:]] == pytest.approx(py.hi.tolist(), rel=1e-5)


def test_record_survives_a_reset_and_a_corrupt_one_is_recommissioned(fw, cwru, tmp_path):
    normal = windows(cwru["normal_0hp_97"])
    flash = tmp_path / "records.bin"
    first = node(fw, tmp_path, normal, 1796.0, "--flash", flash, *cmd(0, op="commission", windows=16))
    learned = first.births[-1]["comm"]
    assert learned["state"] == "commissioned" and learned["classes"][0]["n"] == 16
    # after a reset: the record is back, every window judged from the first one
    again = node(fw, tmp_path, normal, 1796.0, "--flash", flash)
    assert again.births[0]["comm"] == learned and again.births[0]["thr"] == learned["classes"][0]["thr"]
    assert all(m.get("cls") == 0 and "state" not in x for m, x in again.results)
    assert "no valid baseline" not in again.stderr
    # a corrupt record: never used; the node commissions again and says why
    raw = bytearray(flash.read_bytes())
    copy = 0 if raw[:4] == b"EFBR" else 4096  # the copy in force
    assert raw[copy:copy + 4] == b"EFBR"
    raw[copy + 16 + 40] ^= 0x10  # a byte of class 0's centre
    flash.write_bytes(bytes(raw))
    broken = node(fw, tmp_path, normal, 1796.0, "--flash", flash)
    assert broken.births[0]["comm"]["state"] == "commissioning"
    assert "bad-crc" in broken.stderr
    assert all(x["state"] == "commissioning" for _, x in broken.results)


def test_commission_cmd_bad_arguments_are_refused_and_the_baseline_kept(fw, cwru, tmp_path):
    normal = windows(cwru["normal_0hp_97"])
    args = [*cmd(0, op="commission", windows=16),
            "--cmd", "20", '{"v":1,"seq":20,"id":"b1","op":"commission","windows":8}',  # schema: 16..4096
            *cmd(21, op="commission", windows=4096),   # above this node's capacity (1,024 per class)
            *cmd(22, op="commission", rpm=1796.0),     # this node has no speed input
            *cmd(23, op="commission_end")]             # not commissioning: ignored
    r = node(fw, tmp_path, normal, None, *args)
    assert "cmd refused: windows: not an integer in 16..4096" in r.stderr
    assert "commission refused, the node goes on as it was (capacity)" in r.stderr
    assert "commission refused, the node goes on as it was (incompatible)" in r.stderr
    assert "commission_end ignored: not commissioning" in r.stderr
    # one birth at the start and one when the 16 windows were learned: no refused cmd changed anything
    assert [b["comm"]["state"] for b in r.births] == ["commissioning", "commissioning", "commissioned"]
    assert states(r) == ["commissioning"] * 16 + [0] * 28  # any speed: class 0 judges every later window
    assert r.births[-1]["comm"]["classes"][0]["rpm"] == [0, 0]


def test_commission_end_keeps_classes_with_enough_windows(fw, cwru, tmp_path):
    normal = windows(cwru["normal_0hp_97"])
    r = node(fw, tmp_path, normal, 1796.0, *cmd(10, op="commission_end"), *cmd(20, op="commission_end"))
    assert "too-few-windows" in r.stderr  # 10 windows at the first: commissioning goes on
    assert states(r) == ["commissioning"] * 20 + [0] * 24
    assert r.births[-1]["comm"]["classes"][0]["n"] == 20


def test_a_new_speed_is_learned_as_one_more_class_and_the_others_kept(fw, cwru, tmp_path):
    """Learn 1796 rpm; at a speed no class covers the node starts learning that class by itself
    (as the simulated node), a cmd re-learns it with 16 windows; the record gains it and keeps the
    first class byte for byte."""
    normal = windows(cwru["normal_0hp_97"])
    sig = np.concatenate([normal, normal])
    rpm = np.array([1796.0] * 44 + [900.0] * 44, np.float32)
    r = node(fw, tmp_path, sig, rpm, *cmd(0, op="commission", windows=16),
             *cmd(50, op="commission", windows=16, rpm=900.0))
    st = states(r)
    assert st[:16] == ["commissioning"] * 16 and st[16:44] == [0] * 28
    end = max(i for i, x in enumerate(st) if x == "commissioning")  # 900 rpm: learned by itself from 44,
    assert end >= 65 and st[44:end + 1] == ["commissioning"] * (end - 43)  # by the cmd from 50 (16 or more:
    assert st[end + 1:] == [0] * (87 - end)  # a restart if unsettled), then judged by its class (first now)
    comms = [b["comm"] for b in r.births]
    assert [c["state"] for c in comms] == ["commissioning", "commissioning", "commissioned", "commissioning",
                                           "commissioning", "commissioned"]
    first, auto, second = comms[2], comms[3], comms[-1]
    assert auto["target"] == 64 and auto["hash"] == first["hash"]  # the record stays in force meanwhile
    assert len(first["classes"]) == 1 and len(second["classes"]) == 2
    assert second["classes"][1] == first["classes"][0]  # 1796 rpm: the same class
    assert second["classes"][0]["rpm"] == [855, 945] and second["classes"][0]["n"] == 16


def test_a_speed_ramp_is_not_learned_from(fw, cwru, tmp_path):
    """A start-up ramp (2 % per window) teaches nothing (docs/baseline.md, speed_changing): after the
    first window (no previous speed: steady, as in the reference) the ramp's windows open no class;
    the windows are learned once the speed holds. The 1500 rpm class of that first window never
    fills, so commission_end finishes with the classes that have 16 windows."""
    normal = windows(cwru["normal_0hp_97"])
    rpm = np.array([1500.0 * 1.02 ** i for i in range(9)] + [1796.0] * 35, np.float32)
    r = node(fw, tmp_path, normal, rpm, *cmd(0, op="commission", windows=16), *cmd(20, op="ping"),
             *cmd(40, op="commission_end"))
    # window 9 (1757 -> 1796 rpm, +2.2 %) is still on the ramp: 10..19 are learned by the ping
    assert r.births[2]["comm"]["progress"] == [{"rpm": 1500, "n": 1}, {"rpm": 1796, "n": 10}]
    done = r.births[-1]["comm"]
    assert done["state"] == "commissioned" and [c["rpm"] for c in done["classes"]] == [[1706.2, 1885.8]]
    assert done["classes"][0]["n"] == 16 and states(r)[:40] == ["commissioning"] * 40


@pytest.mark.parametrize("same_front_end", [True, False])
def test_model_switch_keeps_the_baseline_only_for_the_same_front_end(fw, cwru, tmp_path, same_front_end):
    art = Artifact.from_bytes(MODEL.read_bytes())
    feats = art.features
    if not same_front_end:  # a retrained model with another log floor: features of another scale
        feats = dataclasses.replace(feats, params=dataclasses.replace(feats.params, log_floor=1e-9))
    v2 = tmp_path / "v2.efm"
    v2.write_bytes(dataclasses.replace(art, model_version=2, features=feats, _raw=None).to_bytes())
    normal = windows(cwru["normal_0hp_97"])
    r = node(fw, tmp_path, normal, 1796.0, *cmd(0, op="commission", windows=16), "--model-at", "30", v2)
    before, after = r.births[2], r.births[3]
    assert (before["model"], after["model"]) == (1, 2)
    st = states(r)
    assert st[:16] == ["commissioning"] * 16 and st[16:30] == [0] * 14
    if same_front_end:
        assert after["comm"] == before["comm"] and st[30:] == [0] * 14
    else:
        assert after["comm"]["state"] == "commissioning" and "other-front-end" in r.stderr
        assert st[30:] == ["commissioning"] * 14
