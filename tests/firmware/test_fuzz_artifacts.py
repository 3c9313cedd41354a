"""Malformed artifacts, manifests, chunks and frames against the sanitized build
(-fsanitize=address,undefined, halt on the first report): rejected, never a crash
or an out-of-bounds read. Mutants live in heap blocks of exactly their length."""

from __future__ import annotations

import dataclasses
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet import manifest
from edgefleet.artifact import Artifact
from edgefleet.keys import public_raw
from fw_helpers import run


def fuzz(fw, *args) -> dict:
    proc = run([fw.tool("ef_fuzz"), *args])  # any sanitizer report fails here (non-zero exit)
    return json.loads(proc.stdout)


def test_mutated_shipped_artifacts_are_rejected_or_run_safely(fw, shipped_model):
    s = fuzz(fw, "model", shipped_model / "model.efm", 20000, 1)
    assert s["accepted"] + s["rejected"] == 20000
    # every kind of check fires: framing, CRC, offsets, layers, chain, features, scoring
    for reason in ("truncated", "bad-crc", "bad-offset", "bad-layer", "bad-layer-chain",
                   "bad-features", "bad-scoring", "bad-size", "bad-version"):
        assert s["reasons"].get(reason, 0) > 0, (reason, s)


def test_mutated_deep_model_artifacts(fw, tflite_models, tmp_path):
    from edgefleet.tflite_import import import_tflite

    for name in ("mlperf_pt", "narrow_relu6"):
        path = tmp_path / f"{name}.efm"
        path.write_bytes(import_tflite(tflite_models[name], requant="int").to_bytes())
        s = fuzz(fw, "model", path, 1500, 2)
        assert s["rejected"] > 0 and s["accepted"] + s["rejected"] == 1500


def test_mutated_manifests_never_verify_a_changed_body(fw, shipped_model, tmp_path):
    key = Ed25519PrivateKey.generate()
    art = (shipped_model / "model.efm").read_bytes()
    (tmp_path / "m.json").write_bytes(manifest.sign(
        manifest.build_body(art, Artifact.from_bytes(art), key.public_key(), model_id="fuzz"), key))
    (tmp_path / "pub.bin").write_bytes(public_raw(key.public_key()))
    s = fuzz(fw, "manifest", tmp_path / "m.json", tmp_path / "pub.bin", 5000, 3)
    assert s["forged"] == 0 and s["parsed"] > 0


def test_random_offers_chunks_cuts_and_commands_keep_the_node_safe(fw, shipped_model, tmp_path):
    key = Ed25519PrivateKey.generate()
    old = (shipped_model / "model.efm").read_bytes()
    a = Artifact.from_bytes(old)
    new = dataclasses.replace(a, model_version=a.model_version + 1, _raw=None).to_bytes()
    (tmp_path / "old.efm").write_bytes(old)
    (tmp_path / "new.efm").write_bytes(new)
    (tmp_path / "m.json").write_bytes(manifest.sign(
        manifest.build_body(new, Artifact.from_bytes(new), key.public_key(), model_id="fuzz"), key))
    (tmp_path / "pub.bin").write_bytes(public_raw(key.public_key()))
    s = fuzz(fw, "ota", tmp_path / "old.efm", tmp_path / "new.efm", tmp_path / "m.json",
             tmp_path / "pub.bin", 400, 4)
    assert s["invariant_failures"] == 0
    # the random walk really reached trials, confirmations and power cuts
    assert s["trial_events"] > 0 and s["confirm_events"] > 0 and s["power_cuts"] > 0
