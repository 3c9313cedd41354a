"""Broker probe results turned into checklist lines, with the fix for each failure."""

from __future__ import annotations

import ssl
from typing import Any

from edgefleet.protocol import MAX_PAYLOAD
from edgefleet.protocol.connect import TlsFiles
from edgefleet.service.doctor.probes import (
    TLS,
    ConnectProbe,
    ProbeResult,
    QueueProbe,
    RetainProbe,
    SessionProbe,
    SharedProbe,
    SizeProbe,
    probe_connect,
    probe_message_size,
    probe_offline_queue,
    probe_persistent_session,
    probe_retained,
    probe_shared_subscription,
)
from edgefleet.service.doctor.report import (
    DEFAULT_BURST,
    DEFAULT_TIMEOUT_S,
    NOT_AUTHORIZED_FIX,
    PREFIX,
    Check,
    Progress,
    _quiet,
)
from edgefleet.service.doctor.security import (
    check_anonymous,
    check_tls,
    probe_anonymous,
    probe_tls,
)

# ---------------------------------------------------------------- broker checks

def _not_probed(name: str, probe: ProbeResult) -> Check | None:
    """The check line for a probe that could not run: skipped when the broker kept the doctor out
    (an ACL is no fault of the deployment), failed otherwise (the broker misbehaved)."""
    if probe.denied:
        return Check(name, "skip", f"could not probe: not authorized ({probe.error})", NOT_AUTHORIZED_FIX)
    if probe.error:
        return Check(name, "fail", f"probe failed: {probe.error}",
                     "look at the broker's log; a broker that drops connections loses messages in flight")
    return None


def check_connect(p: ConnectProbe, where: str) -> Check:
    """broker.mqtt5: reachable, speaks MQTT v5, and lets the doctor's traffic through."""
    name = "broker.mqtt5"
    if p.version is None:
        return Check(name, "fail", f"no MQTT broker answers at {where}",
                     "start the broker (`systemctl start mosquitto`, `docker compose up -d mosquitto`, or "
                     "`edgefleet broker`) or pass the right --broker URL; nodes cannot deliver anything now")
    if p.version != "5":
        return Check(name, "fail", f"{where} accepts MQTT {p.version} only, not v5",
                     "use Mosquitto 2 (apt-get install mosquitto; amqtt is a development fallback): ingest "
                     "relies on MQTT v5 session expiry and Receive Maximum to hold messages while it is away")
    if p.error and not p.denied:
        return Check(name, "fail", f"{where} answers in MQTT v5, but the doctor's own session failed: {p.error}",
                     "look at the broker's log (a connection limit such as `max_connections`, a broker "
                     "that stalls under load); clients it drops lose what they had in flight")
    if p.denied or not p.roundtrip:
        return Check(name, "pass", f"MQTT v5 accepted by {where}")
    return Check(name, "pass", f"MQTT v5 accepted by {where}, a QoS 1 round trip works")


def _unprobed_reason(p: ConnectProbe) -> str:
    """Why the later broker checks could not run when the broker keeps the doctor out."""
    if p.denied:
        return f"could not probe: not authorized ({p.error})"
    return (f"could not probe: not authorized? a QoS 1 message on {PREFIX}/... was accepted but never "
            "delivered back to the doctor (an ACL that denies reading drops it silently)")


def check_session(p: SessionProbe) -> Check:
    name = "broker.session"
    if (c := _not_probed(name, p)) is not None:
        return c
    if p.session_present and p.delivered:
        return Check(name, "pass", "a persistent session survives a reconnect and gets what was published meanwhile")
    what = ("the session was gone on reconnect (session present = 0)" if not p.session_present
            else "the session came back but the message published meanwhile did not")
    return Check(name, "fail", what + ": everything published while ingest restarts is lost",
                 "the broker must keep MQTT v5 sessions with a session expiry: in Mosquitto keep "
                 "`persistent_client_expiration` unset or longer than your longest ingest outage, and let "
                 "clients reach one broker (not a load balancer over brokers that do not share sessions)")


