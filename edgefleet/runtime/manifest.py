"""Signed model manifests (docs/artifact-format.md, last section).

The file is `{"body":<canonical JSON>,"signature":"<hex>"}` and the signature
covers the body bytes exactly as written, so a device verifies without
re-serialising JSON.
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgefleet import FIRMWARE_VERSION
from edgefleet.runtime.artifact import Artifact
from edgefleet.runtime.engine import Int8Engine
from edgefleet.errors import SignatureError
from edgefleet.runtime.keys import key_id

FORMAT = "edgefleet-manifest/1"
PREFIX = b'{"body":'
SIG_MARK = b',"signature":"'
SELF_TEST_ROWS = 4


def canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def self_test_vector(artifact: Artifact, rows: int = SELF_TEST_ROWS, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic int8 inputs spanning the range, and the outputs this artifact must give."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(rows, artifact.n_inputs), dtype=np.int8)
    x[0] = artifact.input_zero_point  # the all-"mean" window
    return x, Int8Engine(artifact).infer(x)


def build_body(artifact_bytes: bytes, artifact: Artifact, public: Ed25519PublicKey, *,
               model_id: str, created: float | None = None) -> dict:
    x, y = self_test_vector(artifact)
    return {
        "format": FORMAT,
        "model_id": model_id,
        "version": artifact.model_version,
        "size": len(artifact_bytes),
        "sha256": hashlib.sha256(artifact_bytes).hexdigest(),
        "min_firmware": artifact.min_firmware,
        "n_inputs": artifact.n_inputs,
        "n_outputs": artifact.n_outputs,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created or time.time())),
        "key_id": key_id(public),
        "self_test": {"rows": int(x.shape[0]), "input": x.tobytes().hex(), "output": y.tobytes().hex()},
    }


def sign(body: dict, key: Ed25519PrivateKey) -> bytes:
    raw = canonical(body)
    return PREFIX + raw + SIG_MARK + key.sign(raw).hex().encode() + b'"}'


def split(manifest: bytes) -> tuple[bytes, bytes]:
    """(body bytes, signature) exactly as a device extracts them."""
    if not manifest.startswith(PREFIX) or not manifest.endswith(b'"}'):
        raise SignatureError("manifest is not in the signed edgefleet format")
    cut = manifest.rfind(SIG_MARK)
    if cut < 0:
        raise SignatureError("manifest carries no signature")
    body = manifest[len(PREFIX):cut]
    try:
        sig = bytes.fromhex(manifest[cut + len(SIG_MARK):-2].decode("ascii"))
    except ValueError as exc:
        raise SignatureError("manifest signature is not hex") from exc
    if len(sig) != 64:
        raise SignatureError("manifest signature must be 64 bytes")
    return body, sig


def verify(manifest: bytes, public: Ed25519PublicKey, artifact_bytes: bytes | None = None) -> dict:
    """The manifest body if the signature, key, hash, size and self-test all hold."""
    body_raw, sig = split(manifest)
    try:
        public.verify(sig, body_raw)
    except InvalidSignature as exc:
        raise SignatureError("manifest signature does not verify with this public key") from exc
    body = json.loads(body_raw)
    if body.get("format") != FORMAT:
        raise SignatureError(f"unknown manifest format {body.get('format')!r}")
    if body.get("key_id") != key_id(public):
        raise SignatureError("manifest names another signing key")
    if artifact_bytes is not None:
        if len(artifact_bytes) != body["size"]:
            raise SignatureError(f"artifact is {len(artifact_bytes)} bytes, manifest says {body['size']}")
        if hashlib.sha256(artifact_bytes).hexdigest() != body["sha256"]:
            raise SignatureError("artifact SHA-256 does not match the manifest (tampered or corrupted)")
        art = Artifact.from_bytes(artifact_bytes)
        if art.model_version != body["version"]:
            raise SignatureError("artifact version differs from the manifest's")
        st = body["self_test"]
        x = np.frombuffer(bytes.fromhex(st["input"]), np.int8).reshape(st["rows"], art.n_inputs)
        want = np.frombuffer(bytes.fromhex(st["output"]), np.int8).reshape(st["rows"], art.n_outputs)
        if not np.array_equal(Int8Engine(art).infer(x), want):
            raise SignatureError("self-test vector gives different outputs")
    return body


def firmware_ok(body: dict, firmware: str = FIRMWARE_VERSION) -> bool:
    def t(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))
    return t(firmware) >= t(body["min_firmware"])
