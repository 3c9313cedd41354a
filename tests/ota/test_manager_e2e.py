"""Campaigns over a real Mosquitto: staged rollout, a false-alarm model stopped at the canary stage,
corrupted and lost chunks, and an operator abort with rollback."""

from __future__ import annotations

import threading
import time
from base64 import b64decode, b64encode

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet import protocol
from edgefleet.device.ota_client import OtaClient, Slots
from edgefleet.runtime.artifact import Artifact
from edgefleet.runtime.engine import Detector
from edgefleet.service.broker import start_broker
from edgefleet.service.ota.campaign import Policy, Target
from edgefleet.service.ota.manager import OtaManager
from edgefleet.service.ota.registry import OtaRegistry
from edgefleet.toolchain.datasets import load_recording, windows_of


@pytest.fixture(scope="module")
def broker():
    b = start_broker(prefer="mosquitto")
    yield b
    b.stop()


class HarnessNode:
    """A node reduced to its OTA client plus scoring of real normal CWRU windows."""

    def __init__(self, device: str, port: int, slots: Slots, public_key, windows, fs, *, drop=0.0, corrupt=0.0,
                 seed=0):
        self.device, self.ota, self.windows, self.fs = device, OtaClient(slots, public_key, device=device), windows, fs
        self.rng = np.random.default_rng(seed)
        self.drop, self.corrupt = drop, corrupt
        self.results: list[tuple[int, bool]] = []
        self.cmds: list[dict] = []
        self.seq = 0
        self.lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        for kind in ("ota/offer", "ota/data", "cmd"):
            c.subscribe(protocol.topic(device, kind), qos=1)
        c.loop_start()
        self.client = c

    def _send(self, msgs):
        for kind, body in msgs:
            self.seq += 1
            payload = protocol.encode(kind, {"v": 1, "boot": "b0000000", "seq": self.seq, **body})
            self.client.publish(protocol.topic(self.device, kind), payload, qos=1)

    def _on_message(self, _c, _u, msg):
        if not msg.payload and msg.topic.endswith("ota/offer"):
            return
        m = protocol.decode_message(msg.topic, msg.payload)
        now = time.time()
        with self.lock:
            if m.kind == "ota/offer":
                self._send(self.ota.offer(m.body, now))
            elif m.kind == "ota/data":
                if self.rng.random() < self.drop:
                    return  # lost on the way
                body = dict(m.body)
                if self.rng.random() < self.corrupt:
                    raw = bytearray(b64decode(body["data"]))
                    raw[0] ^= 0xFF
                    body["data"] = b64encode(bytes(raw)).decode()
                self._send(self.ota.chunk(body, now))
            elif m.kind == "cmd" and m.body["op"] == "revert":
                self.cmds.append(m.body)
                self._send(self.ota.revert(now, campaign=m.body.get("campaign")))

    def step(self):
        """One window scored by whatever model is active, then the OTA timers."""
        with self.lock:
            art = self.ota.slots.active_artifact()
            w = self.windows[self.rng.integers(0, len(self.windows))][None, :]
            _, anom = Detector(art).score_windows(w, self.fs)
            self.results.append((art.model_version, bool(anom[0])))
            recent = [a for m, a in self.results[-20:] if m == art.model_version]
            healthy = not recent or sum(recent) / len(recent) < 0.5
            self._send(self.ota.tick(time.time(), healthy=healthy))

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def make_fleet(broker, signing_key, versioned, windows, fs, n, **kw):
    nodes = {}
    for i in range(n):
        slots = Slots()
        slots.images["A"] = versioned(1)
        site = "north" if i % 2 else "south"
        nodes[f"sim-{i:04d}"] = (HarnessNode(f"sim-{i:04d}", broker.port, slots, signing_key.public_key(),
                                             windows, fs, seed=i, **kw), {"site": site, "tags": ["pump"]})
    return nodes