def check_queue(p: QueueProbe, burst: int) -> Check:
    name = "broker.queue"
    if (c := _not_probed(name, p)) is not None:
        return c
    if p.sent < burst:
        return Check(name, "fail", f"the broker accepted only {p.sent:,} of {burst:,} QoS 1 messages from one client",
                     "see the broker's log; raise `max_inflight_messages`/`max_queued_messages` in mosquitto.conf")
    if p.received >= p.sent:
        return Check(name, "pass", f"an offline session kept all {p.sent:,} queued QoS 1 messages "
                     f"(limit at least {p.sent:,}; --burst N tests deeper)")
    return Check(name, "fail", f"an offline session kept {p.received:,} of {p.sent:,} QoS 1 messages: the broker "
                 f"dropped {p.sent - p.received:,} without a word (Mosquitto's default max_queued_messages is 1,000, "
                 "about 1 s of a 1,000-node plant)",
                 "in mosquitto.conf set `max_queued_messages 1000000` (results per second x the longest ingest "
                 "outage to ride through) and `max_queued_bytes 0` (or a byte budget that fits), then restart "
                 "Mosquitto; `edgefleet broker` and deploy/mosquitto/mosquitto.conf use these values")


def check_message_size(p: SizeProbe) -> Check:
    name = "broker.message_size"
    if (c := _not_probed(name, p)) is not None:
        return c
    if p.delivered:
        return Check(name, "pass", f"a {p.size:,}-byte payload (the protocol's maximum) got through")
    limit = f"; the largest payload that got through: about {p.largest:,} bytes" if p.largest else ""
    announced = f"; the broker announces a maximum packet size of {p.max_packet_size:,} bytes" \
        if p.max_packet_size else ""
    return Check(name, "fail", f"a {p.size:,}-byte payload was refused ({p.refusal}){limit}{announced}: "
                 "larger messages from nodes (debug captures) are dropped",
                 f"in mosquitto.conf raise `max_packet_size` to at least {p.size + 1024:,} (or 0 for no limit) and "
                 "remove `message_size_limit`, then restart Mosquitto")


def check_retained(p: RetainProbe, announced: bool | None) -> Check:
    name = "broker.retained"
    if (c := _not_probed(name, p)) is not None:
        return c
    if p.delivered and p.flagged:
        return Check(name, "pass", "a retained message reaches a subscriber that comes later")
    why = (f"the broker refused a retained publish: {p.refusal}" if p.refusal else
           "the broker announces Retain Available = 0" if announced is False else
           "a later subscriber did not get it" if not p.delivered else "it arrived without the retain flag")
    return Check(name, "fail", f"retained messages do not work ({why}): nodes miss status and OTA offers "
                 "published while they were away",
                 "in mosquitto.conf set `retain_available true` (the default), then restart Mosquitto")


def check_shared(p: SharedProbe, announced: bool | None) -> Check:
    name = "broker.shared_subscription"
    if (c := _not_probed(name, p)) is not None:
        return c
    a, b = p.counts
    if a + b == p.sent and a > 0 and b > 0:
        return Check(name, "pass", f"$share/ split {p.sent} messages between two subscribers ({a} + {b})")
    if a + b < p.sent:
        note = " (the broker announces Shared Subscription Available = 0)" if announced is False else ""
        return Check(name, "fail", f"a shared group received {a + b} of {p.sent} messages{note}: ingest processes "
                     "on a --group would lose the rest",
                     "use Mosquitto 2 (shared subscriptions are on by default), or run one ingest process on a "
                     "plain subscription (`serve --group \"\"`, the default)")
    return Check(name, "warn", f"both members of a $share/ group got messages meant for one ({a} + {b} of {p.sent}): "
                 "nothing is lost (ingest drops duplicates) but several ingest processes share no load",
                 "use Mosquitto 2 for `serve --group`, or run one ingest process on a plain subscription")


