"""Signed model versions for OTA tests, built from the shipped reference model (no TensorFlow)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgefleet.runtime import keys, manifest, trust
from edgefleet.runtime.artifact import Artifact

DEVICE = "dev-1"  # the device the release fixture's tickets name (OtaClient(..., device=DEVICE))
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


@pytest.fixture(scope="package")
def signing_key(tmp_path_factory):
    """The nodes' provisioned key; `edgefleet serve` (and OtaManager) sign campaign tickets with it too.
    Package scope: $EDGEFLEET_CAMPAIGN_KEY is set for tests/ota only (session scope leaked it into every
    later test, and the README's engineer loop signed tickets with a key its fleet did not trust)."""
    path = tmp_path_factory.mktemp("ota-keys") / "k.key"
    key = keys.generate(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEFLEET_CAMPAIGN_KEY", str(path))
        yield key


@pytest.fixture(scope="package")
def release(signing_key):
    """release(version) -> (artifact bytes, manifest bytes, offer body)."""

    def make(version: int, *, key=None, blob: bytes | None = None, chunk: int = 512, trial_s: int = 10,
             shadow: bool = False, shadow_s: int | None = None, device: str = DEVICE, ticket_key=None):
        k = key or signing_key
        blob = blob or make_versioned(version)
        art = Artifact.from_bytes(blob)
        body = manifest.build_body(blob, art, k.public_key(), model_id="test")
        man = manifest.sign(body, k)
        sha = hashlib.sha256(blob).hexdigest()
        offer = {"campaign": f"c{version}", "model": version, "size": len(blob),
                 "sha256": sha, "chunk": chunk, "trial_s": trial_s,
                 "shadow": shadow, "manifest": man.decode()}
        if shadow and shadow_s is not None:
            offer["shadow_s"] = shadow_s
        offer["ticket"] = trust.sign_ticket(ticket_key or k, campaign=offer["campaign"], device=device, model=version,
                                            sha256=sha, trial_s=trial_s, shadow=shadow,
                                            shadow_s=(trial_s if shadow_s is None else shadow_s) if shadow else 0
                                            ).decode()
        return blob, man, offer

    return make
