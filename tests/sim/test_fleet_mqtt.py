"""Virtual nodes against a real Mosquitto: births, sequences, last will, store-and-forward, commands."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from device_sim.fleet import Fleet, FleetOptions, score_windows
from device_sim.link import LinkOptions
from device_sim.physics import synthesize
from device_sim.plant import make_plant
from edgefleet.runtime.engine import Detector
from edgefleet.runtime.features import log_band_power
from edgefleet.protocol import encode

REPO = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items() if k != "EDGEFLEET_FLEET_SECRET"}  # anonymous unless asked


def run_fleet(fleet: Fleet, seconds: float) -> threading.Thread:
    t = threading.Thread(target=fleet.run, args=(seconds,), daemon=True)
    t.start()
    return t


def make_fleet(artifact, port: int, n: int, **opts) -> Fleet:
    plant = make_plant(n, seed=2)
    fo = dict(ticks_per_period=5)
    fo.update(opts)
    return Fleet(plant, artifact, LinkOptions("127.0.0.1", port, reconnect_max_s=1.0),
                 FleetOptions(**fo))


def test_batched_scoring_equals_each_node_scoring_its_own_window(artifact):
    plant = make_plant(30, seed=4, rates=(12800.0,))
    rows = np.arange(30)
    scores, _ = score_windows(Detector(artifact), plant, rows, 12.0, np.random.default_rng(9))
    det = Detector(artifact)
    x = synthesize(plant.machines, 12.0, det.window_samples(12800.0), 12800.0, np.random.default_rng(9))
    for i in rows:  # one window, one node, one engine call: what the firmware does
        s, _ = det.score_windows(x[i:i + 1], 12800.0)
        assert s[0] == scores[i]


def test_nodes_publish_births_and_consecutive_results(mosquitto, recorder_factory, artifact):
    rec = recorder_factory(mosquitto.port)
    fleet = make_fleet(artifact, mosquitto.port, 12, period_s=0.5)
    fleet.start()
    assert fleet.wait_connected(1.0, 10)
    run_fleet(fleet, 3.0).join(20)
    assert fleet.drain(10)
    fleet.shutdown()
    report = fleet.report()
    births = [(d, b) for d, b, _ in rec.of("status") if b["state"] == "online"]
    assert sorted({d for d, _ in births}) == sorted(report["per_device"])
    assert all(b["site"].startswith("plant-") and b["line"].startswith("L") for _, b in births)
    assert rec.wait(lambda: sum(map(len, rec.results().values())) == report["published"], 10)
    assert report["published"] == report["windows"] >= 12
    for dev, seqs in rec.results().items():
        assert seqs == list(range(len(seqs))), dev  # consecutive from 0, in order, no duplicate
        assert report["per_device"][dev]["published"] == len(seqs)
    # a clean stop leaves an 'offline' status, not a will
    assert rec.wait(lambda: {d for d, b, _ in rec.of("status") if b["state"] == "offline"}
                    == set(report["per_device"]), 10)
    assert not [b for _, b, _ in rec.of("status") if b["state"] == "lost"]


def test_store_and_forward_across_a_broker_restart_loses_nothing(persistent_mosquitto,
                                                                 recorder_factory, artifact):
    broker = persistent_mosquitto
    rec = recorder_factory(broker.port)
    fleet = make_fleet(artifact, broker.port, 8, period_s=0.5, ring_size=100)
    fleet.start()
    assert fleet.wait_connected(1.0, 10)
    runner = run_fleet(fleet, 9.0)
    time.sleep(2.0)
    broker.stop()  # about 3 s offline: ~6 windows per node wait in the rings
    time.sleep(3.0)
    assert fleet.connected() == 0
    assert sum(lk.node.pending() for lk in fleet.links) > 0
    broker.start()
    runner.join(30)
    assert fleet.drain(15)
    fleet.shutdown()
    report = fleet.report()
    assert report["dropped"] == 0 and report["disconnects"] >= 8
    assert rec.wait(lambda: len(rec.results()) == 8 and all(
        max(s) == report["per_device"][d]["last_seq"] for d, s in rec.results().items()), 20)
    for dev, seqs in rec.results().items():
        # at least once: every result arrived; a resent one may come twice (ingest dedups)
        assert set(seqs) == set(range(report["per_device"][dev]["last_seq"] + 1)), dev
    assert report["published"] == report["windows"]


def test_last_will_reports_lost_when_the_sim_process_is_killed(mosquitto, recorder_factory, tmp_path):
    rec = recorder_factory(mosquitto.port)
    proc = subprocess.Popen([sys.executable, "-m", "edgefleet", "sim", "--broker", mosquitto.url,
                             "--nodes", "5", "--faulty", "0", "--prefix", "kill-"], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "sim.log").open("wb"))
    try:
        assert rec.wait(lambda: len({d for d, b, _ in rec.of("status") if b["state"] == "online"}) == 5,
                        30), (tmp_path / "sim.log").read_text()
        assert rec.wait(lambda: len(rec.results()) == 5, 10)
        boots = {d: b["boot"] for d, b, _ in rec.of("status") if b["state"] == "online"}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert rec.wait(lambda: len({d for d, b, _ in rec.of("status") if b["state"] == "lost"}) == 5, 15)
    lost = {d: b for d, b, _ in rec.of("status") if b["state"] == "lost"}
    assert {d: b["boot"] for d, b in lost.items()} == boots


def test_debug_capture_reproduces_on_the_desktop_and_calibrate_announces(mosquitto, recorder_factory,
                                                                        artifact):
    rec = recorder_factory(mosquitto.port)
    fleet = make_fleet(artifact, mosquitto.port, 3, period_s=0.3, ticks_per_period=3)
    fleet.start()
    assert fleet.wait_connected(1.0, 10)
    dev = fleet.plant.nodes[1].device_id
    fs = fleet.plant.nodes[1].fs
    runner = run_fleet(fleet, 6.0)
    time.sleep(0.8)
    rec.publish(f"ef/v1/{dev}/cmd", encode("cmd", {"v": 1, "seq": 0, "id": "dbg-7", "op": "debug"}))
    rec.publish(f"ef/v1/{dev}/cmd", encode("cmd", {"v": 1, "seq": 1, "id": "cal-1", "op": "calibrate",
                                                   "n": 5}))
    assert rec.wait(lambda: rec.of("debug"), 10)
    assert rec.wait(lambda: len([b for d, b, _ in rec.of("status")
                                 if d == dev and b["state"] == "online"]) >= 2, 10)
    fleet.stop()
    runner.join(10)
    fleet.shutdown()
    d, body, _ = rec.of("debug")[0]
    assert d == dev and body["id"] == "dbg-7" and body["fs"] == fs
    det = Detector(artifact)
    x = np.asarray(body["samples"], np.float32)
    assert x.size == det.window_samples(fs)
    f = log_band_power(x, fs, artifact.features.params)[0]
    np.testing.assert_allclose(f, body["features"], rtol=0, atol=1e-4)  # features: %.6g on the wire
    q_in = det.quantized_inputs(x, fs)[0]
    assert np.abs(q_in.astype(int) - body["q_in"]).max() <= 1
    q_out = det.engine.infer(np.asarray(body["q_in"], np.int8))
    assert q_out.tolist() == body["q_out"]
    score = float(det.engine.score(np.asarray(body["q_in"], np.int8), q_out))
    assert score == pytest.approx(body["score"], rel=1e-5)
    births = [b for d_, b, _ in rec.of("status") if d_ == dev and b["state"] == "online"]
    assert births[-1]["thr"] != births[0]["thr"]  # calibrated from its own 5 windows
    assert fleet.report()["per_device"][dev]["debug"] == 1


def test_sim_cli_writes_the_report(mosquitto, recorder_factory, tmp_path):
    rec = recorder_factory(mosquitto.port)
    report = tmp_path / "out" / "report.json"
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", mosquitto.url,
                           "--nodes", "20", "--faulty", "2", "--duration", "3", "--report", str(report),
                           "--batch", "2", "--inject", "sim-0004:1.5"], cwd=REPO, env=ENV,
                          capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["nodes"] == 20 and len(data["per_device"]) == 20
    assert len(data["faulty"]) == 3 and "sim-0004" in data["faulty"]  # 2 scheduled + 1 injected
    assert data["published"] == sum(d["published"] for d in data["per_device"].values())
    assert data["published"] == data["windows"] and data["windows"] + data["skipped_windows"] == 60
    assert rec.wait(lambda: sum(map(len, rec.results().values())) == data["published"], 10)
    assert max(len(b["res"]) for _, b, _ in rec.of("result")) == 2
    assert list(data["injected"]) == ["sim-0004"] and 1.0 < data["injected"]["sim-0004"] < 2.5
    assert data["per_device"]["sim-0004"]["fault"] == "outer_race"


def test_sim_cli_refuses_bad_options_with_a_clear_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", "mqtt://127.0.0.1:1",
                           "--nodes", "3", "--faulty", "5"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "--faulty 5: must be between 0 and --nodes (3)" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", "mqtt://127.0.0.1:1",
                           "--nodes", "3", "--duration", "1", "--wait-broker", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "cannot reach a broker" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", "mqtt://127.0.0.1:1",
                           "--nodes", "3", "--inject", "sim-0001"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "expected DEVICE:SECONDS" in proc.stderr


def test_reboot_command_starts_a_new_boot_with_sequences_from_zero(mosquitto, recorder_factory,
                                                                   artifact):
    rec = recorder_factory(mosquitto.port)
    fleet = make_fleet(artifact, mosquitto.port, 2, period_s=0.3, ticks_per_period=3)
    fleet.start()
    assert fleet.wait_connected(1.0, 10)
    dev = fleet.plant.nodes[0].device_id
    runner = run_fleet(fleet, 5.0)
    assert rec.wait(lambda: len(rec.results().get(dev, [])) >= 3, 10)
    old_boot = fleet.links[0].node.boot
    rec.publish(f"ef/v1/{dev}/cmd", encode("cmd", {"v": 1, "seq": 0, "id": "rb-1", "op": "reboot"}))
    assert rec.wait(lambda: any(b["state"] == "online" and b["boot"] != old_boot
                                for d, b, _ in rec.of("status") if d == dev), 10)
    runner.join(15)
    assert fleet.drain(10)
    fleet.shutdown()
    new_boot = fleet.links[0].node.boot
    assert new_boot != old_boot
    assert rec.wait(lambda: any(d == dev and b["state"] == "lost" and b["boot"] == old_boot
                                for d, b, _ in rec.of("status")), 10)  # the old boot's will
    by_boot: dict[str, list[int]] = {}
    for d, body, _ in rec.of("result"):
        if d == dev:
            by_boot.setdefault(body["boot"], []).extend(r["seq"] for r in body["res"])
    assert by_boot[new_boot][0] == 0 and by_boot[new_boot] == sorted(set(by_boot[new_boot]))


def test_nodes_log_in_with_per_device_credentials_and_the_acl(tmp_path, recorder_factory,
                                                              mosquitto_factory):
    """The production broker: password = HMAC(fleet secret, device id), ACL to ef/v1/<user>/#."""
    from edgefleet.service.credentials import password_lines

    secret = "test-fleet-secret-0123456789"
    devices = ["acl-0000", "acl-0001", "acl-0002"]
    pw = tmp_path / "passwd"
    pw.write_text("\n".join(password_lines(secret, devices, {"test-recorder": "rec-pass-1"})) + "\n")
    subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True)
    acl = tmp_path / "acl"
    acl.write_text("user test-recorder\ntopic readwrite ef/v1/#\n\npattern readwrite ef/v1/%u/#\n")
    broker = mosquitto_factory()
    broker.conf.write_text(f"listener {broker.port} 127.0.0.1\nallow_anonymous false\n"
                           f"password_file {pw}\nacl_file {acl}\nuser {getpass.getuser()}\n")
    broker.start()
    rec = recorder_factory(broker.port, username="test-recorder", password="rec-pass-1")
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", broker.url,
                           "--nodes", "3", "--faulty", "0", "--prefix", "acl-", "--duration", "2",
                           "--report", str(tmp_path / "r.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EDGEFLEET_FLEET_SECRET": secret})
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["published"] == data["windows"] and data["refused"] == 0
    assert data["windows"] + data["skipped_windows"] == 6
    assert rec.wait(lambda: sorted(rec.results()) == devices, 10)
    # a wrong secret is refused by the broker: nothing is published
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", broker.url,
                           "--nodes", "2", "--prefix", "acl-", "--duration", "1", "--faulty", "0",
                           "--fleet-secret", "wrong-secret-000000000", "--report",
                           str(tmp_path / "r2.json")], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=ENV)
    bad = json.loads((tmp_path / "r2.json").read_text())
    assert bad["published"] == 0 and bad["connects"] == 0 and bad["pending"] == bad["windows"]
    assert bad["refused_connects"] >= 2  # the broker said no; the nodes kept their results