BROKER_CHECKS = ("broker.mqtt5", "broker.session", "broker.queue", "broker.message_size", "broker.retained",
                 "broker.shared_subscription", "broker.tls", "broker.anonymous")


def run_broker_checks(host: str, port: int, *, username: str | None = None, password: str | None = None,
                      burst: int = DEFAULT_BURST, timeout: float = DEFAULT_TIMEOUT_S,
                      progress: Progress = _quiet, tls: ssl.SSLContext | None = None,
                      tls_files: TlsFiles | None = None) -> list[Check]:
    """Every broker check, in order: over TLS when `tls` is given (an mqtts:// URL: a handshake that
    fails skips the rest), then who may connect (broker.tls, broker.anonymous)."""
    where = f"{host}:{port}"
    tls_probe = None
    if tls is not None:
        progress(f"broker {where}: TLS handshake")
        tls_probe = probe_tls(host, port, tls, timeout, tls_files)
        if not tls_probe.ok:
            return [check_tls(tls_probe, host, where)] + [
                Check(n, "skip", "no TLS connection to probe with") for n in BROKER_CHECKS if n != "broker.tls"]
    token = TLS.set(tls)
    try:
        checks = _mqtt_checks(host, port, username=username, password=password, burst=burst, timeout=timeout,
                              progress=progress)
    finally:
        TLS.reset(token)
    progress("broker: TLS, a client without credentials")
    anon = probe_anonymous(host, port, timeout, tls_files, use_tls=tls is not None)
    return checks + [check_tls(tls_probe, host, where), check_anonymous(anon, host, where)]


def _mqtt_checks(host: str, port: int, *, username: str | None, password: str | None, burst: int, timeout: float,
                 progress: Progress) -> list[Check]:
    """The MQTT checks, in order; the later ones are skipped when the first cannot get through."""
    kw: dict[str, Any] = {"username": username, "password": password, "timeout": timeout}
    where = f"{host}:{port}"
    progress(f"broker {where}: connecting")
    conn = probe_connect(host, port, **kw)
    first = check_connect(conn, where)
    later = ["broker.session", "broker.queue", "broker.message_size", "broker.retained",
             "broker.shared_subscription"]
    if first.status == "fail" and conn.version == "3.1.1":  # NATS, RabbitMQ, amqtt: ingest's fallback mode
        from edgefleet.service.doctor.mqtt311 import run_311_checks

        rest = run_311_checks(host, port, conn.version, username=username, password=password, timeout=timeout,
                              progress=progress)
        if any(c.name == "broker.session" and c.status == "pass" for c in rest):
            first = Check(first.name, "warn", f"{where} accepts MQTT 3.1.1 only, not v5: ingest runs as one "
                          "process with a 3.1.1 persistent session (docs/brokers.md)",
                          "for several ingest processes (--group) use an MQTT v5 broker: Mosquitto 2 or EMQX")
        return [first] + rest
    if first.status == "fail":
        return [first] + [Check(n, "skip", "no MQTT v5 session to probe with") for n in later]
    if conn.denied or not conn.roundtrip:
        return [first] + [Check(n, "skip", _unprobed_reason(conn), NOT_AUTHORIZED_FIX) for n in later]
    progress("broker: persistent session across a reconnect")
    session = check_session(probe_persistent_session(host, port, **kw))
    progress(f"broker: queueing {burst:,} QoS 1 messages for an offline session")
    queue = check_queue(probe_offline_queue(host, port, burst=burst, **kw), burst)
    progress(f"broker: one {MAX_PAYLOAD:,}-byte message")
    size = check_message_size(probe_message_size(host, port, **kw))
    progress("broker: retained message, shared subscription")
    retained = check_retained(probe_retained(host, port, **kw), conn.retain_available)
    shared = check_shared(probe_shared_subscription(host, port, **kw), conn.shared_available)
    return [first, session, queue, size, retained, shared]
