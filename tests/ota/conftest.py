"""Signed model versions for OTA tests, built from the shipped reference model (no TensorFlow)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgefleet.runtime import keys, manifest
from edgefleet.runtime.artifact import Artifact

REFERENCE = Path(__file__).resolve().parents[2] / "edgefleet" / "models" / "cwru-de-12k" / "model.efm"


@pytest.fixture(scope="session")
def versioned():
    return make_versioned


def make_versioned(version: int, *, threshold_scale: float = 1.0) -> bytes:
    art = Artifact.from_bytes(REFERENCE.read_bytes())
    art.model_version = version
    art.scoring.threshold = float(art.scoring.threshold) * threshold_scale
    return art.to_bytes()


@pytest.fixture()
def held_chunks() -> set[str]:
    """Device ids whose OTA chunks the simulated link drops (test_sim_rollout's fleet)."""
    return set()


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory):
    return keys.generate(tmp_path_factory.mktemp("ota-keys") / "k.key")


@pytest.fixture(scope="session")
def release(signing_key):
    """release(version) -> (artifact bytes, manifest bytes, offer body)."""

    def make(version: int, *, key=None, blob: bytes | None = None, chunk: int = 512, trial_s: int = 10,
             shadow: bool = False):
        k = key or signing_key
        blob = blob or make_versioned(version)
        art = Artifact.from_bytes(blob)
        body = manifest.build_body(blob, art, k.public_key(), model_id="test")
        man = manifest.sign(body, k)
        offer = {"campaign": f"c{version}", "model": version, "size": len(blob),
                 "sha256": hashlib.sha256(blob).hexdigest(), "chunk": chunk, "trial_s": trial_s,
                 "shadow": shadow, "manifest": man.decode()}
        return blob, man, offer

    return make
