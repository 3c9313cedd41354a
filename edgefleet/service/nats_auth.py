"""NATS accounts from the fleet PKI: one user per client certificate, each device confined to its own topics.

NATS serves MQTT with `verify_and_map`: the certificate's subject (RFC 4514, e.g. `CN=press-07,O=edgefleet`)
is the user, so there is no password to share or leak, and the user's permissions say which subjects it may
publish and subscribe to. This module writes that `authorization { users: [...] }` block from the PKI
directory (`edgefleet pki nats-users`): the services (`deploy_passwords.SERVICE_USERS`) read every
device's uplink and write the downlinks, as Mosquitto's `ef-service` role; each device gets the literal
subjects of its own topics, as its `ef-device:<id>` role (dynsec.py). A certificate that is revoked
(`edgefleet pki revoke`) or was never issued has no user: after the file is written again and the members
reload (`nats-server --signal reload`, or SIGHUP), it is refused, which NATS 2.9 cannot do from a CRL.

MQTT topic a/b/c is NATS subject a.b.c; a `.` inside a level becomes `//` (nats-server 2.10 and later;
2.9 refuses topics with a `.`, so such a device id cannot use a 2.9 cluster: `warnings` says so).
A QoS 1 subscription also needs `$MQTT.sub.>`, where JetStream delivers to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from edgefleet.errors import ConfigError
from edgefleet.protocol.codec import DEVICE_KINDS, SERVER_KINDS, TOPIC_ROOT
from edgefleet.service import pki
from edgefleet.service.deploy_passwords import ADMIN_USER, SERVICE_USERS

MQTT_DELIVERY = "$MQTT.sub.>"


def subject(topic: str) -> str:
    """The NATS subject of an MQTT topic without wildcards (nats-server's conversion for plain levels)."""
    return ".".join(level.replace(".", "//") for level in topic.split("/"))


@dataclass(frozen=True)
class NatsUser:
    dn: str  # the certificate subject, RFC 4514: what verify_and_map matches
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def device_user(dn: str, device_id: str) -> NatsUser:
    """Publish its own uplink, subscribe to its own downlink: literal subjects, no wildcards."""
    return NatsUser(dn, tuple(subject(f"{TOPIC_ROOT}/{device_id}/{k}") for k in DEVICE_KINDS),
                    tuple(subject(f"{TOPIC_ROOT}/{device_id}/{k}") for k in SERVER_KINDS) + (MQTT_DELIVERY,))


def service_user(dn: str) -> NatsUser:
    """Read every device's uplink; write only downlinks (never a device's result or status)."""
    root = subject(TOPIC_ROOT)
    return NatsUser(dn, tuple(f"{root}.*.{subject(k)}" for k in SERVER_KINDS), (f"{root}.>", MQTT_DELIVERY))


def users_from_pki(pki_dir: str | Path) -> tuple[list[NatsUser], list[str]]:
    """A user per valid client certificate in the PKI directory; and warnings (names left out, and why)."""
    d = Path(pki_dir)
    users, warnings = [], []
    for info in pki.listing(d):  # raises ConfigError when there is no CA
        if info.kind != "client":
            continue
        if info.revoked:
            warnings.append(f"{info.name}: revoked, no NATS user")
            continue
        if info.name == ADMIN_USER:
            continue  # the dynamic-security admin has nothing to do on NATS
        cert = x509.load_pem_x509_certificate((d / f"{info.name}.crt").read_bytes())
        dn = cert.subject.rfc4514_string()
        if info.name in SERVICE_USERS:
            users.append(service_user(dn))
            continue
        if "." in info.name:
            warnings.append(f"{info.name}: a '.' in the id: nats-server 2.9 refuses its topics (2.10 maps it to '//')")
        users.append(device_user(dn, info.name))
    return users, warnings


def _quoted(s: str) -> str:
    if any(c in s for c in '"\\\n'):
        raise ConfigError(f"{s!r} cannot be written into a NATS config")
    return f'"{s}"'


def authorization_block(users: list[NatsUser]) -> str:
    """NATS config text: `authorization { users: [...] }` for `include` from the members' nats.conf."""
    lines = ["# written by `edgefleet pki nats-users`: one user per fleet certificate (verify_and_map);",
             "# write it again after `pki issue` or `pki revoke`, then reload every member", "authorization {",
             "  users: ["]
    for u in users:
        pub = ", ".join(_quoted(s) for s in u.publish)
        sub = ", ".join(_quoted(s) for s in u.subscribe)
        lines.append(f"    {{user: {_quoted(u.dn)}, permissions: {{publish: {{allow: [{pub}]}}, "
                     f"subscribe: {{allow: [{sub}]}}}}}}")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def write_users(pki_dir: str | Path, out: str | Path) -> tuple[int, list[str]]:
    """Write the block atomically (a member reloading mid-write must not read half a file); returns
    (users written, warnings)."""
    users, warnings = users_from_pki(pki_dir)
    if not users:
        raise ConfigError(f"{pki_dir}: no client certificates to make NATS users of (edgefleet pki issue NAME)")
    path = Path(out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(authorization_block(users))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return len(users), warnings
