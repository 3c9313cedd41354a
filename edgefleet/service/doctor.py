"""`edgefleet doctor`: check a deployment for the settings that lose data without a trace.

A fleet loses results quietly in a few places: a broker that drops what it queues for an absent
ingest session (Mosquitto keeps 1,000 messages by default), refuses large messages, or forgets
sessions; a store that cannot be written, is of another schema version or fills its disk; device
clocks so far off that retention deletes what was just stored. Each check here measures one of
these on the running deployment and says how to fix it (docs/doctor.md).

The broker is probed with MQTT traffic, never by reading its config: the config on disk may not be
the one running, and the doctor may run on another host. Every probe uses its own client ids
(`ef-doctor-<random>-...`) and topics under a private prefix (`ef-doctor/<random>/...`), ends the
persistent sessions it creates and clears the retained message it leaves. A broker whose ACL keeps
the doctor out is reported as "could not probe: not authorized", not as a failing check.

The store is opened read-only (the file, and no -wal/-shm files created), so the doctor can run
beside `edgefleet serve`.

Probe functions take host, port and credentials and return a small frozen dataclass; `check_*`
functions turn one probe result (or store facts) into a `Check`; `run_doctor` runs them all.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgefleet.clock import now_ms
from edgefleet.protocol import MAX_PAYLOAD
from edgefleet.protocol.connect import probe_mqtt_version
from edgefleet.service.store.sqlite import DEFAULT_RETENTION_DAYS, SCHEMA_VERSION

STATUSES = ("pass", "fail", "warn", "skip")
PREFIX = "ef-doctor"  # topics and client ids of the probes
DEFAULT_BURST = 2000  # above Mosquitto's default queue (1,000), so that default fails
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_CLOCK_SAMPLES = 20  # latest results per device for the clock check
CLOCK_WARN_S = 60.0
DISK_WARN_DAYS = 7.0
DISK_FAIL_DAYS = 1.0
SESSION_EXPIRY_S = 120  # a probe session the doctor could not end (killed) expires on its own
SHARED_MESSAGES = 20
BURST_WINDOW = 100  # QoS 1 messages in flight in a burst, unless the broker's Receive Maximum is lower
RC_NOT_AUTHORIZED = (0x86, 0x87, 0x8C)  # bad user name or password, not authorized, bad auth method
SIZE_STEPS = 10  # publishes spent finding the largest payload a refusing broker takes

Progress = Callable[[str], None]

NOT_AUTHORIZED_FIX = (f"let the doctor's user publish and subscribe on {PREFIX}/# and $share/+/{PREFIX}/# "
                      f"(Mosquitto ACL: `user NAME` then `topic readwrite {PREFIX}/#`), or run it with the "
                      "credentials of a user who may (mqtt://user:password@host or EDGEFLEET_BROKER_USERNAME/"
                      "EDGEFLEET_BROKER_PASSWORD)")


# ---------------------------------------------------------------- the report

@dataclass(frozen=True)
class Check:
    """One line of the checklist. `fix` says what to change when status is fail, warn or skip."""

    name: str
    status: str  # pass | fail | warn | skip
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


@dataclass(frozen=True)
class Report:
    """All checks; `ok` is False when one of them failed (something would lose data)."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def _quiet(_msg: str) -> None:
    """The default progress callback: say nothing."""


# ---------------------------------------------------------------- MQTT plumbing

class ProbeError(Exception):
    """A probe could not run. `denied`: the broker refused the doctor (credentials or ACL)."""

    def __init__(self, message: str, *, denied: bool = False) -> None:
        super().__init__(message)
        self.denied = denied


def _token() -> str:
    return secrets.token_hex(4)


def _denied(rc: ReasonCode | None) -> bool:
    return rc is not None and rc.value in RC_NOT_AUTHORIZED


