"""OTA slots on the fake flash (sanitized build): every outcome of the state machine,
every rejection reason, and a power cut after every flash operation of an update."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.runtime import manifest
from edgefleet.runtime.artifact import Artifact
from edgefleet.runtime.keys import public_raw
from fw_helpers import run


def versioned(artifact: bytes, version: int, min_firmware: str = "1.0.0") -> bytes:
    a = Artifact.from_bytes(artifact)
    return dataclasses.replace(a, model_version=version, min_firmware=min_firmware, _raw=None).to_bytes()


def signed(new: bytes, key: Ed25519PrivateKey, **edit) -> bytes:
    body = manifest.build_body(new, Artifact.from_bytes(new), key.public_key(), model_id="cwru-test")
    for k, v in edit.items():
        body[k] = v
    return manifest.sign(body, key)


@pytest.fixture(scope="module")
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def case(tmp_path, shipped_model, key):
    """Writes old/new artifacts, manifest and public key; returns a runner for ef_ota_sim update."""
    old = (shipped_model / "model.efm").read_bytes()
    (tmp_path / "old.efm").write_bytes(old)
    (tmp_path / "pub.bin").write_bytes(public_raw(key.public_key()))

    def go(fw, new: bytes, man: bytes, *args, check=True):
        (tmp_path / "new.efm").write_bytes(new)
        (tmp_path / "m.json").write_bytes(man)
        proc = run([fw.tool("ef_ota_sim"), "update", tmp_path / "old.efm", tmp_path / "new.efm",
                    tmp_path / "m.json", tmp_path / "pub.bin", *args], check=check)
        lines = [json.loads(x) for x in proc.stdout.decode().splitlines()]
        events = {e["event"]: e for e in lines if "event" in e}
        head = b'{"ota_state":'
        events["messages"] = [x[len(head):-1] for x in proc.stdout.splitlines() if x.startswith(head)]
        assert lines[-1]["violations"] == 0  # never programs a byte that was not erased
        return events

    go.old = old
    return go


@pytest.mark.parametrize("then, final", [("confirm", 2), ("tick-healthy", 2), ("revert", 1),
                                         ("tick-unhealthy", 1), ("reboot", 1)])
def test_update_outcomes(fw, case, key, then, final):
    new = versioned(case.old, 2)
    ev = case(fw, new, signed(new, key), "--then", then)
    assert ev["boot"]["running"] == 1
    assert ev["offer"]["report"] == "accepted"
    assert ev["download"]["report"] == "trial" and ev["download"]["running"] == 2
    assert ev["reboot"]["running"] == final


def test_trial_does_not_end_before_its_deadline(fw, case, key):
    new = versioned(case.old, 2)
    ev = case(fw, new, signed(new, key), "--then", "tick-healthy")
    assert ev["tick-early"]["report"] == "trial"
    assert ev["tick-healthy"]["report"] == "confirmed"


def test_rejections_keep_the_old_model(fw, case, key):
    new = versioned(case.old, 2)
    good = signed(new, key)
    other = Ed25519PrivateKey.generate()
    body, sig = manifest.split(good)
    edited = good.replace(b'"model_id":"cwru-test"', b'"model_id":"cwru-evil"')  # changed after signing
    assert edited != good
    bad_sig = manifest.PREFIX + body + manifest.SIG_MARK + bytes(64).hex().encode() + b'"}'
    st = json.loads(body)["self_test"]
    wrong_out = dict(st, output=("%02x" % (int(st["output"][:2], 16) ^ 1)) + st["output"][2:])
    cases = {
        "wrong-key": (new, signed(new, other), "bad-signature"),
        "zero-signature": (new, bad_sig, "bad-signature"),
        "body-edited": (new, edited, "bad-signature"),
        "downgrade": (versioned(case.old, 1), signed(versioned(case.old, 1), key), "not-newer"),
        "firmware-too-old": (versioned(case.old, 3, "2.0.0"), signed(versioned(case.old, 3, "2.0.0"), key,
                                                                     min_firmware="2.0.0"), "incompatible"),
        "not-a-manifest": (new, b'{"body":{},"signature":"00"}', "bad-manifest"),
    }
    for name, (art, man, reason) in cases.items():
        ev = case(fw, art, man, check=False)
        assert ev["offer"]["report"] == "rejected", name
        assert ev["offer"]["reason"] == reason, (name, ev["offer"])
        assert ev["reboot"]["running"] == 1, name
    # signed correctly, but the artifact differs from what was signed / its self-test fails
    ev = case(fw, new, good, "--corrupt-chunk", check=False)
    assert ev["download"]["report"] == "rejected" and ev["download"]["reason"] == "bad-sha256"
    assert ev["reboot"]["running"] == 1
    ev = case(fw, new, signed(new, key, self_test=wrong_out), check=False)
    assert ev["download"]["report"] == "rejected" and ev["download"]["reason"] == "self-test-failed"
    assert ev["reboot"]["running"] == 1


@pytest.mark.parametrize("torn", [False, True])
@pytest.mark.parametrize("chunk", [64, 1000])
def test_power_cut_after_every_flash_operation_boots_a_valid_model(fw, tmp_path, shipped_model, key,
                                                                   torn, chunk):
    old = (shipped_model / "model.efm").read_bytes()
    new = versioned(old, 2)
    for name, blob in (("old.efm", old), ("new.efm", new), ("m.json", signed(new, key)),
                       ("pub.bin", public_raw(key.public_key()))):
        (tmp_path / name).write_bytes(blob)
    args = ["--chunk", str(chunk)] + (["--torn"] if torn else [])
    proc = run([fw.tool("ef_ota_sim"), "sweep", tmp_path / "old.efm", tmp_path / "new.efm",
                tmp_path / "m.json", tmp_path / "pub.bin", *args])
    s = json.loads(proc.stdout)
    assert s["no_valid_model"] == 0 and s["violations"] == 0
    assert s["cut_points"] >= len(new) // chunk + 4  # erase, manifest, header, chunks, flags
    assert s["booted_old"] + s["booted_new"] == s["cut_points"]
    # only a cut after the confirm flag lands keeps the new model; a torn confirm reverts
    assert s["booted_new"] == (0 if torn else 1)


def test_power_cut_sweep_on_the_10_layer_model(fw, tmp_path, tflite_models, key):
    from edgefleet.toolchain.tflite_import import import_tflite

    old = import_tflite(tflite_models["mlperf_pc"], model_version=5).to_bytes()
    new = import_tflite(tflite_models["mlperf_pc"], model_version=6).to_bytes()
    for name, blob in (("old.efm", old), ("new.efm", new), ("m.json", signed(new, key)),
                       ("pub.bin", public_raw(key.public_key()))):
        (tmp_path / name).write_bytes(blob)
    proc = run([fw.tool("ef_ota_sim"), "sweep", tmp_path / "old.efm", tmp_path / "new.efm",
                tmp_path / "m.json", tmp_path / "pub.bin", "--chunk", "4096", "--torn"])
    s = json.loads(proc.stdout)
    assert s["no_valid_model"] == 0 and s["violations"] == 0 and s["cut_points"] > len(new) // 4096


def test_firmware_version_matches_the_python_package():
    import re

    from edgefleet import FIRMWARE_VERSION
    from fw_helpers import FIRMWARE

    text = (FIRMWARE / "core" / "include" / "ef" / "version.h").read_text()
    assert re.search(r'EF_FIRMWARE_VERSION_STR "([0-9.]+)"', text).group(1) == FIRMWARE_VERSION
    parts = [int(re.search(rf"EF_FIRMWARE_VERSION_{k} (\d+)", text).group(1))
             for k in ("MAJOR", "MINOR", "PATCH")]
    assert ".".join(map(str, parts)) == FIRMWARE_VERSION


def test_min_firmware_gate_follows_the_node_version(fw, case, key):
    """A model needing 1.0.1 is refused by a 1.0.0 node and accepted by a 1.0.1 node."""
    new = versioned(case.old, 2, "1.0.1")
    man = signed(new, key, min_firmware="1.0.1")
    assert case(fw, new, man, check=False)["offer"]["reason"] == "incompatible"
    assert case(fw, new, man, "--fw", "1.0.1", "--then", "confirm")["reboot"]["running"] == 2


@pytest.mark.parametrize("then, states", [
    ("confirm", ["accepted", "trial", "confirmed"]),
    ("tick-unhealthy", ["accepted", "trial", "reverted"]),
])
def test_ota_state_messages_follow_the_protocol(fw, case, key, then, states):
    """The C OTA reports become protocol v1 ota/state messages that the Python codec accepts."""
    from edgefleet.protocol import codec

    new = versioned(case.old, 2)
    ev = case(fw, new, signed(new, key), "--then", then, "--protocol", "0badf00d", "c-2026.canary")
    msgs = [codec.decode("ota/state", raw) for raw in ev["messages"]]
    assert [codec.encode("ota/state", m) for m in msgs] == ev["messages"]  # canonical bytes
    assert [m["state"] for m in msgs] == states
    assert [m["seq"] for m in msgs] == list(range(len(msgs)))
    assert all(m["model"] == 2 and m["campaign"] == "c-2026.canary" for m in msgs)
    assert msgs[1]["off"] == len(new)
    ev = case(fw, new, signed(new, key), "--corrupt-chunk", "--protocol", "0badf00d", "c1", check=False)
    rejected = codec.decode("ota/state", ev["messages"][-1])
    assert rejected["state"] == "rejected" and rejected["reason"] == "bad-sha256"
