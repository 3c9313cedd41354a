"""OTA shadow mode on the node: the old model stays active while the candidate scores the same
windows; both are reported; then the candidate's ordinary trial, or a revert that never switched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_sim.fleet import score_windows, score_windows_multi
from device_sim.node import VirtualNode
from device_sim.plant import make_plant
from edgefleet import protocol
from edgefleet.device.ota_client import OtaClient, Slots
from edgefleet.runtime.artifact import Artifact
from edgefleet.runtime.engine import Detector
from edgefleet.service.ota.campaign import Policy, decide
from edgefleet.service.ota.manager import shadow_rates

from .test_device import serve

FLEET_MODEL = Path(__file__).resolve().parents[2] / "edgefleet" / "models" / "fleet-default" / "model.efm"


@pytest.fixture()
def node_v1(versioned, signing_key):
    slots = Slots()
    slots.images["A"] = versioned(1)
    return OtaClient(slots, signing_key.public_key(), device="dev-1")


def shadow_offer(release, version=2, *, shadow_s=30, trial_s=10, blob=None):
    blob, _, offer = release(version, shadow=True, trial_s=trial_s, shadow_s=shadow_s, blob=blob)
    return blob, offer


def test_shadow_phase_keeps_the_old_model_then_trial_then_confirm(node_v1, release):
    blob, offer = shadow_offer(release)
    states, now = serve(node_v1, blob, offer)
    assert states == ["accepted", "verifying", "shadow"]
    assert node_v1.current_version() == 1 and node_v1.in_shadow()  # old model still decides
    assert node_v1.shadow_artifact.model_version == 2
    assert node_v1.tick(now + 29) == []
    assert [b["state"] for _, b in node_v1.tick(now + 30)] == ["trial"]
    assert node_v1.current_version() == 2 and not node_v1.in_shadow() and node_v1.shadow_artifact is None
    assert node_v1.tick(now + 39) == []
    assert [b["state"] for _, b in node_v1.tick(now + 40)] == ["confirmed"]
    assert node_v1.slots.confirmed_version == 2


def test_unhealthy_shadow_reverts_without_ever_switching(node_v1, release):
    blob, offer = shadow_offer(release)
    _, now = serve(node_v1, blob, offer)
    out = node_v1.tick(now + 30, healthy=False)
    assert [(b["state"], b["model"]) for _, b in out] == [("reverted", 2)]
    assert "shadow" in out[0][1]["reason"]
    assert node_v1.current_version() == 1 and node_v1.slots.trial is None
    assert node_v1.slots.images[node_v1.slots.inactive] is None  # the candidate is erased ...
    assert node_v1.revert(now + 31) == [] and node_v1.current_version() == 1  # ... so no revert lands on it


def test_reboot_and_revert_command_during_shadow_keep_the_old_model(node_v1, release, versioned, signing_key):
    blob, offer = shadow_offer(release)
    _, now = serve(node_v1, blob, offer)
    assert [b["state"] for _, b in node_v1.boot(now + 1)] == ["reverted"]
    assert node_v1.current_version() == 1
    other = OtaClient(Slots(images={"A": versioned(1), "B": None}), signing_key.public_key(), device="dev-1")
    _, now = serve(other, blob, offer)
    assert [b["state"] for _, b in other.revert(now + 1)] == ["reverted"]
    assert other.current_version() == 1 and other.shadow_artifact is None


def test_offer_without_shadow_s_shadows_for_trial_s_and_zero_goes_straight_to_trial(node_v1, release, versioned,
                                                                                   signing_key):
    blob, _, offer = release(2, shadow=True, trial_s=5)
    _, now = serve(node_v1, blob, offer)
    assert node_v1.in_shadow() and node_v1.slots.trial["deadline"] == now + 5
    other = OtaClient(Slots(images={"A": versioned(1), "B": None}), signing_key.public_key(), device="dev-1")
    states, _ = serve(other, blob, release(2, shadow=True, trial_s=5, shadow_s=0)[2])  # shadow_s under the ticket
    assert states == ["accepted", "verifying", "shadow", "trial"] and other.current_version() == 2


def test_a_second_offer_during_shadow_is_rejected(node_v1, release):
    blob, offer = shadow_offer(release)
    serve(node_v1, blob, offer)
    _, _, offer3 = release(3)
    out = node_v1.offer(offer3, 1.0)
    assert [(b["state"], b["model"]) for _, b in out] == [("rejected", 3)]


def sim_node(ota: OtaClient) -> VirtualNode:
    art = ota.slots.active_artifact()
    return VirtualNode("pump-0001", 12000.0, art.model_version, float(art.scoring.threshold), ota=ota)


def test_node_reports_both_scores_and_its_messages_decode(node_v1, release, versioned):
    blob, offer = shadow_offer(release, blob=versioned(2, threshold_scale=0.5))
    node = sim_node(node_v1)
    node.add_result(1000, 0.001, 400)  # before the update: a plain result
    _, now = serve(node_v1, blob, offer)
    node.ota_events([], int(now * 1000))  # the node follows its OTA client (as after each event)
    thr1, thr2 = node.threshold, node.shadow_threshold
    assert node.shadow_model == 2 and thr2 == pytest.approx(thr1 * 0.5)
    between = (thr2 + thr1) / 2
    for i, (score, cand) in enumerate([(0.0, 0.0), (between, between), (thr1 * 2, thr2 * 0.1)]):
        node.add_result(2000 + i, score, 400, cand)
    first = node.next_message(flush=True)
    assert first.results == 1 and b"shadow" not in first.payload  # one message per shadow model
    node.commit(1)
    msg = node.next_message(flush=True)
    body = protocol.decode("result", msg.payload)
    assert body["model"] == 1 and body["shadow"]["model"] == 2
    assert body["shadow"]["thr"] == pytest.approx(thr2, rel=1e-5)
    recs = protocol.result_records("pump-0001", body)
    assert [(r.anom, r.shadow_anom) for r in recs] == [(False, False), (False, True), (True, False)]
    assert [r.shadow_model for r in recs] == [2, 2, 2]
    assert node.trial_windows == 3 and node.trial_anomalies == 1  # the candidate's anomalies count


def test_candidate_flooding_alarms_in_shadow_is_reverted_by_the_node(node_v1, release, versioned):
    blob, offer = shadow_offer(release, shadow_s=5)
    node = sim_node(node_v1)
    _, now = serve(node_v1, blob, offer)
    node.ota_events([], int(now * 1000))
    for i in range(20):
        node.add_result(i, 0.0, 400, node.shadow_threshold * 10)  # the old model is quiet, the new one is not
    assert node.anomalies == 0 and node.trial_anomalies == 20
    out = node.ota_tick(int((now + 5) * 1000))
    states = [protocol.decode("ota/state", o.payload)["state"] for o in out if o.topic.endswith("ota/state")]
    assert states == ["reverted"] and node.model_version == 1 and node.shadow_model is None


def test_both_models_score_the_same_windows():
    """A candidate with the same weights under another version scores exactly what the active one does."""
    art = Artifact.from_bytes(FLEET_MODEL.read_bytes())
    twin = Artifact.from_bytes(FLEET_MODEL.read_bytes())
    twin.model_version = art.model_version + 1
    plant = make_plant(8, seed=2)
    rows = np.arange(8)
    (a, b), _ = score_windows_multi([Detector(art), Detector(twin)], plant, rows, 5.0, np.random.default_rng(1))
    assert np.array_equal(a, b) and a.shape == (8,) and np.all(a > 0)
    single, _ = score_windows(Detector(art), plant, rows, 5.0, np.random.default_rng(1))
    assert np.array_equal(single, a)  # the shadow path does not change the active model's windows


def test_shadow_rates_compare_both_models_per_device_on_the_same_windows():
    rows = [("a", False, True), ("a", False, True), ("a", True, True), ("a", False, False),
            ("b", False, False), ("c", True, True)]
    assert shadow_rates(rows, {"a", "b"}) == {"a": (0.25, 0.75, 4), "b": (0.0, 0.0, 1)}  # c: not in campaign


def test_shadow_phase_extends_the_stage_timeout_and_feeds_the_health_check():
    policy = Policy(stages=[0.5, 1.0], stage_timeout_s=60, shadow=True, shadow_s=300, min_windows=10)
    devices = ["a", "b", "c", "d"]
    states = {"a": "shadow", "b": "shadow"}
    offered = {"a": 0.0, "b": 0.0}
    assert decide(policy, 0, devices, states, offered, 200.0).action == "wait"  # in shadow, not late
    assert decide(policy, 0, devices, states, offered, 361.0).timed_out == ["a", "b"]
    healthy = {"a": (0.02, 0.03, 50), "b": (0.0, 0.02, 50)}
    assert decide(policy, 0, devices, states, offered, 200.0, healthy).action == "wait"
    flood = {"a": (0.02, 0.9, 50), "b": (0.0, 0.8, 50)}
    d = decide(policy, 0, devices, states, offered, 200.0, flood)
    assert d.action == "abort" and "model health" in d.reason


FLEET_V2 = Path(__file__).resolve().parents[2] / "edgefleet" / "models" / "fleet-v2" / "model.efm"


def _tick(fleet, rows, t):
    """One window per node, judged as `Fleet.tick` judges it: (scores, candidates' scores, verdicts)."""
    scores, shadow, debug = fleet._score(rows, t, set(), fleet.machines_at(t))
    every = debug.pop(-1)
    rpm = fleet._speeds(rows, every, fleet.machines_at(t), t)
    return scores, shadow, fleet._commissioning(rows, scores, every["features"], rpm, every["excess"],
                                                every.get("sensor"), t, shadow)


def test_commissioned_node_judges_its_shadow_candidate_by_its_own_normal(release, signing_key):
    """On a commissioned node the candidate scores the class-standardized window, against the class
    threshold it will have once it runs: a candidate with the running model's weights is judged
    exactly as the running model (by the model's own standardization it would see another input
    and another threshold, and the shadow check would compare unlike things)."""
    from device_sim.fleet import Fleet, FleetOptions
    from device_sim.link import LinkOptions

    art = Artifact.from_bytes(FLEET_V2.read_bytes())
    plant = make_plant(3, seed=5, rates=(12000.0,))
    fleet = Fleet(plant, art, LinkOptions("127.0.0.1", 1),
                  FleetOptions(commission=True, commission_windows=16, ota_public_key=signing_key.public_key()))
    rows = np.arange(3)
    t = 0.0
    while not all(lk.node.baseline for lk in fleet.links) and t < 200:
        _tick(fleet, rows, t)
        t += 1.0
    assert all(lk.node.baseline for lk in fleet.links), "commissioning did not finish"
    node = fleet.links[0].node
    twin = Artifact.from_bytes(FLEET_V2.read_bytes())
    twin.model_version = art.model_version + 1
    twin.scoring.threshold = float(art.scoring.threshold) * 0.01  # the model's own threshold plays no part here
    blob, _, offer = release(twin.model_version, blob=twin.to_bytes(), shadow=True, shadow_s=60,
                             device=plant.nodes[0].device_id)
    node.ota.device = plant.nodes[0].device_id
    states, now = serve(node.ota, blob, offer)
    assert states[-1] == "shadow", states
    node.ota_events([], int(now * 1000))
    assert node.shadow_model == twin.model_version
    judged = 0
    for _ in range(20):
        scores, shadow, verdicts = _tick(fleet, rows, t)
        t += 1.0
        v = verdicts[0]
        assert np.isnan(shadow[1:]).all()  # the others have no candidate
        if v is None or v.state:
            continue
        judged += 1
        assert shadow[0] == scores[0] and v.shadow_thr == v.thr and v.shadow_anom == v.anom
        node.add_result(judged, float(scores[0]), 100, float(shadow[0]), v)
        assert node.ring[-1][7] == (twin.model_version, v.thr, float(scores[0]), v.anom)
    assert judged >= 15