class _Peer:
    """One MQTT v5 connection of a probe. Records what it receives and the broker's answers, so a
    probe can wait for them. paho's network thread (loop_start) runs it and never reconnects: a
    probe decides what a lost connection means (a refused large message closes it, for one)."""

    def __init__(self, host: str, port: int, *, username: str | None, password: str | None,
                 timeout: float, client_id: str, clean_start: bool = True, session_expiry: int = 0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.clean_start, self.session_expiry = clean_start, session_expiry
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                  reconnect_on_failure=False)
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(BURST_WINDOW)  # publish_burst keeps to the broker's limit
        self.cond = threading.Condition()
        self.messages: list[mqtt.MQTTMessage] = []
        self.acks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.connack: tuple[ReasonCode, bool, Properties | None] | None = None
        self.lost: str | None = None  # why the broker closed the connection
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe

    # paho callbacks (network thread)
    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: ReasonCode, props: Properties | None) -> None:
        with self.cond:
            self.connack = (rc, bool(getattr(flags, "session_present", False)), props)
            self.cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        with self.cond:
            self.lost = str(rc)
            self.cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self.cond:
            self.acks[mid] = rc
            self.cond.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, rcs: list[ReasonCode], _p: Any) -> None:
        with self.cond:
            self.subacks[mid] = list(rcs)
            self.cond.notify_all()

    def wait_until(self, ready: Callable[[], bool], timeout: float | None = None) -> bool:
        with self.cond:
            return self.cond.wait_for(ready, timeout if timeout is not None else self.timeout)

    # what probes call
    def connect(self) -> Properties | None:
        """Connect and wait for CONNACK; ProbeError if refused or silent. Returns its properties."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry
        try:
            self.client.connect(self.host, self.port, keepalive=30, clean_start=self.clean_start, properties=props)
        except OSError as exc:
            raise ProbeError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        self.client.loop_start()
        if not self.wait_until(lambda: self.connack is not None or self.lost is not None):
            raise ProbeError(f"no CONNACK from {self.host}:{self.port} within {self.timeout:g} s")
        if self.connack is None:
            raise ProbeError(f"the broker closed the connection ({self.lost})")
        rc, _, connack_props = self.connack
        if rc.is_failure:
            raise ProbeError(f"the broker refused the connection: {rc}", denied=_denied(rc))
        return connack_props

    @property
    def session_present(self) -> bool:
        return bool(self.connack and self.connack[1])

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe and wait for SUBACK; ProbeError when refused."""
        _, mid = self.client.subscribe(topic, qos)
        if not self.wait_until(lambda: mid in self.subacks or self.lost is not None):
            raise ProbeError(f"no SUBACK for {topic} within {self.timeout:g} s")
        if mid not in self.subacks:
            raise ProbeError(f"the broker closed the connection on SUBSCRIBE {topic} ({self.lost})")
        rc = self.subacks[mid][0]
        if rc.is_failure:
            raise ProbeError(f"SUBSCRIBE {topic} refused: {rc}", denied=_denied(rc))

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode | str:
        """Publish at QoS 1 and wait for the PUBACK: its reason code, or why the connection closed."""
        mid = self.client.publish(topic, payload, qos=1, retain=retain).mid
        if not self.wait_until(lambda: mid in self.acks or self.lost is not None):
            raise ProbeError(f"no PUBACK for {topic} within {self.timeout:g} s")
        if mid in self.acks:
            return self.acks[mid]
        return f"the broker closed the connection ({self.lost})"

    def publish_ok(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1; ProbeError unless the broker accepted it."""
        rc = self.publish(topic, payload, retain=retain)
        if isinstance(rc, str) or rc.is_failure:
            raise ProbeError(f"PUBLISH {topic} refused: {rc}", denied=not isinstance(rc, str) and _denied(rc))

    def publish_burst(self, topic: str, n: int) -> int:
        """Publish n small QoS 1 messages; wait for their PUBACKs. Returns how many the broker accepted."""
        # paho does not follow the broker's Receive Maximum (unacknowledged QoS 1 messages it takes):
        # keep at most that many in flight ourselves, or the broker closes the connection
        window = min(_props_int(self.connack[2] if self.connack else None, "ReceiveMaximum") or 65535, BURST_WINDOW)
        mids: list[int] = []
        acked_before = len(self.acks)
        for i in range(n):
            if not self.wait_until(lambda: len(mids) - (len(self.acks) - acked_before) < window
                                   or self.lost is not None):
                break
            if self.lost is not None:
                break
            mids.append(self.client.publish(topic, b"%08d" % i, qos=1).mid)
        self.wait_until(lambda: all(m in self.acks for m in mids) or self.lost is not None)
        rcs = [self.acks[m] for m in mids if m in self.acks]
        if any(_denied(rc) for rc in rcs):
            raise ProbeError(f"PUBLISH {topic} refused: {next(rc for rc in rcs if _denied(rc))}", denied=True)
        return sum(1 for rc in rcs if not rc.is_failure)

    def received(self, topic: str | None = None) -> list[mqtt.MQTTMessage]:
        with self.cond:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def wait_messages(self, n: int, *, first: float | None = None, quiet: float = 1.0) -> int:
        """Wait until n messages arrived, or none came for `quiet` s (after `first` s for the first one)."""
        deadline_first = time.monotonic() + (first if first is not None else self.timeout)
        while True:
            with self.cond:
                seen = len(self.messages)
                if seen >= n:
                    return seen
                budget = quiet if seen else deadline_first - time.monotonic()
                if budget <= 0 or not self.cond.wait_for(lambda n=seen: len(self.messages) > n, budget):
                    return len(self.messages)

    def close(self, *, end_session: bool = False) -> None:
        """Disconnect; `end_session` also tells the broker to drop this client's persistent session."""
        props = None
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        try:
            if self.lost is None:
                self.client.disconnect(properties=props)
        finally:
            self.client.loop_stop()  # sends what is queued (the DISCONNECT) first


@contextmanager
def _peer(host: str, port: int, creds: tuple[str | None, str | None], timeout: float, client_id: str,
          **kw: Any) -> Iterator[_Peer]:
    """A connected probe peer, closed (and its session ended) on the way out."""
    p = _Peer(host, port, username=creds[0], password=creds[1], timeout=timeout, client_id=client_id, **kw)
    try:
        p.connect()
        yield p
    finally:
        p.close(end_session=bool(kw.get("session_expiry")))


# ---------------------------------------------------------------- broker probes

@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """What every probe can report besides its measurement: it could not run (`error`), and whether
    that was because the broker refused the doctor (`denied`)."""

    error: str | None = None
    denied: bool = False


@dataclass(frozen=True, kw_only=True)
class ConnectProbe(ProbeResult):
    """MQTT version, what CONNACK announced, and whether a message on the private prefix came back."""

    version: str | None = None  # "5", "3.1.1", None = nothing answered
    roundtrip: bool = False
    receive_max: int | None = None
    max_packet_size: int | None = None
    retain_available: bool | None = None
    shared_available: bool | None = None


@dataclass(frozen=True, kw_only=True)
class SessionProbe(ProbeResult):
    session_present: bool = False  # the broker resumed the session on reconnect
    delivered: bool = False  # the message published while away arrived


@dataclass(frozen=True, kw_only=True)
class QueueProbe(ProbeResult):
    sent: int = 0  # accepted by the broker (PUBACK) while the session was away
    received: int = 0  # delivered on reconnect


@dataclass(frozen=True, kw_only=True)
class SizeProbe(ProbeResult):
    size: int = 0  # payload bytes tried
    delivered: bool = False
    refusal: str = ""  # the broker's answer when it did not take the message
    largest: int | None = None  # largest payload that got through (found by bisection when refused)
    max_packet_size: int | None = None  # announced in CONNACK, if any


@dataclass(frozen=True, kw_only=True)
class RetainProbe(ProbeResult):
    delivered: bool = False  # a subscriber that came after the publish got it
    flagged: bool = False  # ... with the retain flag set
    refusal: str = ""  # the broker's answer when it refused the retained publish


@dataclass(frozen=True, kw_only=True)
class SharedProbe(ProbeResult):
    sent: int = 0
    counts: tuple[int, int] = (0, 0)  # what each of the two group members received


P = TypeVar("P", bound=ProbeResult)


def _run_probe(cls: type[P], body: Callable[[], P]) -> P:
    """Run a probe body; an error becomes a result of class `cls` that says why it did not run (the
    doctor reports a broken broker, it does not crash on one)."""
    try:
        return body()
    except ProbeError as exc:
        return cls(error=str(exc), denied=exc.denied)
    except (OSError, ValueError, RuntimeError) as exc:  # socket trouble, paho refusing a request
        return cls(error=f"{type(exc).__name__}: {exc}")


def _props_int(props: Properties | None, name: str) -> int | None:
    value = getattr(props, name, None)
    return int(value) if value is not None else None


def probe_connect(host: str, port: int, *, username: str | None = None, password: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT_S) -> ConnectProbe:
    """Does a broker answer, in MQTT v5, and carry a message on the doctor's private prefix? Every
    other probe needs all three, so they run only when this one passes."""
    version = probe_mqtt_version(host, port, timeout)
    if version != "5":
        return ConnectProbe(version=version)
    prefix = f"{PREFIX}/{_token()}"

    def body() -> ConnectProbe:
        with _peer(host, port, (username, password), timeout, f"{PREFIX}-{_token()}-ping") as p:
            props = p.connack[2] if p.connack else None
            p.subscribe(f"{prefix}/ping")
            p.publish_ok(f"{prefix}/ping", b"ping")
            arrived = p.wait_messages(1) >= 1
        retain = getattr(props, "RetainAvailable", None)
        shared = getattr(props, "SharedSubscriptionAvailable", None)
        return ConnectProbe(version="5", roundtrip=arrived, receive_max=_props_int(props, "ReceiveMaximum"),
                            max_packet_size=_props_int(props, "MaximumPacketSize"),
                            retain_available=None if retain is None else bool(retain),
                            shared_available=None if shared is None else bool(shared))

    result = _run_probe(ConnectProbe, body)
    return result if result.version else ConnectProbe(version="5", error=result.error, denied=result.denied)


def _offline_delivery(host: str, port: int, creds: tuple[str | None, str | None], timeout: float,
                      n: int, quiet: float) -> tuple[bool, int, int]:
    """Subscribe with a persistent session, go away, publish n QoS 1 messages, come back.
    Returns (session present on return, messages the broker accepted, messages delivered)."""
    tok = _token()
    topic, cid = f"{PREFIX}/{tok}/queued", f"{PREFIX}-{tok}-away"
    away = _Peer(host, port, username=creds[0], password=creds[1], timeout=timeout, client_id=cid,
                 clean_start=True, session_expiry=SESSION_EXPIRY_S)
    try:
        away.connect()
        away.subscribe(topic)
    finally:
        away.close()  # the session stays at the broker (expiry > 0)
    with _peer(host, port, creds, timeout, f"{PREFIX}-{tok}-pub") as pub:
        sent = pub.publish_burst(topic, n)
    back = _Peer(host, port, username=creds[0], password=creds[1], timeout=timeout, client_id=cid,
                 clean_start=False, session_expiry=SESSION_EXPIRY_S)
    try:
        back.connect()
        got = back.wait_messages(sent, first=timeout, quiet=quiet)
        return back.session_present, sent, got
    finally:
        back.close(end_session=True)


def probe_persistent_session(host: str, port: int, *, username: str | None = None, password: str | None = None,
                             timeout: float = DEFAULT_TIMEOUT_S) -> SessionProbe:
    """Does the broker keep a session (clean_start=False, a session expiry) while its client is away,
    and deliver on return what was published meanwhile? `edgefleet serve` relies on it across
    restarts of ingest."""
    def body() -> SessionProbe:
        present, _, got = _offline_delivery(host, port, (username, password), timeout, 1, quiet=timeout)
        return SessionProbe(session_present=present, delivered=got >= 1)
    return _run_probe(SessionProbe, body)


def probe_offline_queue(host: str, port: int, *, username: str | None = None, password: str | None = None,
                        burst: int = DEFAULT_BURST, timeout: float = DEFAULT_TIMEOUT_S) -> QueueProbe:
    """How many of a burst of QoS 1 messages does the broker keep for a session that is away? Past
    its limit (Mosquitto: max_queued_messages, default 1,000) it drops them without a word."""
    def body() -> QueueProbe:
        _, sent, got = _offline_delivery(host, port, (username, password), timeout, burst, quiet=1.0)
        return QueueProbe(sent=sent, received=got)
    return _run_probe(QueueProbe, body)


def _size_passes(host: str, port: int, creds: tuple[str | None, str | None], timeout: float,
                 sub: _Peer, topic: str, size: int) -> tuple[bool, str]:
    """Publish one payload of `size` bytes from a fresh connection (a refusal may close it) and see it
    arrive at `sub`. Returns (delivered, the broker's refusal)."""
    before = len(sub.received(topic))
    pub = _Peer(host, port, username=creds[0], password=creds[1], timeout=timeout,
                client_id=f"{PREFIX}-{_token()}-big")
    try:
        pub.connect()
        rc = pub.publish(topic, b"\0" * size)
    except ProbeError as exc:
        if exc.denied:
            raise
        return False, str(exc)
    finally:
        pub.close()
    if isinstance(rc, str) or rc.is_failure:
        if not isinstance(rc, str) and _denied(rc):
            raise ProbeError(f"PUBLISH {topic} refused: {rc}", denied=True)
        return False, str(rc)
    arrived = sub.wait_until(lambda: len(sub.received(topic)) > before)
    return arrived, "" if arrived else "accepted (PUBACK) but never delivered to the subscriber"


def _largest_passing(passes: Callable[[int], bool], refused: int, steps: int = SIZE_STEPS) -> int:
    """Bisect between a payload that passes (1 byte) and one that was refused."""
    lo, hi = 1, refused
    for _ in range(steps):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if passes(mid) else (lo, mid)
    return lo


def probe_message_size(host: str, port: int, *, username: str | None = None, password: str | None = None,
                       size: int = MAX_PAYLOAD, timeout: float = DEFAULT_TIMEOUT_S) -> SizeProbe:
    """Does a payload of `size` bytes (default the protocol's largest, MAX_PAYLOAD) get through? If
    not, find about the largest that does: nodes' larger messages (debug captures) would vanish."""
    creds = (username, password)

    def body() -> SizeProbe:
        topic = f"{PREFIX}/{_token()}/big"
        with _peer(host, port, creds, timeout, f"{PREFIX}-{_token()}-bigsub") as sub:
            announced = _props_int(sub.connack[2] if sub.connack else None, "MaximumPacketSize")
            sub.subscribe(topic)
            ok, refusal = _size_passes(host, port, creds, timeout, sub, topic, size)
            largest = None if ok else _largest_passing(
                lambda n: _size_passes(host, port, creds, timeout, sub, topic, n)[0], size)
        return SizeProbe(size=size, delivered=ok, refusal=refusal, largest=largest, max_packet_size=announced)
    return _run_probe(SizeProbe, body)


def probe_retained(host: str, port: int, *, username: str | None = None, password: str | None = None,
                   timeout: float = DEFAULT_TIMEOUT_S) -> RetainProbe:
    """Does a retained message reach a subscriber that arrives later? Nodes' status and OTA offers are
    retained (docs/protocol.md). The probe clears its retained message afterwards."""
    creds = (username, password)

    def body() -> RetainProbe:
        topic = f"{PREFIX}/{_token()}/retained"
        with _peer(host, port, creds, timeout, f"{PREFIX}-{_token()}-rpub") as pub:
            rc = pub.publish(topic, b"retained", retain=True)
            if isinstance(rc, str) or rc.is_failure:
                if not isinstance(rc, str) and _denied(rc):
                    raise ProbeError(f"PUBLISH {topic} refused: {rc}", denied=True)
                return RetainProbe(refusal=str(rc))
            try:
                with _peer(host, port, creds, timeout, f"{PREFIX}-{_token()}-rsub") as sub:
                    sub.subscribe(topic)
                    msgs = sub.received(topic) if sub.wait_messages(1) else []
            finally:
                pub.publish(topic, b"", retain=True)  # an empty retained message clears it
        return RetainProbe(delivered=bool(msgs), flagged=bool(msgs) and bool(msgs[0].retain))
    return _run_probe(RetainProbe, body)


def probe_shared_subscription(host: str, port: int, *, username: str | None = None,
                              password: str | None = None, messages: int = SHARED_MESSAGES,
                              timeout: float = DEFAULT_TIMEOUT_S) -> SharedProbe:
    """Do two members of a `$share/<group>/...` subscription split the messages between them (each
    message to one member)? Several ingest processes (`serve --group`) rely on it."""
    creds = (username, password)

    def body() -> SharedProbe:
        tok = _token()
        topic, shared = f"{PREFIX}/{tok}/shared", f"$share/{PREFIX}-{tok}/{PREFIX}/{tok}/shared"
        with _peer(host, port, creds, timeout, f"{PREFIX}-{tok}-s1") as a, \
                _peer(host, port, creds, timeout, f"{PREFIX}-{tok}-s2") as b:
            a.subscribe(shared)
            b.subscribe(shared)
            with _peer(host, port, creds, timeout, f"{PREFIX}-{tok}-spub") as pub:
                sent = pub.publish_burst(topic, messages)
            deadline = time.monotonic() + timeout
            while len(a.received()) + len(b.received()) < sent and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)  # copies beyond `sent` (no split) arrive right behind
            return SharedProbe(sent=sent, counts=(len(a.received()), len(b.received())))
    return _run_probe(SharedProbe, body)


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


