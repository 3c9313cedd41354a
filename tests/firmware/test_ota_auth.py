"""OTA authorization in the C core (ef_ota.c with a trust set; docs/ota.md "Authorization"), on the fake
flash: the tickets and keysets edgefleet/runtime/trust.py signs are verified byte for byte, every
unauthorized offer is refused before the slot is touched, the trial policy is the ticket's, and a key
rotation is followed. The simulated node (edgefleet/device/ota_client.py) gives the same verdicts."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fw_helpers import run

from edgefleet.device.ota_client import OtaClient, Slots
from edgefleet.runtime import manifest, trust
from edgefleet.runtime.artifact import Artifact
from edgefleet.runtime.keys import public_raw

DEVICE, CAMPAIGN = "node-07", "c2-canary"


def versioned(artifact: bytes, version: int) -> bytes:
    return dataclasses.replace(Artifact.from_bytes(artifact), model_version=version, _raw=None).to_bytes()


def signed(new: bytes, key: Ed25519PrivateKey) -> bytes:
    return manifest.sign(manifest.build_body(new, Artifact.from_bytes(new), key.public_key(), model_id="t"), key)


def ticket(new: bytes, key: Ed25519PrivateKey, **edit) -> bytes:
    fields = dict(campaign=CAMPAIGN, device=DEVICE, model=Artifact.from_bytes(new).model_version,
                  sha256=hashlib.sha256(new).hexdigest(), trial_s=7, shadow=False, shadow_s=0)
    return trust.sign_ticket(key, **{**fields, **edit})


@pytest.fixture(scope="module")
def k1():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def offer(fw, tmp_path, shipped_model, k1):
    """offer(new, manifest, ticket|None, keys=b"", campaign=, device=) -> the C node's events, and
    the simulated node's verdict on the same offer beside it."""
    old = (shipped_model / "model.efm").read_bytes()
    (tmp_path / "old.efm").write_bytes(old)
    (tmp_path / "pub.bin").write_bytes(public_raw(k1.public_key()))

    def go(new: bytes, man: bytes, tick: bytes | None, keys: bytes = b"", *, campaign=CAMPAIGN, device=DEVICE,
           then="confirm"):
        (tmp_path / "new.efm").write_bytes(new)
        (tmp_path / "m.json").write_bytes(man)
        args = ["--trust", "--device", device, "--campaign", campaign, "--then", then]
        if tick is not None:
            (tmp_path / "t.json").write_bytes(tick)
            args += ["--ticket", tmp_path / "t.json"]
        if keys:
            (tmp_path / "keys.txt").write_bytes(keys)
            args += ["--keys", tmp_path / "keys.txt"]
        proc = run([fw.tool("ef_ota_sim"), "update", tmp_path / "old.efm", tmp_path / "new.efm", tmp_path / "m.json",
                    tmp_path / "pub.bin", *args], check=False)
        lines = [json.loads(x) for x in proc.stdout.decode().splitlines()]
        assert lines[-1]["violations"] == 0
        ev = {e["event"]: e for e in lines if "event" in e}
        # the simulated node, same provisioning (k1, both roles), same offer
        py = OtaClient(Slots(images={"A": old, "B": None}), k1.public_key(), device=device)
        body = {"campaign": campaign, "model": Artifact.from_bytes(new).model_version, "size": len(new),
                "sha256": hashlib.sha256(new).hexdigest(), "chunk": 512, "trial_s": 7, "shadow": False,
                "manifest": man.decode(), **({"ticket": tick.decode()} if tick is not None else {}),
                **({"keys": keys.decode()} if keys else {})}
        if tick is not None:  # the simulated node compares the offer's policy with the ticket's
            body["trial_s"] = json.loads(manifest.split(tick)[0]).get("trial_s", 7)
        ev["python"] = [b["state"] for k, b in py.offer(body, 0.0) if k == "ota/state"]
        ev["python_serial"] = py.slots.trust.serial
        return ev

    go.old = old
    return go


def test_an_offer_with_its_ticket_installs_with_the_tickets_trial(offer, k1):
    new = versioned(offer.old, 2)
    ev = offer(new, signed(new, k1), ticket(new, k1, trial_s=7))
    assert ev["offer"]["report"] == "accepted" and ev["python"] == ["accepted"]
    assert ev["authorization"]["trial_ms"] == 7000  # the ticket's, whatever the app had set
    assert ev["download"]["report"] == "trial" and ev["reboot"]["running"] == 2
    ev = offer(new, signed(new, k1), ticket(new, k1, trial_s=0, shadow=True, shadow_s=30))
    assert (ev["authorization"]["trial_ms"], ev["authorization"]["shadow"], ev["authorization"]["shadow_s"]) == (0, 1, 30)


