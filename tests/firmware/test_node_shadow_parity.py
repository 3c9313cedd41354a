"""Another model on a commissioned C node is judged by the machine's own normal, as device_sim does
(docs/baseline.md; device_sim/fleet.py `_rebaseline`, `_shadow_thresholds`, `_shadow_judged`):

- after a model switch with the same front end (an OTA trial) the host node re-derives every class's
  thresholds from the commissioning rows it kept: the new record is, byte for byte, the Python
  reference's `learn_class` with the new model on the node's own features (same centre, spread and
  learned time), and its verdicts are the reference's;
- in a shadow phase the candidate scores a window its class judged on the same class-standardized
  input, against the threshold it would get for that class (learned from the kept rows, bit for bit
  the simulator's), anomalous on that or on the class's HI; the message's shadow `thr` is that class
  threshold. A window no class judged (commissioning) keeps the old rule: the candidate's own
  standardization and the artifact's threshold.

The candidate is the shipped model with its output bias moved: same front end, other scores.
Thresholds are compared bit for bit through the records' SHA-256 (the births' `hash`); values on the
wire are canonical %.6g, so those are compared to 1e-5.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

from device_sim.fleet import Fleet
from edgefleet.runtime import baseline as bl
from edgefleet.runtime.artifact import Artifact, load_artifact
from edgefleet.runtime.engine import Detector
from edgefleet.runtime.features import standardize
from edgefleet.toolchain.datasets import load_folder
from test_node_commissioning import MODEL, N, cmd, node

RPM = 1796.0
LEARN = 16  # commissioning windows (cmd commission windows=16 before window 0)


@pytest.fixture(scope="module")
def signal(cwru_dir) -> np.ndarray:
    """44 normal windows, then 10 of each of three faults (1796 rpm)."""
    recs = {r.name: r for r in load_folder(cwru_dir)}
    parts = [recs["normal_0hp_97"].signal[: 44 * N]]
    parts += [recs[f].signal[: 10 * N] for f in ("ir007_0hp_105", "b014_0hp_185", "or021at6_0hp_234")]
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def candidate(tmp_path_factory) -> tuple:
    """Model 2: the shipped model with every output bias shifted (its reconstructions, so its scores
    and thresholds, differ; its feature section is the same bytes)."""
    art = Artifact.from_bytes(MODEL.read_bytes())
    last = art.layers[-1]
    bias = (last.bias if last.bias is not None else np.zeros(last.weights.shape[0], np.int32)).astype(np.int64)
    shift = np.where(np.arange(bias.size) % 2, 1, -1) * (np.abs(bias) // 8 + 40)
    moved = dataclasses.replace(last, bias=(bias + shift).astype(np.int32))
    cand = dataclasses.replace(art, model_version=2, layers=[*art.layers[:-1], moved], _raw=None)
    path = tmp_path_factory.mktemp("cand") / "v2.efm"
    path.write_bytes(cand.to_bytes())
    return path, Detector(load_artifact(path))


def learned_rows(feats: np.ndarray) -> np.ndarray:
    """The rows the node kept: the Python Commissioner's on the node's own features."""
    com = bl.Commissioner(feats.shape[1], target=LEARN)
    for row in feats[:LEARN]:
        assert com.add(row, RPM) == "learning"
    return np.stack(com.classes[0].rows)


def states_of(r) -> list:
    return [x.get("state", m.get("cls")) for m, x in r.results]


def birth_hash(births: list, model: int) -> str:
    return [b for b in births if b["model"] == model][-1]["comm"]["hash"]


def test_model_switch_rederives_the_class_thresholds_from_the_kept_rows(fw, signal, candidate, tmp_path):
    path, cand = candidate
    run1 = Detector(load_artifact(MODEL))
    r = node(fw, tmp_path, signal, RPM, *cmd(0, op="commission", windows=LEARN), "--model-at", "30", path,
             "--features", tmp_path / "F.f32")
    feats = np.fromfile(tmp_path / "F.f32", "<f4").reshape(len(r.results), -1)
    rows = learned_rows(feats)
    learned = [b for b in r.births if b["model"] == 1][-1]["comm"]["learned"]
    crc = bl.frontend_crc(run1.artifact.features.params)

    def record(det: Detector) -> bl.Baseline:
        return bl.Baseline(crc, learned, (bl.learn_class(rows, RPM, det.score_standardized),), feats.shape[1])

    old, new = record(run1), record(cand)
    assert old.classes[0].threshold != new.classes[0].threshold  # the candidate really scores otherwise
    assert birth_hash(r.births, 1) == old.digest()
    # the switch: the record is re-learned for model 2 from the kept rows, byte for byte Python's
    assert birth_hash(r.births, 2) == new.digest()
    after = [b for b in r.births if b["model"] == 2][-1]["comm"]
    assert after["learned"] == learned and after["classes"][0]["n"] == LEARN
    # ... and model 2's windows are judged by it, as the Python reference judges them
    res = r.results[30:]
    assert all(m["model"] == 2 and m["cls"] == 0 for m, _ in res)
    assert all(m["thr"] == pytest.approx(new.classes[0].threshold, rel=1e-5) for m, _ in res)
    py = bl.score_windows(new, feats[30:], np.full(len(res), RPM), cand.score_standardized)
    assert [x["anom"] for _, x in res] == py.anom.tolist()
    assert [x["score"] for _, x in res] == pytest.approx(py.score.tolist(), rel=1e-5)
    assert any(x["anom"] for _, x in res) and not any(x["anom"] for _, x in res[:14])  # normal, then faults


def sim_class_thresholds(rows: np.ndarray, ref: bl.Baseline, cand: Detector) -> list:
    """The simulator's own rule (Fleet._shadow_thresholds) on a node holding these rows."""
    vnode = types.SimpleNamespace(shadow_class_thr=None, baseline=ref, baseline_rows=[rows],
                                  baseline_centres=[RPM])
    return Fleet._shadow_thresholds(vnode, 2, cand)