def run_broker_checks(host: str, port: int, *, username: str | None = None, password: str | None = None,
                      burst: int = DEFAULT_BURST, timeout: float = DEFAULT_TIMEOUT_S,
                      progress: Progress = _quiet) -> list[Check]:
    """Every broker check, in order; the later ones are skipped when the first cannot get through."""
    kw: dict[str, Any] = {"username": username, "password": password, "timeout": timeout}
    where = f"{host}:{port}"
    progress(f"broker {where}: connecting")
    conn = probe_connect(host, port, **kw)
    first = check_connect(conn, where)
    later = ["broker.session", "broker.queue", "broker.message_size", "broker.retained",
             "broker.shared_subscription"]
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


# ---------------------------------------------------------------- the store

@dataclass(frozen=True)
class StoreFacts:
    """What the doctor read from a store file, without changing it."""

    path: str
    exists: bool
    error: str = ""  # not a readable SQLite file: why
    writable: bool = False  # the file and its directory (WAL creates -wal and -shm beside it)
    not_writable: str = ""  # why not
    size_bytes: int = 0  # the file plus its -wal
    data_bytes: int = 0  # pages in use (WAL included, free pages not): what results cost
    journal_mode: str = ""
    user_version: int = 0
    tables: frozenset[str] = field(default_factory=frozenset)
    results: int = 0
    results_per_day: float = 0.0  # at the last hour's rate
    retention_days: float = DEFAULT_RETENTION_DAYS
    free_bytes: int = 0


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute().parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _writable(path: Path) -> str:
    """'' if `edgefleet serve` could write the store at `path` (file and directory), else why not."""
    directory = path.absolute().parent if path.exists() else _existing_ancestor(path)
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable by this user"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"directory {directory} is not writable by this user (SQLite creates -wal and -shm files there)"
    return ""


