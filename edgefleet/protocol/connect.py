"""How any peer reaches the broker: broker URLs, their credentials, the MQTT version a broker
speaks, and a free loopback port for a broker we start. Shared by the fleet service, the serial
bridge and the simulator, so none of them imports another."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.errors import ConfigError


def parse_broker_url(url: str) -> tuple[str, int]:
    """`mqtt://host[:port]` (or `host:port`) -> (host, port)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp"):
        raise ConfigError(f"broker URL {url!r}: scheme must be mqtt:// (got {parts.scheme}://)")
    try:
        port = parts.port or 1883
    except ValueError:
        raise ConfigError(f"broker URL {url!r}: port must be a number 1-65535") from None
    if not parts.hostname:
        raise ConfigError(f"broker URL {url!r}: no host")
    return parts.hostname, port


def broker_credentials(url: str) -> tuple[str | None, str | None]:
    """`mqtt://user:password@host` -> (user, password); (None, None) without credentials."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    return (unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None)


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def probe_mqtt_version(host: str, port: int, timeout: float = 5.0) -> str | None:
    """'5' if the broker accepts MQTT v5, '3.1.1' if it refuses v5 (amqtt), None if unreachable."""
    seen: dict[str, Any] = {}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    c.on_connect = lambda _c, _u, _f, rc, _p: seen.setdefault("rc", rc)
    try:
        c.connect(host, port, keepalive=10)
    except OSError:
        return None
    deadline = time.monotonic() + timeout
    while "rc" not in seen and time.monotonic() < deadline:
        if c.loop(0.1) not in (mqtt.MQTT_ERR_SUCCESS,) and "rc" not in seen:
            break
    c.disconnect()
    rc = seen.get("rc")
    if rc is None:
        return None
    return "5" if not rc.is_failure else ("3.1.1" if "protocol version" in str(rc).lower() else "5")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host` (for a broker or server we start)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
