"""The broker checks for a broker that speaks MQTT 3.1.1 only (NATS, RabbitMQ, amqtt).

The v5 probes (probes.py) cannot run there, yet ingest does: one process on a plain
subscription with a persistent session (clean session off), see docs/brokers.md. These probes
test what that fallback needs, in 3.1.1, and say how edgefleet behaves on each feature:
persistent session and its offline queue, message size, retained messages, QoS 2 (edgefleet
uses QoS 1 only) and shared subscriptions (absent in 3.1.1: `serve --group` is refused).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.protocol import MAX_PAYLOAD
from edgefleet.service.doctor.report import PREFIX, Check

SESSION_BURST = 500  # QoS 1 messages queued for the offline session


class _Peer311:
    """One MQTT 3.1.1 connection (paho's network thread), recording what it receives."""

    def __init__(self, host: str, port: int, client_id: str, *, clean: bool, username: str | None,
                 password: str | None, timeout: float) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                             clean_session=clean, reconnect_on_failure=False)
        if username:
            self.c.username_pw_set(username, password)
        self.c.max_inflight_messages_set(100)
        self.host, self.port, self.timeout = host, port, timeout
        self.cond = threading.Condition()
        self.msgs: list[mqtt.MQTTMessage] = []
        self.acked: set[int] = set()
        self.subacks: dict[int, list[Any]] = {}
        self.connack: tuple[Any, bool] | None = None
        self.lost = False
        self.c.on_connect = lambda _c, _u, f, rc, _p: self._note(connack=(rc, bool(f.session_present)))
        self.c.on_disconnect = lambda *_: self._note(lost=True)
        self.c.on_message = lambda _c, _u, m: self._note(msg=m)
        self.c.on_publish = lambda _c, _u, mid, _rc, _p: self._note(mid=mid)
        self.c.on_subscribe = lambda _c, _u, mid, rcs, _p: self._note(sub=(mid, list(rcs)))

    def _note(self, connack: Any = None, lost: bool = False, msg: Any = None, mid: Any = None,
              sub: Any = None) -> None:
        with self.cond:
            if connack is not None:
                self.connack = connack
            self.lost = self.lost or lost
            if msg is not None:
                self.msgs.append(msg)
            if mid is not None:
                self.acked.add(mid)
            if sub is not None:
                self.subacks[sub[0]] = sub[1]
            self.cond.notify_all()

    def wait(self, ready: Callable[[], bool], timeout: float | None = None) -> bool:
        with self.cond:
            return self.cond.wait_for(ready, self.timeout if timeout is None else timeout)

    def connect(self) -> bool:
        """True once the broker accepted the connection (session present in self.connack[1])."""
        try:
            self.c.connect(self.host, self.port, keepalive=30)
        except OSError:
            return False
        self.c.loop_start()
        return self.wait(lambda: self.connack is not None or self.lost) and self.connack is not None \
            and not self.connack[0].is_failure

    def subscribe(self, topic: str, qos: int = 1) -> int | None:
        """The QoS the broker granted, None if refused or no answer."""
        _, mid = self.c.subscribe(topic, qos)
        if not self.wait(lambda: mid in self.subacks or self.lost):
            return None
        rcs = self.subacks.get(mid) or [None]
        rc = rcs[0]
        return None if rc is None or rc.is_failure else int(rc.value)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS and (
            qos == 0 or self.wait(lambda: info.mid in self.acked or self.lost))

    def received(self, n: int, quiet: float | None = None) -> int:
        """Messages received once n arrived or none came for `quiet` s (default a fifth of the
        timeout, at least 1 s), after the timeout at most."""
        quiet = max(1.0, self.timeout / 5) if quiet is None else quiet
        deadline = time.monotonic() + self.timeout
        last = -1
        while time.monotonic() < deadline and len(self.msgs) < n:
            if len(self.msgs) == last:
                break
            last = len(self.msgs)
            self.wait(lambda: len(self.msgs) > last, quiet)
        return len(self.msgs)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _run(host: str, port: int, username: str | None, password: str | None, timeout: float,
         progress: Callable[[str], None]) -> dict[str, Any]:
    """Raw findings: each feature's outcome as numbers and flags."""
    tok = secrets.token_hex(4)
    base = f"{PREFIX}/{tok}"
    kw: dict[str, Any] = {"username": username, "password": password, "timeout": timeout}
    out: dict[str, Any] = {}
    pub = _Peer311(host, port, f"ef-doctor-{tok}-pub", clean=True, **kw)
    if not pub.connect():
        return {"error": "the broker refused or dropped a plain MQTT 3.1.1 connection"}
    try:
        progress(f"broker (3.1.1): persistent session with {SESSION_BURST} messages queued while away")
        sid = f"ef-doctor-{tok}-sess"
        s1 = _Peer311(host, port, sid, clean=False, **kw)
        ok = s1.connect() and s1.subscribe(f"{base}/sess", 1) is not None
        s1.close()
        sent = sum(pub.publish(f"{base}/sess", b"x%d" % i) for i in range(SESSION_BURST)) if ok else 0
        s2 = _Peer311(host, port, sid, clean=False, **kw)
        if s2.connect():
            out["session"] = {"present": s2.connack[1] if s2.connack else False, "sent": sent,
                              "received": s2.received(sent)}
        s2.close()
        _Peer311(host, port, sid, clean=True, **kw).connect()  # clean start: ends the probe's session

        progress(f"broker (3.1.1): one {MAX_PAYLOAD:,}-byte message, retained message, QoS 2")
        sub = _Peer311(host, port, f"ef-doctor-{tok}-sub", clean=True, **kw)
        sub.connect()
        sub.subscribe(f"{base}/big", 1)
        out["size"] = {"size": MAX_PAYLOAD, "delivered": pub.publish(f"{base}/big", b"\0" * MAX_PAYLOAD)
                       and sub.received(1) >= 1}
        pub.publish(f"{base}/ret", b"kept", retain=True)
        late = _Peer311(host, port, f"ef-doctor-{tok}-late", clean=True, **kw)
        late.connect()
        late.subscribe(f"{base}/ret", 1)
        got = late.received(1)
        out["retained"] = {"delivered": got >= 1, "flagged": bool(got and late.msgs[0].retain)}
        late.close()
        pub.publish(f"{base}/ret", b"", retain=True)  # clear it
        granted = sub.subscribe(f"{base}/q2", 2)
        before = len(sub.msgs)
        q2_ok = pub.publish(f"{base}/q2", b"two", qos=2) and not pub.lost
        out["qos2"] = {"granted": granted, "publish_ok": q2_ok,
                       "delivered": q2_ok and sub.received(before + 1) > before}
        sub.close()

        progress("broker (3.1.1): shared subscription")
        pub = _reopen(pub, host, port, f"ef-doctor-{tok}-pub2", kw)
        a = _Peer311(host, port, f"ef-doctor-{tok}-a", clean=True, **kw)
        b = _Peer311(host, port, f"ef-doctor-{tok}-b", clean=True, **kw)
        grants = [p.connect() and p.subscribe(f"$share/ef-doctor-{tok}/{base}/shared", 1) for p in (a, b)]
        n = 20
        for i in range(n):
            pub.publish(f"{base}/shared", b"s%d" % i)
        time.sleep(1.0)
        out["shared"] = {"subscribed": all(g is not None for g in grants), "sent": n,
                         "counts": (len(a.msgs), len(b.msgs))}
        a.close()
        b.close()
    finally:
        pub.close()
    return out


