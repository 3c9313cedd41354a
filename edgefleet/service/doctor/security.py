"""Who can reach the broker: TLS on the link, and whether a client without credentials gets in.

Both matter for "nothing lost without a trace", not only for secrecy: a client that may connect
anonymously can publish a result under any device's topic with that device's (boot, seq), and the
genuine result arriving later is then dropped as a duplicate; a plain listener off this host lets
anyone on the path read passwords and forge commands. Probed like the other broker checks, with
real traffic: one TLS handshake (certificate, expiry), one MQTT v5 CONNECT without credentials and
without a client certificate, and if that is let in, one SUBSCRIBE to the fleet's results.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.errors import ConfigError
from edgefleet.protocol.connect import TlsFiles, tls_context, tls_failure
from edgefleet.service.doctor.report import PREFIX, Check

EXPIRY_WARN_DAYS = 30  # a broker certificate that expires sooner: every node is refused that day
RESULTS_FILTER = "ef/v1/+/result"

TLS_FIX = ("put a TLS listener in front of the nodes (deploy/mosquitto/tls.conf: `edgefleet pki init`, "
           "`edgefleet broker --tls`) and give nodes and serve mqtts:// URLs with --ca (EDGEFLEET_MQTT_CA)")
ANON_FIX = ("in mosquitto.conf set `allow_anonymous false` and give each client an account (the dynamic-security "
            "plugin in deploy/mosquitto/mosquitto.conf, `edgefleet device add`), or `require_certificate true` "
            "with `use_identity_as_username true` on a TLS listener (deploy/mosquitto/tls.conf)")


def is_loopback(host: str) -> bool:
    """Traffic to this host never leaves the machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TlsProbe:
    ok: bool
    error: str | None = None  # one line (tls_failure's words) when the handshake failed
    version: str | None = None
    cipher: str | None = None
    days_left: float | None = None


def probe_tls(host: str, port: int, ctx: ssl.SSLContext, timeout: float, files: TlsFiles | None = None) -> TlsProbe:
    """One TLS handshake as the nodes make it (the broker's certificate checked against the CA and
    the host name): the protocol, the cipher and how long the certificate stays valid."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as s:
            cert = s.getpeercert() or {}
            left = (ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()) / 86400 if "notAfter" in cert else None
            cipher = s.cipher()
            return TlsProbe(True, version=s.version(), cipher=cipher[0] if cipher else None, days_left=left)
    except (OSError, ssl.SSLError) as exc:
        return TlsProbe(False, error=tls_failure(exc, host, files) or f"cannot connect to {host}:{port}: {exc}")


@dataclass(frozen=True)
class AnonProbe:
    accepted: bool | None  # None: could not tell (the broker did not answer)
    how: str = ""  # how it was refused, or what it answered
    can_read: bool | None = None  # accepted: was a subscription to every device's results granted?


def probe_anonymous(host: str, port: int, timeout: float, files: TlsFiles | None = None,
                    use_tls: bool = False) -> AnonProbe:
    """MQTT v5 CONNECT with no user name, no password and no client certificate, over the same
    transport; if the broker lets it in, SUBSCRIBE to every device's results (granted or not)."""
    try:
        ctx = tls_context(TlsFiles(ca=files.ca if files else None)) if use_tls else None
    except ConfigError as exc:
        return AnonProbe(None, str(exc))
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{PREFIX}-anon-{time.time_ns() % 10**9}",
                    protocol=mqtt.MQTTv5, reconnect_on_failure=False)
    if ctx is not None:
        c.tls_set_context(ctx)
    seen: dict[str, object] = {}
    done = threading.Event()

    def on_connect(_c, _u, _f, rc, _p) -> None:
        seen["rc"] = rc
        done.set()

    def on_disconnect(_c, _u, _f, rc, _p) -> None:
        seen.setdefault("lost", str(rc))
        done.set()

    def on_subscribe(_c, _u, _m, rcs, _p) -> None:
        seen["suback"] = rcs
        done.set()

    c.on_connect, c.on_disconnect, c.on_subscribe = on_connect, on_disconnect, on_subscribe
    try:
        c.connect(host, port, keepalive=10)
    except (OSError, ssl.SSLError) as exc:
        if use_tls:
            return AnonProbe(False, "refused in the TLS handshake (no client certificate)"
                             if isinstance(exc, (ssl.SSLError, ConnectionResetError)) else str(exc))
        return AnonProbe(None, f"cannot connect: {exc}")
    c.loop_start()
    try:
        done.wait(timeout)
        rc = seen.get("rc")
        if rc is None:
            if "lost" in seen and use_tls:  # TLS 1.3: the missing client certificate is reported after the handshake
                return AnonProbe(False, "refused right after the TLS handshake (no client certificate)")
            return AnonProbe(None, f"no CONNACK within {timeout:g} s" if "lost" not in seen
                             else f"the broker closed the connection ({seen['lost']})")
        if rc.is_failure:  # type: ignore[attr-defined]
            return AnonProbe(False, f"CONNACK: {rc}")
        done.clear()
        c.subscribe(RESULTS_FILTER, qos=1)
        done.wait(timeout)
        codes = seen.get("suback")
        if codes is None:
            return AnonProbe(True, "connected; no SUBACK (or the connection was closed)", None)
        granted = not any(r.is_failure for r in codes)  # type: ignore[union-attr]
        return AnonProbe(True, f"connected; SUBSCRIBE {RESULTS_FILTER}: {codes[0]}", granted)  # type: ignore[index]
    finally:
        c.disconnect()
        c.loop_stop()


