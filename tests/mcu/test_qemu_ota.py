"""OTA on the emulated Cortex-M4F, end to end: real Mosquitto, `edgefleet serve` (ingest + OTA
manager), the QEMU node with two flash slots behind `edgefleet bridge`. A good, newer, signed model
is downloaded, verified (Ed25519 + SHA-256 on the M4), self-tested, trialled and confirmed, and the
node's results carry its version; a model that floods false alarms is reverted by the campaign's
health check and the node stays on the good one; a manifest signed by another key is refused."""

from __future__ import annotations

import hashlib
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.runtime import keys, manifest

from edgefleet import protocol
from edgefleet.runtime.artifact import Artifact
from edgefleet.device.framing import FrameDecoder, encode_frame, split_link
from edgefleet.service.broker import start_broker
from edgefleet.service.ota.campaign import Policy, Target
from edgefleet.service.ota.registry import OtaRegistry

from testkit import free_port

from .conftest import FLEET_MODEL, QEMU, REPO
from .test_qemu_fleet import ENV, q, wait_for

DEVICE = "qemu-ota-1"
STACK_RESERVED = 3584  # firmware/ports/mps2-an386/mps2-an386.ld


def release(version: int, key, *, threshold_scale: float = 1.0, wrong_self_test: bool = False,
            mean_shift: float = 0.0) -> tuple[bytes, bytes]:
    """The fleet model as `version`, signed by `key` (threshold scaled: 1e-3 flags every window;
    wrong_self_test: a signed manifest whose expected self-test outputs this model does not give;
    mean_shift: the features' normalisation means moved, so that it scores windows differently)."""
    art = Artifact.from_bytes(FLEET_MODEL.read_bytes())
    art.model_version = version
    art.scoring.threshold = float(art.scoring.threshold) * threshold_scale
    art.features.mean = (art.features.mean + mean_shift).astype("<f4")
    blob = art.to_bytes()
    body = manifest.build_body(blob, art, key.public_key(), model_id="fleet")
    if wrong_self_test:
        out = bytearray(bytes.fromhex(body["self_test"]["output"]))
        out[5] ^= 0x01
        body["self_test"]["output"] = out.hex()
    return blob, manifest.sign(body, key)


def public_key_file(key, path: Path) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    return path


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
    pub = public_key_file(key, tmp_path / "ota.pub")
    broker = start_broker(prefer="mosquitto", workdir=tmp_path / "broker")
    url = f"mqtt://127.0.0.1:{broker.port}"
    db = tmp_path / "fleet.db"
    serial_port = free_port()
    rec, fs = recording

    def spawn(name, argv, cwd=REPO):
        procs[name] = subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=(tmp_path / f"{name}.out").open("wb"),
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
                       "-append", f"node {FLEET_MODEL} {fs} --samples {rec} --key {pub.name} --no-commission"],
              cwd=tmp_path)  # semihosting paths are relative to QEMU's directory (the command line has 256 B)
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

    # a manifest signed by another key: refused by the node before a byte is downloaded (the
    # registry takes it only as an explicit rotation, which the node was never given)
    other = keys.generate(ota_node["tmp"] / "other.key")
    blob4, man4 = release(4, other)
    reg.publish(blob4, man4, {}, other.public_key(), trust_new_key=True)
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


def rollout(db: Path, *args) -> None:
    """`edgefleet ota rollout ... --db DB` as an operator types it."""
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "ota", "rollout", *map(str, args), "--db", str(db)],
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=ENV)
    assert proc.returncode == 0, proc.stderr