def _header_says_wal(path: Path) -> bool:
    """Bytes 18-19 of a SQLite header are 2 in WAL mode (read without SQLite, which could touch files)."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    return len(head) == 20 and head[18] == 2 and head[19] == 2


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """Open the store without changing anything on disk. A WAL store nobody has open has no -wal file,
    and even a `mode=ro` connection would create -wal and -shm (owned by the doctor's user, which can
    lock `edgefleet serve` out), so such a file is opened `immutable` (no writer is there to miss);
    otherwise (serve running, or a rollback-journal file) `mode=ro`."""
    immutable = _header_says_wal(path) and not Path(f"{path}-wal").exists()
    uri = f"file:{quote(str(path.absolute()))}?{'immutable=1' if immutable else 'mode=ro'}"
    db = sqlite3.connect(uri, uri=True, timeout=5.0)
    try:
        yield db
    finally:
        db.close()


def _scalar(db: sqlite3.Connection, sql: str, args: tuple = (), default: Any = 0) -> Any:
    row = db.execute(sql, args).fetchone()
    return default if row is None or row[0] is None else row[0]


def _results_per_day(db: sqlite3.Connection, tables: frozenset[str], now: int) -> float:
    """Results per day at the last hour's rate: ingest's own per-batch counts, else results by device
    time. Over the part of the hour since ingest began (at least a minute), so a store that started
    filling ten minutes ago is not taken for a slow one."""
    since = now - 3_600_000
    n, first = 0, None
    if "ingest_stats" in tables:
        n, first = db.execute("SELECT coalesce(sum(results), 0), min(ts) FROM ingest_stats WHERE ts >= ?",
                              (since,)).fetchone()
    if not n and "results" in tables:  # by the results_ts index
        n, first = db.execute("SELECT count(*), min(ts) FROM results WHERE ts >= ?", (since,)).fetchone()
    if not n:
        return 0.0
    span_s = min(3600.0, max(60.0, (now - first) / 1000))
    return n * 86400 / span_s


def _journal_mode(db: sqlite3.Connection, path: Path) -> str:
    """PRAGMA journal_mode; an `immutable` connection always says 'delete', so the header decides then."""
    mode = str(_scalar(db, "PRAGMA journal_mode", default="")).lower()
    return "wal" if mode != "wal" and _header_says_wal(path) else mode


def _data_bytes(db: sqlite3.Connection) -> int:
    """Bytes in pages that hold data: the file size counts free pages and a WAL that is reused."""
    pages = _scalar(db, "PRAGMA page_count") - _scalar(db, "PRAGMA freelist_count")
    return int(pages * _scalar(db, "PRAGMA page_size"))


def _retention_days(db: sqlite3.Connection, tables: frozenset[str]) -> float:
    if "settings" not in tables:
        return DEFAULT_RETENTION_DAYS
    return float(_scalar(db, "SELECT value FROM settings WHERE key = 'retention_days'", default=DEFAULT_RETENTION_DAYS))


def inspect_store(path: str | Path, now: int | None = None) -> StoreFacts:
    """Read what the store checks need: file, journal mode, schema version, counts, free disk."""
    p = Path(path)
    free = shutil.disk_usage(p.absolute().parent if p.exists() else _existing_ancestor(p)).free
    if not p.exists():
        return StoreFacts(str(p), False, not_writable=_writable(p), free_bytes=free)
    if not p.is_file():
        return StoreFacts(str(p), True, error=f"{p} is not a file", free_bytes=free)
    try:
        size = p.stat().st_size + (Path(f"{p}-wal").stat().st_size if Path(f"{p}-wal").exists() else 0)
        with _read_only(p) as db:
            tables = frozenset(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
            return StoreFacts(
                str(p), True, writable=not _writable(p), not_writable=_writable(p), size_bytes=size,
                journal_mode=_journal_mode(db, p),
                user_version=int(_scalar(db, "PRAGMA user_version")), tables=tables, data_bytes=_data_bytes(db),
                results=int(_scalar(db, "SELECT count(*) FROM results")) if "results" in tables else 0,
                results_per_day=_results_per_day(db, tables, now if now is not None else now_ms()),
                retention_days=_retention_days(db, tables), free_bytes=free)
    except (sqlite3.DatabaseError, OSError) as exc:
        return StoreFacts(str(p), True, error=f"cannot read {p} as SQLite: {exc}", free_bytes=free)


def check_store_file(f: StoreFacts) -> Check:
    name = "store.file"
    if f.error:
        return Check(name, "fail", f.error, "point --db (EDGEFLEET_DB) at the fleet's SQLite store; restore it from "
                     "a backup if it is damaged")
    if not f.exists:
        if f.not_writable:
            return Check(name, "fail", f"no store at {f.path}, and `edgefleet serve` could not create one: "
                         f"{f.not_writable}", "create the directory and give the service's user write access to it")
        return Check(name, "warn", f"no store at {f.path} yet (`edgefleet serve --db {f.path}` creates it)",
                     "pass the --db that `edgefleet serve` uses (or set EDGEFLEET_DB) if this is not it")
    if f.not_writable:
        return Check(name, "fail", f"{f.path} cannot be written: {f.not_writable}; ingest cannot commit, so it "
                     "acknowledges nothing and the broker's queue fills",
                     "give the user that runs `edgefleet serve` write access to the file and its directory")
    return Check(name, "pass", f"{f.path}: {_human_bytes(f.size_bytes)}, {f.results:,} results, writable")


def check_wal(f: StoreFacts) -> Check:
    name = "store.wal"
    if not f.exists or f.error:
        return Check(name, "skip", "no store to read")
    if f.journal_mode == "wal":
        return Check(name, "pass", "journal_mode = wal: the dashboard reads while ingest writes")
    return Check(name, "warn", f"journal_mode = {f.journal_mode or 'unknown'}: readers (dashboard, stats) block "
                 "ingest's commits, so ingest falls behind",
                 f"stop `edgefleet serve`, run `sqlite3 {f.path} 'PRAGMA journal_mode=WAL'` (or start serve, which "
                 "sets it); keep the store on a local disk (WAL does not work over NFS)")


def check_schema(f: StoreFacts) -> Check:
    name = "store.schema"
    if not f.exists or f.error:
        return Check(name, "skip", "no store to read")
    v = f.user_version
    if v > SCHEMA_VERSION:
        return Check(name, "fail", f"schema version {v} is newer than this edgefleet's ({SCHEMA_VERSION}): "
                     "`edgefleet serve` refuses to open it, so nothing is ingested",
                     "upgrade edgefleet on this host to the version that wrote the store (or point --db at "
                     "another store)")
    if v == SCHEMA_VERSION:
        return Check(name, "pass", f"schema version {v} (this edgefleet's)")
    if v == 0 and "results" not in f.tables:
        return Check(name, "pass", f"empty database: `edgefleet serve` creates schema version {SCHEMA_VERSION}")
    return Check(name, "warn", f"schema version {v} is older than this edgefleet's ({SCHEMA_VERSION}): "
                 "`edgefleet serve` upgrades it in place on its next start, after which older edgefleet "
                 "versions cannot open it",
                 f"back the file up before the upgrade (`sqlite3 {f.path} '.backup {f.path}.bak'`)")


def disk_runway_days(f: StoreFacts) -> float | None:
    """Days until the disk is full at the last hour's rate (None: no rate, or it never fills).
    Retention deletes results older than its window, and SQLite reuses the freed pages, so the store
    stops growing once it holds `retention_days` of results: only the growth up to there counts."""
    if not f.results or not f.results_per_day:
        return None
    per_day = f.data_bytes / f.results * f.results_per_day
    growth_left = per_day * f.retention_days - f.data_bytes
    if growth_left <= f.free_bytes:
        return None
    return f.free_bytes / per_day


def check_disk(f: StoreFacts) -> Check:
    name = "store.disk"
    free = _human_bytes(f.free_bytes)
    if not f.exists or f.error:
        return Check(name, "pass", f"{free} free where the store goes") if not f.error else \
            Check(name, "skip", "no store to read")
    if not f.results or not f.results_per_day:
        return Check(name, "pass", f"{free} free; no results in the last hour, so no rate to project")
    per_result = f.data_bytes / f.results
    rate = f"{f.results_per_day:,.0f} results/day at ~{per_result:,.0f} B each"
    days = disk_runway_days(f)
    if days is None:
        cap = _human_bytes(int(per_result * f.results_per_day * f.retention_days))
        return Check(name, "pass", f"{free} free; {rate}; retention ({f.retention_days:g} days) caps the store "
                     f"at ~{cap}, which fits")
    fix = (f"free disk space where {f.path} lives, move the store to a larger disk, or shorten retention "
           "(`edgefleet serve --retention-days N`)")
    detail = f"{free} free lasts {days:.1f} days at {rate} (retention {f.retention_days:g} days)"
    if days < DISK_FAIL_DAYS:
        return Check(name, "fail", detail + ": when it is full, ingest cannot commit and the broker's queue "
                     "overflows", fix)
    if days < DISK_WARN_DAYS:
        return Check(name, "warn", detail, fix)
    return Check(name, "pass", detail)


def run_store_checks(db: str | Path, *, now: int | None = None,
                     clock_samples: int = DEFAULT_CLOCK_SAMPLES) -> list[Check]:
    """The store checks and the clock check (which reads the store's results)."""
    facts = inspect_store(db, now)
    clock = Check("clock.skew", "skip", "no store with results to read")
    if facts.exists and not facts.error and {"results", "devices"} <= facts.tables:
        try:
            clock = check_clock(device_skews(db, clock_samples), facts.retention_days)
        except sqlite3.DatabaseError as exc:  # e.g. serve began writing the file we read immutable
            clock = Check("clock.skew", "skip", f"could not read the results: {exc}", "run the doctor again")
    return [check_store_file(facts), check_wal(facts), check_schema(facts), check_disk(facts), clock]


# ---------------------------------------------------------------- clocks

@dataclass(frozen=True)
class DeviceSkew:
    """ingest_ts - ts over a device's latest results, ms: positive = the device's clock is behind
    (or its results were delayed on the way), negative = ahead."""

    device: str
    n: int
    median_ms: float
    worst_ms: int


def device_skews(db: str | Path, samples: int = DEFAULT_CLOCK_SAMPLES) -> list[DeviceSkew]:
    """Skew of each device from its latest `samples` results (by the results_device_ts index: a device
    whose clock is far behind still shows, which a global 'latest by ts' would miss)."""
    out = []
    with _read_only(Path(db)) as conn:
        devices = [r[0] for r in conn.execute("SELECT DISTINCT device FROM devices")]
        for dev in devices:
            rows = conn.execute("SELECT ingest_ts - ts FROM results WHERE device = ? ORDER BY ts DESC LIMIT ?",
                                (dev, samples)).fetchall()
            if rows:
                lags = [int(r[0]) for r in rows]
                out.append(DeviceSkew(dev, len(lags), statistics.median(lags), max(lags, key=abs)))
    return out


def check_clock(skews: list[DeviceSkew], retention_days: float = DEFAULT_RETENTION_DAYS) -> Check:
    name = "clock.skew"
    if not skews:
        return Check(name, "skip", "no results in the store to compare device time with ingest time")
    off = sorted((s for s in skews if abs(s.median_ms) > CLOCK_WARN_S * 1000), key=lambda s: -abs(s.median_ms))
    worst = max(skews, key=lambda s: abs(s.median_ms))
    summary = f"{len(skews)} devices; worst {worst.device}: median {_human_s(worst.median_ms)}, " \
              f"worst {_human_s(worst.worst_ms)} (ingest time - device time)"
    if not off:
        return Check(name, "pass", summary)
    names = ", ".join(f"{s.device} ({_human_s(s.median_ms)})" for s in off[:5]) + (", ..." if len(off) > 5 else "")
    fix = ("run NTP (chrony, systemd-timesyncd) wherever nodes get their time: on the node, or on the host of "
           "its `edgefleet bridge` (an MCU node takes the bridge's clock at hello, then counts its own "
           "milliseconds and drifts: restart the bridge to resync it); results carry the device's time, so "
           "retention, alarms and charts go by it")
    if any(s.median_ms > retention_days * 86_400_000 for s in off):
        return Check(name, "fail", f"{len(off)} device(s) off by more than {CLOCK_WARN_S:g} s: {names}; some are "
                     f"behind by more than the retention ({retention_days:g} days), so their results are deleted "
                     "at the next retention run", fix)
    return Check(name, "warn", f"{len(off)} of {len(skews)} device(s) off by more than {CLOCK_WARN_S:g} s: {names}",
                 fix)


# ---------------------------------------------------------------- all of it

def run_doctor(*, host: str | None, port: int | None, db: str | Path | None, username: str | None = None,
               password: str | None = None, burst: int = DEFAULT_BURST, timeout: float = DEFAULT_TIMEOUT_S,
               clock_samples: int = DEFAULT_CLOCK_SAMPLES, progress: Progress = _quiet) -> Report:
    """The broker checks (when host is given), then the store and clock checks (when db is given)."""
    checks: list[Check] = []
    if host is not None and port is not None:
        checks += run_broker_checks(host, port, username=username, password=password, burst=burst,
                                    timeout=timeout, progress=progress)
    if db is not None:
        progress(f"store {db}")
        checks += run_store_checks(db, clock_samples=clock_samples)
    return Report(tuple(checks))


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _human_s(ms: float) -> str:
    s = ms / 1000
    if abs(s) < 120:
        return f"{s:+.1f} s"
    if abs(s) < 7200:
        return f"{s / 60:+.1f} min"
    if abs(s) < 172800:
        return f"{s / 3600:+.1f} h"
    return f"{s / 86400:+.1f} days"
