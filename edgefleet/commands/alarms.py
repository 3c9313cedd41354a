"""`edgefleet alarms` (list, shelve, unshelve) and `edgefleet notify` (check, test, log).

Shelving is recorded in the fleet database (who, when, until when, why); `edgefleet serve`'s
notifier sends nothing for a shelved alarm and does not escalate it until the shelf ends
(docs/notifications.md).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from edgefleet.commands.fleet_db import db_arg, db_label, require_db
from edgefleet.commands.helptext import Formatter, examples
from edgefleet.errors import EdgefleetError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SHELVE_S = 30 * 86400


def parse_duration(text: str) -> float:
    """'4h', '30m', '1h30m', '2d', '90s' -> seconds (EdgefleetError otherwise)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise EdgefleetError(f"duration {text!r}: expected a number and a unit s, m, h or d, e.g. 4h, 30m, 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 < seconds <= MAX_SHELVE_S:
        raise EdgefleetError(f"duration {text!r}: must be more than 0 and at most 30 days")
    return seconds


def parse_alarm_id(text: str) -> tuple[str, int]:
    """'12' (a health alarm) or 'loss-3' (a data-loss alarm) -> (kind, id)."""
    m = re.fullmatch(r"(loss-)?(\d+)", text.strip())
    if not m:
        raise EdgefleetError(f"alarm id {text!r}: expected a number (health alarm) or loss-N (data-loss alarm)")
    return ("data-loss" if m.group(1) else "health"), int(m.group(2))


def _utc(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _db_arg(p: argparse.ArgumentParser) -> None:
    from edgefleet.service.config import default_db

    p.add_argument("--db", type=db_arg, default=db_arg(default_db()),
                   help=f"fleet database: a SQLite file or a postgresql:// URL (default $EDGEFLEET_DB or "
                        f"{db_label(default_db())})")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alarms", help="list alarms; shelve (snooze) or unshelve one",
                       description="Alarms in the fleet database. A shelved alarm stays active and visible "
                       "(marked shelved) but sends no notification and no escalation until its shelf ends.",
                       epilog="examples:\n  edgefleet alarms list\n"
                              "  edgefleet alarms shelve 12 --for 4h --reason 'bearing ordered, run to Friday' --by ana\n"
                              "  edgefleet alarms shelve loss-3 --for 1d --reason 'network work on line 2' --by ops\n"
                              "  edgefleet alarms unshelve 12 --by ana",
                       formatter_class=Formatter)
    asub = p.add_subparsers(dest="alarms_cmd", metavar="ACTION", required=True)
    q = asub.add_parser("list", help="active alarms (health and data-loss), with their shelves",
                        description="Lists the active alarms, health (id N) and data-loss (id loss-N), "
                        "with their device, severity, when they were raised, who acknowledged them, and their shelf.",
                        epilog=examples("edgefleet alarms list", "edgefleet alarms list --all --json"),
                        formatter_class=Formatter)
    q.add_argument("--all", action="store_true", help="cleared ones too (newest 100)")
    q.add_argument("--json", action="store_true", help="one JSON list of alarms on stdout")
    _db_arg(q)
    q.set_defaults(func=cmd_list)
    q = asub.add_parser("shelve", help="shelve an active alarm for a while, with a reason",
                        description="Shelves an active alarm: it stays active and visible (marked shelved) but "
                        "sends no notification and no escalation until the shelf ends. Who, why and until "
                        "when are kept with it.",
                        epilog=examples("edgefleet alarms shelve 12 --for 4h --reason 'bearing ordered' --by ana",
                                        "edgefleet alarms shelve loss-3 --for 1d --reason 'network work on line 2' --by ops"),
                        formatter_class=Formatter)
    q.add_argument("alarm", help="alarm id: N for a health alarm, loss-N for a data-loss alarm")
    q.add_argument("--for", dest="duration", required=True, metavar="DURATION", help="e.g. 30m, 4h, 1d (at most 30d)")
    q.add_argument("--reason", required=True, help="why (kept with the shelf)")
    q.add_argument("--by", required=True, metavar="NAME", help="who shelves it")
    _db_arg(q)
    q.set_defaults(func=cmd_shelve)
    q = asub.add_parser("unshelve", help="end an alarm's shelf now",
                        description="Ends an alarm's shelf now: its notifications and escalation resume.",
                        epilog=examples("edgefleet alarms unshelve 12 --by ana"),
                        formatter_class=Formatter)
    q.add_argument("alarm", help="alarm id: N for a health alarm, loss-N for a data-loss alarm")
    q.add_argument("--by", required=True, metavar="NAME", help="who ends the shelf")
    _db_arg(q)
    q.set_defaults(func=cmd_unshelve)

    p = sub.add_parser("notify", help="alarm notifications: check a config, send a test, show the delivery log",
                       description="Alarm notifications go from `edgefleet serve` to webhooks and e-mail, by the "
                       "routes of a TOML config (--notify-config; docs/notifications.md).",
                       epilog="examples:\n  edgefleet notify check plant-notify.toml\n"
                              "  edgefleet notify test plant-notify.toml oncall\n  edgefleet notify log --db var/edgefleet.db",
                       formatter_class=Formatter)
    nsub = p.add_subparsers(dest="notify_cmd", metavar="ACTION", required=True)
    q = nsub.add_parser("check", help="read and check a config as `serve` does; list channels and routes",
                        description="Reads a notification config as `edgefleet serve --notify-config` does and "
                        "lists its channels and routes, or says what is wrong with it. Sends nothing.",
                        epilog=examples("edgefleet notify check plant-notify.toml"),
                        formatter_class=Formatter)
    q.add_argument("config", type=Path, help="the notification config (TOML; docs/notifications.md)")
    q.set_defaults(func=cmd_check)
    q = nsub.add_parser("test", help="send a test notification to every channel of one route, now",
                        description="Sends a test notification to every channel of one route of the config, "
                        "now, and says for each whether it was delivered.",
                        epilog=examples("edgefleet notify test plant-notify.toml oncall"),
                        formatter_class=Formatter)
    q.add_argument("config", type=Path, help="the notification config (TOML; docs/notifications.md)")
    q.add_argument("route", help="the name of a route in the config")
    q.set_defaults(func=cmd_test)
    q = nsub.add_parser("log", help="the delivery log: notifications by state, the newest ones",
                        description="The notifier's outbox in the fleet database: how many notifications are in "
                        "each state (pending, held, sent, failed and others), then the newest ones with their alarm and device.",
                        epilog=examples("edgefleet notify log", "edgefleet notify log -n 100 --db var/edgefleet.db"),
                        formatter_class=Formatter)
    q.add_argument("-n", type=int, default=20, help="rows to show (default 20)")
    q.add_argument("--json", action="store_true", help="one JSON object (by_state, newest) on stdout")
    _db_arg(q)
    q.set_defaults(func=cmd_log)


def _open(db):
    from edgefleet.service.store import open_store

    store = open_store(str(require_db(db)))
    if not hasattr(store, "shelve_alarm"):
        store.close()
        raise EdgefleetError(f"{db_label(db)}: this store has no alarm shelves")
    return store


def cmd_list(args: argparse.Namespace) -> int:
    store = _open(args.db)
    try:
        now = int(time.time() * 1000)
        shelved = {(s.kind, s.alarm_id): s for s in reversed(store.shelves(active_at=now))}
        rows = []
        for a in store.alarms(active=None if args.all else True, limit=100):
            s = shelved.get(("health", a.id))
            rows.append({"id": str(a.id), "kind": "health", "device": a.device, "site": a.site, "severity": a.severity,
                         "raised": _utc(a.raised_ts), "cleared": _utc(a.cleared_ts), "acked_by": a.acked_by,
                         "reopened": a.reopened, "shelved_until": _utc(s.until_ts) if s else None,
                         "shelved_by": s.by if s else None, "shelve_reason": s.reason if s else None})
        for a in store.loss_alarms(None if args.all else True)[:100]:
            s = shelved.get(("data-loss", a["id"]))
            rows.append({"id": f"loss-{a['id']}", "kind": "data-loss", "device": a["device"], "site": None,
                         "severity": "", "raised": _utc(a["raised_ts"]), "cleared": _utc(a["cleared_ts"]),
                         "acked_by": None, "reopened": 0, "shelved_until": _utc(s.until_ts) if s else None,
                         "shelved_by": s.by if s else None, "shelve_reason": s.reason if s else None})
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no active alarms" if not args.all else "no alarms")
        return 0
    for r in rows:
        state = "active" if r["cleared"] == "-" else f"cleared {r['cleared']}"
        line = f"{r['id']:>8}  {r['kind']:9} {r['device']:14} {r['severity'] or '-':8} raised {r['raised']}  {state}"
        if r["acked_by"]:
            line += f", acked by {r['acked_by']}"
        if r["shelved_until"]:
            line += f", SHELVED until {r['shelved_until']} by {r['shelved_by']}: {r['shelve_reason']}"
        print(line)
    return 0


def cmd_shelve(args: argparse.Namespace) -> int:
    kind, alarm_id = parse_alarm_id(args.alarm)
    seconds = parse_duration(args.duration)
    if not args.reason.strip() or not args.by.strip():
        raise EdgefleetError("--reason and --by must not be empty: a shelf says who and why")
    from edgefleet.service import audit

    store = _open(args.db)
    try:
        now = int(time.time() * 1000)
        shelf = audit.perform(store, audit.cli_actor(), "alarm.shelve", args.alarm,
                              {"by": args.by.strip(), "reason": args.reason.strip(), "seconds": seconds},
                              lambda: store.shelve_alarm(kind, alarm_id, by=args.by.strip(), reason=args.reason.strip(),
                                                         ts=now, until_ts=now + int(seconds * 1000)))
    finally:
        store.close()
    print(f"shelved {kind} alarm {args.alarm} until {_utc(shelf.until_ts)} (by {shelf.by}: {shelf.reason}); "
          "no notification or escalation until then")
    return 0


def cmd_unshelve(args: argparse.Namespace) -> int:
    kind, alarm_id = parse_alarm_id(args.alarm)
    from edgefleet.service import audit

    store = _open(args.db)
    try:
        ok = audit.perform(store, audit.cli_actor(), "alarm.unshelve", args.alarm, {"by": args.by},
                           lambda: store.unshelve_alarm(kind, alarm_id, by=args.by, ts=int(time.time() * 1000)))
    finally:
        store.close()
    if not ok:
        raise EdgefleetError(f"{kind} alarm {args.alarm} is not shelved")
    print(f"unshelved {kind} alarm {args.alarm}: notifications and escalation resume")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from edgefleet.service.notify import load_notify_config

    cfg = load_notify_config(args.config)
    if not cfg.enabled:
        print(f"{args.config}: no channels or no routes: nothing would be sent")
        return 0
    print(f"{args.config}: {len(cfg.channels)} channel(s), {len(cfg.routes)} route(s); a reopen is notified at most "
          f"once per {cfg.reopen_every_min:g} min; retries up to {cfg.give_up_h:g} h")
    for c in cfg.channels.values():
        print(f"  channel {c.name}: {c.type} {c.where}")
    for r in cfg.routes:
        sel = ", ".join(f"{k}={','.join(v)}" for k, v in (("sites", r.sites), ("lines", r.lines), ("tags", r.tags)) if v)
        esc = f"; escalate after {r.escalate_after_min:g} min to {', '.join(r.escalate_to)}" if r.escalate_after_min else ""
        print(f"  route {r.name}: {', '.join(r.kinds)} alarms, {r.min_severity}+, {sel or 'every device'}"
              f" -> {', '.join(r.channels)}{esc}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from edgefleet.service.notify import (
        DeliveryError,
        build_body,
        load_notify_config,
        send,
    )

    cfg = load_notify_config(args.config)
    route = next((r for r in cfg.routes if r.name == args.route), None)
    if route is None:
        raise EdgefleetError(f"no route {args.route!r} in {args.config} (routes: "
                             f"{', '.join(r.name for r in cfg.routes) or 'none'})")
    now = int(time.time() * 1000)
    failed = 0
    for name in route.channels + route.escalate_to:
        alarm = {"id": 0, "device": "test-device", "site": None, "line": None, "severity": "warning",
                 "raised_ts": now, "cleared_ts": None, "acked_ts": None, "acked_by": None, "reopened": 0}
        body = build_body(key=f"test:{now}:{route.name}:{name}", event="test", kind="health", route=route.name,
                          ts=now, alarm=alarm, dashboard_url=cfg.dashboard_url)
        body["text"] = f"edgefleet test notification for route {route.name} (channel {name})"
        ch = cfg.channels[name]
        try:
            send(ch, body)
            print(f"  {name} ({ch.type} {ch.where}): delivered")
        except DeliveryError as exc:
            failed += 1
            print(f"  {name} ({ch.type} {ch.where}): FAILED: {exc}")
    return 1 if failed else 0


def cmd_log(args: argparse.Namespace) -> int:
    store = _open(args.db)
    try:
        counts, rows = store.outbox_counts(), store.outbox(limit=args.n)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"by_state": counts, "newest": [
            {k: getattr(r, k) for k in ("id", "key", "kind", "alarm_id", "device", "event", "route", "channel",
                                        "state", "created_ms", "sent_ms", "attempts", "last_error")} for r in rows]}))
        return 0
    print("notifications by state: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none yet"))
    for r in rows:
        err = f"  ({r.last_error})" if r.last_error and r.state != "sent" else ""
        print(f"  {_utc(r.created_ms)}  {r.state:12} {r.event:10} {r.kind:9} #{r.alarm_id:<5} {r.device:14} "
              f"{r.route} -> {r.channel}, {r.attempts} attempt(s){err}")
    return 0