def test_shadow_rollout_to_the_qemu_node(ota_node):
    """`ota rollout --shadow`: the QEMU node reports `shadow`, keeps deciding with model 1 while the
    candidate's outcomes of the same windows reach the store's shadow_results, then trials and
    confirms it; a false-alarm candidate is stopped by the manager on its shadow outcomes alone."""
    from edgefleet.service.store import open_store

    reg, db, key, watch, logs = (ota_node[k] for k in ("registry", "db", "key", "watch", "logs"))
    blob, man = release(2, key)  # the same weights under a new version: the same scores
    reg.publish(blob, man, {}, key.public_key())
    # 0.1 min = 6 s of shadow, then 0.05 min = 3 s of trial: the bridge passes shadow_s on as SHADOW_S
    rollout(db, 2, "--stages", "100%", "--shadow", "0.1", "--trial", "0.05", "--id", "c2-shadow")
    assert (reg.campaign("c2-shadow").policy.shadow_s, reg.campaign("c2-shadow").policy.trial_s) == (6, 3)
    done = wait_campaign(reg, "c2-shadow", logs)
    assert done.state == "completed", reg.device_states("c2-shadow")
    assert watch.of("c2-shadow") == ["accepted", "verifying", "shadow", "trial", "confirmed"]
    st = {s["state"]: s for s in watch.states if s["campaign"] == "c2-shadow"}
    assert st["shadow"]["off"] == len(blob) and "off" not in st["trial"]
    assert st["trial"]["ts"] - st["shadow"]["ts"] >= 5500  # the 6 s shadow phase, not trial_s
    assert (watch.births[-1]["model"], watch.births[-1]["slot"]) == (2, "B")
    assert all(b["ts"] >= st["trial"]["ts"] for b in watch.births if b.get("model") == 2)  # announced at the trial
    wait_for(lambda: latest_models(db) == {2}, 20, "results under model 2", logs)
    store = open_store(db)
    try:
        rows = store.shadow_results(2, device=DEVICE)
    finally:
        store.close()
    assert len(rows) >= 20  # about 3 s of 80 ms windows
    assert {(r.model, r.shadow_model) for r in rows} == {(1, 2)}  # model 1 decided meanwhile
    assert all(r.shadow_score == r.score and r.shadow_anom == r.anom for r in rows)  # same windows, same weights
    assert q(db, "SELECT COUNT(*) FROM results WHERE device=? AND model=2 AND ts<?", DEVICE, st["trial"]["ts"]) == [(0,)]

    # a candidate that flags every window: the canary check aborts on shadow outcomes, model 3 never runs
    blob3, man3 = release(3, key, threshold_scale=1e-3)
    reg.publish(blob3, man3, {}, key.public_key())
    rollout(db, 3, "--stages", "100%", "--shadow", "1", "--trial", "1", "--id", "c3-shadow")
    done = wait_campaign(reg, "c3-shadow", logs)
    assert done.state == "aborted" and "anomaly rate" in done.reason, done.reason
    wait_for(lambda: "reverted" in watch.of("c3-shadow"), 20, "the node's reverted state", logs)
    assert watch.of("c3-shadow") == ["accepted", "verifying", "shadow", "reverted"]
    assert q(db, "SELECT COUNT(*) FROM results WHERE device=? AND model=3", DEVICE) == [(0,)]
    flagged = q(db, "SELECT COUNT(*), SUM(shadow_anom), SUM(anom) FROM shadow_results WHERE device=? AND "
                "shadow_model=3", DEVICE)[0]
    assert flagged[0] >= 20 and flagged[1] == flagged[0] and flagged[2] < flagged[0]
    time.sleep(1.0)
    assert latest_models(db) == {2}
    assert q(db, "SELECT model, slot FROM devices WHERE device=?", DEVICE) == [(2, "B")]
    assert q(db, "SELECT topic, reason FROM rejected") == []
    assert "invalid" not in (ota_node["tmp"] / "bridge.log").read_text()


