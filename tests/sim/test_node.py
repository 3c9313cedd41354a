"""Virtual node logic without a network: sequences, the bounded ring, batching, commands."""

from __future__ import annotations

import math

import numpy as np
import pytest

from device_sim.node import Calibration, VirtualNode
from edgefleet.protocol import ProtocolError, decode, parse_topic


def node(**kw) -> VirtualNode:
    base = dict(device_id="sim-0001", fs=12800.0, model_version=3, threshold=1.0, site="plant-north",
                line="L1", tags=["pump"], boot="0badcafe")
    base.update(kw)
    return VirtualNode(**base)


def test_birth_and_will_are_valid_retained_status_with_their_own_sequence():
    n = node()
    b = n.birth(1_767_225_600_000)
    w = n.death(1_767_225_600_001)
    assert parse_topic(b.topic) == ("sim-0001", "status") and b.retain and b.qos == 1
    birth, will = decode("status", b.payload), decode("status", w.payload)
    assert birth["state"] == "online" and birth["site"] == "plant-north" and birth["model"] == 3
    assert will["state"] == "lost" and will["boot"] == birth["boot"] == "0badcafe"
    assert (birth["seq"], will["seq"]) == (0, 1)


def test_results_carry_consecutive_seqs_and_the_anomaly_decision():
    n = node()
    for i, s in enumerate([0.5, 2.0, 0.9]):
        n.add_result(1000 + i, s, 120)
    msgs = []
    while (out := n.next_message()) is not None:
        msgs.append(decode("result", out.payload))
        n.commit(out.results)
    assert [m["res"][0]["seq"] for m in msgs] == [0, 1, 2]
    assert [m["res"][0]["anom"] for m in msgs] == [False, True, False]
    assert n.anomalies == 1 and n.pending() == 0


def test_full_ring_drops_the_oldest_and_reports_the_count():
    n = node(ring_size=4)
    for i in range(10):
        n.add_result(1000 + i, 0.1, 1)
    assert n.dropped == 6 and n.pending() == 4
    out = n.next_message(flush=True)
    body = decode("result", out.payload)
    assert [r["seq"] for r in body["res"]] == [6, 7, 8, 9]  # newest kept
    assert body["dropped"] == 6


def test_batching_waits_for_k_results_and_splits_on_a_threshold_change():
    n = node(results_per_message=3)
    n.add_result(1, 0.1, 1)
    n.add_result(2, 0.1, 1)
    assert n.next_message() is None  # not enough for a batch yet
    n.threshold = 0.05
    n.add_result(3, 0.1, 1)
    first = n.next_message(flush=True)
    n.commit(first.results)
    second = n.next_message(flush=True)
    b1, b2 = decode("result", first.payload), decode("result", second.payload)
    assert ([r["seq"] for r in b1["res"]], b1["thr"]) == ([0, 1], 1.0)
    assert ([r["seq"] for r in b2["res"]], b2["thr"]) == ([2], 0.05)


def test_flush_sends_at_most_the_protocol_limit_per_message():
    n = node(ring_size=1000)
    for i in range(600):
        n.add_result(i, 0.1, 1)
    out = n.next_message(flush=True)
    assert out.results == 256 and len(out.payload) < 32 * 1024


def test_calibration_is_welford_on_log_scores():
    rng = np.random.default_rng(0)
    scores = rng.lognormal(mean=-2.0, sigma=0.3, size=50)
    cal = Calibration(50, k=3.0)
    for s in scores:
        cal.add(float(s))
    logs = np.log(scores)
    assert cal.done
    assert cal.threshold() == pytest.approx(math.exp(logs.mean() + 3.0 * logs.std(ddof=1)), rel=1e-9)


def test_calibrate_command_sets_the_threshold_from_the_next_n_windows_and_announces_it():
    n = node()
    assert n.handle_command({"v": 1, "seq": 0, "id": "c1", "op": "calibrate", "n": 20}, 0) == []
    for i in range(20):
        n.add_result(i, 0.01 * (1 + (i % 3)), 1)
    assert n.calibration is None and n.announce
    assert 0.03 < n.threshold < 0.2
    assert decode("status", n.birth(1).payload)["thr"] == pytest.approx(n.threshold, rel=1e-5)


def test_commands_are_applied_once_even_if_delivered_twice():
    n = node()
    cmd = {"v": 1, "seq": 4, "id": "t-1", "op": "set_threshold", "thr": 2.5}
    first = n.handle_command(cmd, 5)
    assert n.threshold == 2.5 and decode("status", first[0].payload)["thr"] == 2.5
    n.threshold = 1.0
    assert n.handle_command(cmd, 6) == [] and n.threshold == 1.0


def test_debug_capture_holds_the_window_and_clears_the_request():
    n = node()
    n.handle_command({"v": 1, "seq": 0, "id": "dbg-1", "op": "debug"}, 0)
    assert n.debug_request == "dbg-1"
    out = n.debug_capture(5, np.ones(8, np.float32), np.zeros(4), np.array([1, -2, 3, 4], np.int8),
                          np.array([0, 0, 0, 0], np.int8), 0.25)
    body = decode("debug", out.payload)
    assert body["id"] == "dbg-1" and body["samples"] == [1.0] * 8 and body["q_in"] == [1, -2, 3, 4]
    assert n.debug_request is None


def test_reboot_draws_a_new_boot_and_restarts_sequences():
    n = node(boot="00000001")
    n.add_result(1, 0.1, 1)
    n.reboot()
    assert n.boot != "00000001" and n.result_seq == 0 and n.pending() == 0


def test_bad_device_id_and_bad_threshold_are_refused():
    with pytest.raises(ProtocolError):
        node(device_id="bad id/with slash")
    n = node(threshold=0.0)
    with pytest.raises(ProtocolError):
        n.birth(0)
