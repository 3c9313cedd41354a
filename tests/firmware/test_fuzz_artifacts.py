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
        "feature kind 3": ([(feat, "<H", 3)], "bad-features"),
        "kind 2 over a v1 section": ([(feat, "<H", 2)], "bad-features"),
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


def test_v2_feature_section_checks_match_the_python_reader(fw, tmp_path):
    """Feature kind 2 (docs/features.md, v2): every check of the Python reader on the low-frequency
    parameters is made by the C reader too (CRC valid, so the deeper checks run); both refuse."""
    import struct

    import pytest as _pytest

    from edgefleet.errors import ArtifactError
    from v2_helpers import v2_artifact, v2_params

    params = v2_params()
    good = v2_artifact(params).to_bytes()
    path = tmp_path / "v2.efm"
    path.write_bytes(good)
    info = json.loads(run([fw.tool("ef_infer"), "--info", path]).stdout)
    assert info["status"] == "ok" and info["n_inputs"] == params.n_features == 32 + 16 + 3
    feat = struct.unpack_from("<I", good, 48)[0]
    lf = feat + 12 + 4 * 33  # after the 33 HF edges
    edges = lf + 36
    nan = float("nan")
    cases = {  # name: edits (offset, format, value)
        "length 100": [(lf, "<H", 100)],
        "length 2048": [(lf, "<H", 2048)],
        "settle 257": [(lf + 2, "<H", 257)],
        "n_lf 0": [(lf + 4, "<H", 0)],
        "n_lf 15 (inputs disagree)": [(lf + 4, "<H", 15)],
        "unknown extras bit": [(lf + 6, "<H", 8)],
        "extras 3 (inputs disagree)": [(lf + 6, "<H", 3)],
        "rate NaN": [(lf + 8, "<f", nan)],
        "cut >= rate/2": [(lf + 12, "<f", 256.0)],
        "cut 0": [(lf + 12, "<f", 0.0)],
        "vel_lo 0": [(lf + 16, "<f", 0.0)],
        "vel_split > 0.75 cut": [(lf + 20, "<f", 121.0)],
        "vel_hi <= vel_split": [(lf + 24, "<f", 100.0)],
        "speed_min 0": [(lf + 28, "<f", 0.0)],
        "speed_max <= speed_min": [(lf + 32, "<f", 5.0)],
        "speed_max inf": [(lf + 32, "<f", float("inf"))],
        "LF edge 0": [(edges, "<f", 0.0)],
        "LF edges descending": [(edges + 4, "<f", 4.0)],
        "LF top above cut": [(edges + 4 * 16, "<f", 161.0)],
        "LF edge NaN": [(edges + 8, "<f", nan)],
        "HF edge negative": [(feat + 12, "<f", -1.0)],
        "mean NaN (last input)": [(edges + 4 * 17 + 4 * 50, "<f", nan)],
        "inv_std inf (first)": [(edges + 4 * 17 + 4 * 51, "<f", float("inf"))],
    }
    for name, edits in cases.items():
        blob = _patched(good, edits)
        path.write_bytes(blob)
        proc = run([fw.tool("ef_infer"), "--info", path], check=False)
        assert proc.returncode == 2, (name, proc.stdout)
        assert json.loads(proc.stdout)["status"] in ("bad-features", "bad-offset"), (name, proc.stdout)
        with _pytest.raises(ArtifactError):
            Artifact.from_bytes(blob)
    # the edits are what breaks them: in-range values pass both
    for name, edits in {"settle 256": [(lf + 2, "<H", 256)], "length 1024": [(lf, "<H", 1024)],
                        "vel_split = 0.75 cut": [(lf + 20, "<f", 120.0)]}.items():
        blob = _patched(good, edits)
        path.write_bytes(blob)
        assert json.loads(run([fw.tool("ef_infer"), "--info", path]).stdout)["status"] == "ok", name
        Artifact.from_bytes(blob)
    # a truncated kind-2 section (cut inside the LF parameters, the LF edges, the standardization)
    for cut in (lf + 10, edges + 8, edges + 4 * 17 + 8):
        blob = bytearray(good)
        struct.pack_into("<I", blob, 8, (cut + 3) // 4 * 4)
        blob = _patched(bytes(blob[:(cut + 3) // 4 * 4]), [])
        path.write_bytes(blob)
        proc = run([fw.tool("ef_infer"), "--info", path], check=False)
        assert proc.returncode == 2, (cut, proc.stdout)
        with _pytest.raises(ArtifactError):
            Artifact.from_bytes(blob)


def test_mutated_v2_artifacts_are_rejected_or_run_safely(fw, tmp_path):
    """Mutants of a v2 node model: rejected, or opened and a whole streaming window run at 12 kHz in
    buffers of exactly the planned sizes (sanitized build)."""
    from v2_helpers import v2_artifact, v2_params

    path = tmp_path / "v2.efm"
    path.write_bytes(v2_artifact(v2_params()).to_bytes())
    s = fuzz(fw, "model", path, 3000, 5)
    assert s["accepted"] > 0 and s["rejected"] > 0 and s["accepted"] + s["rejected"] == 3000
    assert s["reasons"].get("bad-features", 0) > 0
