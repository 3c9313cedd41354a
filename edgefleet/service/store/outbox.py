"""Alarm notifications in the store: the alarm journal, shelves and the notification outbox.

- `alarm_events` is a journal of alarm changes (health: raised, reopened, severity, cleared;
  data-loss: raised, cleared), written by `journal()` in the same transaction as the change
  itself: a change that is committed has its event, so a notifier that was down catches up.
- `alarm_shelves` records who shelved an alarm, when, until when and why (and who ended it).
- `notify_outbox` holds one row per (event, route, channel), keyed so it is written once; the
  notifier delivers due rows and records each attempt (docs/notifications.md).

SQLite only (the `?` placeholders); `SQLiteStore` mixes `NotifyTables` in.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from edgefleet.errors import EdgefleetError

NOTIFY_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_events(
  id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, alarm_id INTEGER NOT NULL,
  device TEXT NOT NULL, event TEXT NOT NULL, severity TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS alarm_shelves(
  id INTEGER PRIMARY KEY, kind TEXT NOT NULL, alarm_id INTEGER NOT NULL, by TEXT NOT NULL, ts INTEGER NOT NULL,
  until_ts INTEGER NOT NULL, reason TEXT NOT NULL, ended_ts INTEGER, ended_by TEXT);
CREATE INDEX IF NOT EXISTS alarm_shelves_alarm ON alarm_shelves(kind, alarm_id);
CREATE TABLE IF NOT EXISTS notify_outbox(
  id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, event_id INTEGER, kind TEXT NOT NULL, alarm_id INTEGER NOT NULL,
  device TEXT NOT NULL, event TEXT NOT NULL, route TEXT NOT NULL, channel TEXT NOT NULL, state TEXT NOT NULL,
  created_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '', sent_ms INTEGER, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS notify_outbox_due ON notify_outbox(due_ms) WHERE state IN ('pending', 'held');
CREATE INDEX IF NOT EXISTS notify_outbox_alarm ON notify_outbox(kind, alarm_id, route, channel);
"""

ALARM_KINDS = ("health", "data-loss")
# pending/held: to be sent (held: a flapping alarm's reopen, kept until its quiet period ends);
# sent; failed: gave up; not sent because: shelved, acknowledged (escalations), folded (a reopen
# and the clear after it, both within the quiet period: the operator's last word still holds)
OUTBOX_STATES = ("pending", "held", "sent", "failed", "shelved", "acknowledged", "folded")


@dataclass(frozen=True)
class AlarmEvent:
    id: int
    ts: int
    kind: str  # ALARM_KINDS
    alarm_id: int
    device: str
    event: str  # raised, reopened, severity, cleared
    severity: str
    detail: dict


@dataclass(frozen=True)
class Shelf:
    id: int
    kind: str
    alarm_id: int
    by: str
    ts: int
    until_ts: int
    reason: str
    ended_ts: int | None
    ended_by: str | None

    def active(self, now_ms: int) -> bool:
        return self.ended_ts is None and self.until_ts > now_ms

    @property
    def end_ts(self) -> int:
        """When the shelf ended or ends."""
        return self.until_ts if self.ended_ts is None else min(self.until_ts, self.ended_ts)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    key: str
    event_id: int | None
    kind: str
    alarm_id: int
    device: str
    event: str
    route: str
    channel: str
    state: str
    created_ms: int
    due_ms: int
    attempts: int
    last_error: str
    sent_ms: int | None
    body: str


_OUTBOX_COLS = ("id, key, event_id, kind, alarm_id, device, event, route, channel, state, created_ms, due_ms,"
                " attempts, last_error, sent_ms, body")
_SHELF_COLS = "id, kind, alarm_id, by, ts, until_ts, reason, ended_ts, ended_by"


def journal(db: sqlite3.Connection, ts: int, kind: str, alarm_id: int, device: str, event: str,
            severity: str = "", **detail: object) -> None:
    """Record one alarm event, inside the caller's transaction."""
    db.execute("INSERT INTO alarm_events(ts, kind, alarm_id, device, event, severity, detail) VALUES (?,?,?,?,?,?,?)",
               (ts, kind, alarm_id, device, event, severity, json.dumps(detail, separators=(",", ":"))))


