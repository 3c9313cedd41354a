"""OTA authorization (docs/ota.md, "Authorization"; issue 16 item 6): each attack of the issue, reproduced,
now refused; and a key rotation that the simulated nodes follow over a real Mosquitto."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device_sim.fleet import Fleet, FleetOptions
from device_sim.link import LinkOptions
from device_sim.plant import make_plant
from edgefleet import protocol
from edgefleet.cli import main as cli
from edgefleet.device.ota_client import OtaClient, Slots
from edgefleet.errors import EdgefleetError
from edgefleet.runtime import keys, manifest, trust
from edgefleet.runtime.artifact import Artifact
from edgefleet.service.broker import start_broker
from edgefleet.service.ota.campaign import Policy, Target
from edgefleet.service.ota.manager import OtaManager
from edgefleet.service.ota.registry import OtaRegistry
from edgefleet.toolchain.model_folder import ModelFolder

from .conftest import DEVICE
from .test_device import serve

FLEET_MODEL = Path(__file__).resolve().parents[2] / "edgefleet" / "models" / "fleet-default" / "model.efm"


@pytest.fixture()
def node(versioned, signing_key):
    slots = Slots()
    slots.images["A"] = versioned(1)
    return OtaClient(slots, signing_key.public_key(), device=DEVICE)


def states_of(out):
    return [(b["campaign"], b["state"], b.get("reason", "")) for k, b in out if k == "ota/state"]


# ------------------------------------------------------------------ the node: offers outside a campaign


def test_a_validly_signed_model_pushed_outside_a_campaign_is_refused(node, release):
    """Before: a validly signed manifest alone was enough, with the trial length the sender chose."""
    blob, _, offer = release(2)
    pushed = {k: v for k, v in offer.items() if k != "ticket"}
    out = node.offer(pushed, 0.0)
    # reported under "none": a sender without a ticket cannot make a real campaign count a rejection
    assert states_of(out) == [("none", "rejected", "unauthorized offer: no campaign ticket")]
    assert node.download is None and node.current_version() == 1
    states, _ = serve(node, blob, offer)  # the same model with its ticket goes through
    assert states == ["accepted", "verifying", "trial"]


def test_the_trial_length_is_the_signed_tickets_not_the_senders(node, release):
    blob, _, offer = release(2, trial_s=600)
    short = {**offer, "trial_s": 1}  # a relay rewrites the trial to confirm at once
    assert states_of(node.offer(short, 0.0)) == [
        ("none", "rejected", "unauthorized offer: trial policy differs from the signed ticket")]
    no_shadow = {**release(3, shadow=True, shadow_s=3600)[2], "shadow": False}
    assert "trial policy differs" in states_of(node.offer(no_shadow, 0.0))[0][2]
    _, now = serve(node, blob, offer)
    assert node.slots.trial["deadline"] == now + 600


@pytest.mark.parametrize("attack, why", [
    ("attacker_key", "which this node does not trust"),
    ("other_device", "ticket is for device dev-2, not this one"),
    ("other_campaign", "ticket names another campaign, model or artifact"),
    ("edited_ticket", "ticket signature does not verify"),
])
def test_tickets_that_do_not_authorize_this_offer(node, release, tmp_path, attack, why):
    attacker = keys.generate(tmp_path / "attacker.key")
    blob, _, offer = release(2)
    if attack == "attacker_key":  # a genuine manifest, a ticket signed by the attacker's own key
        offer = release(2, ticket_key=attacker)[2]
    elif attack == "other_device":  # dev-2's genuine ticket replayed to dev-1
        offer = release(2, device="dev-2")[2]
    elif attack == "other_campaign":
        offer = {**offer, "campaign": "c-rogue"}
    else:
        offer = {**offer, "ticket": offer["ticket"].replace('"trial_s":10', '"trial_s":99')}
    (campaign, state, reason), = states_of(node.offer(offer, 0.0))
    assert (campaign, state) == ("none", "rejected") and why in reason, reason
    assert node.download is None


def test_a_campaign_reverted_by_command_is_never_taken_again(node, release):
    blob, _, offer = release(2)
    _, now = serve(node, blob, offer)
    assert states_of(node.revert(now + 1, campaign="c2"))[0][1] == "reverted"
    out = node.offer(offer, now + 2)  # the aborted campaign's genuine offer, replayed
    assert states_of(out) == [("none", "rejected", "unauthorized offer: campaign c2 was reverted here")]
    assert node.current_version() == 1


def test_roles_a_campaign_key_cannot_sign_models_and_a_model_key_cannot_sign_tickets(versioned, tmp_path, release):
    model_key, campaign_key = keys.generate(tmp_path / "m.key"), keys.generate(tmp_path / "c.key")
    ts = trust.TrustSet({keys.key_id(model_key.public_key()): (model_key.public_key(), trust.ROLE_MODEL),
                         keys.key_id(campaign_key.public_key()): (campaign_key.public_key(), trust.ROLE_CAMPAIGN)})

    def fresh():
        return OtaClient(Slots(images={"A": versioned(1), "B": None}), ts, device=DEVICE)
    blob, _, ok = release(2, key=model_key, ticket_key=campaign_key)
    assert serve(fresh(), blob, ok)[0] == ["accepted", "verifying", "trial"]
    assert "not trusted to sign campaigns" in states_of(fresh().offer(release(2, key=model_key)[2], 0.0))[0][2]
    refused = fresh().offer(release(2, key=campaign_key, ticket_key=campaign_key)[2], 0.0)
    assert "not trusted to sign models" in states_of(refused)[0][2]


# ------------------------------------------------------------------ the registry: who may publish what


def test_publish_refuses_a_foreign_signer_squatting_and_downgrades(tmp_path, signing_key, release, versioned):
    reg = OtaRegistry(tmp_path / "f.db")
    blob3, man3, _ = release(3)
    reg.publish(blob3, man3, {}, signing_key.public_key())  # the first publish pins the signer
    foreign = keys.generate(tmp_path / "foreign.key")
    b4, m4, _ = release(4, key=foreign)
    with pytest.raises(EdgefleetError, match="signature is by key .* which this fleet does not trust"):
        reg.publish(b4, m4, {}, foreign.public_key())  # even with its own public key offered
    # squatting: version 3 again, another artifact (another threshold), validly signed
    b3x, m3x, _ = release(3, blob=_retuned(versioned(3)))
    with pytest.raises(EdgefleetError, match="version 3 is already published with another artifact"):
        reg.publish(b3x, m3x, {})
    b2, m2, _ = release(2)
    with pytest.raises(EdgefleetError, match="not above the newest published .3.: a downgrade"):
        reg.publish(b2, m2, {})
    reg.publish(b2, m2, {}, allow_downgrade="v3 misses bearing faults on line 2")
    assert [m.version for m in reg.models()] == [2, 3]
    assert reg.model_notes(2) == ["downgrade below v3 allowed: v3 misses bearing faults on line 2"]
    reg.close()


def _retuned(blob: bytes) -> bytes:
    art = Artifact.from_bytes(blob)
    art.scoring.threshold = float(art.scoring.threshold) * 1.5
    return art.to_bytes()


def test_cli_keys_and_publish_errors_are_one_line(tmp_path, release, capsys):
    db = tmp_path / "f.db"
    k1 = tmp_path / "k1.key"
    key1 = keys.generate(k1)
    folder = ModelFolder(tmp_path / "m2")
    blob, man, _ = release(2, key=key1)
    folder.write("model.efm", blob)
    folder.write("manifest.json", man)
    assert cli(["ota", "publish", str(folder.path), "--public", str(keys.public_path(k1)), "--db", str(db)]) == 0
    key2 = keys.generate(tmp_path / "k2.key")
    assert cli(["keys", "trust", str(keys.public_path(tmp_path / "k2.key")), "--name", "k2", "--role", "both",
                "--key", str(k1), "--db", str(db)]) == 0
    assert cli(["keys", "retire", keys.key_id(key1.public_key()), "--key", str(k1), "--db", str(db)]) == 2
    assert "not the retired one" in capsys.readouterr().err
    assert cli(["keys", "retire", "fleet", "--key", str(tmp_path / "k2.key"), "--db", str(db)]) == 0
    capsys.readouterr()
    assert cli(["keys", "list", "--db", str(db)]) == 0
    listed = capsys.readouterr().out
    assert "fleet" in listed and "retired" in listed and "k2" in listed and "keyset serial 2" in listed
    b3, m3, _ = release(3, key=key1)  # the retired key signs v3
    folder3 = ModelFolder(tmp_path / "m3")
    folder3.write("model.efm", b3)
    folder3.write("manifest.json", m3)
    assert cli(["ota", "publish", str(folder3.path), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not trust" in err and "Traceback" not in err
    b1, m1, _ = release(1, key=key2)
    folder1 = ModelFolder(tmp_path / "m1")
    folder1.write("model.efm", b1)
    folder1.write("manifest.json", m1)
    assert cli(["ota", "publish", str(folder1.path), "--db", str(db)]) == 2
    assert "--allow-downgrade REASON" in capsys.readouterr().err
    assert cli(["ota", "publish", str(folder1.path), "--db", str(db), "--allow-downgrade", "field rollback"]) == 0


# ------------------------------------------------------------------ the manager: spoofed reports


def test_a_spoofed_rejection_from_a_device_never_offered_does_not_touch_the_campaign(tmp_path, signing_key, release):
    """Before: `ota/state rejected` from any device counted in the campaign and could abort it."""
    broker = start_broker(prefer="mosquitto", workdir=tmp_path / "broker")
    registry = OtaRegistry(tmp_path / "fleet.db")
    blob, man, _ = release(2)
    registry.publish(blob, man, {}, signing_key.public_key())
    fleet = {f"d{i}": {"site": "s", "line": "l", "tags": [], "model": 1} for i in range(2)}
    mgr = OtaManager(registry, "127.0.0.1", broker.port, devices=lambda: fleet, ticket_key=signing_key)
    spoofer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="evil-0", protocol=mqtt.MQTTv5)
    try:
        mgr.start()
        spoofer.connect("127.0.0.1", broker.port)
        spoofer.loop_start()
        c = registry.create_campaign(2, Target.parse("all"), Policy(stages=[1.0], trial_s=0, abort_failures=0.0), "c2")
        deadline = time.time() + 20  # both offered (one manager step each on a loaded host)
        while len(registry.device_states(c.id)) < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert set(registry.device_states(c.id)) == {"d0", "d1"}
        for dev in ("evil-0", "d9"):  # its own topic (all a device may publish to on the production broker)
            body = {"v": 1, "boot": "b0000001", "seq": 1, "ts": int(time.time() * 1000), "campaign": "c2",
                    "model": 2, "state": "rejected", "reason": "SHA-256 mismatch"}
            spoofer.publish(protocol.topic(dev, "ota/state"), protocol.encode("ota/state", body), qos=1).wait_for_publish(5)
        deadline = time.time() + 10
        while len(registry.history("d9")) == 0 and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # a manager step after the reports
        assert registry.campaign(c.id).state == "running"  # abort_failures=0: one counted rejection would abort
        assert set(registry.device_states(c.id)) == {"d0", "d1"}
        assert all("ignored (not offered this campaign)" in h["reason"] for d in ("evil-0", "d9")
                   for h in registry.history(d))
    finally:
        spoofer.loop_stop()
        spoofer.disconnect()
        mgr.stop()
        registry.close()
        broker.stop()


# ------------------------------------------------------------------ key rotation, end to end


def _release(version: int, key) -> tuple[bytes, bytes]:
    art = Artifact.from_bytes(FLEET_MODEL.read_bytes())
    art.model_version = version
    blob = art.to_bytes()
    return blob, manifest.sign(manifest.build_body(blob, art, key.public_key(), model_id="fleet"), key)


def test_key_rotation_end_to_end_nodes_follow_and_drop_the_old_key(tmp_path):
    """k1 is what the nodes were provisioned with. The fleet trusts k2 (models) and kc (the service's
    campaign key), retires k1; a model signed by k2 rolls out over Mosquitto through the OTA manager
    with kc's tickets; every node ends on it with k1 gone from its keys, and then refuses k1."""
    k1, k2, kc = (keys.generate(tmp_path / f"{n}.key") for n in ("k1", "k2", "kc"))
    broker = start_broker(prefer="mosquitto", workdir=tmp_path / "broker")
    registry = OtaRegistry(tmp_path / "fleet.db")
    registry.publish(*_release(2, k1), {}, k1.public_key())
    assert registry.trust_key(k2.public_key(), "k2", trust.ROLE_MODEL, k1) == 1
    assert registry.trust_key(kc.public_key(), "service", trust.ROLE_CAMPAIGN, k1) == 2
    assert registry.retire_key("fleet", k2) == 3
    with pytest.raises(EdgefleetError, match="does not trust"):
        registry.publish(*_release(3, k1), {})
    registry.publish(*_release(3, k2), {})
    plant = make_plant(4, seed=11)
    fleet = Fleet(plant, Artifact.from_bytes(FLEET_MODEL.read_bytes()), LinkOptions(broker.host, broker.port),
                  FleetOptions(period_s=0.5, ota_public_key=k1.public_key(), seed=11))
    meta = {s.device_id: {"site": s.site, "line": s.line, "tags": list(s.tags), "model": 1} for s in plant.nodes}
    mgr = OtaManager(registry, "127.0.0.1", broker.port, devices=lambda: meta, ticket_key=kc)
    seen: list[tuple[str, dict]] = []
    probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe", protocol=mqtt.MQTTv5)
    probe.on_message = lambda _c, _u, m: seen.append((m.topic.split("/")[2], json.loads(m.payload)))
    runner = threading.Thread(target=fleet.run, daemon=True)
    try:
        fleet.start()
        assert fleet.wait_connected(1.0, 30)
        runner.start()
        mgr.start()
        c = registry.create_campaign(3, Target.parse("all"), Policy(stages=[1.0], trial_s=1,
                                                                    abort_anomaly_shift=1000.0), "rot-3")
        deadline = time.time() + 60
        while registry.campaign(c.id).state not in ("completed", "aborted") and time.time() < deadline:
            time.sleep(0.3)
        assert registry.campaign(c.id).state == "completed", registry.status(c.id)
        assert registry.status(c.id)[0]["by_state"] == {"confirmed": 4}
        ids_after = {keys.key_id(k2.public_key()), keys.key_id(kc.public_key())}
        for lk in fleet.links:
            ota = lk.node.ota
            assert ota.current_version() == 3 and ota.slots.trust.serial == 3
            assert set(ota.slots.trust.keys) == ids_after  # k1 dropped
        # the old key, retired: a v4 signed by k1 with a k1 ticket is refused by every node
        probe.connect("127.0.0.1", broker.port)
        probe.subscribe("ef/v1/+/ota/state", qos=1)
        probe.loop_start()
        time.sleep(0.5)
        blob4, man4 = _release(4, k1)
        for lk in fleet.links:
            dev = lk.node.device_id
            sha = hashlib.sha256(blob4).hexdigest()
            offer = {"v": 1, "seq": 1, "campaign": "rogue-4", "model": 4, "size": len(blob4), "sha256": sha,
                     "chunk": 1024, "trial_s": 0, "shadow": False, "manifest": man4.decode(),
                     "ticket": trust.sign_ticket(k1, campaign="rogue-4", device=dev, model=4, sha256=sha, trial_s=0,
                                                 shadow=False, shadow_s=0).decode()}
            probe.publish(protocol.topic(dev, "ota/offer"), protocol.encode("ota/offer", offer), qos=1)
        deadline = time.time() + 10
        while sum(1 for _, b in seen if b["model"] == 4) < 4 and time.time() < deadline:
            time.sleep(0.1)
        refusals = [b for _, b in seen if b["model"] == 4]
        assert len(refusals) == 4 and all(b["state"] == "rejected" and b["campaign"] == "none" and
                                          "does not trust" in b["reason"] for b in refusals), refusals
        assert all(lk.node.ota.current_version() == 3 for lk in fleet.links)
    finally:
        probe.loop_stop()
        probe.disconnect()
        mgr.stop()
        fleet.stop()
        registry.close()
        broker.stop()


