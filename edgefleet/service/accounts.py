"""Dashboard accounts: roles, what each write needs, password hashing and password rules (pure, no I/O).

Passwords are hashed with scrypt (`hashlib.scrypt`, OpenSSL's implementation): memory-hard, so a
stolen `users` table costs an attacker 32 MiB and ~0.1 s per guess per core. The hash string names
its parameters, so they can be raised later without breaking older hashes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets

from edgefleet.errors import EdgefleetError

ROLES = ("viewer", "operator", "engineer", "admin")  # each can do what the ones before it can

# Every write the dashboard or the CLI performs, and the least role that may perform it.
ACTIONS = {
    "alarm.ack": "operator",
    "alarm.shelve": "operator",
    "alarm.unshelve": "operator",
    "campaign.start": "engineer",
    "campaign.abort": "engineer",
    "commission": "engineer",
    "machine.class": "engineer",
    "machine.bearing": "engineer",
    "user.add": "admin",
    "user.remove": "admin",
    "user.passwd": "admin",
    # CLI only (it acts as admin: whoever runs it can open the database and the key files anyway)
    "model.publish": "engineer",
    "device.add": "admin",
    "device.rekey": "admin",
    "device.revoke": "admin",
    "pki.init": "admin",
    "pki.issue": "admin",
    "pki.revoke": "admin",
    "pki.nats_users": "admin",
    "keys.generate": "admin",
    "keys.trust": "admin",
    "keys.retire": "admin",
}

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1  # 32 MiB (128 * r * N bytes)
_SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD = 12
_PLACEHOLDERS = ("change-me", "changeme", "password", "passw0rd", "edgefleet", "admin", "secret", "123456",
                 "qwerty", "letmein", "welcome")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


class AccessDenied(EdgefleetError):
    """A signed-in user (or nobody) tried a write their role does not allow."""


def role_rank(role: str) -> int:
    """The role's place in ROLES; ValueError for an unknown role."""
    return ROLES.index(role)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise EdgefleetError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return role


def required_role(action: str) -> str:
    try:
        return ACTIONS[action]
    except KeyError:
        raise EdgefleetError(f"unknown write {action!r}: add it to ACTIONS with the role it needs") from None


def permits(role: str | None, action: str) -> bool:
    """Whether `role` may perform `action` (no role: nobody is signed in, nothing is allowed)."""
    return role in ROLES and role_rank(role) >= role_rank(required_role(action))


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise EdgefleetError(f"user name {name!r}: 1-64 characters, letters, digits and . _ @ + - "
                             "(starting with a letter or digit)")
    return name


def password_problem(password: str, name: str = "") -> str | None:
    """Why a password is refused (too short, a placeholder, the user name, one repeated character), or None."""
    if len(password) < MIN_PASSWORD:
        return f"the password has {len(password)} characters: use at least {MIN_PASSWORD}"
    low = password.lower()
    if any(p in low for p in _PLACEHOLDERS) and len(password) < 24:
        return "the password is or contains a placeholder or common password: choose another"
    if name and name.lower() in low:
        return "the password contains the user name: choose another"
    if len(set(password)) < 5:
        return "the password has fewer than 5 different characters: choose another"
    return None


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
                  salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$key` (base64): what the `users` table stores."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` string (constant-time compare; a malformed hash is no match)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        want = _unb64(key)
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=_SCRYPT_MAXMEM, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@functools.cache
def dummy_hash() -> str:
    """A hash no password matches: checked when the user name is unknown, so that a wrong name costs as long
    as a wrong password (the sign-in form does not tell which names exist by its timing)."""
    return hash_password(secrets.token_hex(16))