# ---- the node's side of the link alone: the test plays bridge and OTA manager -------------------
class QemuSerialPeer:
    """The QEMU node's serial link: frames in a queue, link messages out (docs/mcu.md formats)."""

    def __init__(self, port: int):
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(0.2)
        self.frames: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.results: list[dict] = []
        self.births: list[dict] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        dec = FrameDecoder()
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            for payload in dec.feed(data):
                kind, body = split_link(payload)
                if kind == "result":
                    self.results.append(protocol.decode("result", body))
                elif kind == "status":
                    self.births.append(protocol.decode("status", body))
                self.frames.put((kind, body))

    def send(self, payload: bytes):
        self.sock.sendall(encode_frame(payload))

    def expect(self, kinds: tuple[str, ...], timeout: float = 10.0) -> tuple[str, bytes]:
        """The next frame of one of `kinds` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                kind, body = self.frames.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind in kinds:
                return kind, body
        raise AssertionError(f"no {kinds} from the node within {timeout} s")

    def state(self, timeout: float = 10.0) -> dict:
        return protocol.decode("ota/state", self.expect(("ota/state",), timeout)[1])

    def close(self):
        self._stop = True
        self.sock.close()


def offer_frame(campaign: str, blob: bytes, man: bytes, *, trial_s: int = 0, model: int | None = None,
                shadow_s: int | None = None) -> bytes:
    """The bridge's offer line; with shadow_s, a shadow offer naming its SHADOW_S (docs/mcu.md)."""
    model = Artifact.from_bytes(blob).model_version if model is None else model
    shadow = "0" if shadow_s is None else "1"
    tail = "" if shadow_s is None else f" {shadow_s}"
    return (f"offer {campaign} {model} {len(blob)} 1024 {trial_s} {shadow} {len(man)} "
            f"{hashlib.sha256(blob).hexdigest()}{tail}").encode()


def serve_transfer(link: QemuSerialPeer, campaign: str, blob: bytes, man: bytes, *,
                   corrupt_at: int | None = None) -> tuple[int, dict]:
    """Answer mreq and ota/req until the node reports a state; (chunks served, that state)."""
    served = 0
    corrupted = False
    while True:
        kind, body = link.expect(("mreq", "ota/req", "ota/state"))
        if kind == "ota/state":
            return served, protocol.decode("ota/state", body)
        if kind == "mreq":
            c, m, off, n = body.decode().split(" ")
            assert c == campaign and 0 < int(n) <= 256
            link.send(b"mdat %s %s %s " % (c.encode(), m.encode(), off.encode()) + man[int(off):int(off) + int(n)])
            continue
        req = protocol.decode("ota/req", body)
        assert req["campaign"] == campaign and 0 < req["len"] <= 1024
        data = blob[req["off"]:req["off"] + req["len"]]
        crc = zlib.crc32(data)
        if req["off"] == corrupt_at and not corrupted:  # damaged in transit: the node must ask again
            data = bytes([data[0] ^ 0xFF]) + data[1:]
            corrupted = True
        link.send(b"data %s %d %d %d " % (campaign.encode(), req["model"], req["off"], crc) + data)
        served += 1


def start_node(mcu, recording, tmp_path: Path, key, *, windows: int | None = None,
               capture: bool = False) -> tuple[subprocess.Popen, "QemuSerialPeer"]:
    """The QEMU node on the fleet model and the recording, trusting `key`, its serial link on a
    free port; `capture` keeps the node's console output (stack report) for the caller. The OTA
    tests judge by the models' own thresholds (the canary's anomaly rates), so the node does not
    commission a baseline (--no-commission; tests/mcu/test_qemu_commission.py does)."""
    rec, fs = recording
    port = free_port()
    extra = f"--windows {windows} " if windows else ""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    qemu = subprocess.Popen([*QEMU, "-serial", f"tcp:127.0.0.1:{port},server,nowait",
                             "-kernel", str(mcu / "ef_mcu_node.elf"), "-append",
                             f"node {FLEET_MODEL} {fs} --samples {rec} {extra}"
                             f"--key {public_key_file(key, tmp_path / 'k.pub').name} --no-commission"],
                            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT if capture else subprocess.DEVNULL)
    return qemu, QemuSerialPeer(port)


def hello(link: "QemuSerialPeer") -> dict:
    """Wait for the node's boot line, send the bridge's hello (wall clock), return its birth."""
    link.expect(("boot",))
    link.send(b"hello %d" % int(time.time() * 1000))
    return json.loads(link.expect(("status",))[1])


