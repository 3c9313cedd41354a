"""The node side of an over-the-air model update: the simulated node's OTA client.

No MQTT and no clock inside: the node feeds events (`offer`, `chunk`, `tick`,
`boot`, `revert`) with the current time, and gets back the messages to publish
(`ota/req`, `ota/state`). The simulated node embeds this class. The firmware's
`firmware/core/src/ef_ota.c` follows the same protocol (the `ota/state` values of
docs/protocol.md) with its own states (idle, receiving, trial: a table keyed by event);
this class keeps the shadow phase as a state of its own (`State.SHADOW`), where the
firmware keeps it as a flag of its trial. docs/ota.md states the flow both follow.

Slots: the running model is in the active slot; a download goes to the other
one. The active slot switches only after verification; a trial that times out
unhealthy, a reboot during trial, or a revert command switch it back.

Shadow mode (offer `shadow`): after verification the candidate waits in the
inactive slot for `shadow_s` seconds while the old model stays active; the node
scores every window with both and reports both (`result.shadow`). Only then does
the candidate become active for its ordinary trial. A revert during the shadow
phase never switched anything, so it only erases the candidate.

Authorization (docs/ota.md): an offer counts only with a campaign ticket, signed by a key the node
trusts for campaigns, naming this device, the campaign, model, SHA-256 and the trial policy the offer
states; the manifest must be signed by a key trusted for models. The trusted keys live in the slots
(`Slots.trust`, they survive a reboot) and change only through signed keysets carried by offers.

A revert command may name a campaign: the node then reverts only that campaign's
download, shadow phase, trial or running model (each slot remembers the campaign
that wrote it) and reports under it; for another campaign it does nothing. A
reverted image is dropped, so no later revert can switch back to it.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from base64 import b64decode
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgefleet import FIRMWARE_VERSION
from edgefleet.errors import ArtifactError, SignatureError
from edgefleet.runtime import manifest, trust
from edgefleet.runtime.artifact import SLOT_BYTES, Artifact

MAX_ARTIFACT = SLOT_BYTES  # bytes a model slot holds
REQUEST_TIMEOUT_S = 5.0  # re-request a chunk that has not arrived
MAX_RETRIES = 20  # per offset, before the download fails


class State(str, Enum):
    IDLE = "idle"
    DOWNLOADING = "downloading"
    SHADOW = "shadow"
    TRIAL = "trial"


@dataclass
class Slots:
    """What survives a reboot: the two slots, which is active, and a trial in progress."""

    images: dict[str, bytes | None] = field(default_factory=lambda: {"A": None, "B": None})
    active: str = "A"
    trial: dict[str, Any] | None = None  # {campaign, model, deadline, previous, phase[, trial_s]}
    confirmed_version: int = 0
    campaigns: dict[str, str | None] = field(default_factory=lambda: {"A": None, "B": None})  # who wrote each slot
    trust: trust.TrustSet | None = None  # the keys this node trusts (set by OtaClient; keysets replace it)
    aborted: list[str] = field(default_factory=list)  # campaigns reverted by command: never taken again

    @property
    def inactive(self) -> str:
        return "B" if self.active == "A" else "A"

    def active_artifact(self) -> Artifact | None:
        img = self.images[self.active]
        return Artifact.from_bytes(img) if img else None


@dataclass
class Download:
    campaign: str
    model: int
    size: int
    sha256: str
    chunk: int
    trial_s: int
    shadow: bool
    manifest: bytes
    buffer: bytearray
    offset: int = 0
    last_request: float = 0.0
    retries: int = 0
    shadow_s: int = 0  # length of the shadow phase before the trial (with shadow)


class OtaClient:
    """One node's OTA logic. `events -> list of (kind, body)` messages to publish."""

    def __init__(self, slots: Slots, public_key: Ed25519PublicKey | trust.TrustSet, *, device: str,
                 firmware: str = FIRMWARE_VERSION, max_artifact: int = MAX_ARTIFACT) -> None:
        self.slots = slots
        if slots.trust is None:  # first boot: the provisioned key(s); later keysets live in the slots
            slots.trust = public_key if isinstance(public_key, trust.TrustSet) else trust.TrustSet.single(public_key)
        self.device = device
        self.firmware = firmware
        self.max_artifact = max_artifact
        self.download: Download | None = None
        self.state = State.TRIAL if slots.trial else State.IDLE
        self.shadow_artifact: Artifact | None = None  # the candidate, scored alongside during the shadow phase

    # ------------------------------------------------------------ events

    def boot(self, now: float) -> list[tuple[str, dict]]:
        """A reboot during trial reverts: the new model never proved itself."""
        out: list[tuple[str, dict]] = []
        self.download = None
        if self.slots.trial:
            out += self._revert(now, "rebooted during trial")
        self.state = State.IDLE
        return out

    def offer(self, body: dict, now: float) -> list[tuple[str, dict]]:
        if not body:  # an empty retained payload clears the offer
            return []
        campaign, model = body["campaign"], int(body["model"])
        if self.download and (self.download.campaign, self.download.model) == (campaign, model):
            return []  # repeated offer (retained, reconnect): keep the download going
        if self.download or self.state in (State.TRIAL, State.SHADOW):
            return self._busy(model, now)
        refused = self._authorize(body)
        if refused:  # reported under "none": an unauthorized sender must not count against a real campaign
            return [self._state("none", model, "rejected", now, reason=f"unauthorized offer: {refused}"[:200])]
        current = self.current_version()
        if model <= current:
            return [self._state(campaign, model, "rejected", now,
                                reason=f"version {model} is not newer than running {current} (no downgrade)")]
        if not 0 < body["size"] <= self.max_artifact:
            return [self._state(campaign, model, "rejected", now,
                                reason=f"artifact of {body['size']} B exceeds the {self.max_artifact} B slot")]
        reason = self._check_offer(body)
        if reason:  # a bad signature or an unfit model costs no download
            return [self._state(campaign, model, "rejected", now, reason=reason)]
        self.download = Download(campaign=campaign, model=model, size=int(body["size"]),
                                 sha256=body["sha256"], chunk=int(body["chunk"]),
                                 trial_s=int(body.get("trial_s", 0)), shadow=bool(body.get("shadow")),
                                 manifest=body["manifest"].encode(), buffer=bytearray(body["size"]),
                                 shadow_s=int(body.get("shadow_s", body.get("trial_s", 0))))
        self.slots.images[self.slots.inactive] = None  # erase the inactive slot first
        self.state = State.DOWNLOADING
        return [self._state(campaign, model, "accepted", now), self._request(now)]

    def chunk(self, body: dict, now: float) -> list[tuple[str, dict]]:
        d = self.download
        if d is None or (body["campaign"], int(body["model"])) != (d.campaign, d.model):
            return []  # a chunk for another transfer (shared topic or stale): ignore
        off = int(body["off"])
        if off != d.offset:
            return []  # duplicate or out of order: the pending request stands
        try:
            data = b64decode(body["data"], validate=True)
        except ValueError:
            data = b""
        if not data or zlib.crc32(data) != int(body["crc"]) or off + len(data) > d.size:
            return self._retry(now, "corrupted chunk")
        d.buffer[off:off + len(data)] = data
        d.offset += len(data)
        d.retries = 0
        if d.offset < d.size:
            return [self._request(now)]
        return self._install(now)

    def tick(self, now: float, *, healthy: bool = True) -> list[tuple[str, dict]]:
        """Timers: re-request a lost chunk; end a trial (confirm if healthy, else revert)."""
        d = self.download
        if d and now - d.last_request >= REQUEST_TIMEOUT_S:
            return self._retry(now, "chunk timeout")
        trial = self.slots.trial
        if trial and now >= trial["deadline"] and trial.get("phase") == "shadow":
            return self._end_shadow(now, healthy)
        if trial and now >= trial["deadline"]:
            if not healthy:
                return self._revert(now, "unhealthy at the end of the trial")
            return self._confirm(now)
        return []

    def revert(self, now: float, reason: str = "revert command", campaign: str | None = None
               ) -> list[tuple[str, dict]]:
        """Server-ordered rollback (aborted campaign): back to the previous model, trial or not.
        With `campaign`, only if the download, trial or running model is that campaign's (or
        its campaign is unknown); the report names it."""
        own = self.own_campaign()
        if campaign and own and campaign != own:
            return []  # another campaign's revert (a late one, or a campaign since superseded)
        if campaign and campaign not in self.slots.aborted:  # its ticket is never taken again
            self.slots.aborted = (self.slots.aborted + [campaign])[-8:]
        if self.download:
            d, self.download = self.download, None
            self.state = State.IDLE
            return [self._state(d.campaign, d.model, "failed", now, reason=f"cancelled: {reason}")]
        return self._revert(now, reason, confirmed_too=True, campaign=campaign)

    # ------------------------------------------------------------ queries

    def current_version(self) -> int:
        art = self.slots.active_artifact()
        return art.model_version if art else 0

    def own_campaign(self) -> str | None:
        """The campaign of the download, shadow phase or trial in progress, else the one that
        installed the running model (None: the factory model, or not known)."""
        if self.download:
            return self.download.campaign
        if self.slots.trial:
            return self.slots.trial["campaign"]
        return self.slots.campaigns.get(self.slots.active)

    def in_shadow(self) -> bool:
        return bool(self.slots.trial) and self.slots.trial.get("phase") == "shadow"

    def progress(self) -> float:
        return self.download.offset / self.download.size if self.download else 0.0

    # ------------------------------------------------------------ steps

    def _install(self, now: float) -> list[tuple[str, dict]]:
        d = self.download
        self.download = None
        blob = bytes(d.buffer)
        out = [self._state(d.campaign, d.model, "verifying", now)]
        reason = self._verify(d, blob)
        if reason:
            self.state = State.IDLE
            self.slots.images[self.slots.inactive] = None
            return out + [self._state(d.campaign, d.model, "rejected", now, reason=reason)]
        previous = self.slots.active
        self.slots.images[self.slots.inactive] = blob
        self.slots.campaigns[self.slots.inactive] = d.campaign
        if d.shadow:  # the old model stays active; the candidate scores alongside it
            self.slots.trial = {"campaign": d.campaign, "model": d.model, "deadline": now + d.shadow_s,
                                "previous": previous, "phase": "shadow", "trial_s": d.trial_s}
            self.shadow_artifact = Artifact.from_bytes(blob)
            self.state = State.SHADOW
            out.append(self._state(d.campaign, d.model, "shadow", now, off=d.size))
            if d.shadow_s == 0:
                out += self._end_shadow(now, True)
            return out
        self.slots.active = self.slots.inactive
        self.slots.trial = {"campaign": d.campaign, "model": d.model, "deadline": now + d.trial_s,
                            "previous": previous, "phase": "trial"}
        self.state = State.TRIAL
        out.append(self._state(d.campaign, d.model, "trial", now, off=d.size))
        if d.trial_s == 0:
            out += self._confirm(now)
        return out

    def _end_shadow(self, now: float, healthy: bool) -> list[tuple[str, dict]]:
        """Shadow phase over: an unhealthy candidate is dropped, a healthy one starts its trial."""
        if not healthy:
            return self._revert(now, "unhealthy at the end of the shadow phase")
        trial = self.slots.trial
        self.slots.active = self.slots.inactive
        self.slots.trial = {**trial, "phase": "trial", "deadline": now + trial.get("trial_s", 0)}
        self.shadow_artifact = None
        self.state = State.TRIAL
        out = [self._state(trial["campaign"], trial["model"], "trial", now)]
        if trial.get("trial_s", 0) == 0:
            out += self._confirm(now)
        return out

    def _busy(self, model: int, now: float) -> list[tuple[str, dict]]:
        """An offer during a download or a trial: refused under "none" before any check, as the C node
        must (it verifies an offer only after fetching its documents, so it cannot tell a forged one
        from a genuine one here). A forged offer thus never ends a genuine download; a genuine one
        stays "offered" at the manager, which publishes it again until the node is free (docs/ota.md)."""
        if self.download is None:
            if self.slots.trial and self.slots.trial["model"] == model:
                return []  # the trial's own offer again
            return [self._state("none", model, "rejected", now, reason="busy: another update is in trial")]
        return [self._state("none", model, "rejected", now, reason="busy: another download is in progress")]

    def _authorize(self, offer: dict) -> str | None:
        """None when a key this node trusts for campaigns issued this offer to this device, with this
        trial policy (docs/ota.md, "Authorization"); a newer signed keyset in the offer is taken first."""
        try:
            for doc in (offer.get("keys") or "").split():  # oldest first: each signed by a key the last one trusts
                self.slots.trust.apply(doc.encode())
            if not offer.get("ticket"):
                return "no campaign ticket"
            ticket = trust.verify_ticket(offer["ticket"].encode(), self.slots.trust)
        except (SignatureError, ValueError, KeyError, TypeError) as exc:
            return str(exc)
        if ticket["campaign"] in self.slots.aborted:
            return f"campaign {ticket['campaign']} was reverted here"
        return trust.offer_matches(offer, ticket, self.device)

    def _model_key(self, manifest_bytes: bytes) -> Ed25519PublicKey:
        """The trusted key the manifest names (the key id is inside the signed body)."""
        return self.slots.trust.key(manifest_summary(manifest_bytes).get("key_id", ""), trust.ROLE_MODEL)

    def _check_offer(self, offer: dict) -> str | None:
        """What the signed manifest alone tells before any chunk: None, or why not to download."""
        try:
            raw = offer["manifest"].encode()
            body = manifest.verify(raw, self._model_key(raw))
        except (SignatureError, ValueError, KeyError, AttributeError) as exc:
            return f"manifest: {exc}"
        if (body.get("version"), body.get("sha256"), body.get("size")) != (
                int(offer["model"]), offer["sha256"], int(offer["size"])):
            return "manifest does not describe the offered artifact"
        if not manifest.firmware_ok(body, self.firmware):
            return f"needs firmware {body['min_firmware']}, running {self.firmware}"
        current = self.slots.active_artifact()
        shape = (body.get("n_inputs"), body.get("n_outputs"))
        if current and shape != (current.n_inputs, current.n_outputs):
            return (f"incompatible shape {shape[0]}->{shape[1]}, "
                    f"device runs {current.n_inputs}->{current.n_outputs}")
        return None

    def _verify(self, d: Download, blob: bytes) -> str | None:
        """None when the image may run; else the reason it may not."""
        if hashlib.sha256(blob).hexdigest() != d.sha256:
            return "SHA-256 mismatch"
        try:
            body = manifest.verify(d.manifest, self._model_key(d.manifest), blob)
        except (SignatureError, ArtifactError, ValueError, KeyError, AttributeError) as exc:
            return f"manifest: {exc}"
        if body["version"] != d.model or body["sha256"] != d.sha256:
            return "manifest does not describe the offered artifact"
        if not manifest.firmware_ok(body, self.firmware):
            return f"needs firmware {body['min_firmware']}, running {self.firmware}"
        current = self.slots.active_artifact()
        new = Artifact.from_bytes(blob)
        if current and (new.n_inputs, new.n_outputs) != (current.n_inputs, current.n_outputs):
            return (f"incompatible shape {new.n_inputs}->{new.n_outputs}, "
                    f"device runs {current.n_inputs}->{current.n_outputs}")
        if current and (new.features is None) != (current.features is None):
            return "incompatible: feature front end differs"
        return None

    def _confirm(self, now: float) -> list[tuple[str, dict]]:
        trial, self.slots.trial = self.slots.trial, None
        self.slots.confirmed_version = trial["model"]
        self.shadow_artifact = None
        self.state = State.IDLE
        return [self._state(trial["campaign"], trial["model"], "confirmed", now)]

    def _revert(self, now: float, reason: str, *, confirmed_too: bool = False,
                campaign: str | None = None) -> list[tuple[str, dict]]:
        trial = self.slots.trial
        if trial is None and not confirmed_too:
            return []
        prev = trial["previous"] if trial else self.slots.inactive
        if not self.slots.images.get(prev):
            return []  # nothing to go back to
        model = trial["model"] if trial else self.current_version()
        campaign = self.own_campaign() or campaign
        dropped = self.slots.inactive if trial and trial.get("phase") == "shadow" else self.slots.active
        self.slots.images[dropped] = None  # the reverted image: no later revert can land on it
        self.slots.campaigns[dropped] = None
        self.slots.active = prev
        self.slots.trial = None
        self.shadow_artifact = None
        self.slots.confirmed_version = self.current_version()
        self.state = State.IDLE
        return [self._state(campaign or "none", model, "reverted", now, reason=reason)]

    def _retry(self, now: float, why: str) -> list[tuple[str, dict]]:
        d = self.download
        d.retries += 1
        if d.retries > MAX_RETRIES:
            self.download = None
            self.state = State.IDLE
            return [self._state(d.campaign, d.model, "failed", now, reason=f"{why}: gave up after {MAX_RETRIES} retries")]
        return [self._request(now)]

    def _request(self, now: float) -> tuple[str, dict]:
        d = self.download
        d.last_request = now
        return "ota/req", {"campaign": d.campaign, "model": d.model, "off": d.offset,
                           "len": min(d.chunk, d.size - d.offset)}

    def _state(self, campaign: str, model: int, state: str, now: float, **extra) -> tuple[str, dict]:
        return "ota/state", {"campaign": campaign, "model": model, "state": state,
                             "ts": int(now * 1000), **extra}


def manifest_summary(manifest_bytes: bytes) -> dict:
    """The unsigned view of a manifest body (for logs and the dashboard)."""
    body, _ = manifest.split(manifest_bytes)
    return json.loads(body)
