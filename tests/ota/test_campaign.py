import pytest

from edgefleet.errors import EdgefleetError
from edgefleet.service.ota.campaign import Policy, Target, decide, parse_stages, rollout_order, stage_size

DEVICES = [f"sim-{i:04d}" for i in range(100)]


def test_stages_and_targets_parse_with_clear_errors():
    assert parse_stages("5%,25%,100%") == [0.05, 0.25, 1.0]
    for bad in ("25%,5%,100%", "5%,50%", "x", "0%,100%"):
        with pytest.raises(EdgefleetError):
            parse_stages(bad)
    assert Target.parse("site=north").matches({"site": "north"})
    assert Target.parse("tag=pump").matches({"tags": ["pump", "critical"]})
    assert not Target.parse("tag=fan").matches({"tags": ["pump"]})
    with pytest.raises(EdgefleetError, match="site=NAME"):
        Target.parse("room=3")


def test_rollout_order_is_stable_and_campaign_specific():
    a = rollout_order(DEVICES, "c1")
    assert a == rollout_order(list(reversed(DEVICES)), "c1")
    assert a != rollout_order(DEVICES, "c2") and sorted(a) == DEVICES
    assert stage_size(100, 0.05) == 5 and stage_size(3, 0.05) == 1


def test_waits_then_advances_then_completes():
    p = Policy(stages=[0.05, 1.0])
    order = rollout_order(DEVICES, "c")
    canaries = order[:5]
    states = {d: "downloading" for d in canaries}
    assert decide(p, 0, order, states, {}, 0.0).action == "wait"
    states = {d: "confirmed" for d in canaries}
    assert decide(p, 0, order, states, {}, 0.0).action == "advance"
    states = {d: "confirmed" for d in order}
    assert decide(p, 1, order, states, {}, 0.0).action == "complete"


def test_failure_rate_aborts():
    p = Policy(stages=[0.1, 1.0], abort_failures=0.1)
    order = rollout_order(DEVICES, "c")
    states = {d: "confirmed" for d in order[:10]}
    states[order[0]] = "rejected"
    assert decide(p, 0, order, states, {}, 0.0).action == "advance"  # 1/10 is not above 10%
    states[order[1]] = "failed"
    d = decide(p, 0, order, states, {}, 0.0)
    assert d.action == "abort" and "2 of 10" in d.reason


def test_timeouts_count_as_failures():
    p = Policy(stages=[0.05, 1.0], stage_timeout_s=60)
    order = rollout_order(DEVICES, "c")
    states = {d: "downloading" for d in order[:5]}
    offered = {d: 0.0 for d in order[:5]}
    d = decide(p, 0, order, states, offered, now=61.0)
    assert d.action == "abort" and len(d.timed_out) == 5


def test_false_alarm_flood_in_canaries_aborts():
    p = Policy(stages=[0.05, 1.0], abort_anomaly_shift=3.0)
    order = rollout_order(DEVICES, "c")
    states = {d: "trial" for d in order[:5]}
    healthy = {d: (0.01, 0.02, 100) for d in order[:5]}
    assert decide(p, 0, order, states, {}, 0.0, healthy).action == "wait"
    flood = {d: (0.01, 0.40, 100) for d in order[:5]}
    d = decide(p, 0, order, states, {}, 0.0, flood)
    assert d.action == "abort" and "model health" in d.reason
    too_few = {d: (0.01, 0.40, 5) for d in order[:5]}
    assert decide(p, 0, order, states, {}, 0.0, too_few).action == "wait"
