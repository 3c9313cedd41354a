"""Malformed artifacts, manifests, chunks and frames against the sanitized build
(-fsanitize=address,undefined, halt on the first report): rejected, never a crash
or an out-of-bounds read. Mutants live in heap blocks of exactly their length."""

from __future__ import annotations

import dataclasses
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.runtime import manifest
from edgefleet.runtime.artifact import Artifact
from edgefleet.runtime.keys import public_raw
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
    from edgefleet.toolchain.tflite_import import import_tflite

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


def _patched(blob: bytes, edits) -> bytes:
    """Apply (offset, struct format, value) edits and fix the CRC so the deeper checks run."""
    import struct
    import zlib

    b = bytearray(blob)
    for off, fmt, val in edits:
        struct.pack_into(fmt, b, off, val)
    struct.pack_into("<I", b, 12, zlib.crc32(bytes(b[16:])))
    return bytes(b)


def test_targeted_inconsistencies_rejected_by_both_readers(fw, shipped_model, tmp_path):
    """Each broken field (CRC valid) is refused by the C reader with the named reason,
    and by the Python reader too."""
    import struct

    import pytest as _pytest

    from edgefleet.errors import ArtifactError

    good = (shipped_model / "model.efm").read_bytes()
    feat, layers, scoring = struct.unpack_from("<III", good, 48)
    L1 = layers + 44  # second layer record
    w_off, b_off, m_off, s_off, sc_off = struct.unpack_from("<IIIII", good, layers + 24)
    nan = float("nan")
    cases = {
        "n_layers 0": ([(28, "<H", 0)], "bad-size"),
        "arena disagrees": ([(30, "<H", 47)], "bad-size"),
        "requant mode 2": ([(60, "<H", 2)], "bad-version"),
        "input scale 0": ([(32, "<f", 0.0)], "bad-size"),
        "layers misaligned": ([(52, "<I", layers + 2)], "bad-offset"),
        "weights out of bounds": ([(layers + 24, "<I", len(good) - 4)], "bad-offset"),
        "bias out of bounds": ([(layers + 28, "<I", 0x7FFFFFFC)], "bad-offset"),
        "shift 31": ([(s_off, "<i", 31)], "bad-layer"),
        "multiplier negative": ([(m_off, "<i", -5)], "bad-layer"),
        "scale NaN": ([(sc_off, "<f", nan)], "bad-layer"),
        "scale 256": ([(sc_off, "<f", 256.0)], "bad-layer"),
        "act_min > act_max": ([(layers + 16, "<i", 100), (layers + 20, "<i", 50)], "bad-layer"),
        "zero point 200": ([(layers + 12, "<i", 200)], "bad-layer"),
        "chain broken": ([(L1 + 8, "<i", 3)], "bad-layer-chain"),
        "accumulator overflow": ([(b_off, "<i", 2**31 - 1)], "bad-layer"),
        "feature kind 2": ([(feat, "<H", 2)], "bad-features"),
        "bands != inputs": ([(feat + 2, "<H", 31)], "bad-features"),
        "edges descending": ([(feat + 12 + 4, "<f", 1.0)], "bad-features"),
        "mean NaN": ([(feat + 12 + 4 * 33, "<f", nan)], "bad-features"),
        "window_s negative": ([(feat + 4, "<f", -0.08)], "bad-features"),
        "scoring rule 2": ([(scoring, "<H", 2)], "bad-scoring"),
        "threshold inf": ([(scoring + 4, "<f", float("inf"))], "bad-scoring"),
    }
    for name, (edits, reason) in cases.items():
        blob = _patched(good, edits)
        path = tmp_path / "m.efm"
        path.write_bytes(blob)
        proc = run([fw.tool("ef_infer"), "--info", path], check=False)
        assert proc.returncode == 2, (name, proc.stdout)
        assert json.loads(proc.stdout)["status"] == reason, (name, proc.stdout)
        with _pytest.raises(ArtifactError):
            Artifact.from_bytes(blob)
    # and the untouched artifact passes both (the edits above are what breaks them)
    assert json.loads(run([fw.tool("ef_infer"), "--info", shipped_model / "model.efm"]).stdout)["status"] == "ok"