def test_a_fault_injected_on_cue_turns_that_node_anomalous(mosquitto, recorder_factory):
    """With the shipped fleet model (trained on the simulator's healthy machines)."""
    from edgefleet.runtime.artifact import load_artifact

    from device_sim.physics import Fault

    model = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
    rec = recorder_factory(mosquitto.port)
    plant = make_plant(6, seed=3)
    fleet = Fleet(plant, load_artifact(model), LinkOptions("127.0.0.1", mosquitto.port),
                  FleetOptions(period_s=0.5, ticks_per_period=5))
    fleet.start()
    assert fleet.wait_connected(1.0, 10)
    runner = run_fleet(fleet, 8.0)
    time.sleep(2.0)
    dev = plant.nodes[2].device_id
    fleet.inject_fault(dev, Fault.OUTER_RACE, peak_g=2.0)
    runner.join(20)
    assert fleet.drain(10)
    fleet.shutdown()
    per = fleet.report()["per_device"]
    assert per[dev]["anomalies"] >= 5  # ~12 windows after the injection
    assert sum(d["anomalies"] for k, d in per.items() if k != dev) <= 1  # healthy ones stay quiet
    assert rec.wait(lambda: any(r["anom"] for d, b, _ in rec.of("result") if d == dev for r in b["res"]))