def _reopen(peer: _Peer311, host: str, port: int, client_id: str, kw: dict[str, Any]) -> _Peer311:
    """A fresh publisher if the broker closed the last one (a refused QoS 2 publish does that)."""
    if not peer.lost:
        return peer
    peer.close()
    p = _Peer311(host, port, client_id, clean=True, **kw)
    p.connect()
    return p


def checks_311(found: dict[str, Any], version: str) -> list[Check]:
    """Checklist lines from the findings, each saying what edgefleet does with the outcome."""
    if "error" in found:
        return [Check("broker.session", "fail", found["error"], "look at the broker's log")]
    out = []
    s = found.get("session")
    if s and s["present"] and s["received"] >= s["sent"] > 0:
        out.append(Check("broker.session", "pass",
                         f"MQTT {version} persistent session (clean session off) kept all {s['sent']} QoS 1 "
                         "messages published while away: ingest runs here as ONE process on a plain "
                         "subscription and loses nothing across its restarts"))
    else:
        what = "no session to resume" if not s else \
            f"session present {s['present']}, {s['received']} of {s['sent']} queued messages came back"
        out.append(Check("broker.session", "fail", f"MQTT {version} persistent session: {what}: results "
                         "published while ingest restarts are lost",
                         "enable persistent sessions on the broker (NATS: JetStream with the mqtt block; "
                         "RabbitMQ: durable queues), or use Mosquitto 2"))
    z = found.get("size", {})
    out.append(Check("broker.message_size", "pass" if z.get("delivered") else "fail",
                     f"a {z.get('size', MAX_PAYLOAD):,}-byte payload (the protocol's maximum) "
                     + ("got through" if z.get("delivered") else "did not get through: debug captures are lost"),
                     "" if z.get("delivered") else "raise the broker's payload limit (NATS: max_payload) "
                     f"above {MAX_PAYLOAD + 1024:,} bytes"))
    r = found.get("retained", {})
    ok = r.get("delivered") and r.get("flagged")
    out.append(Check("broker.retained", "pass" if ok else "fail",
                     "a retained message reaches a subscriber that comes later" if ok else
                     "retained messages do not work: nodes miss status and OTA offers published while away",
                     "" if ok else "enable retained messages on the broker (NATS: JetStream)"))
    q = found.get("qos2", {})
    out.append(Check("broker.qos2", "pass",
                     ("QoS 2 works" if q.get("delivered") and q.get("granted") == 2 else
                      f"QoS 2 not supported (subscription granted QoS {q.get('granted')}, a QoS 2 publish "
                      f"{'went through' if q.get('publish_ok') else 'was refused'})")
                     + ": edgefleet uses QoS 1 only, with the ledger dropping duplicates"))
    sh = found.get("shared", {})
    a, b = sh.get("counts", (0, 0))
    if sh.get("subscribed") and a + b == sh.get("sent") and a and b:
        out.append(Check("broker.shared_subscription", "pass", f"$share/ split {a + b} messages ({a} + {b})"))
    else:
        out.append(Check("broker.shared_subscription", "warn",
                         f"no shared subscriptions in MQTT {version} (a $share/ group got {a} + {b} of "
                         f"{sh.get('sent', 0)}): `serve --group` refuses to start here; one ingest process "
                         "carries the load",
                         "run one `serve --role ingest` without --group, or use an MQTT v5 broker "
                         "(Mosquitto 2, EMQX) to split ingest over several processes"))
    return out


def run_311_checks(host: str, port: int, version: str, *, username: str | None = None,
                   password: str | None = None, timeout: float = 10.0,
                   progress: Callable[[str], None] = lambda _m: None) -> list[Check]:
    """The 3.1.1 checks, for a broker that refused MQTT v5."""
    return checks_311(_run(host, port, username, password, timeout, progress), version)
