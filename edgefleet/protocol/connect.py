"""How any peer reaches the broker: broker URLs, their credentials, the MQTT version a broker
speaks, and a free loopback port for a broker we start. Shared by the fleet service, the serial
bridge and the simulator, so none of them imports another."""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.errors import ConfigError

TLS_SCHEMES = ("mqtts", "ssl")


def parse_broker_url(url: str) -> tuple[str, int]:
    """`mqtt://host[:port]`, `mqtts://host[:port]` (TLS, default port 8883) or `host:port` -> (host, port)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp", *TLS_SCHEMES):
        raise ConfigError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts:// (got {parts.scheme}://)")
    try:
        port = parts.port or (8883 if parts.scheme in TLS_SCHEMES else 1883)
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


def uses_tls(url: str) -> bool:
    """True for an mqtts:// (or ssl://) broker URL."""
    return urlsplit(url if "://" in url else f"mqtt://{url}").scheme in TLS_SCHEMES


@dataclass(frozen=True)
class TlsFiles:
    """What a client needs for mqtts://: the CA that signed the broker's certificate (None: the
    system's trust store) and, for mutual TLS, its own certificate and key (PEM files)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, ca: str | None = None, cert: str | None = None,
                 key: str | None = None) -> TlsFiles:
        """Arguments win over EDGEFLEET_MQTT_CA, EDGEFLEET_MQTT_CERT and EDGEFLEET_MQTT_KEY."""
        env = os.environ if env is None else env
        return cls(ca or env.get("EDGEFLEET_MQTT_CA") or None, cert or env.get("EDGEFLEET_MQTT_CERT") or None,
                   key or env.get("EDGEFLEET_MQTT_KEY") or None)


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context: TLS 1.2 or newer, the broker's certificate checked against `files.ca` and
    its host name against the URL's (always), our certificate and key if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for what, path in (("CA file (EDGEFLEET_MQTT_CA)", files.ca), ("certificate (EDGEFLEET_MQTT_CERT)", files.cert),
                       ("key (EDGEFLEET_MQTT_KEY)", files.key)):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"TLS {what} {path}: no such file")
    if files.ca:
        try:
            ctx.load_verify_locations(cafile=files.ca)
        except (ssl.SSLError, ValueError):
            raise ConfigError(f"TLS CA file {files.ca}: not a PEM certificate") from None
    else:
        ctx.load_default_certs()
    if bool(files.cert) != bool(files.key):
        raise ConfigError("TLS: a client certificate needs its key and a key its certificate "
                          "(EDGEFLEET_MQTT_CERT and EDGEFLEET_MQTT_KEY together)")
    if files.cert:
        try:
            ctx.load_cert_chain(files.cert, files.key)
        except (ssl.SSLError, ValueError):
            raise ConfigError(f"TLS: {files.cert} and {files.key} are not a PEM certificate and its "
                              "unencrypted private key") from None
    return ctx


def client_tls(url: str, files: TlsFiles | None = None) -> ssl.SSLContext | None:
    """The TLS context a client of `url` needs: None for mqtt://."""
    return tls_context(files or TlsFiles.from_env()) if uses_tls(url) else None


def apply_tls(client: mqtt.Client, ctx: ssl.SSLContext | None) -> None:
    if ctx is not None:
        client.tls_set_context(ctx)


def tls_failure(exc: BaseException, host: str, files: TlsFiles | None = None) -> str | None:
    """One line saying why a TLS connection to `host` failed, or None if `exc` is not about TLS.
    Only call it for a connection made with TLS: a reset during the handshake counts as TLS's."""
    if isinstance(exc, (ConnectionResetError, ssl.SSLEOFError)):
        return (f"TLS: {host} closed the connection during the TLS handshake: a plain mqtt:// listener on "
                "that port, or a broker that wants a client certificate (--cert/--key)")
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, why = exc.verify_code, exc.verify_message or str(exc)
        if code == 10:
            return f"TLS: the broker's certificate has expired ({host}): issue a new one (edgefleet pki issue --server)"
        if code == 9:
            return f"TLS: the broker's certificate is not valid yet ({host}): check both clocks"
        if code == 62 or "hostname" in why.lower() or "ip address mismatch" in why.lower():
            return (f"TLS: the broker's certificate is not valid for {host!r} (hostname mismatch): connect by a "
                    "name it was issued for, or reissue it with --san")
        ca = files.ca if files and files.ca else "the system trust store"
        return (f"TLS: the broker's certificate ({host}) is not signed by a CA in {ca} ({why}): "
                "pass the fleet CA with --ca or EDGEFLEET_MQTT_CA")
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or str(exc)
        if "WRONG_VERSION_NUMBER" in str(reason).upper() or "record layer" in str(exc).lower():
            return f"TLS: {host} does not speak TLS on that port (an mqtt:// listener?)"
        if "CERTIFICATE" in str(reason).upper() or "UNKNOWN_CA" in str(reason).upper():
            return (f"TLS: the broker refused our client certificate ({reason}): use a certificate its CA "
                    "issued (edgefleet pki issue DEVICE), EDGEFLEET_MQTT_CERT and EDGEFLEET_MQTT_KEY")
        return f"TLS handshake with {host} failed: {reason}"
    return None


def probe_mqtt_version(host: str, port: int, timeout: float = 5.0, tls: ssl.SSLContext | None = None) -> str | None:
    """'5' if the broker accepts MQTT v5, '3.1.1' if it refuses v5 (amqtt, NATS) or closes the
    connection on a v5 CONNECT but answers a 3.1.1 one (RabbitMQ 3.10), None if unreachable."""
    try:
        rc, lost = _connack(host, port, timeout, tls, mqtt.MQTTv5)
    except OSError as exc:  # a TLS handshake that failed does not get better by waiting
        if tls is not None and (why := tls_failure(exc, host)):
            raise ConfigError(why) from None
        return None
    if rc is None and lost:  # no CONNACK at all: a 3.1.1-only broker that drops v5 clients?
        try:
            rc311, _ = _connack(host, port, timeout, tls, mqtt.MQTTv311)
        except OSError:
            rc311 = None
        if rc311 is not None:
            return "3.1.1"
    if rc is None and lost and tls is not None:  # TLS 1.3: a refused client certificate shows up here
        raise ConfigError(f"TLS: {host} closed the connection right after the handshake: it wants a client "
                          "certificate from its CA (--cert/--key, EDGEFLEET_MQTT_CERT), or ours is revoked")
    if rc is None:
        return None
    return "5" if not rc.is_failure else ("3.1.1" if "protocol version" in str(rc).lower() else "5")


def _connack(host: str, port: int, timeout: float, tls: ssl.SSLContext | None, protocol: int) -> tuple[Any, bool]:
    """(the CONNACK's reason code or None, whether the broker closed the connection first)."""
    seen: dict[str, Any] = {}
    v5 = protocol == mqtt.MQTTv5
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="" if v5 else f"ef-probe-{os.getpid()}-{time.monotonic_ns()}",
                    protocol=protocol)
    apply_tls(c, tls)
    c.on_connect = lambda _c, _u, _f, rc, _p: seen.setdefault("rc", rc)
    c.connect(host, port, keepalive=10)
    deadline = time.monotonic() + timeout
    lost = False
    while "rc" not in seen and time.monotonic() < deadline:
        if c.loop(0.1) not in (mqtt.MQTT_ERR_SUCCESS,) and "rc" not in seen:
            lost = True
            break
    c.disconnect()
    return seen.get("rc"), lost


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host` (for a broker or server we start)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
