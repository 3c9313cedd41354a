"""OTA on the emulated Cortex-M4F, end to end: real Mosquitto, `edgefleet serve` (ingest + OTA
manager), the QEMU node with two flash slots behind `edgefleet bridge`. A good, newer, signed model
is downloaded, verified (Ed25519 + SHA-256 on the M4), self-tested, trialled and confirmed, and the
node's results carry its version; a model that floods false alarms is reverted by the campaign's
health check and the node stays on the good one; a manifest signed by another key is refused. Every
offer carries the campaign ticket the OTA manager signed for the node (docs/ota.md, "Authorization"),
which the bridge passes through the serial link and the node's C core checks: offers without one, or
with one the node's trust set did not sign, are refused before a byte of the model is downloaded."""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import re
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
from testkit import free_port

from edgefleet import protocol
from edgefleet.device.bridge import offer_link
from edgefleet.device.framing import FrameDecoder, encode_frame, split_link
from edgefleet.device.ota_client import OtaClient, Slots
from edgefleet.runtime import keys, manifest, trust
from edgefleet.runtime.artifact import Artifact
from edgefleet.service.broker import start_broker
from edgefleet.service.ota.campaign import Policy, Target
from edgefleet.service.ota.registry import OtaRegistry

from .conftest import FLEET_MODEL, QEMU, REPO
from .test_qemu_fleet import ENV, q, stop_all, wait_for

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
        # the manager signs each offer's campaign ticket with the key the node trusts
        procs["serve"] = subprocess.Popen(
            [sys.executable, "-m", "edgefleet", "serve", "--broker", url, "--db", str(db),
             "--client-id", f"ota-qemu-{time.time_ns()}"], cwd=REPO,
            env={**ENV, "EDGEFLEET_CAMPAIGN_KEY": str(tmp_path / "ota.key")},
            stdout=(tmp_path / "serve.out").open("wb"), stderr=(tmp_path / "serve.log").open("wb"))
        wait_for(lambda: "subscribed" in (tmp_path / "serve.log").read_text(), 30, "serve subscribed", logs)
        spawn("qemu", [*QEMU, "-serial", f"tcp:127.0.0.1:{serial_port},server,nowait",
                       "-kernel", str(mcu / "ef_mcu_node.elf"),
                       "-append", f"node {FLEET_MODEL} {fs} --samples {rec} --key {pub.name} --device {DEVICE} "
                       "--no-commission"],
              cwd=tmp_path)  # semihosting paths are relative to QEMU's directory (the command line has 256 B)
        spawn("bridge", [sys.executable, "-m", "edgefleet", "bridge", "--serial", f"tcp://127.0.0.1:{serial_port}",
                         "--broker", url, "--device", DEVICE])
        wait_for(lambda: q(db, "SELECT model FROM devices WHERE device=? AND status='online'", DEVICE) == [(1,)],
                 30, "the QEMU node's birth (model 1) in the store", logs)
        wait_for(lambda: q(db, "SELECT COUNT(*) FROM results WHERE device=?", DEVICE)[0][0] >= 10, 30,
                 "results under model 1", logs)
        registry = OtaRegistry(db)
        yield {"key": key, "db": db, "registry": registry, "watch": watcher, "logs": logs, "procs": procs,
               "tmp": tmp_path, "port": broker.port}
    finally:
        watcher.stop()
        if registry is not None:
            registry.close()
        stop_all(procs)
        broker.stop()


