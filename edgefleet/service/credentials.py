"""Per-device MQTT credentials derived from one fleet secret.

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
