"""The broker's accounts and permissions as a Mosquitto dynamic-security config (pure, plus file I/O).

Why not Mosquitto's ACL file: it checks `read` rights when a message is delivered, not when a
client subscribes, so a device could join the ingest group's shared subscription
(`$share/ingest/ef/v1/+/result`), be handed every other message, have it dropped for lack of
read rights, and so take half the results away from ingest. The dynamic-security plugin checks
subscriptions themselves, on the full filter including `$share/<group>/`: a device may subscribe
to its own downlink topics only (literal, no wildcards), anything else is refused in the SUBACK.

Mosquitto 2.0's plugin has no `%u` substitution in ACL topics, so each device gets its own role
(`ef-device:<id>`) holding its literal topics. Services (ingest, OTA manager) share one role.
Password hashes follow the plugin's format: PBKDF2-HMAC-SHA512, 12-byte salt, base64.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgefleet.errors import ConfigError
from edgefleet.protocol.codec import (
    DEVICE_ID_RE,
    DEVICE_KINDS,
    SERVER_KINDS,
    TOPIC_ROOT,
)

SERVICE_ROLE = "ef-service"
ADMIN_ROLE = "ef-dynsec-admin"
DEVICE_ROLE_PREFIX = "ef-device:"
ITERATIONS = 1000  # per connect, for each login; device secrets are random 128-bit values anyway
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> dict[str, Any]:
    """The plugin's stored form of a password: {"password", "salt", "iterations"}."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": iterations}


def check_password(entry: Mapping[str, Any], password: str) -> bool:
    salt = base64.b64decode(entry["salt"])
    want = hash_password(password, salt=salt, iterations=int(entry["iterations"]))["password"]
    return secrets.compare_digest(want, entry["password"])


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True}


def device_role(device_id: str) -> dict[str, Any]:
    """Publish its own uplink, subscribe to (and receive) its own downlink, literally."""
    check_device_id(device_id)
    up = [f"{TOPIC_ROOT}/{device_id}/{k}" for k in DEVICE_KINDS]
    down = [f"{TOPIC_ROOT}/{device_id}/{k}" for k in SERVER_KINDS]
    return {"rolename": DEVICE_ROLE_PREFIX + device_id,
            "acls": [_acl("publishClientSend", t) for t in up]
            + [_acl("subscribeLiteral", t) for t in down]
            + [_acl("publishClientReceive", t) for t in down]}


def service_role() -> dict[str, Any]:
    """Read every device's uplink (plainly or through any shared-subscription group), write downlink."""
    return {"rolename": SERVICE_ROLE,
            "acls": [_acl("subscribePattern", f"{TOPIC_ROOT}/#"),
                     _acl("subscribePattern", f"$share/+/{TOPIC_ROOT}/#"),
                     _acl("publishClientReceive", f"{TOPIC_ROOT}/#")]
            + [_acl("publishClientSend", f"{TOPIC_ROOT}/+/{k}") for k in SERVER_KINDS]}


def admin_role() -> dict[str, Any]:
    """Only the plugin's control topic: add, revoke or re-key accounts while the broker runs."""
    t = "$CONTROL/dynamic-security/#"
    return {"rolename": ADMIN_ROLE, "acls": [_acl("publishClientSend", t), _acl("publishClientReceive", t),
                                              _acl("subscribePattern", t)]}


def check_device_id(device_id: str) -> None:
    if not DEVICE_ID_RE.search(device_id):
        raise ConfigError(f"device id {device_id!r} must be 1-64 of [A-Za-z0-9._-]")


def client(username: str, password: str, roles: Iterable[str], text: str = "") -> dict[str, Any]:
    return {"username": username, "textName": text, **hash_password(password),
            "roles": [{"rolename": r} for r in roles]}


def fleet_config(services: Mapping[str, str], devices: Mapping[str, str],
                 admin: tuple[str, str] | None = None) -> dict[str, Any]:
    """A whole config: service accounts, one account and role per device, an optional admin.
    Default access: nothing may be published, received or subscribed without a role allowing it."""
    cfg: dict[str, Any] = {
        "clients": [client(u, pw, [SERVICE_ROLE], "edgefleet service") for u, pw in services.items()],
        "groups": [],
        "roles": [service_role()],
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
    }
    if admin is not None:
        cfg["clients"].append(client(admin[0], admin[1], [ADMIN_ROLE], "dynsec admin"))
        cfg["roles"].append(admin_role())
    for dev, pw in devices.items():
        add_device(cfg, dev, pw)
    return cfg


