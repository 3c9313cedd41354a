"""Write Mosquitto's password file for a fleet: `python -m edgefleet.service.deploy_passwords`.

Plain `user:password` lines are hashed in place by `mosquitto_passwd -U`
(from the mosquitto package), so no hashing is re-implemented here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from edgefleet.service.credentials import password_lines

# One account per service process; the broker makes each username its client id (deploy/mosquitto).
SERVICE_USERS = ("ef-ingest-1", "ef-ingest-2", "ef-ota")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=200, help="simulated device ids sim-0000.. to provision")
    ap.add_argument("--prefix", default="sim-", help="device id prefix (default sim-)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    secret = os.environ.get("EDGEFLEET_FLEET_SECRET", "")
    ingest_pw = os.environ.get("EDGEFLEET_INGEST_PASSWORD", "")
    if not secret or not ingest_pw:
        print("error: set EDGEFLEET_FLEET_SECRET and EDGEFLEET_INGEST_PASSWORD", file=sys.stderr)
        return 2
    ids = [f"{args.prefix}{i:04d}" for i in range(args.devices)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    services = {user: ingest_pw for user in SERVICE_USERS}
    args.out.write_text("\n".join(password_lines(secret, ids, services)) + "\n")
    os.chmod(args.out, 0o600)
    subprocess.run(["mosquitto_passwd", "-U", str(args.out)], check=True)
    print(f"wrote {args.out}: {len(SERVICE_USERS)} service + {len(ids)} device credentials")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
