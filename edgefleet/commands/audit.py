"""`edgefleet audit`: the audit log (who did what, when, through what, how it ended), oldest first."""

from __future__ import annotations

import argparse
import json

from edgefleet.commands.fleet_db import db_arg, db_label, require_db
from edgefleet.commands.helptext import Formatter


def register(sub: argparse._SubParsersAction) -> None:
    from edgefleet.service.config import default_db

    p = sub.add_parser("audit", help="print the audit log of writes (acknowledge, campaigns, commission, users)",
                       description="Every write made through the dashboard or the CLI commands that record one "
                                   "(acknowledge, shelve, campaign start/abort, commission, users), allowed or "
                                   "refused, with who, when, through what and the outcome. The log is append-only "
                                   "in the fleet database.",
                       epilog="examples:\n  edgefleet audit --since 8h\n  edgefleet audit --since 2026-12-01 --json",
                       formatter_class=Formatter)
    p.add_argument("--since", help="a span back from now (30m, 8h, 7d) or a UTC date/time (2026-12-06T14:00)")
    p.add_argument("--limit", type=int, default=1000, help="at most this many newest rows (default 1000)")
    p.add_argument("--json", action="store_true", help="one JSON array on stdout (times in ms since the epoch)")
    p.add_argument("--db", type=db_arg, default=db_arg(default_db()),
                   help=f"fleet database: a SQLite file or a postgresql:// URL (default $EDGEFLEET_DB or "
                        f"{db_label(default_db())})")
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from edgefleet.clock import now_ms
    from edgefleet.errors import EdgefleetError
    from edgefleet.service import audit
    from edgefleet.service.store import open_store

    if args.limit < 1:
        raise EdgefleetError(f"--limit {args.limit}: give 1 or more")
    since = audit.parse_since(args.since, now_ms()) if args.since else None
    store = open_store(str(require_db(args.db)))
    try:
        entries = store.audit(since, args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps([e.as_dict() for e in sorted(entries, key=lambda e: e.id)]))
        return 0
    if not entries:
        print("no audit entries" + (f" since {audit.iso(since)} UTC" if since is not None else ""))
        return 0
    for r in audit.rows(entries):
        print(f"{r['time']}  {r['who']} ({r['via']})  {r['action']} {r['target']}  -> {r['outcome']}"
              + (f"  [{r['detail']}]" if r["detail"] else ""))
    return 0