def usernames(cfg: Mapping[str, Any]) -> set[str]:
    return {c["username"] for c in cfg.get("clients", [])}


def add_device(cfg: dict[str, Any], device_id: str, password: str) -> None:
    """Add (or re-key) one device: its account and its own role."""
    role = device_role(device_id)
    remove_device(cfg, device_id)
    cfg["roles"].append(role)
    cfg["clients"].append(client(device_id, password, [role["rolename"]], "device"))


def remove_device(cfg: dict[str, Any], device_id: str) -> bool:
    """Drop one device's account and role; False if it had none. Other accounts are untouched."""
    before = len(cfg["clients"])
    cfg["clients"] = [c for c in cfg["clients"] if c["username"] != device_id]
    cfg["roles"] = [r for r in cfg["roles"] if r["rolename"] != DEVICE_ROLE_PREFIX + device_id]
    return len(cfg["clients"]) != before


def load(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        cfg = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such broker security file (write one with "
                          "`python -m edgefleet.service.deploy_passwords`)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: not a dynamic-security config ({exc})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("clients"), list) or not isinstance(cfg.get("roles"), list):
        raise ConfigError(f"{p}: not a dynamic-security config (no clients/roles lists)")
    return cfg


def save(path: str | Path, cfg: Mapping[str, Any]) -> None:
    """Write atomically, readable by its owner only (it holds password hashes)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, p)


def plugin_path() -> str | None:
    """Where this host's Mosquitto keeps the plugin (Debian, the eclipse-mosquitto image, a source build)."""
    for p in ("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
              "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
              "/usr/lib/mosquitto_dynamic_security.so", "/usr/local/lib/mosquitto_dynamic_security.so"):
        if os.path.exists(p):
            return p
    return None


# ---- the same changes on a running broker, through the plugin's control topic -----------------
# The plugin owns its file while the broker runs (it rewrites it on every change), so a running
# broker is changed by commands on $CONTROL/dynamic-security/v1, sent by an account with the admin
# role; the plugin saves them and disconnects a deleted client at once.

def add_device_commands(device_id: str, password: str) -> list[dict[str, Any]]:
    role = device_role(device_id)
    return [{"command": "createRole", "rolename": role["rolename"], "acls": role["acls"]},
            {"command": "createClient", "username": device_id, "password": password, "textname": "device",
             "roles": [{"rolename": role["rolename"]}]}]


def rekey_device_commands(device_id: str, password: str) -> list[dict[str, Any]]:
    check_device_id(device_id)
    return [{"command": "setClientPassword", "username": device_id, "password": password}]


def revoke_device_commands(device_id: str) -> list[dict[str, Any]]:
    check_device_id(device_id)
    return [{"command": "deleteClient", "username": device_id},
            {"command": "deleteRole", "rolename": DEVICE_ROLE_PREFIX + device_id}]


def control(host: str, port: int, commands: list[dict[str, Any]], *, username: str, password: str,
            tls: Any = None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Send `commands` to a running broker's plugin and return its responses (one per command);
    ConfigError if it cannot be reached, refuses the admin account, or does not answer."""
    import queue
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    answers: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
    c.username_pw_set(username, password)
    if tls is not None:
        c.tls_set_context(tls)
    body = json.dumps({"commands": commands})

    def on_connect(cl, _u, _f, rc, _p) -> None:
        if rc.is_failure:
            answers.put(ConfigError(f"the broker refused the admin account {username!r}: {rc}"))
        else:
            cl.subscribe(CONTROL_TOPIC + "/response", qos=1)

    def on_subscribe(cl, _u, _m, rcs, _p) -> None:
        if any(r.is_failure for r in rcs):
            answers.put(ConfigError(f"{username!r} may not use the dynamic-security control topic "
                                    "(no admin role, or the broker has no dynamic-security plugin)"))
        else:
            cl.publish(CONTROL_TOPIC, body, qos=1)

    c.on_connect, c.on_subscribe = on_connect, on_subscribe
    c.on_message = lambda _c, _u, m: answers.put(m.payload)
    try:
        c.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot reach the broker at {host}:{port}: {exc}") from None
    c.loop_start()
    try:
        got = answers.get(timeout=timeout)
    except queue.Empty:
        raise ConfigError(f"no answer from the broker's dynamic-security plugin within {timeout:g} s") from None
    finally:
        c.disconnect()
        c.loop_stop()
    if isinstance(got, Exception):
        raise got
    return json.loads(got).get("responses", [])
