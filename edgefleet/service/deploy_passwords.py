"""Write the broker's accounts for a fleet: `python -m edgefleet.service.deploy_passwords`.

Default (`--format dynsec`): a Mosquitto dynamic-security config (edgefleet/service/dynsec.py):
one account per service process, one account and role per device, so the broker checks every
subscription (a device cannot join the ingest group's `$share/...` subscription) and every
publish. `--format passwd`: the older plain password file for `password_file`, hashed in place by
`mosquitto_passwd -U` (it carries no permissions: pair it with an ACL file, which cannot refuse
shared subscriptions).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from edgefleet.errors import EdgefleetError
from edgefleet.service import dynsec
from edgefleet.service.credentials import (
    device_password,
    load_secrets,
    new_secret,
    password_lines,
    save_secrets,
)

# One account per service process; the broker makes each username its client id (deploy/mosquitto).
SERVICE_USERS = ("ef-ingest-1", "ef-ingest-2", "ef-ota")
ADMIN_USER = "ef-admin"
MIN_SECRET = 12


def weak(name: str, value: str) -> str | None:
    """Why a secret cannot be used, or None."""
    if "change-me" in value.lower():
        return f"{name} is still the placeholder from deploy/.env.example: set a long random value"
    if len(value) < MIN_SECRET:
        return f"{name} is {len(value)} characters: use at least {MIN_SECRET} (e.g. `openssl rand -hex 24`)"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=200, help="simulated device ids sim-0000.. to provision")
    ap.add_argument("--prefix", default="sim-", help="device id prefix (default sim-)")
    ap.add_argument("--format", choices=("dynsec", "passwd"), default="dynsec",
                    help="dynsec: dynamic-security JSON with per-device permissions (default); passwd: password file")
    ap.add_argument("--credentials", type=Path, default=None, metavar="FILE",
                    help="random secret per device instead of deriving them from EDGEFLEET_FLEET_SECRET: "
                         "secrets already in FILE are kept, new devices get new ones, FILE is written 0600 "
                         "(for provisioning and `edgefleet sim --credentials`); dynsec format only")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    secret = os.environ.get("EDGEFLEET_FLEET_SECRET", "")
    ingest_pw = os.environ.get("EDGEFLEET_INGEST_PASSWORD", "")
    admin_pw = os.environ.get("EDGEFLEET_BROKER_ADMIN_PASSWORD", "")
    if args.credentials is not None and args.format != "dynsec":
        print("error: --credentials needs --format dynsec", file=sys.stderr)
        return 2
    if (not secret and args.credentials is None) or not ingest_pw:
        print("error: set EDGEFLEET_INGEST_PASSWORD and EDGEFLEET_FLEET_SECRET (or use --credentials FILE)",
              file=sys.stderr)
        return 2
    for name, value in (*((("EDGEFLEET_FLEET_SECRET", secret),) if args.credentials is None else ()),
                        ("EDGEFLEET_INGEST_PASSWORD", ingest_pw),
                        *((("EDGEFLEET_BROKER_ADMIN_PASSWORD", admin_pw),) if admin_pw else ())):
        if (why := weak(name, value)):
            print(f"error: {why}", file=sys.stderr)
            return 2
    ids = [f"{args.prefix}{i:04d}" for i in range(args.devices)]
    services = {user: ingest_pw for user in SERVICE_USERS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "dynsec":
        if args.credentials is not None:
            try:
                known = load_secrets(args.credentials)
            except EdgefleetError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            device_pw = {d: known.get(d) or new_secret() for d in ids}
            save_secrets(args.credentials, {**known, **device_pw})
        else:
            device_pw = {d: device_password(secret, d) for d in ids}
        cfg = dynsec.fleet_config(services, device_pw, admin=(ADMIN_USER, admin_pw) if admin_pw else None)
        dynsec.save(args.out, cfg)
        print(f"wrote {args.out}: {len(SERVICE_USERS)} service + {len(ids)} device accounts"
              + (f" + {ADMIN_USER}" if admin_pw else "")
              + (f"; device secrets (random, one each) in {args.credentials}" if args.credentials else ""))
        return 0
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(password_lines(secret, ids, services)) + "\n")
    subprocess.run(["mosquitto_passwd", "-U", str(args.out)], check=True)
    print(f"wrote {args.out}: {len(SERVICE_USERS)} service + {len(ids)} device credentials")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
