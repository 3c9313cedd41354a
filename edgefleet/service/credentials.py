"""Per-device MQTT credentials: derived from one fleet secret (the demo's simple way), or random per
device and revocable one at a time (the functions at the end).

A device's MQTT username is its device id and its password is
HMAC-SHA256(fleet secret, device id), so the broker's password file and the
simulator (or a provisioning station flashing real nodes) agree without a
table of thousands of passwords. Mosquitto's ACL then confines each username
to `ef/v1/<username>/#`.
"""

from __future__ import annotations

import hashlib
import hmac
import re

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def device_password(fleet_secret: str, device_id: str) -> str:
    if not DEVICE_ID.match(device_id):
        raise ValueError(f"invalid device id {device_id!r}: letters, digits, '_', '.', '-' (max 64)")
    if len(fleet_secret) < 16:
        raise ValueError("the fleet secret must be at least 16 characters")
    return hmac.new(fleet_secret.encode(), device_id.encode(), hashlib.sha256).hexdigest()[:32]


def password_lines(fleet_secret: str, device_ids: list[str], services: dict[str, str]) -> list[str]:
    """`user:password` lines (plain) for `mosquitto_passwd -U` to hash in place."""
    lines = [f"{user}:{pw}" for user, pw in services.items()]
    lines += [f"{d}:{device_password(fleet_secret, d)}" for d in device_ids]
    return lines


# ---- per-device random secrets (revocable one at a time; docs/security.md) ----------------------
# The device side of per-device credentials: a JSON object {device id: secret}, mode 0600, that a
# provisioning station flashes into nodes (and `edgefleet sim --credentials` reads). The broker
# keeps only a salted hash of each (Mosquitto's dynamic-security file), so one leaked secret is one
# device, and removing a device's account revokes it without touching any other.

def new_secret() -> str:
    """A random 192-bit device secret (URL-safe text, 32 characters)."""
    import secrets

    return secrets.token_urlsafe(24)


def load_secrets(path) -> dict[str, str]:
    """{device id: secret} from `path`; {} if it does not exist."""
    import json
    from pathlib import Path

    from edgefleet.errors import ConfigError

    p = Path(path)
    if not p.exists():
        return {}
    if p.stat().st_mode & 0o077:
        raise ConfigError(f"{p} holds device secrets and is readable by others: chmod 600 {p}")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: not a device credentials file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"{p}: not a device credentials file (expected {{device id: secret}})")
    return data


def save_secrets(path, secrets_by_device: dict[str, str]) -> None:
    """Write atomically with mode 0600."""
    import json
    import os
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(dict(sorted(secrets_by_device.items())), f, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, p)