def check_tls(p: TlsProbe | None, host: str, where: str) -> Check:
    """broker.tls: the link the nodes use. `p` None: the URL is plain mqtt://."""
    name = "broker.tls"
    if p is None:
        if is_loopback(host):
            return Check(name, "pass", f"plain MQTT on loopback ({where}): the traffic stays on this host")
        return Check(name, "warn", f"plain MQTT to {where}: results, passwords and commands (reboot, OTA) cross "
                     "the network readable and forgeable", TLS_FIX)
    if not p.ok:
        return Check(name, "fail", f"{p.error}: no client that checks the certificate can connect, so nothing "
                     "gets through", "fix the certificate or the CA the clients are given (edgefleet pki; "
                     "docs/security.md), then run the doctor again")
    days = p.days_left
    what = f"{p.version}, {p.cipher}, the broker's certificate is valid for {host}"
    if days is not None and days < EXPIRY_WARN_DAYS:
        return Check(name, "warn", f"{what} but expires in {days:.0f} days: from then on every node is refused",
                     "issue a new server certificate (`edgefleet pki issue --server NAME --san HOST`) and reload "
                     "the broker before it expires")
    return Check(name, "pass", what + (f" for {days:.0f} more days" if days is not None else ""))


def check_anonymous(p: AnonProbe, host: str, where: str) -> Check:
    """broker.anonymous: a client with no credentials and no certificate must be refused."""
    name = "broker.anonymous"
    if p.accepted is None:
        return Check(name, "skip", f"could not probe: {p.how}", "run the doctor where it can reach the broker")
    if not p.accepted:
        return Check(name, "pass", f"a client without credentials or certificate is refused ({p.how})")
    reads = " and read every device's results" if p.can_read else ""
    what = (f"a client without credentials may connect to {where}{reads} ({p.how}): it can also publish a "
            "result as any device, and the device's own result with that (boot, seq) is then dropped as a duplicate")
    if is_loopback(host):  # `edgefleet broker` for development: only this host's processes reach it
        return Check(name, "warn", what + "; on loopback only this host's processes can", ANON_FIX)
    return Check(name, "fail", what, ANON_FIX)


__all__ = ["ANON_FIX", "EXPIRY_WARN_DAYS", "TLS_FIX", "AnonProbe", "TlsProbe", "check_anonymous", "check_tls",
           "is_loopback", "probe_anonymous", "probe_tls"]
