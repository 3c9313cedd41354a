"""Model registry and rollout campaigns, in SQLite (the same file as the fleet registry), or in the
same PostgreSQL database as the store when given a postgresql:// URL (tables from its migrations).

Models are stored with their artifact, signed manifest and card; campaigns with
their policy, stage and per-device state history. The OTA manager is the only
writer of campaign progress; the CLI and dashboard create and abort campaigns.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgefleet.clock import now_ms
from edgefleet.errors import EdgefleetError
from edgefleet.runtime import manifest as manifest_mod
from edgefleet.runtime.artifact import Artifact
from edgefleet.runtime.keys import key_id, public_raw
from edgefleet.runtime.trust import ROLE_CAMPAIGN, ROLE_MODEL, sign_keyset
from edgefleet.service.ota.campaign import Policy, Target

SCHEMA = """
CREATE TABLE IF NOT EXISTS ota_models (
  version INTEGER PRIMARY KEY, model_id TEXT NOT NULL, created_ms INTEGER NOT NULL,
  artifact BLOB NOT NULL, manifest BLOB NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
  n_inputs INTEGER NOT NULL, n_outputs INTEGER NOT NULL, card TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS ota_campaigns (
  id TEXT PRIMARY KEY, model INTEGER NOT NULL REFERENCES ota_models(version), target TEXT NOT NULL,
  policy TEXT NOT NULL, state TEXT NOT NULL, stage INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
  devices TEXT NOT NULL DEFAULT '[]', created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ota_device_state (
  campaign TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
  offered_ms INTEGER, updated_ms INTEGER NOT NULL, old_model INTEGER, PRIMARY KEY (campaign, device));
CREATE TABLE IF NOT EXISTS ota_history (
  id INTEGER PRIMARY KEY AUTOINCREMENT, campaign TEXT NOT NULL, device TEXT NOT NULL, ts INTEGER NOT NULL,
  state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS ota_history_device ON ota_history(device, ts);
CREATE TABLE IF NOT EXISTS ota_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS device_commands (
  id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, body TEXT NOT NULL, created_ms INTEGER NOT NULL,
  sent_ms INTEGER, note TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS device_commands_pending ON device_commands(sent_ms) WHERE sent_ms IS NULL;
"""

# OTA authorization (docs/ota.md): the keys this fleet trusts, the signed keysets that carry them to
# the nodes, and why a downgrade was let in. Plain DDL, so the same runs on PostgreSQL.
AUTH_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ota_keys (key_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, public TEXT NOT NULL, "
    "roles INTEGER NOT NULL, state TEXT NOT NULL, added_ms BIGINT NOT NULL, retired_ms BIGINT)",
    "CREATE TABLE IF NOT EXISTS ota_keysets (serial INTEGER PRIMARY KEY, doc TEXT NOT NULL, created_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ota_model_notes (version INTEGER NOT NULL, ts BIGINT NOT NULL, note TEXT NOT NULL)",
)
KEYSETS_IN_OFFER = 3  # the last few keysets ride in every offer, so a node that missed one still follows

CAMPAIGN_STATES = ("running", "aborting", "aborted", "completed")


@dataclass
class ModelEntry:
    version: int
    model_id: str
    created_ms: int
    sha256: str
    size: int
    n_inputs: int
    n_outputs: int
    card: dict


@dataclass
class Campaign:
    id: str
    model: int
    target: str
    policy: Policy
    state: str
    stage: int
    reason: str
    devices: list[str]  # rollout order, fixed when the campaign starts
    created_ms: int
    updated_ms: int


def public_from_hex(text: str):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))


class OtaRegistry:
    def __init__(self, path: str | Path) -> None:
        from edgefleet.service.store.url import is_db_url

        if is_db_url(str(path)):  # same SQL through a sqlite3-shaped PostgreSQL connection (store/postgres.py)
            from edgefleet.service.store.postgres import connect_compat

            self.path = str(path)
            self.db = connect_compat(self.path)
            for ddl in AUTH_SCHEMA:
                self.db.execute(ddl)
            return
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.executescript(SCHEMA)
        for ddl in AUTH_SCHEMA:
            self.db.execute(ddl)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ device commands (outbox)
    # The CLI and the dashboard have no MQTT connection: they queue a `cmd` here and the OTA
    # manager (`edgefleet serve`) publishes it on its next step.

    def queue_command(self, device: str, body: dict, note: str = "") -> int:
        row = self.db.execute("INSERT INTO device_commands(device, body, created_ms, note) VALUES (?,?,?,?)"
                              " RETURNING id", (device, json.dumps(body, separators=(",", ":")), now_ms(), note)).fetchone()
        return int(row[0])

    def pending_commands(self, limit: int = 1000) -> list[tuple[int, str, dict]]:
        rows = self.db.execute("SELECT id, device, body FROM device_commands WHERE sent_ms IS NULL ORDER BY id"
                               " LIMIT ?", (limit,)).fetchall()
        return [(i, d, json.loads(b)) for i, d, b in rows]

    def mark_commands_sent(self, ids: list[int]) -> None:
        t = now_ms()
        self.db.executemany("UPDATE device_commands SET sent_ms = ? WHERE id = ?", [(t, i) for i in ids])

    def commands(self, device: str | None = None, limit: int = 100) -> list[dict]:
        sql = "SELECT id, device, body, created_ms, sent_ms, note FROM device_commands"
        rows = self.db.execute(sql + (" WHERE device = ?" if device else "") + " ORDER BY id DESC LIMIT ?",
                               ((device, limit) if device else (limit,))).fetchall()
        return [{"id": i, "device": d, "body": json.loads(b), "created_ms": c, "sent_ms": s, "note": n}
                for i, d, b, c, s, n in rows]

    # ------------------------------------------------------------ models

    def publish(self, artifact_bytes: bytes, manifest_bytes: bytes, card: dict, public_key=None, *,
                trust_new_key: bool = False, allow_downgrade: str | None = None) -> ModelEntry:
        """Register a model after verifying its manifest, hash and self-test. It must be signed by a key
        this fleet trusts to sign models (`keys trust`; the first publish pins its key), and its version
        must not squat a published number with other content, nor be below the newest published
        unless `allow_downgrade` gives the reason (kept in `ota_model_notes`)."""
        try:
            kid = str(json.loads(manifest_mod.split(manifest_bytes)[0]).get("key_id"))
        except (ValueError, AttributeError) as exc:
            raise EdgefleetError("the manifest body is not a JSON object: the folder's manifest.json is damaged; "
                                 "train or import the model again to sign it") from exc
        if public_key is not None and trust_new_key and kid == key_id(public_key):
            self._add_key(public_key, f"key-{kid[:8]}", ROLE_MODEL | ROLE_CAMPAIGN, replace_ok=True)
        self._migrate_pinned_key(public_key)
        if not self.trusted_keys() and public_key is not None and kid == key_id(public_key):
            self._add_key(public_key, "fleet", ROLE_MODEL | ROLE_CAMPAIGN)  # first publish: pin the signer
        trusted = {k["key_id"]: k for k in self.trusted_keys() if k["roles"] & ROLE_MODEL}
        if kid not in trusted and not self.trusted_keys():
            if public_key is not None:
                raise EdgefleetError(f"the manifest's signature is by key {kid}, but --public is key "
                                     f"{key_id(public_key)}: give the public key of the key that signed the model "
                                     "(`edgefleet keys verify FOLDER --public PEM` checks a pair)")
            raise EdgefleetError(f"the manifest's signature is by key {kid} and this fleet trusts no key yet: give "
                                 "that key's public key with --public (the first publish pins it)")
        if kid not in trusted:
            listed = ", ".join(f"{k['key_id']} ({k['name']})" for k in trusted.values()) or "none for models"
            raise EdgefleetError(f"the manifest's signature is by key {kid}, which this fleet does not trust; this fleet "
                                 f"trusts key(s) {listed}. Sign with a trusted key, or trust this one first with "
                                 "`edgefleet keys trust PUBLIC.pem --name NAME --key CURRENT.key`")
        body = manifest_mod.verify(manifest_bytes, public_from_hex(trusted[kid]["public"]), artifact_bytes)
        art = Artifact.from_bytes(artifact_bytes)
        existing = self.db.execute("SELECT sha256 FROM ota_models WHERE version=?", (art.model_version,)).fetchone()
        if existing and existing[0] != body["sha256"]:
            raise EdgefleetError(f"model version {art.model_version} is already published with another artifact "
                                 f"(sha256 {existing[0][:16]}…); a version number names one artifact: train with "
                                 "a higher --version")
        newest = self.db.execute("SELECT max(version) FROM ota_models").fetchone()[0]
        if not existing and newest is not None and art.model_version <= newest:
            if not (allow_downgrade or "").strip():
                raise EdgefleetError(f"model version {art.model_version} is not above the newest published "
                                     f"({newest}): a downgrade; train with --version {newest + 1}, or pass "
                                     "--allow-downgrade REASON (nodes on a newer model still refuse it)")
            self.db.execute("INSERT INTO ota_model_notes VALUES (?,?,?)", (
                art.model_version, now_ms(), f"downgrade below v{newest} allowed: {allow_downgrade.strip()}"[:500]))
        self.db.execute(
            "INSERT INTO ota_models VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (art.model_version, body["model_id"], now_ms(), artifact_bytes, manifest_bytes, body["sha256"],
             len(artifact_bytes), art.n_inputs, art.n_outputs, json.dumps(card)))
        return self.model(art.model_version)

    def model_notes(self, version: int) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT note FROM ota_model_notes WHERE version=? ORDER BY ts",
                                              (version,)).fetchall()]

    # ------------------------------------------------------------ trusted keys (OTA authorization)

    def _migrate_pinned_key(self, public_key) -> None:
        """Registries from before `ota_keys` kept one key id in ota_settings: adopt it once its key is seen."""
        if self.trusted_keys() or public_key is None:
            return
        row = self.db.execute("SELECT value FROM ota_settings WHERE key = 'trusted_key_id'").fetchone()
        if row and row[0] == key_id(public_key):
            self._add_key(public_key, "fleet", ROLE_MODEL | ROLE_CAMPAIGN)
        elif row:
            raise EdgefleetError(f"this fleet trusts key {row[0]}; give its public key with --public to carry it "
                                 "over, or trust keys with `edgefleet keys trust`")

    def _add_key(self, public_key, name: str, roles: int, *, replace_ok: bool = False) -> None:
        kid = key_id(public_key)
        row = self.db.execute("SELECT state FROM ota_keys WHERE key_id=?", (kid,)).fetchone()
        if row and row[0] == "retired":
            raise EdgefleetError(f"key {kid} was retired; a retired key is never trusted again (generate a new one)")
        if row and not replace_ok:
            raise EdgefleetError(f"key {kid} is already trusted")
        if row:
            return
        if self.db.execute("SELECT 1 FROM ota_keys WHERE name=?", (name,)).fetchone():
            raise EdgefleetError(f"a key named {name!r} exists already; pick another --name")
        self.db.execute("INSERT INTO ota_keys (key_id, name, public, roles, state, added_ms) VALUES (?,?,?,?,?,?)",
                        (kid, name, public_raw(public_key).hex(), roles, "trusted", now_ms()))

    def trusted_keys(self, *, all_states: bool = False) -> list[dict]:
        rows = self.db.execute("SELECT key_id, name, public, roles, state, added_ms, retired_ms FROM ota_keys "
                               "ORDER BY added_ms, key_id").fetchall()
        keys_ = [dict(zip(("key_id", "name", "public", "roles", "state", "added_ms", "retired_ms"), r)) for r in rows]
        return keys_ if all_states else [k for k in keys_ if k["state"] == "trusted"]

    def _find_key(self, which: str) -> dict:
        for k in self.trusted_keys(all_states=True):
            if which in (k["name"], k["key_id"]):
                return k
        names = ", ".join(k["name"] for k in self.trusted_keys(all_states=True)) or "none"
        raise EdgefleetError(f"no key named {which!r} (keys: {names}; `edgefleet keys list`)")

    def trust_key(self, public_key, name: str, roles: int, signer) -> int:
        """Trust a new key and sign the keyset the nodes follow with `signer`, a private key this fleet
        trusts to sign models (the nodes check that signature). Returns the keyset serial."""
        self._require_signer(signer)
        self._add_key(public_key, name, roles)
        return self._sign_keyset(signer)

    def retire_key(self, which: str, signer) -> int:
        """Stop trusting a key (publish refuses it; the next keyset drops it from the nodes)."""
        k = self._find_key(which)
        if k["state"] == "retired":
            raise EdgefleetError(f"key {k['name']} ({k['key_id']}) is retired already")
        self._require_signer(signer)
        if key_id(signer.public_key()) == k["key_id"]:
            raise EdgefleetError("sign the retirement with a key that stays trusted (--key), not the retired one")
        left = [x for x in self.trusted_keys() if x["key_id"] != k["key_id"] and x["roles"] & ROLE_MODEL]
        if not left:
            raise EdgefleetError("that would leave no key trusted to sign models; trust the next key first")
        self.db.execute("UPDATE ota_keys SET state='retired', retired_ms=? WHERE key_id=?", (now_ms(), k["key_id"]))
        return self._sign_keyset(signer)

    def _require_signer(self, signer) -> None:
        kid = key_id(signer.public_key())
        if not any(k["key_id"] == kid and k["roles"] & ROLE_MODEL for k in self.trusted_keys()):
            raise EdgefleetError(f"--key {kid} is not a key this fleet trusts to sign models; the nodes would "
                                 "refuse its keyset (`edgefleet keys list`)")

    def _sign_keyset(self, signer) -> int:
        entries = [(public_from_hex(k["public"]), k["roles"]) for k in self.trusted_keys()]
        serial = (self.db.execute("SELECT max(serial) FROM ota_keysets").fetchone()[0] or 0) + 1
        doc = sign_keyset(entries, serial, signer)
        self.db.execute("INSERT INTO ota_keysets VALUES (?,?,?)", (serial, doc.decode(), now_ms()))
        return serial

    def keysets(self, last: int = KEYSETS_IN_OFFER) -> list[bytes]:
        """The newest signed keysets, oldest first (what an offer carries)."""
        rows = self.db.execute("SELECT doc FROM ota_keysets ORDER BY serial DESC LIMIT ?", (last,)).fetchall()
        return [r[0].encode() for r in reversed(rows)]

    def model(self, version: int) -> ModelEntry:
        row = self.db.execute("SELECT version, model_id, created_ms, sha256, size, n_inputs, n_outputs, card "
                              "FROM ota_models WHERE version=?", (version,)).fetchone()
        if row is None:
            raise EdgefleetError(f"model version {version} is not in the registry (edgefleet ota publish MODEL_DIR)")
        return ModelEntry(*row[:7], card=json.loads(row[7]))

    def models(self) -> list[ModelEntry]:
        rows = self.db.execute("SELECT version FROM ota_models ORDER BY version").fetchall()
        return [self.model(r[0]) for r in rows]

    def blobs(self, version: int) -> tuple[bytes, bytes]:
        row = self.db.execute("SELECT artifact, manifest FROM ota_models WHERE version=?", (version,)).fetchone()
        if row is None:
            raise EdgefleetError(f"model version {version} is not in the registry")
        return bytes(row[0]), bytes(row[1])

    # ------------------------------------------------------------ campaigns

    def create_campaign(self, model: int, target: Target, policy: Policy, campaign_id: str | None = None) -> Campaign:
        self.model(model)
        active = self.db.execute("SELECT id, state FROM ota_campaigns WHERE state IN ('running','aborting') "
                                 "ORDER BY created_ms").fetchone()
        if active and active[1] == "aborting":  # the operator already aborted it: the OTA manager finishes it
            raise EdgefleetError(f"campaign {active[0]} is aborting: the OTA manager (`edgefleet serve`) finishes the "
                                 f"abort (clears its offers, rolls back updated devices); start it, or wait for "
                                 f"it, then roll out again")
        if active:
            raise EdgefleetError(f"campaign {active[0]} is still running; abort it (`edgefleet ota abort "
                                 f"{active[0]}`) or wait for it to finish")
        cid = campaign_id or f"c{model}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        t = now_ms()
        self.db.execute("INSERT INTO ota_campaigns (id, model, target, policy, state, created_ms, updated_ms) "
                        "VALUES (?,?,?,?,?,?,?)", (cid, model, str(target), json.dumps(asdict(policy)),
                                                    "running", t, t))
        return self.campaign(cid)

    def campaign(self, cid: str) -> Campaign:
        row = self.db.execute("SELECT id, model, target, policy, state, stage, reason, devices, created_ms, "
                              "updated_ms FROM ota_campaigns WHERE id=?", (cid,)).fetchone()
        if row is None:
            raise EdgefleetError(f"no campaign {cid!r} (edgefleet ota status lists them)")
        return Campaign(row[0], row[1], row[2], Policy(**json.loads(row[3])), row[4], row[5], row[6],
                        json.loads(row[7]), row[8], row[9])

    def campaigns(self, states: tuple[str, ...] | None = None) -> list[Campaign]:
        rows = self.db.execute("SELECT id, state FROM ota_campaigns ORDER BY created_ms").fetchall()
        return [self.campaign(r[0]) for r in rows if states is None or r[1] in states]

    def update_campaign(self, cid: str, **fields) -> None:
        if "devices" in fields:
            fields["devices"] = json.dumps(fields["devices"])
        fields["updated_ms"] = now_ms()
        cols = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE ota_campaigns SET {cols} WHERE id=?", (*fields.values(), cid))

    def abort(self, cid: str, reason: str = "aborted by operator") -> Campaign:
        c = self.campaign(cid)
        if c.state not in ("running",):
            raise EdgefleetError(f"campaign {cid} is {c.state}; only a running campaign can be aborted")
        self.update_campaign(cid, state="aborting", reason=reason)
        return self.campaign(cid)

    # ------------------------------------------------------------ devices

    def set_device_state(self, cid: str, device: str, state: str, reason: str = "", *,
                         offered: bool = False, old_model: int | None = None, ts: int | None = None) -> None:
        t = ts or now_ms()
        self.db.execute(
            "INSERT INTO ota_device_state (campaign, device, state, reason, offered_ms, updated_ms, old_model) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT(campaign, device) DO UPDATE SET state=excluded.state, "
            "reason=excluded.reason, updated_ms=excluded.updated_ms, "
            "offered_ms=COALESCE(excluded.offered_ms, ota_device_state.offered_ms), "
            "old_model=COALESCE(ota_device_state.old_model, excluded.old_model)",
            (cid, device, state, reason, t if offered else None, t, old_model))
        self.db.execute("INSERT INTO ota_history (campaign, device, ts, state, reason) VALUES (?,?,?,?,?)",
                        (cid, device, t, state, reason))

    def add_history(self, cid: str, device: str, state: str, reason: str = "") -> None:
        """A report kept in the device's history only (not part of a campaign's progress)."""
        self.db.execute("INSERT INTO ota_history (campaign, device, ts, state, reason) VALUES (?,?,?,?,?)",
                        (cid, device, now_ms(), state, reason))

    def has_campaign(self, cid: str) -> bool:
        return self.db.execute("SELECT 1 FROM ota_campaigns WHERE id=?", (cid,)).fetchone() is not None

    def device_state(self, cid: str, device: str) -> str | None:
        row = self.db.execute("SELECT state FROM ota_device_state WHERE campaign=? AND device=?",
                              (cid, device)).fetchone()
        return row[0] if row else None

    def offer_counts(self, cid: str) -> dict[str, int]:
        """How many times each device was offered this campaign's model (first offer and retries)."""
        rows = self.db.execute("SELECT device, COUNT(*) FROM ota_history WHERE campaign=? AND state='offered' "
                               "GROUP BY device", (cid,)).fetchall()
        return {r[0]: r[1] for r in rows}

    def device_states(self, cid: str) -> dict[str, dict]:
        rows = self.db.execute("SELECT device, state, reason, offered_ms, updated_ms, old_model "
                               "FROM ota_device_state WHERE campaign=?", (cid,)).fetchall()
        return {r[0]: {"state": r[1], "reason": r[2], "offered_ms": r[3], "updated_ms": r[4], "old_model": r[5]}
                for r in rows}

    def history(self, device: str, limit: int = 100) -> list[dict]:
        rows = self.db.execute("SELECT campaign, ts, state, reason FROM ota_history WHERE device=? "
                               "ORDER BY id DESC LIMIT ?", (device, limit)).fetchall()
        return [{"campaign": r[0], "ts": r[1], "state": r[2], "reason": r[3]} for r in rows]

    def status(self, cid: str | None = None) -> list[dict]:
        """Per campaign: its state and the count of devices per OTA state."""
        out = []
        for c in ([self.campaign(cid)] if cid else self.campaigns()):
            counts: dict[str, int] = {}
            for st in self.device_states(c.id).values():
                counts[st["state"]] = counts.get(st["state"], 0) + 1
            out.append({"campaign": c.id, "model": c.model, "target": c.target, "state": c.state,
                        "stage": c.stage + 1, "stages": [f"{s:.0%}" for s in c.policy.stages],
                        "reason": c.reason, "devices": len(c.devices), "by_state": counts})
        return out
