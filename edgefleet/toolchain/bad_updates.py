"""The bad updates a node must refuse, built once for the OTA tests and `benchmarks/ota_rollout.py`.

Each case is what a hostile or broken sender could put on the wire: the artifact bytes it serves,
the signed manifest and the SHA-256 its offer carries, and the words the node's rejection reason
must contain. `at_offer` says whether the offer and its signed manifest already show the fault
(the node then fetches no chunk) or only the downloaded bytes can (docs/ota.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.runtime import manifest
from edgefleet.runtime.artifact import SLOT_BYTES, Artifact

KINDS = ("bad_signature", "tampered", "tampered_rehashed", "downgrade", "same_version", "other_shape",
         "firmware", "oversized")


@dataclass(frozen=True)
class BadUpdate:
    name: str
    model: int  # the version the offer announces
    blob: bytes  # what the sender serves in ota/data
    manifest: bytes  # the signed manifest inside the offer
    sha256: str  # the offer's hash
    size: int  # the offer's size
    expect: str  # words the node's `rejected` reason contains
    at_offer: bool  # refused from the offer alone: not one chunk fetched

    def offer(self, campaign: str, *, chunk: int = 1024, trial_s: int = 5, ticket_key: Ed25519PrivateKey | None = None,
              device: str = "") -> dict:
        """The `ota/offer` body a sender would publish for this case. Without `ticket_key` it carries no
        campaign ticket (an outsider's offer: refused before the manifest is looked at); with it, a
        valid ticket for `device`, so the node's manifest and artifact checks are what refuse it."""
        body = {"campaign": campaign, "model": self.model, "size": self.size, "sha256": self.sha256,
                "chunk": chunk, "trial_s": trial_s, "shadow": False, "manifest": self.manifest.decode()}
        if ticket_key is not None:
            from edgefleet.runtime import trust

            body["ticket"] = trust.sign_ticket(ticket_key, campaign=campaign, device=device, model=self.model,
                                               sha256=self.sha256, trial_s=trial_s, shadow=False, shadow_s=0).decode()
        return body


def versioned(base: bytes, version: int, **changes: object) -> tuple[bytes, Artifact]:
    """`base` re-versioned (and with any artifact field changed), re-serialized."""
    art = Artifact.from_bytes(base)
    art.model_version = version
    for name, value in changes.items():
        setattr(art, name, value)
    return art.to_bytes(), art


def signed(blob: bytes, art: Artifact, key: Ed25519PrivateKey, model_id: str = "fleet") -> bytes:
    return manifest.sign(manifest.build_body(blob, art, key.public_key(), model_id=model_id), key)


def bad_updates(base: bytes, key: Ed25519PrivateKey, other_key: Ed25519PrivateKey, *,
                current: int) -> dict[str, BadUpdate]:
    """Every bad kind, against a node that runs version `current` of `base` and trusts `key`."""
    newer = current + 1
    good, art = versioned(base, newer)
    out: dict[str, BadUpdate] = {}

    def add(name: str, model: int, blob: bytes, man: bytes, expect: str, at_offer: bool = True,
            sha256: str | None = None, size: int | None = None) -> None:
        out[name] = BadUpdate(name, model, blob, man, sha256 or hashlib.sha256(blob).hexdigest(),
                              len(blob) if size is None else size, expect, at_offer)

    add("bad_signature", newer, good, signed(good, art, other_key), "signature")
    tampered = bytearray(good)
    tampered[len(tampered) // 2] ^= 0xFF
    # genuine offer and manifest, one byte of the served artifact changed (chunk CRCs made to match):
    # only the hash of the downloaded image can catch it
    add("tampered", newer, bytes(tampered), signed(good, art, key), "SHA-256 mismatch", at_offer=False,
        sha256=hashlib.sha256(good).hexdigest())
    # the same, with the offer's hash recomputed over the tampered bytes: the signed manifest disagrees
    add("tampered_rehashed", newer, bytes(tampered), signed(good, art, key), "manifest does not describe")
    old, art_old = versioned(base, current - 1)
    add("downgrade", current - 1, old, signed(old, art_old, key), "no downgrade")
    same, art_same = versioned(base, current)
    add("same_version", current, same, signed(same, art_same, key), "no downgrade")
    shape_art = Artifact.from_bytes(good)
    shape_art.features = None
    shape_art.layers = shape_art.layers[:3]  # another input/output shape, validly signed by the trusted key
    shape_art.output_zero_point = shape_art.layers[-1].output_zero_point
    shape = shape_art.to_bytes()
    add("other_shape", newer, shape, signed(shape, shape_art, key), "incompatible")
    fw, art_fw = versioned(base, newer, min_firmware="9.0.0")
    add("firmware", newer, fw, signed(fw, art_fw, key), "needs firmware")
    big = good + bytes(SLOT_BYTES + 16 * 1024 - len(good))  # larger than a model slot
    add("oversized", newer, big, signed(big, art, key), "exceeds")
    return out
