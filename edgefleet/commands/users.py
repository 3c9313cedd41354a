"""`edgefleet users`: the dashboard's local accounts (add, remove, passwd, list), kept in the fleet database.

Passwords are read from `--password-file`, the EDGEFLEET_PASSWORD variable or a prompt (never from
argv), checked against the rules in `edgefleet.service.accounts` and stored as scrypt hashes. Each
change is recorded in the audit log as the OS user who ran the command.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from edgefleet.commands.fleet_db import db_arg, db_label, require_db
from edgefleet.commands.helptext import Formatter, examples
from edgefleet.errors import EdgefleetError

PASSWORD_ENV = "EDGEFLEET_PASSWORD"


def register(sub: argparse._SubParsersAction) -> None:
    from edgefleet.service.accounts import ROLES
    from edgefleet.service.config import default_db

    p = sub.add_parser("users", help="dashboard accounts: add, remove, passwd, list",
                       description="Local accounts of the dashboard's sign-in, with roles: viewer (read), operator "
                                   "(acknowledge and shelve alarms), engineer (commission, OTA start/abort), admin "
                                   "(everything, and users). The password comes from --password-file, "
                                   f"${PASSWORD_ENV} or a prompt; it needs 12+ characters and no placeholder.",
                       epilog="examples:\n  edgefleet users add ann --role operator\n"
                              "  edgefleet users add ci-bot --role viewer --password-file /run/secrets/ci-bot\n"
                              "  edgefleet users passwd ann\n  edgefleet users list",
                       formatter_class=Formatter)
    db_help = f"fleet database: a SQLite file or a postgresql:// URL (default $EDGEFLEET_DB or {db_label(default_db())})"
    usub = p.add_subparsers(dest="users_command", metavar="ACTION")

    q = usub.add_parser("add", help="add an account",
                        description="Adds a dashboard account with a role; the password comes from "
                        f"--password-file, ${PASSWORD_ENV} or a prompt (typed twice).",
                        epilog=examples("edgefleet users add ann --role operator",
                                        "edgefleet users add ci-bot --role viewer --password-file /run/secrets/ci-bot"),
                        formatter_class=Formatter)
    q.add_argument("name", help="the account's sign-in name")
    q.add_argument("--role", required=True, choices=ROLES,
                   help="viewer (read), operator (acknowledge, shelve), engineer (commission, OTA), admin (all)")
    q.add_argument("--password-file", type=Path, metavar="FILE", help="read the password from its first line")
    q.add_argument("--db", type=db_arg, default=db_arg(default_db()), help=db_help)
    q.set_defaults(func=cmd_add)

    q = usub.add_parser("remove", help="remove an account (its open dashboard sessions end)",
                        description="Removes a dashboard account; its open dashboard sessions end.",
                        epilog=examples("edgefleet users remove ann"),
                        formatter_class=Formatter)
    q.add_argument("name", help="the account's sign-in name")
    q.add_argument("--db", type=db_arg, default=db_arg(default_db()), help=db_help)
    q.set_defaults(func=cmd_remove)

    q = usub.add_parser("passwd", help="set an account's password (its open dashboard sessions end)",
                        description="Sets an account's password (from --password-file, "
                        f"${PASSWORD_ENV} or a prompt); its open dashboard sessions end.",
                        epilog=examples("edgefleet users passwd ann",
                                        "edgefleet users passwd ci-bot --password-file /run/secrets/ci-bot"),
                        formatter_class=Formatter)
    q.add_argument("name", help="the account's sign-in name")
    q.add_argument("--password-file", type=Path, metavar="FILE", help="read the password from its first line")
    q.add_argument("--db", type=db_arg, default=db_arg(default_db()), help=db_help)
    q.set_defaults(func=cmd_passwd)

    q = usub.add_parser("list", help="list the accounts and their roles",
                        description="Lists the dashboard accounts and their roles (no passwords).",
                        epilog=examples("edgefleet users list", "edgefleet users list --db postgresql://ef@db/fleet"),
                        formatter_class=Formatter)
    q.add_argument("--db", type=db_arg, default=db_arg(default_db()), help=db_help)
    q.set_defaults(func=cmd_list)
    p.set_defaults(func=lambda _args: p.print_help() or 2)


def read_password(path: Path | None, name: str, env: dict[str, str] | None = None) -> str:
    """The new password from the file, the environment or a prompt (typed twice), checked."""
    from edgefleet.service.accounts import password_problem

    env = os.environ if env is None else env
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgefleetError(f"cannot read --password-file {path}: {exc.strerror or exc}") from None
        pw = text.splitlines()[0] if text else ""
    elif env.get(PASSWORD_ENV):
        pw = env[PASSWORD_ENV]
    elif sys.stdin.isatty():
        pw = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != pw:
            raise EdgefleetError("the two passwords differ: nothing changed")
    else:
        raise EdgefleetError(f"no password: give --password-file FILE or ${PASSWORD_ENV}, or run in a terminal "
                             "to be asked")
    problem = password_problem(pw, name)
    if problem:
        raise EdgefleetError(f"{problem} (nothing changed)")
    return pw


def _open(db):
    from edgefleet.service.store import open_store

    return open_store(str(db))


def cmd_add(args: argparse.Namespace) -> int:
    from edgefleet.clock import now_ms
    from edgefleet.service import audit
    from edgefleet.service.accounts import check_name, hash_password

    name = check_name(args.name)
    pw_hash = hash_password(read_password(args.password_file, name))
    store = _open(args.db)
    try:
        audit.perform(store, audit.cli_actor(), "user.add", name, {"role": args.role},
                      lambda: store.add_user(name, args.role, pw_hash, now_ms()))
    finally:
        store.close()
    print(f"added {name} ({args.role}) to {db_label(args.db)}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from edgefleet.service import audit

    store = _open(require_db(args.db))
    try:
        def remove() -> bool:
            if not store.remove_user(args.name):
                raise EdgefleetError(f"no user {args.name!r} in {db_label(args.db)} (`edgefleet users list`)")
            return True
        audit.perform(store, audit.cli_actor(), "user.remove", args.name, {}, remove)
    finally:
        store.close()
    print(f"removed {args.name}")
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    from edgefleet.clock import now_ms
    from edgefleet.service import audit
    from edgefleet.service.accounts import hash_password

    store = _open(require_db(args.db))
    try:
        if store.user(args.name) is None:
            raise EdgefleetError(f"no user {args.name!r} in {db_label(args.db)} (add it with `edgefleet users add`)")
        pw_hash = hash_password(read_password(args.password_file, args.name))

        def change() -> bool:
            if not store.set_user_password(args.name, pw_hash, now_ms()):
                raise EdgefleetError(f"no user {args.name!r} (removed meanwhile)")
            return True
        audit.perform(store, audit.cli_actor(), "user.passwd", args.name, {}, change)
    finally:
        store.close()
    print(f"password of {args.name} changed; its open dashboard sessions end")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from edgefleet.service.audit import iso

    store = _open(require_db(args.db))
    try:
        users = store.users()
    finally:
        store.close()
    if not users:
        print(f"no accounts in {db_label(args.db)}: `edgefleet users add NAME --role admin`")
        return 0
    width = max(len(u.name) for u in users)
    for u in users:
        print(f"{u.name:<{width}}  {u.role:<8}  since {iso(u.created_ms)}  changed {iso(u.updated_ms)}")
    return 0
