"""OTA on the emulated Cortex-M4F, end to end: real Mosquitto, `edgefleet serve` (ingest + OTA
manager), the QEMU node with two flash slots behind `edgefleet bridge`. A good, newer, signed model
is downloaded, verified (Ed25519 + SHA-256 on the M4), self-tested, trialled and confirmed, and the
node's results carry its version; a model that floods false alarms is reverted by the campaign's
health check and the node stays on the good one; a manifest signed by another key is refused."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet import keys, manifest, protocol
from edgefleet.artifact import Artifact
from edgefleet.broker import start_broker
from edgefleet.ota.campaign import Policy, Target
from edgefleet.ota.registry import OtaRegistry

from .conftest import FLEET_MODEL, QEMU, REPO, free_port
from .test_qemu_fleet import ENV, q, wait_for

DEVICE = "qemu-ota-1"


def release(version: int, key, *, threshold_scale: float = 1.0) -> tuple[bytes, bytes]:
    """The fleet model as `version`, signed by `key` (threshold scaled: 1e-3 flags every window)."""
    art = Artifact.from_bytes(FLEET_MODEL.read_bytes())
    art.model_version = version
    art.scoring.threshold = float(art.scoring.threshold) * threshold_scale
    blob = art.to_bytes()
    return blob, manifest.sign(manifest.build_body(blob, art, key.public_key(), model_id="fleet"), key)


class Watcher:
    """Every ota/state and status the node publishes, decoded (and so schema-checked)."""

    def __init__(self, url_port: int):
        self.states: list[dict] = []
        self.births: list[dict] = []
        self.lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{time.time_ns()}", protocol=mqtt.MQTTv5)
        c.on_connect = lambda cl, *_: cl.subscribe([(protocol.topic(DEVICE, "ota/state"), 1),
                                                    (protocol.topic(DEVICE, "status"), 1)])
        c.on_message = self._on_message
        c.connect("127.0.0.1", url_port)
        c.loop_start()
        self.client = c

    def _on_message(self, _c, _u, msg):
        m = protocol.decode_message(msg.topic, msg.payload)
        with self.lock:
            (self.states if m.kind == "ota/state" else self.births).append(m.body)

    def of(self, campaign: str) -> list[str]:
        with self.lock:
            return [s["state"] for s in self.states if s["campaign"] == campaign]

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def ota_node(mcu, recording, tmp_path):
    """Broker, serve (ingest + OTA), the QEMU node (slots, --key) and its bridge; stopped afterwards."""
    procs: dict[str, subprocess.Popen] = {}
    key = keys.generate(tmp_path / "ota.key")
    pub = tmp_path / "ota.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    broker = start_broker(prefer="mosquitto", workdir=tmp_path / "broker")
    url = f"mqtt://127.0.0.1:{broker.port}"
    db = tmp_path / "fleet.db"
    serial_port = free_port()
    rec, fs = recording

    def spawn(name, argv):
        procs[name] = subprocess.Popen(argv, cwd=REPO, env=ENV, stdout=(tmp_path / f"{name}.out").open("wb"),
                                       stderr=(tmp_path / f"{name}.log").open("wb"))

    def logs():
        return "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text()[-3000:]}"
                         f"{(tmp_path / f'{n}.out').read_text(errors='replace')[-1500:]}" for n in procs)

    watcher = Watcher(broker.port)
    registry = None
    try:
        spawn("serve", [sys.executable, "-m", "edgefleet", "serve", "--broker", url, "--db", str(db),
                        "--client-id", f"ota-qemu-{time.time_ns()}"])
        wait_for(lambda: "subscribed" in (tmp_path / "serve.log").read_text(), 30, "serve subscribed", logs)
        spawn("qemu", [*QEMU, "-serial", f"tcp:127.0.0.1:{serial_port},server,nowait",
                       "-kernel", str(mcu / "ef_mcu_node.elf"),
                       "-append", f"node {FLEET_MODEL} {fs} --samples {rec} --key {pub}"])
        spawn("bridge", [sys.executable, "-m", "edgefleet", "bridge", "--serial", f"tcp://127.0.0.1:{serial_port}",
                         "--broker", url, "--device", DEVICE])
        wait_for(lambda: q(db, "SELECT model FROM devices WHERE device=? AND status='online'", DEVICE) == [(1,)],
                 30, "the QEMU node's birth (model 1) in the store", logs)
        wait_for(lambda: q(db, "SELECT COUNT(*) FROM results WHERE device=?", DEVICE)[0][0] >= 10, 30,
                 "results under model 1", logs)
        registry = OtaRegistry(db)
        yield {"key": key, "db": db, "registry": registry, "watch": watcher, "logs": logs, "procs": procs,
               "tmp": tmp_path}
    finally:
        watcher.stop()
        if registry is not None:
            registry.close()
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()


def wait_campaign(registry, cid, logs, timeout=90):
    def done():
        c = registry.campaign(cid)
        return c if c.state in ("completed", "aborted") else None
    return wait_for(done, timeout, f"campaign {cid} to finish",
                    lambda: f"{registry.status(cid)}\n{registry.device_states(cid)}\n{logs()}")


def latest_models(db: Path, n: int = 5) -> set[int]:
    return {m for (m,) in q(db, "SELECT model FROM results WHERE device=? ORDER BY ts DESC LIMIT ?", DEVICE, n)}


def test_good_update_confirmed_then_false_alarm_model_reverted(ota_node):
    reg, db, key, watch, logs = (ota_node[k] for k in ("registry", "db", "key", "watch", "logs"))

    # a good, newer model: download, verify, self-test, trial, confirm
    blob, man = release(2, key)
    reg.publish(blob, man, {}, key.public_key())
    good = reg.create_campaign(2, Target.parse("all"), Policy(stages=[1.0], trial_s=2))
    done = wait_campaign(reg, good.id, logs)
    assert done.state == "completed", reg.device_states(good.id)
    assert reg.device_states(good.id)[DEVICE]["state"] == "confirmed"
    assert watch.of(good.id) == ["accepted", "verifying", "trial", "confirmed"]
    trial = next(s for s in watch.states if s["campaign"] == good.id and s["state"] == "trial")
    assert trial["off"] == len(blob)
    wait_for(lambda: latest_models(db) == {2}, 20, "results under model 2", logs)
    assert q(db, "SELECT model, slot FROM devices WHERE device=?", DEVICE) == [(2, "B")]

    # a model that flags every window: the canary's anomaly rate aborts the campaign, the node reverts
    blob3, man3 = release(3, key, threshold_scale=1e-3)
    reg.publish(blob3, man3, {}, key.public_key())
    bad = reg.create_campaign(3, Target.parse("all"), Policy(stages=[1.0], trial_s=60, min_windows=5))
    done = wait_campaign(reg, bad.id, logs)
    assert done.state == "aborted" and "anomaly rate" in done.reason, done.reason
    wait_for(lambda: "reverted" in watch.of(bad.id), 20, "the node's reverted state", logs)
    assert watch.of(bad.id)[:3] == ["accepted", "verifying", "trial"]
    anomalous_v3 = q(db, "SELECT COUNT(*), SUM(anom) FROM results WHERE device=? AND model=3", DEVICE)[0]
    assert anomalous_v3[0] >= 5 and anomalous_v3[1] == anomalous_v3[0]  # it did flood while on trial
    wait_for(lambda: latest_models(db) == {2}, 20, "results back under model 2", logs)
    assert q(db, "SELECT model, slot FROM devices WHERE device=?", DEVICE) == [(2, "B")]

    # a manifest signed by another key: refused before a byte is downloaded
    other = keys.generate(ota_node["tmp"] / "other.key")
    blob4, man4 = release(4, other)
    reg.publish(blob4, man4, {}, other.public_key())
    forged = reg.create_campaign(4, Target.parse("all"), Policy(stages=[1.0], trial_s=2))
    done = wait_campaign(reg, forged.id, logs)
    assert done.state == "aborted"
    rejected = [s for s in watch.states if s["campaign"] == forged.id]
    assert [s["state"] for s in rejected] == ["rejected"] and "signature" in rejected[0]["reason"], rejected
    time.sleep(1.0)
    assert latest_models(db) == {2}
    rejects = q(db, "SELECT topic, reason FROM rejected")
    assert rejects == [], rejects
    assert "invalid" not in (ota_node["tmp"] / "bridge.log").read_text()  # every node message was valid
