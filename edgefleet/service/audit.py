"""The audit log: every write checked against the actor's role and recorded with who, when, what and how
it ended, by the function that performs it (dashboard and CLI alike).

`perform` is the one gate: it refuses a write the role does not allow (and records the refusal),
runs it, and records `ok`, `no change` or `failed: <reason>`. The rows live in the store's
append-only `audit` table (store/accounts.py).
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from edgefleet.clock import now_ms
from edgefleet.errors import EdgefleetError
from edgefleet.service.accounts import AccessDenied, permits, required_role
from edgefleet.service.store.accounts import AuditEntry

T = TypeVar("T")

VIA_CLI = "cli"
VIA_DASHBOARD = "dashboard"
VIA_OIDC = "dashboard (oidc)"
VIA_NO_AUTH = "dashboard (sign-in disabled)"
ACTION_WORDS = {  # for refusals: "... may not acknowledge alarms"
    "alarm.ack": "acknowledge alarms", "alarm.shelve": "shelve alarms", "alarm.unshelve": "unshelve alarms",
    "campaign.start": "start OTA campaigns", "campaign.abort": "abort OTA campaigns",
    "commission": "commission devices", "machine.class": "set machine classes",
    "machine.bearing": "set bearing geometry", "user.add": "add users", "user.remove": "remove users",
    "user.passwd": "change passwords",
}


@dataclass(frozen=True)
class Actor:
    """Who performs a write: a name from a sign-in (or the OS user for the CLI), a role, and through what."""
    name: str
    role: str | None  # None: nobody signed in
    via: str


def cli_actor() -> Actor:
    """The CLI acts as the OS user who runs it, with every right: whoever can run it can open the database."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container with a bare uid)
        name = f"uid {os.getuid()}"
    return Actor(name, "admin", VIA_CLI)


def refusal(actor: Actor, action: str) -> str:
    what = ACTION_WORDS.get(action, action)
    if actor.role is None:
        return f"refused: sign in to {what}"
    article = "an" if actor.role[0] in "aeiou" else "a"
    return (f"refused: {actor.name} is {article} {actor.role} and may not {what} (needs the {required_role(action)}"
            " role)")


def record(store: Any, actor: Actor, action: str, target: str, detail: dict, outcome: str) -> int:
    """Append one audit row now."""
    return store.append_audit(now_ms(), actor.name, actor.via, action, target, detail, outcome)


def perform(store: Any, actor: Actor, action: str, target: str, detail: dict, write: Callable[[], T]) -> T:
    """Check the actor's role for `action`, run `write`, record the outcome; returns what `write` returns.
    A refusal is recorded and raised as AccessDenied; an EdgefleetError from the write is recorded as
    `failed: ...` and raised again. A write that returns False is recorded as `no change`."""
    if not permits(actor.role, action):
        msg = refusal(actor, action)
        record(store, actor, action, target, detail, "denied")
        raise AccessDenied(msg)
    try:
        result = write()
    except EdgefleetError as exc:
        record(store, actor, action, target, detail, f"failed: {exc}")
        raise
    record(store, actor, action, target, detail, "no change" if result is False else "ok")
    return result


def cli_write(db: Any, action: str, target: str, detail: dict, write: Callable[[], T]) -> T:
    """Run a CLI write and record it (as the OS user) in the audit log of the fleet database `db`."""
    from edgefleet.service.store import open_store

    store = open_store(str(db))
    try:
        return perform(store, cli_actor(), action, target, detail, write)
    finally:
        store.close()


def recorded(action: str, target: Callable[[Any], str], command: Callable[[Any], int]) -> Callable[[Any], int]:
    """A CLI command (args -> exit code) that records itself in the audit log of the fleet database
    ($EDGEFLEET_DB, else var/edgefleet.db) when there is one: for commands that work on files (keys, pki,
    device accounts) and take no --db. Without a database it runs and says, on stderr, that nothing was recorded."""
    def run(args: Any) -> int:
        from edgefleet.service.config import default_db
        from edgefleet.service.store.url import is_db_url, mask_url

        db = default_db()
        if is_db_url(db) or Path(db).is_file():
            return cli_write(db, action, target(args), {}, lambda: command(args))
        code = command(args)
        print(f"(not in an audit log: no fleet database at {mask_url(db)}; set EDGEFLEET_DB to record "
              f"{action} there)", file=sys.stderr)
        return code
    return run


# ---------- reading (the CLI and the dashboard) ----------

def parse_since(text: str, now: int) -> int:
    """`--since`: a span back from now (30m, 8h, 7d) or an ISO date/time (UTC when it names no zone); ms."""
    t = text.strip()
    units = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    if t[-1:] in units and t[:-1].replace(".", "", 1).isdigit():
        return now - int(float(t[:-1]) * units[t[-1]])
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise EdgefleetError(f"--since {text!r}: a span (30m, 8h, 7d) or a date/time (2026-12-06 or "
                             "2026-12-06T14:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def rows(entries: list[AuditEntry]) -> list[dict]:
    """Entries as flat rows (time as UTC text, detail as compact key=value), oldest first."""
    out = []
    for e in sorted(entries, key=lambda e: e.id):
        detail = ", ".join(f"{k}={v}" for k, v in sorted(e.detail.items()))
        out.append({"id": e.id, "time": iso(e.ts), "who": e.who, "via": e.via, "action": e.action,
                    "target": e.target, "outcome": e.outcome, "detail": detail})
    return out