def test_shadow_candidate_is_judged_by_the_class_as_the_simulator_judges_it(fw, signal, candidate, tmp_path):
    path, cand = candidate
    run1 = Detector(load_artifact(MODEL))
    start = 10  # the shadow phase starts while the node still commissions
    r = node(fw, tmp_path, signal, RPM, *cmd(0, op="commission", windows=LEARN), "--shadow-at", str(start), path,
             "--features", tmp_path / "F.f32")
    feats = np.fromfile(tmp_path / "F.f32", "<f4").reshape(len(r.results), -1)
    rows = learned_rows(feats)
    com = bl.Commissioner(feats.shape[1], target=LEARN)
    for row in feats[:LEARN]:
        com.add(row, RPM)
    ref = com.finish(run1.score_standardized, frontend=bl.frontend_crc(run1.artifact.features.params),
                     learned_ms=r.births[-1]["comm"]["learned"])
    assert r.births[-1]["comm"]["hash"] == ref.digest()  # the running model's record is untouched
    thr = sim_class_thresholds(rows, ref, cand)
    assert thr == [bl.learn_class(rows, RPM, cand.score_standardized).threshold]
    assert thr[0] != ref.classes[0].threshold and thr[0] != cand.threshold
    assert all("shadow" not in m for m, _ in r.results[:start])
    assert all(m["shadow"]["model"] == 2 for m, _ in r.results[start:])
    # commissioning windows (no class): the candidate's own standardization and artifact threshold
    own = r.results[start:LEARN]
    a = cand.artifact
    s_own = cand.score_standardized(standardize(feats[start:LEARN], a.features.mean, a.features.inv_std))
    assert all(m["shadow"]["thr"] == pytest.approx(cand.threshold, rel=1e-5) for m, _ in own)
    assert [x["shadow"]["score"] for _, x in own] == pytest.approx(np.maximum(s_own, 0).tolist(), rel=1e-5)
    assert [x["shadow"]["anom"] for _, x in own] == (s_own > np.float32(cand.threshold)).tolist()
    # judged windows: the class's input, the class threshold the simulator computes, its HI rule
    judged = r.results[LEARN:]
    c = ref.classes[0]
    z = bl.standardize(feats[LEARN:], c.center, c.spread)
    s, h = cand.score_standardized(z), bl.health_index(z)
    sim_anom = [bool(a > np.float32(thr[0]) or b > np.float32(c.hi_threshold)) for a, b in zip(s, h)]
    assert all(m["cls"] == 0 and m["shadow"]["thr"] == pytest.approx(thr[0], rel=1e-5) for m, _ in judged)
    assert [x["shadow"]["score"] for _, x in judged] == pytest.approx(s.tolist(), rel=1e-5)
    assert [x["shadow"]["anom"] for _, x in judged] == sim_anom
    assert [x["hi"] for _, x in judged] == pytest.approx(h.tolist(), rel=1e-5)
    # like with like: the candidate flags every fault window and 1 of the 28 held-out normal ones (its
    # class threshold from 16 windows), where the old rule (its own standardization, the artifact's
    # threshold: an uncommissioned candidate) flagged all 28 on this machine
    normal = 44 - LEARN
    s_old = cand.score_standardized(standardize(feats[LEARN:44], a.features.mean, a.features.inv_std))
    assert (s_old > np.float32(cand.threshold)).all()
    assert sum(sim_anom[:normal]) <= 2 and all(sim_anom[normal:])