def test_unauthorized_offers_are_refused_before_the_slot_is_touched(offer, k1):
    new = versioned(offer.old, 2)
    man = signed(new, k1)
    good = ticket(new, k1)
    attacker = Ed25519PrivateKey.generate()
    cases = {
        "no ticket (pushed outside a campaign)": dict(tick=None),
        "attacker's ticket": dict(tick=ticket(new, attacker)),
        "another device's ticket": dict(tick=good, device="node-08"),
        "another campaign's ticket": dict(tick=good, campaign="c-rogue"),
        "trial length edited after signing": dict(tick=good.replace(b'"trial_s":7', b'"trial_s":0')),
        "ticket for another artifact": dict(tick=ticket(new, k1, sha256="0" * 64)),
        "ticket for another model": dict(tick=ticket(new, k1, model=3)),
        "ticket with a field the node does not know": dict(tick=trust._sign(
            {**trust.ticket_body(key=k1, campaign=CAMPAIGN, device=DEVICE, model=2,
                                 sha256=hashlib.sha256(new).hexdigest(), trial_s=7, shadow=False, shadow_s=0),
             "expires": 0}, k1)),
    }
    for name, c in cases.items():
        ev = offer(new, man, c["tick"], campaign=c.get("campaign", CAMPAIGN), device=c.get("device", DEVICE))
        assert (ev["offer"]["report"], ev["offer"]["reason"]) == ("rejected", "unauthorized"), name
        assert "download" not in ev or ev["download"]["report"] == "rejected", name
        assert ev["reboot"]["running"] == 1, name
        assert ev["python"] == ["rejected"], name  # the simulated node agrees


def test_key_rotation_the_node_follows_keysets_and_drops_the_retired_key(offer, k1):
    k2, kc = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    both = trust.ROLE_MODEL | trust.ROLE_CAMPAIGN
    ks1 = trust.sign_keyset([(k1.public_key(), both), (k2.public_key(), trust.ROLE_MODEL)], 1, k1)
    ks2 = trust.sign_keyset([(k1.public_key(), both), (k2.public_key(), trust.ROLE_MODEL),
                             (kc.public_key(), trust.ROLE_CAMPAIGN)], 2, k1)
    ks3 = trust.sign_keyset([(k2.public_key(), trust.ROLE_MODEL), (kc.public_key(), trust.ROLE_CAMPAIGN)], 3, k2)
    chain = b" ".join((ks1, ks2, ks3))
    new = versioned(offer.old, 2)
    ev = offer(new, signed(new, k2), ticket(new, kc), chain)
    assert ev["offer"]["report"] == "accepted" and ev["python"] == ["accepted"]
    assert (ev["authorization"]["trust_serial"], ev["authorization"]["trust_keys"]) == (3, 2) == (ev["python_serial"], 2)
    assert ev["reboot"]["running"] == 2
    # after the rotation the retired k1 signs nothing the node takes: not a ticket ...
    ev = offer(new, signed(new, k2), ticket(new, k1), chain)
    assert ev["offer"]["reason"] == "unauthorized" and ev["python"] == ["rejected"]
    # ... nor a model
    ev = offer(new, signed(new, k1), ticket(new, kc), chain)
    assert ev["offer"]["reason"] == "bad-signature" and ev["python"] == ["rejected"]
    # only the last keyset, signed by k2, is not enough for a node that still trusts only k1
    ev = offer(new, signed(new, k2), ticket(new, kc), ks3)
    assert ev["offer"]["reason"] == "unauthorized" and ev["python"] == ["rejected"]
    assert ev["authorization"]["trust_serial"] == 0 == ev["python_serial"]
    # a keyset from an attacker's key is not taken
    evil = Ed25519PrivateKey.generate()
    ev = offer(new, signed(new, evil), ticket(new, evil),
               trust.sign_keyset([(evil.public_key(), both)], 9, evil))
    assert ev["offer"]["reason"] == "unauthorized" and ev["authorization"]["trust_serial"] == 0
    assert ev["python"] == ["rejected"] and ev["python_serial"] == 0


def test_mutated_tickets_and_keysets_never_verify_or_apply(fw, tmp_path, shipped_model, k1):
    """Hostile bytes through ef_ticket_parse, ef_keyset_parse and ef_trust_apply, sanitized build."""
    new = versioned((shipped_model / "model.efm").read_bytes(), 2)
    k2 = Ed25519PrivateKey.generate()
    (tmp_path / "t.json").write_bytes(ticket(new, k1))
    (tmp_path / "ks.json").write_bytes(trust.sign_keyset([(k1.public_key(), 3), (k2.public_key(), 1)], 1, k1))
    (tmp_path / "pub.bin").write_bytes(public_raw(k1.public_key()))
    proc = run([fw.tool("ef_fuzz"), "auth", tmp_path / "t.json", tmp_path / "ks.json", tmp_path / "pub.bin",
                20000, 3])
    s = json.loads(proc.stdout)
    assert s["forged"] == 0 and s["tickets_parsed"] > 0 and s["keysets_applied"] > 0, s
