"""`edgefleet commission`: tell nodes to learn their machine's normal (docs/baseline.md).

The command is queued in the fleet database; `edgefleet serve` (its OTA manager) sends it to each
node as a `cmd` with op `commission` (or `commission_end`). The node answers with a new status
whose `comm` object shows its progress, then its learned classes.
"""

from __future__ import annotations

import argparse

from edgefleet.commands.fleet_db import db_arg, db_label, require_db
from edgefleet.commands.helptext import Formatter
from edgefleet.errors import EdgefleetError


def register(sub: argparse._SubParsersAction) -> None:
    from edgefleet.service.config import default_db

    p = sub.add_parser(
        "commission", help="make nodes learn their machine's normal (start, extend or end commissioning)",
        description="A node learns its machine's normal per operating class (a speed band) from its own "
                    "windows, with no training: install, commission over the machine's operating range, "
                    "then watch. Use this to re-learn after maintenance, to add a speed the machine "
                    "never ran at, or to end commissioning early (classes with at least 16 windows are "
                    "kept). The command goes through `edgefleet serve`, which must be running.",
        epilog="examples:\n  edgefleet commission pump-0007\n"
               "  edgefleet commission --target site=north --windows 128\n"
               "  edgefleet commission pump-0007 --rpm-class 1480     # add or re-learn one speed\n"
               "  edgefleet commission pump-0007 --end",
        formatter_class=Formatter)
    p.add_argument("device", nargs="?", help="device id (or use --target)")
    p.add_argument("--target", help="all | site=S | line=L | tag=T: every matching device the store knows")
    p.add_argument("--windows", type=int, metavar="N",
                   help="windows per operating class that end it (16-4096; default: the node's, 64)")
    p.add_argument("--rpm-class", type=float, metavar="RPM",
                   help="learn only the class around this speed, rev/min (the other classes are kept)")
    p.add_argument("--end", action="store_true", help="end commissioning now with what has been learned")
    p.add_argument("--db", type=db_arg, default=db_arg(default_db()),
                   help="fleet database shared with `edgefleet serve`: a SQLite file or a postgresql:// URL "
                        f"(default $EDGEFLEET_DB or {db_label(default_db())})")
    p.set_defaults(func=cmd_commission)


def cmd_commission(args: argparse.Namespace) -> int:
    from edgefleet.service.commissioning import command_body, queue, target_devices
    from edgefleet.service.ota.registry import OtaRegistry
    from edgefleet.service.store import open_store

    if bool(args.device) == bool(args.target):
        raise EdgefleetError("name one device or a --target (all, site=S, line=L, tag=T)")
    body = command_body(windows=args.windows, rpm=args.rpm_class, end=args.end)
    store = open_store(str(require_db(args.db)))
    try:
        if args.device:
            if store.device(args.device) is None:
                raise EdgefleetError(f"device {args.device!r} is not in {db_label(args.db)} (it has never reported)")
            devices = [args.device]
        else:
            devices = target_devices(store, args.target)
    finally:
        store.close()
    from edgefleet.service.audit import cli_actor, cli_write

    reg = OtaRegistry(args.db)
    try:
        cli_write(args.db, "commission", args.device or args.target, {"devices": len(devices), "body": body},
                  lambda: queue(reg, devices, body, who=f"{cli_actor().name} (edgefleet commission)"))
    finally:
        reg.close()
    what = "end commissioning" if args.end else (
        f"commission{' the class around ' + format(args.rpm_class, 'g') + ' rpm' if args.rpm_class else ''}")
    print(f"queued: {what} for {len(devices)} device(s) ({', '.join(devices[:5])}{', ...' if len(devices) > 5 else ''})."
          f"\n`edgefleet serve` sends it; each node reports its progress in its status (dashboard: Device page).")
    return 0