def test_two_classes_each_get_the_candidates_own_threshold(fw, signal, candidate, tmp_path):
    """Two speed classes learned in one commissioning (arrival order 1796 then 900 rpm; the record
    orders them by band, 900 first): after a switch each class is re-derived from its own rows, and
    a shadow candidate gets each class's own threshold, as the simulator computes them."""
    path, cand = candidate
    run1 = Detector(load_artifact(MODEL))
    normal = signal[: 44 * N]
    sig = np.concatenate([normal, normal])
    rpm = np.tile(np.repeat(np.float32([1796.0, 900.0]), 6), 8)[:88]  # both speeds met while commissioning
    shadow = node(fw, tmp_path, sig, rpm, *cmd(0, op="commission", windows=LEARN), "--shadow-at", "70", path,
                  "--features", tmp_path / "F.f32")
    switch = node(fw, tmp_path, sig, rpm, *cmd(0, op="commission", windows=LEARN), "--model-at", "70", path)
    feats = np.fromfile(tmp_path / "F.f32", "<f4").reshape(len(shadow.results), -1)
    com = bl.Commissioner(feats.shape[1], target=LEARN)
    i = 0
    while not com.done():  # the node's routing: a window whose speed just changed is not learned from
        if bl.steady_speed(float(rpm[i]), float(rpm[i - 1]) if i else None):
            com.add(feats[i], float(rpm[i]))
        i += 1
    assert com.counts() == [(1796.0, LEARN), (900.0, LEARN)]
    assert i <= 70 and states_of(shadow)[:i] == ["commissioning"] * i
    assert "commissioning" not in states_of(shadow)[i:]
    learned = shadow.births[-1]["comm"]["learned"]
    ref = com.finish(run1.score_standardized, frontend=bl.frontend_crc(run1.artifact.features.params),
                     learned_ms=learned)
    assert shadow.births[-1]["comm"]["hash"] == ref.digest()
    rows = [np.stack(c.rows) for c in sorted(com.classes, key=lambda c: c.rpm_center)]
    centres = [900.0, 1796.0]
    new = bl.Baseline(ref.frontend_crc, learned, tuple(bl.learn_class(r, c, cand.score_standardized)
                                                         for r, c in zip(rows, centres)), ref.n_features)
    assert birth_hash(switch.births, 2) == new.digest()
    vnode = types.SimpleNamespace(shadow_class_thr=None, baseline=ref, baseline_rows=rows, baseline_centres=centres)
    thr = Fleet._shadow_thresholds(vnode, 2, cand)
    assert thr == [c.threshold for c in new.classes] and thr[0] != thr[1]
    judged = [(m, x) for m, x in shadow.results[70:]]
    assert {m["cls"] for m, _ in judged} == {0, 1}
    for (m, x), f, r in zip(judged, feats[70:], rpm[70:]):
        k = ref.class_for(float(r))
        c = ref.classes[k]
        z = bl.standardize(f[None], c.center, c.spread)
        s, h = cand.score_standardized(z)[0], bl.health_index(z)[0]
        assert m["cls"] == k and m["shadow"]["thr"] == pytest.approx(thr[k], rel=1e-5)
        assert x["shadow"]["score"] == pytest.approx(float(s), rel=1e-5)
        assert x["shadow"]["anom"] == bool(s > np.float32(thr[k]) or h > np.float32(c.hi_threshold))