def test_trusted_keys_and_keysets_in_postgresql(pg_server, tmp_path, signing_key, release):
    """The same registry tables on the store's PostgreSQL (created by the registry, plain DDL)."""
    url = pg_server.create_db()
    reg = OtaRegistry(url)
    blob, man, _ = release(2)
    reg.publish(blob, man, {}, signing_key.public_key())
    k2 = keys.generate(tmp_path / "k2.key")
    assert reg.trust_key(k2.public_key(), "k2", trust.ROLE_MODEL, signing_key) == 1
    assert reg.retire_key("fleet", k2) == 2
    assert [(k["name"], k["state"]) for k in reg.trusted_keys(all_states=True)] == [("fleet", "retired"),
                                                                                   ("k2", "trusted")]
    ts = trust.TrustSet.single(signing_key.public_key())
    assert [ts.apply(doc) for doc in reg.keysets()] == [True, True] and ts.serial == 2
    with pytest.raises(EdgefleetError, match="does not trust"):
        reg.publish(*release(3)[:2], {})
    reg.close()


def test_a_node_refusing_the_services_tickets_is_named_once_in_the_log(tmp_path, caplog) -> None:
    """A node that does not trust the campaign key answers under campaign "none" (so a spoofed refusal
    cannot count against a real campaign); the campaign would wait for its stage timeout without a word.
    The manager names the device and the fix, once per device, and changes no campaign state."""
    import logging

    registry = OtaRegistry(tmp_path / "fleet.db")
    mgr = OtaManager(registry, "127.0.0.1", 1, devices=dict, ticket_key=None)
    body = {"campaign": "none", "model": 3, "state": "rejected",
            "reason": "unauthorized offer: signature by key 2fae1038bd0582e0, which this node does not trust"}
    try:
        with caplog.at_level(logging.WARNING, logger="edgefleet.service.ota"):
            assert mgr._record("sim-0002", body) is False
            assert mgr._record("sim-0002", body) is False
            assert mgr._record("sim-0007", {**body, "reason": "installed"}) is False  # not a refusal: no warning
        warned = [r.getMessage() for r in caplog.records if "refuses this service's offers" in r.getMessage()]
        assert len(warned) == 1 and warned[0].startswith("sim-0002") and "--role campaign" in warned[0]
        assert "2fae1038bd0582e0" in warned[0]
    finally:
        registry.close()