def send_offer(port: int, body: dict) -> None:
    """Publish an ota/offer to the node's topic as any client of the broker could (not retained)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rogue-{time.time_ns()}", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(protocol.topic(DEVICE, "ota/offer"), protocol.encode("ota/offer", body), qos=1).wait_for_publish(5)
    finally:
        c.loop_stop()
        c.disconnect()


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

    # outside any campaign: offers sent straight to the node's topic, through the bridge and the serial
    # link, of a model the fleet key really signed, with the trial length the sender picks; the node's
    # C core refuses each, under campaign "none", before a byte of the model is asked for
    blob_r, man_r = release(3, key)
    sha_r = hashlib.sha256(blob_r).hexdigest()
    rogue = {"v": 1, "seq": 0, "campaign": "rogue", "model": 3, "size": len(blob_r), "sha256": sha_r, "chunk": 1024,
             "trial_s": 0, "shadow": False, "manifest": man_r.decode()}
    attacker = keys.generate(ota_node["tmp"] / "attacker.key")
    policy = {"campaign": "rogue", "model": 3, "sha256": sha_r, "trial_s": 0, "shadow": False, "shadow_s": 0}
    for ticket in (None, trust.sign_ticket(attacker, device=DEVICE, **policy),  # no ticket; the attacker's
                   trust.sign_ticket(key, device="qemu-ota-2", **policy)):  # the fleet's, for another node
        n = len(watch.of("none"))
        send_offer(ota_node["port"], {**rogue, **({"ticket": ticket.decode()} if ticket else {})})
        wait_for(lambda: len(watch.of("none")) > n, 20, "the node's refusal", logs)
    refusals = [s for s in watch.states if s["campaign"] == "none"]
    assert [(s["model"], s["state"]) for s in refusals] == [(3, "rejected")] * 3
    assert refusals[0]["reason"] == "unauthorized offer: no campaign ticket"
    assert all(s["reason"].startswith("unauthorized offer: no valid ticket") for s in refusals[1:])
    assert watch.of("rogue") == []  # nothing accepted, nothing reported under the sender's campaign
    time.sleep(1.0)
    assert latest_models(db) == {2}

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

    def __init__(self, port: int, qemu: subprocess.Popen | None = None):
        deadline = time.monotonic() + 30  # QEMU's start on a loaded 2-core host can take seconds
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or (qemu is not None and qemu.poll() is not None):
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


def offer_to(link: QemuSerialPeer, campaign: str, blob: bytes, man: bytes, key, **kw) -> bytes:
    """Send the bridge's offer line (edgefleet.device.bridge.offer_link) for `offer_msg`'s offer; return
    the documents the bridge would serve (manifest || ticket || keysets)."""
    docs, line = offer_link(offer_msg(campaign, blob, man, key, **kw))
    link.send(line)
    return docs


def offer_msg(campaign: str, blob: bytes, man: bytes, key, *, trial_s: int = 0, model: int | None = None,
              shadow_s: int | None = None, device: str = DEVICE, keysets: tuple[bytes, ...] = (),
              signed: dict | None = None) -> dict:
    """An ota/offer body carrying the campaign ticket `key` signs for `device` (none when key is None;
    `signed` changes what the ticket says) and `keysets`. With shadow_s, a shadow offer naming its
    SHADOW_S (docs/mcu.md)."""
    model = Artifact.from_bytes(blob).model_version if model is None else model
    sha = hashlib.sha256(blob).hexdigest()
    shadow = shadow_s is not None
    msg = {"campaign": campaign, "model": model, "size": len(blob), "sha256": sha, "chunk": 1024,
           "trial_s": trial_s, "shadow": shadow, **({"shadow_s": shadow_s} if shadow else {}),
           "manifest": man.decode()}
    if key is not None:
        fields = {"campaign": campaign, "device": device, "model": model, "sha256": sha, "trial_s": trial_s,
                  "shadow": shadow, "shadow_s": shadow_s or 0, **(signed or {})}
        msg["ticket"] = trust.sign_ticket(key, **fields).decode()
    if keysets:
        msg["keys"] = b" ".join(keysets).decode()
    return msg


def serve_transfer(link: QemuSerialPeer, campaign: str, blob: bytes, docs: bytes, *,
                   corrupt_at: int | None = None) -> tuple[int, dict]:
    """Answer mreq (from the offer's documents) and ota/req until the node reports a state; (chunks
    served, that state)."""
    served = 0
    corrupted = False
    while True:
        kind, body = link.expect(("mreq", "ota/req", "ota/state"))
        if kind == "ota/state":
            return served, protocol.decode("ota/state", body)
        if kind == "mreq":
            c, m, off, n = body.decode().split(" ")
            assert c == campaign and 0 < int(n) <= 256
            link.send(b"mdat %s %s %s " % (c.encode(), m.encode(), off.encode()) + docs[int(off):int(off) + int(n)])
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
    extra = f"--windows {windows} " if windows else ""
    # the node reads its command line through semihosting into 256 B: short names in its working folder
    # (under pytest-xdist the absolute paths grow by popen-gwN/ and the line was cut: a usage message)
    for name, target in (("model.efm", Path(FLEET_MODEL)), ("rec.f32", Path(rec))):
        if not (tmp_path / name).exists():
            (tmp_path / name).symlink_to(target.resolve())
    for attempt in range(3):  # the free port can be taken before QEMU binds it (a loaded, parallel run)
        port = free_port()
        log = open(tmp_path / f"qemu-{attempt}.log", "wb")
        out = subprocess.PIPE if capture else log
        qemu = subprocess.Popen([*QEMU, "-serial", f"tcp:127.0.0.1:{port},server,nowait",
                                 "-kernel", str(mcu / "ef_mcu_node.elf"), "-append",
                                 f"node model.efm {fs} --samples rec.f32 {extra}"
                                 f"--key {public_key_file(key, tmp_path / 'k.pub').name} --device {DEVICE} "
                                 "--no-commission"],
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT if capture else log)
        try:
            return qemu, QemuSerialPeer(port, qemu)
        except OSError as exc:
            qemu.kill()
            said = qemu.communicate()[0] if capture else None
            log.close()
            said = said or (tmp_path / f"qemu-{attempt}.log").read_bytes()
            if attempt == 2:
                raise AssertionError(f"QEMU's serial port {port} never opened ({exc}); QEMU said: "
                                     f"{said[-1500:].decode(errors='replace')}") from exc
    raise AssertionError("unreachable")


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
        docs = offer_to(link, "forged", blob, man, key)  # a ticket from the right key does not make it trusted
        served, st = serve_transfer(link, "forged", blob, docs)
        assert served == 0
        assert (st["campaign"], st["state"], st["reason"]) == ("forged", "rejected", "manifest: bad-signature")
        blob1, man1 = release(1, key)  # judged after its ticket: the documents are fetched, no chunk
        served, st = serve_transfer(link, "old", blob1, offer_to(link, "old", blob1, man1, key))
        assert served == 0 and (st["campaign"], st["state"], st["reason"]) == (
            "old", "rejected", "version 1 is not newer than running 1 (no downgrade)")

        # signed, but its self-test outputs are not what the model gives: rejected after download
        blob, man = release(2, key, wrong_self_test=True)
        docs = offer_to(link, "selftest", blob, man, key)
        assert serve_transfer(link, "selftest", blob, docs)[1]["state"] == "accepted"  # after the manifest
        _, st = serve_transfer(link, "selftest", blob, docs)
        assert st["state"] == "verifying"
        st = link.state()
        assert (st["state"], st["reason"]) == ("rejected", "install: self-test-failed")

        # the good one, with one damaged chunk: asked again, then verified, trial, confirmed (trial_s 0)
        blob, man = release(2, key)
        docs = offer_to(link, "good", blob, man, key)
        assert serve_transfer(link, "good", blob, docs)[1]["state"] == "accepted"
        served, st = serve_transfer(link, "good", blob, docs, corrupt_at=1152)
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
        # the reverted campaign's genuine offer, replayed: its ticket is never taken again
        offer_to(link, "good", blob, man, key)
        st = link.state()
        assert (st["campaign"], st["state"], st["reason"]) == ("none", "rejected",
                                                               "unauthorized offer: campaign good was reverted here")
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


def test_tickets_and_key_rotation_on_the_emulated_m4_over_the_link(mcu, recording, tmp_path):
    """OTA authorization in the QEMU node's C core, the test playing bridge and OTA manager: an offer is
    refused (under campaign "none", before any chunk) without a ticket, with the attacker's, with the
    fleet's for another device, campaign or artifact, or with a trial length other than the ticket's;
    a ticketed offer installs with the ticket's trial. Keysets in an offer rotate the keys (a chain of
    two, each signed by a key the set before trusted); the rotated set is kept in flash, so after a
    reset the retired key's tickets are refused and the new keys' accepted, and the next rotation is
    signed by the new model key. The stack high-water mark of that last boot (a keyset, a ticket and a
    manifest checked, an install) stays within the reserve."""
    from edgefleet.runtime.trust import ROLE_CAMPAIGN, ROLE_MODEL, sign_keyset

    k1 = keys.generate(tmp_path / "k1.key")
    attacker = keys.generate(tmp_path / "attacker.key")
    qemu, link = start_node(mcu, recording, tmp_path, k1, windows=200, capture=True)  # 16 s a boot

    def refused(campaign: str, blob: bytes, man: bytes, key, **kw) -> str:
        docs = offer_to(link, campaign, blob, man, key, **kw)
        while True:  # serve the documents the node asks for, never a chunk
            kind, body = link.expect(("mreq", "ota/req", "ota/state"))
            assert kind != "ota/req", f"{campaign}: the node asked for the model of an offer it must refuse"
            if kind == "ota/state":
                st = protocol.decode("ota/state", body)
                assert (st["campaign"], st["state"]) == ("none", "rejected"), st  # not under the sender's
                return st["reason"]
            c, m, off, n = body.decode().split(" ")
            link.send(b"mdat %s %s %s " % (c.encode(), m.encode(), off.encode()) + docs[int(off):int(off) + int(n)])

    def installs(campaign: str, blob: bytes, man: bytes, key, **kw) -> list[str]:
        docs = offer_to(link, campaign, blob, man, key, **kw)
        states = [serve_transfer(link, campaign, blob, docs)[1]["state"]]
        states.append(serve_transfer(link, campaign, blob, docs)[1]["state"])
        states += [link.state()["state"], link.state()["state"]]
        return states

    try:
        assert hello(link)["model"] == 1
        blob, man = release(2, k1)
        assert refused("c-2", blob, man, None) == "unauthorized offer: no campaign ticket"
        bad_ticket = "unauthorized offer: no valid ticket for this device, campaign and artifact from a trusted key"
        assert refused("c-2", blob, man, attacker) == bad_ticket
        assert refused("c-2", blob, man, k1, device="qemu-ota-2") == bad_ticket
        assert refused("c-2", blob, man, k1, signed={"campaign": "c-other"}) == bad_ticket
        assert refused("c-2", blob, man, k1, signed={"sha256": "0" * 64}) == bad_ticket
        assert refused("c-2", blob, man, k1, signed={"model": 7}) == bad_ticket
        # the sender says trial 0 (confirm at once); the ticket signs 600 s: the node believes neither
        assert refused("c-2", blob, man, k1, signed={"trial_s": 600}) == \
            "unauthorized offer: trial policy differs from the signed ticket"
        # a keyset the attacker signed (a higher serial) does not make its ticket good
        rogue_set = sign_keyset([(attacker.public_key(), ROLE_MODEL | ROLE_CAMPAIGN)], 9, attacker)
        assert refused("c-2", blob, man, attacker, keysets=(rogue_set,)) == bad_ticket

        assert installs("c-2", blob, man, k1) == ["accepted", "verifying", "trial", "confirmed"]
        assert json.loads(link.expect(("status",))[1])["model"] == 2

        # rotation: keyset 1 (signed by k1) trusts k2 only; keyset 2 (signed by k2) splits the roles:
        # k2 signs models, k3 campaigns. One offer carries both, oldest first.
        k2, k3 = keys.generate(tmp_path / "k2.key"), keys.generate(tmp_path / "k3.key")
        ks1 = sign_keyset([(k2.public_key(), ROLE_MODEL | ROLE_CAMPAIGN)], 1, k1)
        ks2 = sign_keyset([(k2.public_key(), ROLE_MODEL), (k3.public_key(), ROLE_CAMPAIGN)], 2, k2)
        blob3, man3 = release(3, k2)
        assert installs("c-3", blob3, man3, k3, keysets=(ks1, ks2)) == ["accepted", "verifying", "trial",
                                                                        "confirmed"]
        assert json.loads(link.expect(("status",))[1])["model"] == 3

        link.send(b'cmd {"v":1,"seq":1,"id":"rb-1","op":"reboot"}')
        assert hello(link)["model"] == 3
        # after the reset the node still holds keyset 2 (flash): the retired k1, and k2 for tickets, are
        # refused, even with the old keysets sent again (not newer: ignored)
        blob4, man4 = release(4, k2)
        assert refused("c-4", blob4, man4, k1, keysets=(ks1, ks2)) == bad_ticket
        assert refused("c-4", blob4, man4, k2, keysets=(ks1, ks2)) == bad_ticket
        blob4k1, man4k1 = release(4, k1)  # a model signed by the retired key, with a good ticket
        docs = offer_to(link, "c-4", blob4k1, man4k1, k3)
        served, st = serve_transfer(link, "c-4", blob4k1, docs)
        assert served == 0 and (st["campaign"], st["state"], st["reason"]) == ("c-4", "rejected",
                                                                               "manifest: bad-signature")
        # the next rotation, signed by k2 (trusted for models since keyset 2, kept across the reset): k3
        # signs everything, k2 is retired; the offer carries the last three keysets
        k4 = keys.generate(tmp_path / "k4.key")
        ks3 = sign_keyset([(k3.public_key(), ROLE_MODEL | ROLE_CAMPAIGN), (k4.public_key(), ROLE_CAMPAIGN)], 3, k2)
        blob4, man4 = release(4, k3)
        assert installs("c-4", blob4, man4, k4, keysets=(ks1, ks2, ks3)) == ["accepted", "verifying", "trial",
                                                                             "confirmed"]
        assert json.loads(link.expect(("status",))[1])["model"] == 4
        blob5, man5 = release(5, k2)  # signed by the key keyset 3 retired, with a good ticket
        served, st = serve_transfer(link, "c-5", blob5, offer_to(link, "c-5", blob5, man5, k4))
        assert served == 0 and (st["campaign"], st["reason"]) == ("c-5", "manifest: bad-signature")
        out, _ = qemu.communicate(timeout=60)  # the node stops after its 200 windows
    finally:
        link.close()
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
    assert qemu.returncode == 0, out[-2000:]
    used = int(re.search(rb"stack used: (\d+) B", out).group(1))
    print(f"stack high-water {used} B of {STACK_RESERVED} B reserved (keyset, ticket, install)")
    assert used <= STACK_RESERVED - 256, f"stack high-water {used} B of {STACK_RESERVED} B reserved"


def py_install(py: OtaClient, msg: dict, blob: bytes, pending: list | None = None, now: float = 1.0) -> list[str]:
    """The simulated node through a whole transfer of `msg` (a clean link), from its offer or from the
    messages it has `pending`: the states it reports."""
    states, pending = [], py.offer(msg, now) if pending is None else pending
    while pending:
        kind, body = pending.pop(0)
        if kind == "ota/state":
            states.append(body["state"])
            continue
        data = blob[body["off"]:body["off"] + body["len"]]
        pending += py.chunk({"campaign": msg["campaign"], "model": msg["model"], "off": body["off"],
                             "crc": zlib.crc32(data), "data": base64.b64encode(data).decode()}, now)
    return states


def test_an_offer_during_a_download_or_trial_never_ends_it(mcu, recording, tmp_path):
    """Security issue 16: the node verifies an offer only once its documents are fetched, so an offer
    arriving during a download is refused under campaign "none" before any of them is asked for:
    a forged one (the attacker's ticket, garbage ticket bytes, none) cannot cancel a genuine campaign's
    download or make it report "failed"; a genuine superseding offer is taken when it comes again after
    the download (the manager re-publishes an offer left "offered"); an offer during the trial likewise.
    An offer still fetching its documents, never reported on, gives way to a newer one silently. The
    simulated node (OtaClient) answers every offer made during the download or trial the same."""
    key, attacker = keys.generate(tmp_path / "k.key"), keys.generate(tmp_path / "attacker.key")
    qemu, link = start_node(mcu, recording, tmp_path, key)
    py = OtaClient(Slots(images={"A": FLEET_MODEL.read_bytes(), "B": None}), key.public_key(), device=DEVICE)
    (blob2, man2), (blob3, man3), (blob4, man4) = release(2, key), release(3, key), release(4, key)
    good, superseding = offer_msg("c-2", blob2, man2, key), offer_msg("c-3", blob3, man3, key, trial_s=600)
    forged = [offer_msg("c-3", blob3, man3, attacker),  # the attacker's ticket, another campaign
              {**offer_msg("c-3", blob3, man3, key), "ticket": "\x01garbage{" * 12},  # not a ticket at all
              offer_msg("c-3", blob3, man3, None),  # no ticket
              offer_msg("c-2", blob3, man3, attacker)]  # naming the download's own campaign
    reports: list[dict] = []

    def answer(msg: dict, pending: dict | None = None) -> tuple[str, str, str]:
        """The node's report on `msg` (it asks for no document of it; a re-request of the download's
        pending chunk is allowed), which the simulated node must give too."""
        link.send(offer_link(msg)[1])
        while True:
            kind, body = link.expect(("mreq", "ota/req", "ota/state"))
            if kind == "ota/state":
                break
            assert kind == "ota/req" and pending is not None and protocol.decode(kind, body)["off"] == \
                pending["off"], f"the node asked for {kind} {body[:80]!r} on an offer it must refuse"
        st = protocol.decode("ota/state", body)
        reports.append(st)
        want = [(b["campaign"], b["state"], b.get("reason")) for k, b in py.offer(msg, 1.0) if k == "ota/state"]
        assert [(st["campaign"], st["state"], st.get("reason"))] == want
        return st["campaign"], st["state"], st.get("reason")

    def chunk(req: dict, blob: bytes) -> None:
        data = blob[req["off"]:req["off"] + req["len"]]
        link.send(b"data %s %d %d %d " % (req["campaign"].encode(), req["model"], req["off"], zlib.crc32(data)) + data)

    try:
        assert hello(link)["model"] == 1
        # idle: forged offers naming the campaign about to come, each refusable before its ticket is
        # checked (a downgrade, a manifest of another model, a size over the slot, a manifest that does
        # not parse), which the node once reported under that campaign: all under "none", no chunk asked
        blob1, man1 = release(1, attacker)
        for msg in (offer_msg("c-2", blob1, man1, attacker), offer_msg("c-2", blob2, man3, attacker),
                    {**offer_msg("c-2", blob2, man2, attacker), "size": 10 ** 7},
                    offer_msg("c-2", blob2, b'{"body":{},"signature":"00"}', attacker)):
            docs, line = offer_link(msg)
            link.send(line)
            served, st = serve_transfer(link, "c-2", blob2, docs)
            (_, py_st), = py.offer(msg, 0.5)
            assert served == 0 and (st["campaign"], st["state"]) == (py_st["campaign"], py_st["state"]) == (
                "none", "rejected"), (st, py_st)
            assert st["reason"].startswith("unauthorized offer: ") and py_st["reason"].startswith("unauthorized offer: ")
        # one whose documents never arrive whole (withheld, damaged): given up under "none" too
        link.send(offer_link(offer_msg("c-2", blob2, man2, attacker))[1])
        while (frame := link.expect(("mreq", "ota/req", "ota/state")))[0] == "mreq":
            c, m, off, _ = frame[1].decode().split(" ")
            link.send(b"mdat %s %s %s " % (c.encode(), m.encode(), off.encode()))  # an empty piece
        st = protocol.decode("ota/state", frame[1])
        assert (st["campaign"], st["state"], st["reason"]) == ("none", "failed",
                                                               "corrupted manifest piece: gave up after 20 retries")
        docs = offer_to(link, "c-2", blob2, man2, key)
        reports.append(serve_transfer(link, "c-2", blob2, docs)[1])
        py_pending = py.offer(good, 1.0)
        assert reports[-1]["state"] == py_pending[0][1]["state"] == "accepted"
        for _ in range(4):  # part of the model, then a chunk request left pending
            chunk(protocol.decode("ota/req", link.expect(("ota/req",))[1]), blob2)
        pending = protocol.decode("ota/req", link.expect(("ota/req",))[1])
        assert pending["off"] > 0
        busy = ("none", "rejected", "busy: another download is in progress")
        for msg in forged + [superseding]:
            assert answer(msg, pending) == busy
        chunk(pending, blob2)  # the download goes on where it was
        served, st = serve_transfer(link, "c-2", blob2, docs)
        assert st["state"] == "verifying" and served >= -(-(len(blob2) - pending["off"] - pending["len"]) // 192)
        reports += [st, link.state(), link.state()]
        assert [r["state"] for r in reports if r["campaign"] == "c-2"] == ["accepted", "verifying", "trial",
                                                                           "confirmed"]
        assert json.loads(link.expect(("status",))[1])["model"] == 2
        assert py_install(py, good, blob2, py_pending[1:]) == ["verifying", "trial", "confirmed"]

        # the superseding campaign's offer again (the manager's resend): while its documents are being
        # fetched, a forged offer comes; the node leaves the unreported fetch and refuses the forgery
        # under "none"; the offer again, and it installs
        docs3 = offer_to(link, "c-3", blob3, man3, key, trial_s=600)
        kind, body = link.expect(("mreq",))
        assert body.startswith(b"c-3 3 0 ")
        evil_docs = offer_to(link, "c-9", blob3, man3, attacker, model=3)
        while True:
            kind, body = link.expect(("mreq", "ota/req", "ota/state"))
            if kind == "ota/state":
                break
            assert kind == "mreq" and body.startswith(b"c-9 "), body[:80]  # c-3's fetch is left, unanswered
            c, m, off, n = body.decode().split(" ")
            link.send(b"mdat %s %s %s " % (c.encode(), m.encode(), off.encode()) + evil_docs[int(off):int(off) + int(n)])
        st = protocol.decode("ota/state", body)
        reports.append(st)
        assert (st["campaign"], st["state"]) == ("none", "rejected") and "unauthorized" in st["reason"]
        docs3 = offer_to(link, "c-3", blob3, man3, key, trial_s=600)
        assert serve_transfer(link, "c-3", blob3, docs3)[1]["state"] == "accepted"
        assert serve_transfer(link, "c-3", blob3, docs3)[1]["state"] == "verifying"
        assert link.state()["state"] == "trial"
        assert py_install(py, superseding, blob3) == ["accepted", "verifying", "trial"]

        # during the trial: refused alike, forged or not
        in_trial = ("none", "rejected", "busy: another update is in trial")
        assert answer(offer_msg("c-4", blob4, man4, attacker)) == in_trial
        assert answer(offer_msg("c-4", blob4, man4, key)) == in_trial
        assert all(r["state"] not in ("failed", "superseded") for r in reports)
        assert not [r for r in reports if r["campaign"] not in ("c-2", "c-3", "none")]
    finally:
        link.close()
        qemu.kill()
        qemu.wait()


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
        docs = offer_to(link, "c-2", blob, man, key, trial_s=0)
        assert serve_transfer(link, "c-2", blob, docs)[1]["state"] == "accepted"
        assert serve_transfer(link, "c-2", blob, docs)[1]["state"] == "verifying"
        assert [link.state()["state"], link.state()["state"]] == ["trial", "confirmed"]
        link.send(b'cmd {"v":1,"seq":1,"id":"rb-1","op":"reboot"}')
        birth = hello(link)
        assert (birth["model"], birth["slot"]) == (2, "B")  # the confirmed update survived the reset
        link.send(b'cmd {"v":1,"seq":1,"id":"rv-1","op":"revert","campaign":"c-2"}')
        st = link.state()  # the campaign comes from the slot: RAM was reset
        assert (st["campaign"], st["model"], st["state"]) == ("c-2", 2, "reverted")
        assert (json.loads(link.expect(("status",))[1])["model"], link.births[-1]["slot"]) == (1, "A")

        blob, man = release(3, key)
        docs = offer_to(link, "c-3", blob, man, key, trial_s=600)
        assert serve_transfer(link, "c-3", blob, docs)[1]["state"] == "accepted"
        assert serve_transfer(link, "c-3", blob, docs)[1]["state"] == "verifying"
        assert link.state()["state"] == "trial"
        assert json.loads(link.expect(("status",))[1])["model"] == 3
        link.send(b'cmd {"v":1,"seq":2,"id":"rb-2","op":"reboot"}')
        birth = hello(link)
        assert (birth["model"], birth["slot"]) == (1, "A")
        st = link.state()
        assert (st["campaign"], st["model"], st["state"], st["reason"]) == ("c-3", 3, "reverted",
                                                                            "rebooted during trial")
        assert st["boot"] == birth["boot"] and st["seq"] == 0  # a new boot, its first ota/state
        # c-2, reverted by command two resets ago, is remembered in flash: its genuine offer is refused
        blob, man = release(2, key)
        offer_to(link, "c-2", blob, man, key, trial_s=0)
        st = link.state()
        assert (st["campaign"], st["state"], st["reason"]) == ("none", "rejected",
                                                               "unauthorized offer: campaign c-2 was reverted here")
        # a reset during the trial is not a revert command: c-3 may be offered again
        blob, man = release(3, key)
        docs = offer_to(link, "c-3", blob, man, key, trial_s=0)
        assert serve_transfer(link, "c-3", blob, docs)[1]["state"] == "accepted"
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
        docs = offer_to(link, campaign, blob, man, key, **offer)
        assert serve_transfer(link, campaign, blob, docs)[1]["state"] == "accepted"
        assert serve_transfer(link, campaign, blob, docs)[1]["state"] == "verifying"
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