def test_a_class_learned_later_keeps_the_first_ones_rows(fw, signal, candidate, tmp_path):
    """1796 rpm commissioned first, 900 rpm learned later by a one-class commissioning (which leaves
    the first class's rows in their slot): after a switch both classes are re-derived from their own
    rows, as the simulated node (whose kept rows are every class's) does."""
    path, cand = candidate
    run1 = Detector(load_artifact(MODEL))
    normal = signal[: 44 * N]
    sig = np.concatenate([normal, normal, normal[: 10 * N]])
    rpm = np.array([1796.0] * 44 + [900.0] * 44 + [1796.0] * 10, np.float32)
    learn = [*cmd(0, op="commission", windows=LEARN), *cmd(50, op="commission", windows=LEARN, rpm=900.0)]
    r = node(fw, tmp_path, sig, rpm, *learn, "--model-at", "80", path, "--features", tmp_path / "F.f32")
    sh = node(fw, tmp_path, sig, rpm, *learn, "--shadow-at", "80", path)
    feats = np.fromfile(tmp_path / "F.f32", "<f4").reshape(len(r.results), -1)
    st = states_of(r)
    end = max(i for i, x in enumerate(st) if x == "commissioning")
    assert end < 79 and st[end + 1:80] == [0] * (79 - end)  # 900 rpm learned, judged first (lower band)
    first = learned_rows(feats)
    com = bl.Commissioner(feats.shape[1], target=LEARN, only_rpm=900.0)
    for i in range(50, end + 1):
        if bl.steady_speed(float(rpm[i]), float(rpm[i - 1])):
            com.add(feats[i], float(rpm[i]))
    assert com.done() and com.counts() == [(900.0, LEARN)]
    rows, centres = [np.stack(com.classes[0].rows), first], [900.0, 1796.0]
    learned = [b for b in r.births if b["model"] == 1][-1]["comm"]["learned"]
    crc = bl.frontend_crc(run1.artifact.features.params)

    def record(det: Detector) -> bl.Baseline:
        return bl.Baseline(crc, learned, tuple(bl.learn_class(x, c, det.score_standardized)
                                               for x, c in zip(rows, centres)), feats.shape[1])

    old, new = record(run1), record(cand)
    assert birth_hash(r.births, 1) == old.digest()  # the merged record: the first class byte for byte
    assert birth_hash(r.births, 2) == new.digest()  # both classes re-derived, the first from its old rows
    vnode = types.SimpleNamespace(shadow_class_thr=None, baseline=old, baseline_rows=rows, baseline_centres=centres)
    thr = Fleet._shadow_thresholds(vnode, 2, cand)
    assert thr == [c.threshold for c in new.classes]
    judged = sh.results[80:]
    assert [m["cls"] for m, _ in judged] == [0] * 8 + [1] * 10
    assert all(m["shadow"]["thr"] == pytest.approx(thr[m["cls"]], rel=1e-5) for m, _ in judged)


def test_the_rows_index_survives_a_reset(fw, signal, candidate, tmp_path):
    """The rows' index rides in the record's flash copy: after a reset (records and rows areas kept)
    a switch still re-derives the thresholds from the rows. With the rows lost (an erased rows area),
    rows that no longer give the record's centre and spread are not used: the record stays."""
    path, cand = candidate
    run1 = Detector(load_artifact(MODEL))
    normal = signal[: 44 * N]
    rec, rows_area = tmp_path / "records.bin", tmp_path / "rows.bin"
    first = node(fw, tmp_path, normal, RPM, *cmd(0, op="commission", windows=LEARN), "--flash", rec,
                 "--rows", rows_area, "--features", tmp_path / "F.f32")
    feats = np.fromfile(tmp_path / "F.f32", "<f4").reshape(len(first.results), -1)
    rows = learned_rows(feats)
    learned = first.births[-1]["comm"]["learned"]
    crc = bl.frontend_crc(run1.artifact.features.params)
    old, new = (bl.Baseline(crc, learned, (bl.learn_class(rows, RPM, d.score_standardized),), feats.shape[1])
                for d in (run1, cand))
    assert first.births[-1]["comm"]["hash"] == old.digest()
    kept = rec.read_bytes()
    after = node(fw, tmp_path, normal, RPM, "--flash", rec, "--rows", rows_area, "--model-at", "5", path)
    assert after.births[0]["comm"]["hash"] == old.digest()  # the record, judged from the first window
    assert birth_hash(after.births, 2) == new.digest()
    assert all(m["thr"] == pytest.approx(new.classes[0].threshold, rel=1e-5) for m, _ in after.results[5:])
    rec.write_bytes(kept)
    lost = node(fw, tmp_path, normal, RPM, "--flash", rec, "--model-at", "5", path)
    assert birth_hash(lost.births, 2) == old.digest()