def test_ota_on_the_emulated_m4_over_the_link(mcu, recording, tmp_path):
    """Without broker or bridge: every refusal reason and both rollbacks on the emulated core,
    the trial switching the running model, and the stack high-water mark with Ed25519 on it."""
    key = keys.generate(tmp_path / "k.key")
    qemu, link = start_node(mcu, recording, tmp_path, key, windows=100, capture=True)
    try:
        birth = hello(link)
        assert (birth["model"], birth["slot"], birth["caps"]) == (1, "A", ["debug", "calib", "ota"])

        # refused before any download: a foreign key, a downgrade
        other = keys.generate(tmp_path / "other.key")
        blob, man = release(2, other)
        link.send(offer_frame("forged", blob, man))
        served, st = serve_transfer(link, "forged", blob, man)
        assert served == 0
        assert (st["campaign"], st["state"], st["reason"]) == ("forged", "rejected", "manifest: bad-signature")
        link.send(offer_frame("old", *release(1, key)))
        st = link.state()
        assert st["state"] == "rejected" and "not newer" in st["reason"]

        # signed, but its self-test outputs are not what the model gives: rejected after download
        blob, man = release(2, key, wrong_self_test=True)
        link.send(offer_frame("selftest", blob, man))
        assert serve_transfer(link, "selftest", blob, man)[1]["state"] == "accepted"  # after the manifest
        _, st = serve_transfer(link, "selftest", blob, man)
        assert st["state"] == "verifying"
        st = link.state()
        assert (st["state"], st["reason"]) == ("rejected", "install: self-test-failed")

        # the good one, with one damaged chunk: asked again, then verified, trial, confirmed (trial_s 0)
        blob, man = release(2, key)
        link.send(offer_frame("good", blob, man))
        assert serve_transfer(link, "good", blob, man)[1]["state"] == "accepted"
        served, st = serve_transfer(link, "good", blob, man, corrupt_at=1152)
        assert served == -(-len(blob) // 192) + 1  # 192-byte pieces, one sent twice
        states = [st, link.state(), link.state()]
        assert [s["state"] for s in states] == ["verifying", "trial", "confirmed"]
        assert states[1]["off"] == len(blob)
        birth = json.loads(link.expect(("status",))[1])
        assert (birth["model"], birth["slot"]) == (2, "B")
        n = len(link.results)
        link.expect(("result",))
        time.sleep(0.3)
        assert {r["model"] for r in link.results[n:]} == {2}

        # a rollback of another campaign is ignored: the next frame is the ping's birth, on model 2
        link.send(b'cmd {"v":1,"seq":1,"id":"revert-other","op":"revert","campaign":"other"}')
        link.send(b'cmd {"v":1,"seq":2,"id":"ping-1","op":"ping"}')
        kind, body = link.expect(("status", "ota/state"))
        assert kind == "status" and (json.loads(body)["model"], json.loads(body)["slot"]) == (2, "B")
        # the server orders this campaign's rollback (aborted): back to the confirmed model in slot A,
        # reported under the campaign although the update had been confirmed
        link.send(b'cmd {"v":1,"seq":3,"id":"revert-good","op":"revert","campaign":"good"}')
        st = link.state()
        assert (st["campaign"], st["model"], st["state"], st["reason"]) == ("good", 2, "reverted", "revert command")
        birth = json.loads(link.expect(("status",))[1])
        assert (birth["model"], birth["slot"]) == (1, "A")
        out, _ = qemu.communicate(timeout=30)
    finally:
        link.close()
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
    assert qemu.returncode == 0, out[-2000:]
    used = int(re.search(rb"stack used: (\d+) B", out).group(1))
    print(f"stack high-water {used} B of {STACK_RESERVED} B reserved")
    assert used <= STACK_RESERVED - 256, f"stack high-water {used} B of {STACK_RESERVED} B reserved"
    assert {r["model"] for r in link.results[-3:]} == {1}


def test_reset_during_trial_reverts_and_a_confirmed_model_survives_a_reset(mcu, recording, tmp_path):
    """The slots are in QEMU's SSRAM, which a system reset keeps, like flash: a confirmed update is
    still there after a `reboot` cmd, and so is its campaign (a revert after the reset is reported
    under it); a trial that a reset ends is reverted and reported once the node is back, under the
    campaign it came from."""
    key = keys.generate(tmp_path / "k.key")
    qemu, link = start_node(mcu, recording, tmp_path, key)

    try:
        assert hello(link)["model"] == 1
        blob, man = release(2, key)
        link.send(offer_frame("c-2", blob, man, trial_s=0))
        assert serve_transfer(link, "c-2", blob, man)[1]["state"] == "accepted"
        assert serve_transfer(link, "c-2", blob, man)[1]["state"] == "verifying"
        assert [link.state()["state"], link.state()["state"]] == ["trial", "confirmed"]
        link.send(b'cmd {"v":1,"seq":1,"id":"rb-1","op":"reboot"}')
        birth = hello(link)
        assert (birth["model"], birth["slot"]) == (2, "B")  # the confirmed update survived the reset
        link.send(b'cmd {"v":1,"seq":1,"id":"rv-1","op":"revert","campaign":"c-2"}')
        st = link.state()  # the campaign comes from the slot: RAM was reset
        assert (st["campaign"], st["model"], st["state"]) == ("c-2", 2, "reverted")
        assert (json.loads(link.expect(("status",))[1])["model"], link.births[-1]["slot"]) == (1, "A")

        blob, man = release(3, key)
        link.send(offer_frame("c-3", blob, man, trial_s=600))
        assert serve_transfer(link, "c-3", blob, man)[1]["state"] == "accepted"
        assert serve_transfer(link, "c-3", blob, man)[1]["state"] == "verifying"
        assert link.state()["state"] == "trial"
        assert json.loads(link.expect(("status",))[1])["model"] == 3
        link.send(b'cmd {"v":1,"seq":2,"id":"rb-2","op":"reboot"}')
        birth = hello(link)
        assert (birth["model"], birth["slot"]) == (1, "A")
        st = link.state()
        assert (st["campaign"], st["model"], st["state"], st["reason"]) == ("c-3", 3, "reverted",
                                                                            "rebooted during trial")
        assert st["boot"] == birth["boot"] and st["seq"] == 0  # a new boot, its first ota/state
    finally:
        link.close()
        qemu.kill()
        qemu.wait()


def host_scores(mcu, model: Path, rec: Path, fs: float) -> list[float]:
    """Per window of the recording, the score the host build's ef_node gives with `model` active."""
    out = subprocess.run([str(REPO / "firmware" / "build" / "host" / "ef_node"), str(model), str(rec), str(fs),
                          "--protocol", "0badc0de", "--t0", "1767225600000", "--no-commission"],
                         capture_output=True, text=True, check=True).stdout
    return [r["score"] for line in out.splitlines() if line.startswith('{"v"') for r in json.loads(line)["res"]]


def test_shadow_phase_on_the_emulated_m4_over_the_link(mcu, recording, tmp_path):
    """The shadow phase without broker or bridge: the old model stays active and announced, the
    verified candidate scores every window beside it (its scores equal the host build's with the
    candidate active, window for window), then the ordinary trial; a reset during the phase, a
    revert cmd and an unhealthy phase each drop the candidate without it ever running."""
    key = keys.generate(tmp_path / "k.key")
    rec, fs = recording
    qemu, link = start_node(mcu, recording, tmp_path, key)
    n_windows = 40  # the recording, looped by the node: result seq s is window s % 40

    def install(campaign: str, blob: bytes, man: bytes, **offer) -> dict:
        link.send(offer_frame(campaign, blob, man, **offer))
        assert serve_transfer(link, campaign, blob, man)[1]["state"] == "accepted"
        assert serve_transfer(link, campaign, blob, man)[1]["state"] == "verifying"
        return link.state()

    def shadowed(since: int, boot: str) -> list[tuple[dict, dict]]:
        return [(m, r) for m in link.results[since:] if m["boot"] == boot and "shadow" in m for r in m["res"]]

    try:
        boot = hello(link)["boot"]
        # candidate 2 scores windows differently (other normalisation) and has its own threshold
        blob2, man2 = release(2, key, mean_shift=0.05, threshold_scale=0.8)
        cand = tmp_path / "v2.efm"
        cand.write_bytes(blob2)
        want = host_scores(mcu, cand, rec, fs)
        assert len(want) == n_windows and want != host_scores(mcu, FLEET_MODEL, rec, fs)
        thr2 = float(Artifact.from_bytes(blob2).scoring.threshold)

        # a reset during the shadow phase: the old model never stopped, the candidate is dropped
        st = install("c-reset", blob2, man2, trial_s=0, shadow_s=600)
        assert (st["state"], st["off"]) == ("shadow", len(blob2))
        n = len(link.results)
        wait_for(lambda: len(shadowed(n, boot)) >= 3, 10, "results with shadow outcomes", lambda: "")
        link.send(b'cmd {"v":1,"seq":1,"id":"rb-1","op":"reboot"}')
        birth = hello(link)
        assert (birth["model"], birth["slot"]) == (1, "A") and birth["boot"] != boot
        st = link.state()
        assert (st["campaign"], st["model"], st["state"], st["reason"]) == ("c-reset", 2, "reverted",
                                                                            "rebooted during trial")
        boot = birth["boot"]

        # the whole phase: shadow (3 s, the offer's SHADOW_S, not TRIAL_S), then trial and confirm
        n = len(link.results)
        st = install("c-shadow", blob2, man2, trial_s=0, shadow_s=3)
        t_shadow = time.monotonic()
        assert (st["state"], st["off"]) == ("shadow", len(blob2))
        st = link.state(timeout=10)
        assert st["state"] == "trial" and "off" not in st and time.monotonic() - t_shadow >= 2.5
        assert link.state()["state"] == "confirmed"
        birth = json.loads(link.expect(("status",))[1])
        assert (birth["model"], birth["slot"]) == (2, "B")
        rows = shadowed(n, boot)
        assert len(rows) >= 20  # about 3 s of 80 ms windows
        for m, r in rows:  # the old model decided; the candidate's outcome of the same window beside it
            assert (m["model"], m["shadow"]["model"], m["shadow"]["thr"]) == (1, 2, pytest.approx(thr2, rel=1e-5))
            assert r["shadow"]["score"] == want[r["seq"] % n_windows], (r, want[r["seq"] % n_windows])
            assert r["shadow"]["anom"] == (r["shadow"]["score"] > m["shadow"]["thr"])
        assert not any(m["model"] == 2 for m in link.results[n:] if "shadow" in m)
        time.sleep(0.5)
        later = [m for m in link.results[n:] if m["model"] == 2]
        assert later and not any("shadow" in m for m in later)  # after the phase: model 2 alone

        # a revert cmd during the phase: the candidate is dropped, no birth (nothing switched)
        births = len(link.births)
        blob3, man3 = release(3, key)
        assert install("c-revert", blob3, man3, trial_s=0, shadow_s=600)["state"] == "shadow"
        link.send(b'cmd {"v":1,"seq":3,"id":"ping-1","op":"ping"}')  # the node announces the model it runs
        birth = json.loads(link.expect(("status",))[1])
        assert (birth["model"], birth["slot"]) == (2, "B")
        link.send(b'cmd {"v":1,"seq":2,"id":"rv-1","op":"revert"}')
        st = link.state()
        assert (st["campaign"], st["model"], st["state"], st["reason"]) == ("c-revert", 3, "reverted", "revert command")

        # a candidate that flags every window: unhealthy at the end of its 2 s phase, never active
        n = len(link.results)
        blob3, man3 = release(3, key, threshold_scale=1e-3)
        assert install("c-bad", blob3, man3, trial_s=0, shadow_s=2)["state"] == "shadow"
        st = link.state(timeout=10)
        assert (st["campaign"], st["state"], st["reason"]) == ("c-bad", "reverted",
                                                               "unhealthy at the end of the shadow phase")
        rows = shadowed(n, boot)
        assert len(rows) >= 10 and all(r["shadow"]["anom"] for _, r in rows)
        time.sleep(0.5)
        assert {m["model"] for m in link.results[n:]} == {2}
        assert len(link.births) == births + 1  # the ping's only: no shadow phase switched the model
    finally:
        link.close()
        qemu.kill()
        qemu.wait()
