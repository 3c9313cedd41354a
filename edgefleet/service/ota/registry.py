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
from edgefleet.runtime.keys import key_id
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


class OtaRegistry:
    def __init__(self, path: str | Path) -> None:
        from edgefleet.service.store.url import is_db_url

        if is_db_url(str(path)):  # same SQL through a sqlite3-shaped PostgreSQL connection (store/postgres.py)
            from edgefleet.service.store.postgres import connect_compat

            self.path = str(path)
            self.db = connect_compat(self.path)
            return
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.executescript(SCHEMA)

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

    def publish(self, artifact_bytes: bytes, manifest_bytes: bytes, card: dict, public_key, *,
                trust_new_key: bool = False) -> ModelEntry:
        """Register a model after verifying its manifest, hash and self-test, signed by the key this
        fleet trusts (the first publish fixes it; `trust_new_key` rotates it), with a version above
        every published one (no downgrade, no squatting on an old number)."""
        body = manifest_mod.verify(manifest_bytes, public_key, artifact_bytes)
        art = Artifact.from_bytes(artifact_bytes)
        kid = key_id(public_key)
        trusted = self.db.execute("SELECT value FROM ota_settings WHERE key = 'trusted_key_id'").fetchone()
        if trusted and trusted[0] != kid and not trust_new_key:
            raise EdgefleetError(f"the manifest is signed by key {kid}, this fleet trusts key {trusted[0]} "
                                 "(its nodes would refuse it); sign with the fleet's key, or rotate with "
                                 "--trust-new-key after giving the nodes the new public key")
        existing = self.db.execute("SELECT sha256 FROM ota_models WHERE version=?", (art.model_version,)).fetchone()
        if existing and existing[0] != body["sha256"]:
            raise EdgefleetError(f"model version {art.model_version} is already registered with other "
                                 "content; train with a higher --version")
        newest = self.db.execute("SELECT max(version) FROM ota_models").fetchone()[0]
        if not existing and newest is not None and art.model_version <= newest:
            raise EdgefleetError(f"model version {art.model_version} is not above the newest published "
                                 f"({newest}): nodes refuse downgrades; train with --version {newest + 1}")
        self.db.execute("INSERT INTO ota_settings VALUES ('trusted_key_id', ?) ON CONFLICT(key) DO UPDATE "
                        "SET value = excluded.value", (kid,))
        self.db.execute(
            "INSERT INTO ota_models VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (art.model_version, body["model_id"], now_ms(), artifact_bytes, manifest_bytes, body["sha256"],
             len(artifact_bytes), art.n_inputs, art.n_outputs, json.dumps(card)))
        return self.model(art.model_version)

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
        active = self.db.execute("SELECT id FROM ota_campaigns WHERE state IN ('running','aborting')").fetchone()
        if active:
            raise EdgefleetError(f"campaign {active[0]} is still running; abort it or wait for it to finish")
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
