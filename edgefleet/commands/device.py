"""`edgefleet device ...`: per-device broker accounts with random secrets, revocable one at a time."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edgefleet.commands.helptext import Formatter, examples
from edgefleet.service.audit import recorded

DEFAULT_CREDENTIALS = "var/device-credentials.json"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "device", help="add, re-key or revoke a device's broker account (random secret per device)",
        description="Each device logs in with its own random secret. The broker keeps only a salted hash "
                    "(Mosquitto's dynamic-security file); the secrets go to a 0600 credentials file for "
                    "provisioning (and `edgefleet sim --credentials`), never to the terminal. Change a "
                    "running broker with --broker (an account with the plugin's admin role, its password in "
                    "EDGEFLEET_BROKER_PASSWORD): a revoked device is disconnected at once. Or edit the "
                    "plugin's file with --security while the broker is stopped.",
        epilog=examples("EDGEFLEET_BROKER_PASSWORD=... edgefleet device revoke sim-0042 "
                        "--broker mqtt://ef-admin@127.0.0.1:1883",
                        "edgefleet device add press-07 press-08 --security var/mosquitto/dynamic-security.json"),
        formatter_class=Formatter)
    ds = p.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    for name, help_, more in (
            ("add", "create accounts with new random secrets",
             "The secrets go to the --credentials file (0600) for provisioning, never to the terminal."),
            ("rekey", "give existing accounts new secrets (the old ones stop working)",
             "The new secrets replace the old ones in the --credentials file; the old ones stop working."),
            ("revoke", "delete accounts: those devices can no longer connect; no other device changes",
             "With --broker a connected device is disconnected at once; its secret leaves the --credentials file.")):
        a = ds.add_parser(name, help=help_, description=f"{help_[0].upper()}{help_[1:]}. {more}",
                          epilog=examples(
                              f"EDGEFLEET_BROKER_PASSWORD=... edgefleet device {name} press-07 "
                              "--broker mqtt://ef-admin@127.0.0.1:1883",
                              f"edgefleet device {name} press-07 press-08 --security var/mosquitto/dynamic-security.json"),
                          formatter_class=Formatter)
        a.add_argument("devices", nargs="+", metavar="DEVICE", help="device ids (their MQTT usernames)")
        _where(a)
        a.set_defaults(func=recorded(f"device.{name}", lambda a: ",".join(a.devices), cmd_change), action=name)
    ls = ds.add_parser("list", help="device accounts in the plugin's file",
                       description="Lists the accounts in the broker's dynamic-security file, read offline: "
                       "devices marked device, other accounts with their roles (no secrets).",
                       epilog=examples("edgefleet device list --security var/mosquitto/dynamic-security.json"),
                       formatter_class=Formatter)
    ls.add_argument("--security", type=Path, default=_env_path("EDGEFLEET_BROKER_SECURITY"), required=False,
                    help="the dynamic-security file (EDGEFLEET_BROKER_SECURITY)")
    ls.set_defaults(func=cmd_list)


def _env_path(name: str) -> Path | None:
    return Path(os.environ[name]) if os.environ.get(name) else None


def _where(a: argparse.ArgumentParser) -> None:
    g = a.add_mutually_exclusive_group()
    g.add_argument("--broker", metavar="URL",
                   help="a running broker: mqtt[s]://ADMIN@host:port (password in EDGEFLEET_BROKER_PASSWORD)")
    g.add_argument("--security", type=Path, default=_env_path("EDGEFLEET_BROKER_SECURITY"),
                   help="the plugin's file, edited offline: stop the broker first, start it after "
                        "(EDGEFLEET_BROKER_SECURITY)")
    a.add_argument("--credentials", type=Path,
                   default=Path(os.environ.get("EDGEFLEET_DEVICE_CREDENTIALS") or DEFAULT_CREDENTIALS),
                   help=f"the 0600 file of device secrets (EDGEFLEET_DEVICE_CREDENTIALS, default {DEFAULT_CREDENTIALS})")
    a.add_argument("--ca", metavar="PEM", help="mqtts://: CA of the broker's certificate (EDGEFLEET_MQTT_CA)")
    a.add_argument("--cert", metavar="PEM", help="mqtts:// mutual TLS: our certificate (EDGEFLEET_MQTT_CERT)")
    a.add_argument("--key", metavar="PEM", help="its key (EDGEFLEET_MQTT_KEY)")


def cmd_change(args: argparse.Namespace) -> int:
    from edgefleet.errors import ConfigError
    from edgefleet.service import credentials, dynsec

    for dev in args.devices:
        dynsec.check_device_id(dev)
    if not args.broker and not args.security:
        raise ConfigError("say where the accounts live: --broker URL (a running broker) or --security FILE")
    secrets_by_device = credentials.load_secrets(args.credentials)
    new = {dev: credentials.new_secret() for dev in args.devices} if args.action != "revoke" else {}
    if args.broker:
        _online(args, new)
    else:
        cfg = dynsec.load(args.security)
        known = dynsec.usernames(cfg)
        for dev in args.devices:
            if args.action == "add" and dev in known:
                raise ConfigError(f"{dev} already has an account; `edgefleet device rekey {dev}` gives it a new secret")
            if args.action != "add" and dev not in known:
                raise ConfigError(f"{dev} has no account in {args.security}")
        for dev in args.devices:
            if args.action == "revoke":
                dynsec.remove_device(cfg, dev)
            else:
                dynsec.add_device(cfg, dev, new[dev])
        dynsec.save(args.security, cfg)
    if args.action == "revoke":
        for dev in args.devices:
            secrets_by_device.pop(dev, None)
    else:
        secrets_by_device.update(new)
    credentials.save_secrets(args.credentials, secrets_by_device)
    done = {"add": "added", "rekey": "re-keyed", "revoke": "revoked"}[args.action]
    where = "on the running broker" if args.broker else f"in {args.security} (start or restart the broker to apply)"
    secrets_note = f"; secrets in {args.credentials} (mode 0600)" if new else f"; removed from {args.credentials}"
    print(f"{done} {', '.join(args.devices)} {where}{secrets_note}")
    return 0


def _online(args: argparse.Namespace, new: dict[str, str]) -> None:
    from edgefleet.errors import ConfigError
    from edgefleet.protocol.connect import (
        TlsFiles,
        broker_credentials,
        client_tls,
        parse_broker_url,
    )
    from edgefleet.service import dynsec

    host, port = parse_broker_url(args.broker)
    user, password = broker_credentials(args.broker)
    if password:
        raise ConfigError("put the admin password in EDGEFLEET_BROKER_PASSWORD, not in the URL (argv is visible to "
                          "every local user)")
    password = os.environ.get("EDGEFLEET_BROKER_PASSWORD", "")
    if not user or not password:
        raise ConfigError("--broker needs the admin account as mqtt://ADMIN@host:port and its password in "
                          "EDGEFLEET_BROKER_PASSWORD")
    commands = []
    for dev in args.devices:
        commands += {"add": lambda d: dynsec.add_device_commands(d, new[d]),
                     "rekey": lambda d: dynsec.rekey_device_commands(d, new[d]),
                     "revoke": dynsec.revoke_device_commands}[args.action](dev)
    tls = client_tls(args.broker, TlsFiles.from_env(ca=args.ca, cert=args.cert, key=args.key))
    responses = dynsec.control(host, port, commands, username=user, password=password, tls=tls)
    errors = [f"{r.get('command')}: {r['error']}" for r in responses if r.get("error")]
    if errors:
        raise ConfigError("the broker refused: " + "; ".join(errors))


def cmd_list(args: argparse.Namespace) -> int:
    from edgefleet.errors import ConfigError
    from edgefleet.service import dynsec

    if not args.security:
        raise ConfigError("--security FILE (or EDGEFLEET_BROKER_SECURITY): the dynamic-security file")
    cfg = dynsec.load(args.security)
    for c in sorted(cfg["clients"], key=lambda c: c["username"]):
        roles = [r["rolename"] for r in c.get("roles", [])]
        kind = "device" if any(r.startswith(dynsec.DEVICE_ROLE_PREFIX) for r in roles) else ", ".join(roles) or "-"
        print(f"{c['username']:24s} {kind}")
    return 0
