"""The broker probes: MQTT traffic on private topics, each returning a small frozen result."""

from __future__ import annotations

import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgefleet.protocol import MAX_PAYLOAD
from edgefleet.protocol.connect import probe_mqtt_version
from edgefleet.service.doctor.report import (
    BURST_WINDOW,
    DEFAULT_BURST,
    DEFAULT_TIMEOUT_S,
    PREFIX,
    RC_NOT_AUTHORIZED,
    SESSION_EXPIRY_S,
    SHARED_MESSAGES,
    SIZE_STEPS,
)

# ---------------------------------------------------------------- MQTT plumbing

# The client TLS context of an mqtts:// broker for every probe connection (None: plain MQTT), set
# around a run by broker_checks.run_broker_checks (probe signatures stay host, port, credentials).
TLS: ContextVar[ssl.SSLContext | None] = ContextVar("doctor_tls", default=None)


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
        if (tls := TLS.get()) is not None:
            self.client.tls_set_context(tls)
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
    version = probe_mqtt_version(host, port, timeout, tls=TLS.get())
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
