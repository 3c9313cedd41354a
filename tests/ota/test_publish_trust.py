"""What `ota publish` lets into the fleet's model registry: only the fleet's key, only versions above
every published one, and a one-line error (never a traceback) for a bad file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.errors import EdgefleetError
from edgefleet.runtime import keys
from edgefleet.service.ota.registry import OtaRegistry

REPO = Path(__file__).resolve().parents[2]


def test_only_the_fleet_key_and_only_newer_versions(tmp_path, signing_key, release):
    reg = OtaRegistry(tmp_path / "f.db")
    blob, man, _ = release(3)
    reg.publish(blob, man, {}, signing_key.public_key())
    reg.publish(blob, man, {}, signing_key.public_key())  # the same content again: fine
    other = keys.generate(tmp_path / "other.key")
    b4, m4, _ = release(4, key=other)
    with pytest.raises(EdgefleetError, match="this fleet trusts key"):
        reg.publish(b4, m4, {}, other.public_key())
    b2, m2, _ = release(2)
    with pytest.raises(EdgefleetError, match="not above the newest published"):
        reg.publish(b2, m2, {}, signing_key.public_key())
    assert [m.version for m in reg.models()] == [3]
    reg.publish(b4, m4, {}, other.public_key(), trust_new_key=True)  # an explicit rotation
    assert [m.version for m in reg.models()] == [3, 4]
    reg.close()


@pytest.mark.parametrize("breakage, message", [
    ("public", "cannot read the public key"),
    ("card", "is not valid JSON"),
    ("manifest", "manifest"),
])
def test_bad_files_give_one_line_errors(tmp_path, breakage, message):
    folder = tmp_path / "m"
    folder.mkdir()
    for f in (REPO / "edgefleet" / "models" / "fleet-default").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    args = ["--db", str(tmp_path / "f.db"), "--public", str(REPO / "edgefleet" / "models" / "dev-signing.pub")]
    if breakage == "public":
        args[-1] = str(tmp_path / "missing.pub")
    if breakage == "card":
        (folder / "card.json").write_text("{bad")
    if breakage == "manifest":
        (folder / "manifest.json").write_text('{"not": "a manifest"}')
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "ota", "publish", str(folder), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_public_key_that_did_not_sign_the_model_is_named_on_the_first_publish(tmp_path, signing_key, release):
    """First publish (nothing pinned yet) with --public of another key: both key ids, not 'trusts no key
    yet: give --public' (which the user just did)."""
    reg = OtaRegistry(tmp_path / "f.db")
    blob, man, _ = release(3)
    other = keys.generate(tmp_path / "other.key")
    with pytest.raises(EdgefleetError, match=f"is by key {keys.key_id(signing_key.public_key())}, but --public is "
                                             f"key {keys.key_id(other.public_key())}"):
        reg.publish(blob, man, {}, other.public_key())
    assert reg.models() == [] and reg.trusted_keys() == []
    reg.close()


def test_a_target_that_matches_no_device_is_refused_with_what_exists(tmp_path, signing_key, release):
    from edgefleet.protocol import ResultRecord
    from edgefleet.service.store import DeviceUpdate, IngestBatch, SQLiteStore

    db = tmp_path / "f.db"
    store = SQLiteStore(db)
    store.write_batch(IngestBatch(ingest_ts=1, devices=[DeviceUpdate("p-1", 1, site="north", line="L1", tags=("pump",))],
                                  results=[ResultRecord("p-1", "b0000001", 0, 1, 1, 0.1, 1.0, False, 5)]))
    store.close()
    reg = OtaRegistry(db)
    blob, man, _ = release(5)
    reg.publish(blob, man, {}, signing_key.public_key())
    reg.close()
    run = lambda target: subprocess.run([sys.executable, "-m", "edgefleet", "ota", "rollout", "5", "--target", target,  # noqa: E731
                                         "--db", str(db)], cwd=REPO, capture_output=True, text=True, timeout=60)
    bad = run("site=south")
    assert bad.returncode == 2 and "known sites: north" in bad.stderr and "tags: pump" in bad.stderr
    assert run("site=north").returncode == 0
    empty = subprocess.run([sys.executable, "-m", "edgefleet", "ota", "status", "--models", "--db",
                            str(tmp_path / "none.db")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "no model published" in empty.stdout
