"""Dashboard accounts and the audit log in the store: tables `users` and `audit`.

- `users` holds local accounts: name, role and a password hash (`edgefleet.service.accounts`
  makes and checks it; the store never sees a password).
- `audit` is append-only: who did what, when, through what, and how it ended. The database
  refuses UPDATE and DELETE on it (SQLite: triggers; PostgreSQL: a trigger on UPDATE, DELETE and
  TRUNCATE), so a bug or a hand-written statement in the service cannot rewrite history. Someone
  with the file or the database owner's rights can still drop the triggers: the log is a record
  for operators, not a tamper-proof ledger.

`AccountTables` is mixed into SQLiteStore and PostgresStore (their `_tx`, `_q`, `_notify_sql`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edgefleet.errors import EdgefleetError

APPEND_ONLY = "the audit log is append-only"

ACCOUNTS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS users(
  name TEXT PRIMARY KEY, role TEXT NOT NULL, pw_hash TEXT NOT NULL,
  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit(
  id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, who TEXT NOT NULL, via TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '{{}}',
  outcome TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END;
"""

# The same on PostgreSQL (store/postgres.py, its migration 4).
ACCOUNTS_SCHEMA_PG = [
    "CREATE TABLE users(name TEXT PRIMARY KEY, role TEXT NOT NULL, pw_hash TEXT NOT NULL,"
    " created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL)",
    "CREATE TABLE audit(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ts BIGINT NOT NULL, who TEXT NOT NULL,"
    " via TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '{}',"
    " outcome TEXT NOT NULL)",
    "CREATE INDEX audit_ts ON audit(ts)",
    "CREATE FUNCTION edgefleet_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    f" $$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$",
    "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit FOR EACH ROW"
    " EXECUTE FUNCTION edgefleet_audit_append_only()",
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT"
    " EXECUTE FUNCTION edgefleet_audit_append_only()",
]


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    pw_hash: str
    created_ms: int
    updated_ms: int  # the last password or role change: sessions signed in before it end


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: int
    who: str
    via: str  # cli, dashboard, dashboard (sign-in disabled), oidc
    action: str  # e.g. alarm.ack, campaign.start, user.add
    target: str
    detail: dict
    outcome: str  # ok, denied: ..., failed: ...

    def as_dict(self) -> dict:
        return {"id": self.id, "ts": self.ts, "who": self.who, "via": self.via, "action": self.action,
                "target": self.target, "detail": self.detail, "outcome": self.outcome}


_USER_COLS = "name, role, pw_hash, created_ms, updated_ms"
_AUDIT_COLS = "id, ts, who, via, action, target, detail, outcome"


def _audit(row: tuple) -> AuditEntry:
    try:
        detail = json.loads(row[6])
    except ValueError:
        detail = {"raw": row[6]}
    return AuditEntry(int(row[0]), int(row[1]), row[2], row[3], row[4], row[5], detail, row[7])


class AccountTables:
    """Store methods of `users` and `audit`, in SQL both SQLite and PostgreSQL run."""

    @staticmethod
    def _notify_sql(sql: str) -> str:
        return sql

    # ---------- users ----------

    def user(self, name: str) -> UserRow | None:
        rows = self._q(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (name,))
        return UserRow(*rows[0]) if rows else None

    def users(self) -> list[UserRow]:
        return [UserRow(*r) for r in self._q(f"SELECT {_USER_COLS} FROM users ORDER BY name")]

    def add_user(self, name: str, role: str, pw_hash: str, ts: int) -> UserRow:
        """A new account; EdgefleetError when the name is taken."""
        q = self._notify_sql
        with self._tx() as db:
            if db.execute(q("SELECT 1 FROM users WHERE name = ?"), (name,)).fetchone():
                raise EdgefleetError(f"user {name!r} exists already (change its password with `edgefleet users "
                                     f"passwd {name}`, or remove it first)")
            db.execute(q(f"INSERT INTO users({_USER_COLS}) VALUES (?,?,?,?,?)"), (name, role, pw_hash, ts, ts))
        return UserRow(name, role, pw_hash, ts, ts)

    def set_user_password(self, name: str, pw_hash: str, ts: int) -> bool:
        """Replace an account's password hash (its open sessions end); False when there is no such user."""
        with self._tx() as db:
            return db.execute(self._notify_sql("UPDATE users SET pw_hash = ?, updated_ms = ? WHERE name = ?"),
                              (pw_hash, ts, name)).rowcount > 0

    def remove_user(self, name: str) -> bool:
        with self._tx() as db:
            return db.execute(self._notify_sql("DELETE FROM users WHERE name = ?"), (name,)).rowcount > 0

    # ---------- audit ----------

    def append_audit(self, ts: int, who: str, via: str, action: str, target: str, detail: dict,
                     outcome: str) -> int:
        """Append one audit row; its id."""
        body = json.dumps(detail, sort_keys=True, default=str)
        with self._tx() as db:
            (aid,) = db.execute(self._notify_sql("INSERT INTO audit(ts, who, via, action, target, detail, outcome)"
                                                 " VALUES (?,?,?,?,?,?,?) RETURNING id"),
                                (ts, who, via, action, target, body, outcome)).fetchone()
        return int(aid)

    def audit(self, since_ms: int | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Audit rows, newest first (at most `limit`), at or after `since_ms`."""
        sql, args = f"SELECT {_AUDIT_COLS} FROM audit", []
        if since_ms is not None:
            sql, args = sql + " WHERE ts >= ?", [since_ms]
        return [_audit(r) for r in self._q(sql + " ORDER BY id DESC LIMIT ?", (*args, int(limit)))]


__all__ = ["ACCOUNTS_SCHEMA", "ACCOUNTS_SCHEMA_PG", "APPEND_ONLY", "AccountTables", "AuditEntry", "UserRow"]
