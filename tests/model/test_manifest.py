import json
import os
import stat

import pytest

from edgefleet.errors import SignatureError
from edgefleet.runtime import keys, manifest


@pytest.fixture()
def signed(trained, tmp_path):
    key = keys.generate(tmp_path / "k.key")
    blob = trained.artifact.to_bytes()
    body = manifest.build_body(blob, trained.artifact, key.public_key(), model_id="cwru")
    return key, blob, manifest.sign(body, key)


def test_valid_manifest_verifies_with_self_test(signed):
    key, blob, raw = signed
    body = manifest.verify(raw, key.public_key(), blob)
    assert body["size"] == len(blob) and body["version"] == 1
    assert manifest.firmware_ok(body)


def test_body_is_canonical_and_extractable_without_json(signed):
    _, _, raw = signed
    body_raw, sig = manifest.split(raw)
    assert manifest.canonical(json.loads(body_raw)) == body_raw
    assert len(sig) == 64 and raw.startswith(b'{"body":{')


def test_tampered_artifact_wrong_key_and_bad_signature_fail(signed, tmp_path):
    key, blob, raw = signed
    tampered = bytearray(blob)
    tampered[100] ^= 0x40
    with pytest.raises(SignatureError, match="SHA-256"):
        manifest.verify(raw, key.public_key(), bytes(tampered))
    other = keys.generate(tmp_path / "other.key")
    with pytest.raises(SignatureError, match="signature does not verify"):
        manifest.verify(raw, other.public_key(), blob)
    flipped = raw.replace(b'"version":1', b'"version":9')
    with pytest.raises(SignatureError):
        manifest.verify(flipped, key.public_key(), blob)
    with pytest.raises(SignatureError):
        manifest.verify(raw[:-10], key.public_key(), blob)


def test_min_firmware_gate(signed):
    key, blob, raw = signed
    body = manifest.verify(raw, key.public_key(), blob)
    assert not manifest.firmware_ok(dict(body, min_firmware="9.0.0"))


def test_key_file_is_private_and_not_overwritten(tmp_path):
    p = tmp_path / "sub" / "signing.key"
    keys.generate(p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert keys.public_path(p).exists()
    with pytest.raises(SignatureError, match="refusing to overwrite"):
        keys.generate(p)


@pytest.mark.parametrize("name", ["cwru-de-12k", "fleet-default", "fleet-v2"])
def test_every_shipped_model_verifies_with_the_shipped_public_key(name):
    """The README's and the demo's models can be verified and published with dev-signing.pub (fleet-v2
    once shipped signed by another key: `ota publish --public dev-signing.pub` refused it)."""
    from pathlib import Path

    models = Path(__file__).resolve().parents[2] / "edgefleet" / "models"
    folder = models / name
    body = manifest.verify((folder / "manifest.json").read_bytes(), keys.load_public(models / "dev-signing.pub"),
                           (folder / "model.efm").read_bytes())
    assert body["model_id"] == name