def test_sim_cli_splits_the_plant_over_worker_processes(mosquitto, recorder_factory, tmp_path):
    rec = recorder_factory(mosquitto.port)
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", mosquitto.url,
                           "--nodes", "7", "--faulty", "1", "--duration", "2", "--procs", "2",
                           "--report", str(report)], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["procs"] == 2 and data["nodes"] == 7
    assert sorted(data["per_device"]) == [f"sim-{i:04d}" for i in range(7)]
    assert data["published"] == data["windows"] and data["windows"] + data["skipped_windows"] == 14
    assert len(data["faulty"]) == 1
    assert rec.wait(lambda: sum(map(len, rec.results().values())) == data["published"], 10)
    # every device that published is heard (on a loaded host a node may skip both its windows: none then)
    assert sorted(rec.results()) == sorted(d for d, v in data["per_device"].items() if v["published"])
    assert {d: len(r) for d, r in rec.results().items()} == {d: v["published"] for d, v in data["per_device"].items()
                                                               if v["published"]}


def test_merged_report_adds_counts_and_bounds_latency():
    from device_sim.fleet import merge_reports

    base = dict(compute_s=1.0, duration_s=10.0, max_tick_lag_s=0.1, faulty=[], injected={},
                nodes=2, windows=20, published=20, messages=20, dropped=0, pending=0, anomalies=1)
    a = dict(base, ack_latency_ms={"p50": 10.0, "p99": 50.0, "max": 60.0}, per_device={"a": {}},
             faulty=["a"])
    b = dict(base, duration_s=11.0, ack_latency_ms={"p50": 20.0, "p99": 80.0, "max": 90.0},
             per_device={"b": {}}, max_tick_lag_s=0.3)
    m = merge_reports([a, b])
    assert (m["nodes"], m["windows"], m["anomalies"], m["duration_s"]) == (4, 40, 2, 11.0)
    assert m["ack_latency_ms"] == {"p50": 15.0, "p99": 80.0, "max": 90.0}
    assert sorted(m["per_device"]) == ["a", "b"] and m["faulty"] == ["a"] and m["max_tick_lag_s"] == 0.3
