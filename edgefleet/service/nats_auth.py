"""NATS accounts from the fleet PKI: one user per client certificate, each device confined to its own topics.

NATS serves MQTT with `verify_and_map`: the certificate's subject (RFC 4514, e.g. `CN=press-07,O=edgefleet`)
is the user, so there is no password to share or leak, and the user's permissions say which subjects it may
publish and subscribe to. This module writes the `accounts { SERVICES, DEVICES }` block from the PKI
directory (`edgefleet pki nats-users`; `accounts_block` says why two accounts): the services (`deploy_passwords.SERVICE_USERS`) read every
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
MQTT_MSGS = "$MQTT.msgs."  # where NATS keeps an MQTT QoS 1 message in JetStream, by its subject
SERVICES_ACCOUNT, DEVICES_ACCOUNT = "SERVICES", "DEVICES"


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


def users_from_pki(pki_dir: str | Path) -> tuple[list[NatsUser], list[NatsUser], list[str]]:
    """Per valid client certificate in the PKI directory a user: (services, devices, warnings: names
    left out or limited, and why)."""
    d = Path(pki_dir)
    services, users, warnings = [], [], []
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
            services.append(service_user(dn))
            continue
        if "." in info.name:
            warnings.append(f"{info.name}: a '.' in the id: nats-server 2.9 refuses its topics (2.10 maps it to '//')")
        users.append(device_user(dn, info.name))
    return services, users, warnings


def _quoted(s: str) -> str:
    if any(c in s for c in '"\\\n'):
        raise ConfigError(f"{s!r} cannot be written into a NATS config")
    return f'"{s}"'


def _users(users: list[NatsUser]) -> list[str]:
    out = []
    for u in users:
        pub = ", ".join(_quoted(s) for s in u.publish)
        sub = ", ".join(_quoted(s) for s in u.subscribe)
        out.append(f"      {{user: {_quoted(u.dn)}, permissions: {{publish: {{allow: [{pub}]}}, "
                   f"subscribe: {{allow: [{sub}]}}}}}}")
    return out


def _streams(kinds: tuple[str, ...], account: str | None) -> str:
    """QoS 1 messages cross accounts as their JetStream subjects ($MQTT.msgs.<subject>): a plain-subject
    import reaches no MQTT QoS 1 subscription (tried on nats-server 2.9.10)."""
    subjects = [_quoted(f"{MQTT_MSGS}{subject(TOPIC_ROOT)}.*.{subject(k)}") for k in kinds]
    if account is None:
        return ", ".join(f"{{stream: {s}}}" for s in subjects)
    return ", ".join(f"{{stream: {{account: {account}, subject: {s}}}}}" for s in subjects)


def accounts_block(services: list[NatsUser], devices: list[NatsUser]) -> str:
    """NATS config text for `include` from the members' nats.conf: two accounts, SERVICES and DEVICES.

    Apart, because an MQTT client id is unique per account only: in one account any device could
    connect with ingest's client id and push ingest off (tried: it then happens on every reconnect).
    Uplinks cross from DEVICES to SERVICES and downlinks back as exported QoS 1 streams; retained
    messages do not cross (they live per account), so an OTA offer reaches a node that subscribes
    after it was published only through the OTA manager's re-send (docs/security.md)."""
    lines = ["# written by `edgefleet pki nats-users`: one user per fleet certificate (verify_and_map);",
             "# write it again after `pki issue` or `pki revoke`, then reload every member", "accounts {",
             f"  {SERVICES_ACCOUNT}: {{", "    jetstream: enabled", "    users: ["]
    lines += _users(services)
    lines += ["    ]", f"    exports: [{_streams(SERVER_KINDS, None)}]",
              f"    imports: [{_streams(DEVICE_KINDS, DEVICES_ACCOUNT)}]", "  }",
              f"  {DEVICES_ACCOUNT}: {{", "    jetstream: enabled", "    users: ["]
    lines += _users(devices)
    lines += ["    ]", f"    exports: [{_streams(DEVICE_KINDS, None)}]",
              f"    imports: [{_streams(SERVER_KINDS, SERVICES_ACCOUNT)}]", "  }", "}", ""]
    return "\n".join(lines)


def write_users(pki_dir: str | Path, out: str | Path) -> tuple[int, list[str]]:
    """Write the block atomically (a member reloading mid-write must not read half a file); returns
    (users written, warnings)."""
    services, devices, warnings = users_from_pki(pki_dir)
    if not services and not devices:
        raise ConfigError(f"{pki_dir}: no client certificates to make NATS users of (edgefleet pki issue NAME)")
    if not services:
        warnings.append(f"no service certificate ({', '.join(SERVICE_USERS)}): nothing will read the devices")
    path = Path(out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(accounts_block(services, devices))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return len(services) + len(devices), warnings