def run_campaign(manager, nodes, registry, cid, timeout=90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for node, _ in nodes.values():
            node.step()
        manager.step()
        c = registry.campaign(cid)
        if c.state in ("completed", "aborted"):
            return c
        time.sleep(0.1)
    raise AssertionError(f"campaign {cid} still {registry.campaign(cid).state}: {registry.status(cid)}")


@pytest.fixture()
def setup(broker, tmp_path, signing_key, versioned, release, cwru_dir):
    from edgefleet.runtime.features import FeatureParams  # noqa: F401

    rec = load_recording(cwru_dir / "normal_0hp_97.npz")
    art = Artifact.from_bytes(versioned(1))
    windows = windows_of(rec, art.features.params, start=0.7)
    registry = OtaRegistry(tmp_path / "fleet.db")
    made = []

    def build(n, **kw):
        nodes = make_fleet(broker, signing_key, versioned, windows, rec.fs, n, **kw)
        made.append(nodes)
        lookup = lambda: {d: {**meta, "model": node.ota.current_version()} for d, (node, meta) in nodes.items()}  # noqa: E731

        def results(device, since):
            return list(nodes[device][0].results)
        mgr = OtaManager(registry, "127.0.0.1", broker.port, devices=lookup, results=results,
                         client_id=f"ota-{time.time_ns()}")
        mgr.client.connect(mgr.host, mgr.port)
        mgr.client.loop_start()
        time.sleep(0.3)
        made.append(mgr)
        return nodes, mgr

    yield registry, build
    for item in made:
        if isinstance(item, OtaManager):
            item.client.loop_stop()
            item.client.disconnect()
        else:
            for node, _ in item.values():
                node.close()
    registry.close()


def publish(registry, signing_key, release, versioned, version, **kw):
    blob = versioned(version, **kw)
    _, man, _ = release(version, blob=blob)
    registry.publish(blob, man, {}, signing_key.public_key())


def test_staged_rollout_updates_every_node_through_lossy_links(setup, signing_key, release, versioned):
    registry, build = setup
    nodes, mgr = build(20, drop=0.1, corrupt=0.05)
    publish(registry, signing_key, release, versioned, 2)
    c = registry.create_campaign(2, Target.parse("all"), Policy(stages=[0.1, 0.5, 1.0], trial_s=1))
    done = run_campaign(mgr, nodes, registry, c.id)
    assert done.state == "completed", registry.status(c.id)
    assert registry.status(c.id)[0]["by_state"] == {"confirmed": 20}
    assert all(node.ota.current_version() == 2 for node, _ in nodes.values())
    hist = registry.history("sim-0003")
    assert {"offered", "accepted", "trial", "confirmed"} <= {h["state"] for h in hist}


def test_false_alarm_model_is_stopped_at_canaries_and_rolled_back(setup, signing_key, release, versioned):
    registry, build = setup
    nodes, mgr = build(20)
    for _ in range(30):  # history under the old model
        for node, _ in nodes.values():
            node.step()
    publish(registry, signing_key, release, versioned, 3, threshold_scale=1e-3)  # flags everything
    c = registry.create_campaign(3, Target.parse("all"),
                                 Policy(stages=[0.1, 1.0], trial_s=60, min_windows=5, abort_anomaly_shift=3.0))
    done = run_campaign(mgr, nodes, registry, c.id)
    assert done.state == "aborted" and "model health" in done.reason
    canaries = done.devices[:2]
    time.sleep(1.0)
    for node, _ in nodes.values():
        node.step()
    assert all(nodes[d][0].ota.current_version() == 1 for d in nodes)  # canaries reverted, rest untouched
    assert all(nodes[d][0].ota.slots.trial is None for d in canaries)
    assert not any(d in done.devices[2:] for d in registry.device_states(c.id))


def test_target_by_site_and_operator_abort(setup, signing_key, release, versioned):
    registry, build = setup
    nodes, mgr = build(10)
    publish(registry, signing_key, release, versioned, 4)
    c = registry.create_campaign(4, Target.parse("site=north"), Policy(stages=[1.0], trial_s=600))
    for _ in range(40):
        for node, _ in nodes.values():
            node.step()
        mgr.step()
        if registry.status(c.id)[0]["by_state"].get("trial") == 5:
            break
        time.sleep(0.1)
    assert registry.status(c.id)[0]["by_state"] == {"trial": 5}
    assert registry.campaign(c.id).devices and all(nodes[d][1]["site"] == "north" for d in registry.campaign(c.id).devices)
    registry.abort(c.id)
    mgr.step()
    time.sleep(1.0)
    assert registry.campaign(c.id).state == "aborted"
    assert all(node.ota.current_version() == 1 for node, _ in nodes.values())
    north = [node for node, meta in nodes.values() if meta["site"] == "north"]
    assert all([cmd["campaign"] for cmd in node.cmds] == [c.id] for node in north)  # the revert names it
    mgr.step()  # records the nodes' reports
    assert registry.status(c.id)[0]["by_state"] == {"reverted": 5}