class NotifyTables:
    """Store methods of the journal, shelves and outbox (mixed into SQLiteStore: uses its _tx and _q)."""

    # ---------- journal ----------

    def alarm_events(self, after_id: int = 0, limit: int = 500) -> list[AlarmEvent]:
        rows = self._q("SELECT id, ts, kind, alarm_id, device, event, severity, detail FROM alarm_events"
                       " WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        return [AlarmEvent(*r[:7], json.loads(r[7])) for r in rows]

    def last_alarm_event_id(self) -> int:
        return self._q("SELECT coalesce(max(id), 0) FROM alarm_events")[0][0]

    def notify_cursor(self) -> int | None:
        """The last journal event the notifier has routed (None: it never ran on this store)."""
        rows = self._q("SELECT value FROM settings WHERE key = 'notify_cursor'")
        return int(rows[0][0]) if rows else None

    def loss_alarm(self, alarm_id: int) -> dict | None:
        rows = self._q("SELECT l.id, l.device, l.raised_ts, l.cleared_ts, l.missing, l.rate, d.site, d.line"
                       " FROM loss_alarms l LEFT JOIN devices d ON d.device = l.device WHERE l.id = ?", (alarm_id,))
        if not rows:
            return None
        i, dev, r, c, m, rate, site, line = rows[0]
        return {"id": i, "device": dev, "raised_ts": r, "cleared_ts": c, "missing": m, "rate": rate,
                "site": site, "line": line}

    def alarm_by_id(self, alarm_id: int):
        """The health alarm with this id (store.base.Alarm), or None."""
        rows = self._q("SELECT a.id, a.device, d.site, d.line, a.raised_ts, a.cleared_ts, a.severity, a.score,"
                       " a.peak_score, a.thr, a.acked_ts, a.acked_by, a.note, a.reopened FROM alarms a"
                       " LEFT JOIN devices d ON d.device = a.device WHERE a.id = ?", (alarm_id,))
        if not rows:
            return None
        from edgefleet.service.store.base import Alarm

        return Alarm(*rows[0])

    # ---------- shelves ----------

    def shelve_alarm(self, kind: str, alarm_id: int, *, by: str, reason: str, ts: int, until_ts: int) -> Shelf:
        """Shelve an active alarm until `until_ts` (a shelf already on it ends now). EdgefleetError
        (one line) when the alarm is unknown or cleared."""
        table = {"health": "alarms", "data-loss": "loss_alarms"}.get(kind)
        if table is None:
            raise EdgefleetError(f"unknown alarm kind {kind!r} (one of {', '.join(ALARM_KINDS)})")
        with self._tx() as db:
            row = db.execute(f"SELECT cleared_ts FROM {table} WHERE id = ?", (alarm_id,)).fetchone()
            if row is None:
                raise EdgefleetError(f"no {kind} alarm with id {alarm_id}")
            if row[0] is not None:
                raise EdgefleetError(f"{kind} alarm {alarm_id} is cleared already: nothing to shelve")
            db.execute("UPDATE alarm_shelves SET ended_ts = ?, ended_by = ? WHERE kind = ? AND alarm_id = ?"
                       " AND ended_ts IS NULL AND until_ts > ?", (ts, by, kind, alarm_id, ts))
            cur = db.execute("INSERT INTO alarm_shelves(kind, alarm_id, by, ts, until_ts, reason) VALUES (?,?,?,?,?,?)",
                             (kind, alarm_id, by, ts, until_ts, reason))
            return Shelf(cur.lastrowid, kind, alarm_id, by, ts, until_ts, reason, None, None)

    def unshelve_alarm(self, kind: str, alarm_id: int, *, by: str, ts: int) -> bool:
        """End the alarm's shelf now; False when it was not shelved."""
        with self._tx() as db:
            return db.execute("UPDATE alarm_shelves SET ended_ts = ?, ended_by = ? WHERE kind = ? AND alarm_id = ?"
                              " AND ended_ts IS NULL AND until_ts > ?", (ts, by, kind, alarm_id, ts)).rowcount > 0

    def shelves(self, *, kind: str | None = None, alarm_id: int | None = None, active_at: int | None = None,
                limit: int = 500) -> list[Shelf]:
        """Shelf records, newest first; with `active_at`, only those in force then."""
        where, args = [], []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if alarm_id is not None:
            where.append("alarm_id = ?")
            args.append(alarm_id)
        if active_at is not None:
            where.append("ended_ts IS NULL AND until_ts > ? AND ts <= ?")
            args += [active_at, active_at]
        sql = f"SELECT {_SHELF_COLS} FROM alarm_shelves" + (" WHERE " + " AND ".join(where) if where else "")
        return [Shelf(*r) for r in self._q(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))]

    # ---------- outbox ----------

    def route_events(self, cursor: int | None, rows: list[tuple]) -> int:
        """Add outbox rows (key, event_id, kind, alarm_id, device, event, route, channel, state, created_ms,
        due_ms, body), each once by key, and move the notifier's cursor to `cursor` (None: leave it), in
        one commit. Returns the rows added."""
        with self._tx() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO notify_outbox(key, event_id, kind, alarm_id, device, event, route,"
                           " channel, state, created_ms, due_ms, body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            added = db.total_changes - before
            if cursor is not None:
                db.execute("INSERT INTO settings VALUES ('notify_cursor', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           (str(cursor),))
        return added

    def outbox_last(self, kind: str, alarm_id: int, route: str, channel: str,
                    events: tuple[str, ...] | None = None, states: tuple[str, ...] | None = None) -> OutboxRow | None:
        """The newest outbox row of this alarm on this route and channel (optionally of these events/states)."""
        sql = f"SELECT {_OUTBOX_COLS} FROM notify_outbox WHERE kind = ? AND alarm_id = ? AND route = ? AND channel = ?"
        args: list = [kind, alarm_id, route, channel]
        for col, values in (("event", events), ("state", states)):
            if values:
                sql += f" AND {col} IN ({','.join('?' * len(values))})"
                args += list(values)
        rows = self._q(sql + " ORDER BY id DESC LIMIT 1", args)
        return OutboxRow(*rows[0]) if rows else None

    def outbox_set_state(self, row_id: int, state: str, *, ts: int | None = None, error: str | None = None,
                         due_ms: int | None = None, attempt: bool = False) -> None:
        sets, args = ["state = ?"], [state]
        if state == "sent":
            sets.append("sent_ms = ?")
            args.append(ts)
        if error is not None:
            sets.append("last_error = ?")
            args.append(error[:500])
        if due_ms is not None:
            sets.append("due_ms = ?")
            args.append(due_ms)
        if attempt:
            sets.append("attempts = attempts + 1")
        with self._tx() as db:
            db.execute(f"UPDATE notify_outbox SET {', '.join(sets)} WHERE id = ?", (*args, row_id))

    def outbox_due(self, now_ms: int, limit: int = 200, skip_channels: tuple[str, ...] = ()) -> list[OutboxRow]:
        """Rows to send now (pending or held, due), oldest first, except those of `skip_channels`."""
        skip = f" AND channel NOT IN ({','.join('?' * len(skip_channels))})" if skip_channels else ""
        return [OutboxRow(*r) for r in self._q(
            f"SELECT {_OUTBOX_COLS} FROM notify_outbox WHERE state IN ('pending', 'held') AND due_ms <= ?{skip}"
            " ORDER BY id LIMIT ?", (now_ms, *skip_channels, limit))]

    def outbox(self, *, state: str | None = None, kind: str | None = None, alarm_id: int | None = None,
               limit: int = 200) -> list[OutboxRow]:
        """Outbox rows, newest first (the delivery log)."""
        where, args = [], []
        for col, v in (("state", state), ("kind", kind), ("alarm_id", alarm_id)):
            if v is not None:
                where.append(f"{col} = ?")
                args.append(v)
        sql = f"SELECT {_OUTBOX_COLS} FROM notify_outbox" + (" WHERE " + " AND ".join(where) if where else "")
        return [OutboxRow(*r) for r in self._q(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))]

    def outbox_counts(self) -> dict[str, int]:
        return dict(self._q("SELECT state, count(*) FROM notify_outbox GROUP BY state ORDER BY state"))

    def prune_notifications(self, before_ms: int) -> int:
        """Delete finished outbox rows and routed journal events older than `before_ms`."""
        cursor = self.notify_cursor() or 0
        with self._tx() as db:
            n = db.execute("DELETE FROM notify_outbox WHERE created_ms < ? AND state NOT IN ('pending', 'held')",
                           (before_ms,)).rowcount
            n += db.execute("DELETE FROM alarm_events WHERE ts < ? AND id <= ?", (before_ms, cursor)).rowcount
        return n


__all__ = ["ALARM_KINDS", "NOTIFY_SCHEMA", "OUTBOX_STATES", "AlarmEvent", "NotifyTables", "OutboxRow", "Shelf",
           "journal"]
