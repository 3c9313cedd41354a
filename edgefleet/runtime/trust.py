"""OTA authorization: campaign tickets and the node's set of trusted keys (docs/ota.md, "Authorization").

Both are signed the way manifests are (`{"body":<canonical JSON>,"signature":"<hex>"}`, the
signature over the body bytes as written), so the C node verifies them with the same code.

- A **ticket** binds one offer to one campaign and one device: campaign id, device id, model
  version and artifact SHA-256, and the trial policy (trial_s, shadow, shadow_s). The OTA manager
  issues one per device it offers to, with a key the nodes trust for campaigns. A node takes the
  trial policy from the ticket only, so nobody without that key can set it or offer outside a campaign.
- A **keyset** is the list of keys a node trusts, each with its roles (sign models, sign tickets),
  and a serial. A node replaces its set only with a higher serial signed by a key it already trusts
  to sign models: that is how keys rotate (`edgefleet keys trust` / `keys retire`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edgefleet.errors import SignatureError
from edgefleet.runtime.keys import key_id, public_raw
from edgefleet.runtime.manifest import PREFIX, SIG_MARK, canonical, split

TICKET_FORMAT = "edgefleet-ticket/1"
KEYSET_FORMAT = "edgefleet-keyset/1"
ROLE_MODEL = 1  # may sign manifests and keysets
ROLE_CAMPAIGN = 2  # may sign campaign tickets
ROLE_NAMES = {"model": ROLE_MODEL, "campaign": ROLE_CAMPAIGN, "both": ROLE_MODEL | ROLE_CAMPAIGN}
MAX_KEYS = 4  # what a node holds (the C node's EF_TRUST_MAX)
TICKET_FIELDS = ("campaign", "device", "format", "key_id", "model", "sha256", "shadow", "shadow_s", "trial_s")


def _sign(body: dict, key: Ed25519PrivateKey) -> bytes:
    raw = canonical(body)
    return PREFIX + raw + SIG_MARK + key.sign(raw).hex().encode() + b'"}'


def roles_text(roles: int) -> str:
    return {ROLE_MODEL: "model", ROLE_CAMPAIGN: "campaign", ROLE_MODEL | ROLE_CAMPAIGN: "both"}.get(roles, "none")


@dataclass
class TrustSet:
    """The keys a node trusts, by key id: (public key, roles); `serial` of the keyset it came from."""

    keys: dict[str, tuple[Ed25519PublicKey, int]] = field(default_factory=dict)
    serial: int = 0

    @classmethod
    def single(cls, public: Ed25519PublicKey) -> TrustSet:
        """A node provisioned with one key (before authorization existed): it signs models and tickets."""
        return cls({key_id(public): (public, ROLE_MODEL | ROLE_CAMPAIGN)})

    def key(self, kid: str, role: int) -> Ed25519PublicKey:
        entry = self.keys.get(kid)
        if entry is None:
            raise SignatureError(f"signature by key {kid}, which this node does not trust")
        if not entry[1] & role:
            raise SignatureError(f"key {kid} is not trusted to sign {'models' if role == ROLE_MODEL else 'campaigns'}")
        return entry[0]

    def apply(self, keyset: bytes) -> bool:
        """Replace the set with a newer signed keyset; False when it is not newer (nothing to do)."""
        body_raw, _ = split(keyset)
        try:
            serial = json.loads(body_raw).get("serial")
        except (ValueError, AttributeError) as exc:
            raise SignatureError("keyset: body is not a JSON object") from exc
        if not isinstance(serial, int) or isinstance(serial, bool) or serial <= self.serial:
            return False  # an old keyset is not an error: offers carry the last few
        body = _verified(keyset, KEYSET_FORMAT, lambda kid: self.key(kid, ROLE_MODEL))
        self.keys, self.serial = decode_keys(body.get("keys")), serial
        return True


def _verified(doc: bytes, fmt: str, lookup) -> dict:
    body_raw, sig = split(doc)
    try:
        body = json.loads(body_raw)
    except ValueError as exc:
        raise SignatureError(f"{fmt.split('/')[0]}: body is not JSON") from exc
    if not isinstance(body, dict) or body.get("format") != fmt:
        raise SignatureError(f"not an {fmt} document")
    if not isinstance(body.get("key_id"), str):
        raise SignatureError(f"{fmt}: no key_id")
    try:
        lookup(body["key_id"]).verify(sig, body_raw)
    except InvalidSignature as exc:
        raise SignatureError(f"{fmt.split('/')[0].replace('edgefleet-', '')} signature does not verify") from exc
    return body


# ------------------------------------------------------------------ keysets

def encode_keys(entries: list[tuple[Ed25519PublicKey, int]]) -> str:
    """Hex of (role byte + 32-byte raw key) per key: one string, trivial to parse on a node."""
    return "".join(f"{roles:02x}" + public_raw(pub).hex() for pub, roles in entries)


def decode_keys(text) -> dict[str, tuple[Ed25519PublicKey, int]]:
    if not isinstance(text, str) or not text or len(text) % 66 or len(text) > 66 * MAX_KEYS:
        raise SignatureError(f"keyset: keys must be 1 to {MAX_KEYS} entries of 33 bytes in hex")
    out = {}
    for i in range(0, len(text), 66):
        raw = bytes.fromhex(text[i:i + 66])
        if raw[0] not in (1, 2, 3):
            raise SignatureError("keyset: unknown role")
        pub = Ed25519PublicKey.from_public_bytes(raw[1:])
        out[key_id(pub)] = (pub, raw[0])
    if not any(r & ROLE_MODEL for _, r in out.values()):
        raise SignatureError("keyset: no key may sign models (the nodes could never update again)")
    return out


def sign_keyset(entries: list[tuple[Ed25519PublicKey, int]], serial: int, key: Ed25519PrivateKey) -> bytes:
    if not 1 <= len(entries) <= MAX_KEYS:
        raise SignatureError(f"a node holds 1 to {MAX_KEYS} trusted keys, not {len(entries)}")
    return _sign({"format": KEYSET_FORMAT, "key_id": key_id(key.public_key()), "keys": encode_keys(entries),
                  "serial": serial}, key)


# ------------------------------------------------------------------ tickets

def ticket_body(*, campaign: str, device: str, model: int, sha256: str, trial_s: int, shadow: bool,
                shadow_s: int, key: Ed25519PrivateKey) -> dict:
    return {"campaign": campaign, "device": device, "format": TICKET_FORMAT, "key_id": key_id(key.public_key()),
            "model": int(model), "sha256": sha256, "shadow": 1 if shadow else 0,
            "shadow_s": int(shadow_s) if shadow else 0, "trial_s": int(trial_s)}


def sign_ticket(key: Ed25519PrivateKey, **fields) -> bytes:
    return _sign(ticket_body(key=key, **fields), key)


def verify_ticket(ticket: bytes, trust: TrustSet) -> dict:
    """The ticket body when a key trusted for campaigns signed it and every field is well formed."""
    body = _verified(ticket, TICKET_FORMAT, lambda kid: trust.key(kid, ROLE_CAMPAIGN))
    if sorted(body) != sorted(TICKET_FIELDS):
        raise SignatureError("ticket: unexpected or missing fields")
    ints = ("model", "shadow", "shadow_s", "trial_s")
    if any(not isinstance(body[k], int) or isinstance(body[k], bool) or body[k] < 0 for k in ints) \
            or body["shadow"] > 1:
        raise SignatureError("ticket: bad numbers")
    return body


def offer_matches(offer: dict, ticket: dict, device: str) -> str | None:
    """None when the offer is the one the ticket authorizes for this device; else why not."""
    if ticket["device"] != device:
        return f"ticket is for device {ticket['device']}, not this one"
    if (ticket["campaign"], ticket["model"], ticket["sha256"]) != (
            offer.get("campaign"), offer.get("model"), offer.get("sha256")):
        return "ticket names another campaign, model or artifact"
    shadow = bool(offer.get("shadow"))
    shadow_s = offer.get("shadow_s", offer.get("trial_s")) if shadow else 0
    if (ticket["trial_s"], ticket["shadow"], ticket["shadow_s"]) != (offer.get("trial_s"), int(shadow), shadow_s):
        return "trial policy differs from the signed ticket"
    return None
