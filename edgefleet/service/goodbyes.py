"""How far each boot went, read back from the broker's retained statuses: the results lost at the
very end of a boot, after a goodbye that itself was lost on the way, still count.

A node's clean goodbye (`offline` status) carries `res_seq`, the last result seq of its boot, and a
birth after a warm reset carries `prev` (docs/protocol.md); ingest turns both into seq marks so a
lost tail is a hole (store/loss.py). But the status travels to ingest in the same session queue as
the results: a broker that drops what that queue cannot hold (Mosquitto keeps the in-flight window
plus `max_queued_messages`, 1,000 by default) drops goodbyes too. On a default-config Mosquitto,
10,000 nodes for 60 s (benchmarks/loss_default_broker.py) lost 3,144 of 10,000 goodbyes that way,
and with them every result after the last one that arrived: the whole shortfall of the store's
`missing` against the true loss.

Statuses are retained, and a broker keeps its retained messages apart from any session queue. A
fresh clean session that advertises a Receive Maximum of 65,535 gets them all at once (Mosquitto
counts the in-flight window into what a session may hold; measured on Mosquitto 2.0.11 with
Debian's defaults: 10,000 of 10,000 retained statuses, against 3,000 with ingest's 2,000).
`read_marks` collects the marks they carry; `apply_marks` writes them to the store through the
normal write path, for boots the store knows and for boots whose every result was lost (the
goodbye no older than the store's first accounted boot: a retained goodbye from before the store
would otherwise open a hole for results that were never meant to reach it). A mark is idempotent:
a boot that already reached that seq is unchanged, so reading them again costs nothing but time.
What stays unseen: a node that went away without a goodbye (its will, registered at connect,
cannot say how far the boot went) and lost its last results with the connection.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgefleet.errors import EdgefleetError
from edgefleet.protocol import codec
from edgefleet.protocol.connect import (
    apply_tls,
    broker_credentials,
    client_tls,
    parse_broker_url,
    redact,
)
from edgefleet.service.store.base import IngestBatch

Mark = tuple[str, str, int, int]  # device, boot, last result seq of that boot, status ts


def marks_of(topic: str, payload: bytes) -> list[Mark]:
    """The seq marks one retained status carries (none for anything that is not a valid status:
    the broker's retained store holds whatever anyone published, so it is decoded like ingest does)."""
    try:
        m = codec.decode_message(topic, payload)
        if m.kind != "status":
            return []
        b, out = m.body, []
        if "res_seq" in b:
            out.append((m.device, b["boot"], int(b["res_seq"]), int(b["ts"])))
        if "prev" in b:
            out.append((m.device, b["prev"]["boot"], int(b["prev"]["res_seq"]), int(b["ts"])))
        return out
    except (codec.ProtocolError, KeyError, TypeError, ValueError):
        return []


def read_marks(broker_url: str, *, quiet_s: float = 1.0, timeout_s: float = 120.0,
               credentials: tuple[str | None, str | None] | None = None, tls: Any = "url",
               client_id: str | None = None) -> tuple[list[Mark], int]:
    """Every seq mark in the broker's retained statuses, and how many retained statuses there were.
    Ends when no retained message came for `quiet_s` (MQTT has no end-of-retained marker).
    `credentials` and `tls` (an ssl.SSLContext or None) default to what the URL and environment say;
    ingest passes its own, so the read logs in as ingest does."""
    host, port = parse_broker_url(broker_url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                    client_id=client_id or f"ef-goodbyes-{time.monotonic_ns() % 10**9}", protocol=mqtt.MQTTv5)
    user, password = credentials if credentials is not None else broker_credentials(broker_url)
    if user is not None:
        c.username_pw_set(user, password)
    apply_tls(c, client_tls(broker_url) if tls == "url" else tls)
    lock, seen, marks = threading.Lock(), [0, time.monotonic()], []
    ready = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if not msg.retain:
            return  # a live status: ingest has it
        got = marks_of(msg.topic, msg.payload)
        with lock:
            seen[0] += 1
            seen[1] = time.monotonic()
            marks.extend(got)

    def on_subscribe(*_a: Any) -> None:
        with lock:
            seen[1] = time.monotonic()
        ready.set()

    c.on_message, c.on_subscribe = on_message, on_subscribe
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = 65535  # the broker may hold this many for us beyond its queue limit
    try:
        c.connect(host, port, keepalive=30, clean_start=True, properties=props)
    except OSError as exc:
        raise EdgefleetError(f"cannot connect to {redact(broker_url)}: {exc}") from None
    c.loop_start()
    try:
        c.subscribe(f"{codec.TOPIC_ROOT}/+/status", qos=0)
        deadline = time.monotonic() + timeout_s
        if not ready.wait(timeout_s):
            raise EdgefleetError(f"{redact(broker_url)} did not answer the subscription to the retained statuses")
        while time.monotonic() < deadline:
            with lock:
                idle = time.monotonic() - seen[1]
            if idle >= quiet_s:
                break
            time.sleep(min(0.1, quiet_s / 4))
    finally:
        c.disconnect()
        c.loop_stop()
    with lock:
        return list(marks), seen[0]


def apply_marks(store: Any, marks: list[Mark], now_ms: int) -> int:
    """Write the marks of boots the store knows, and of boots it never saw whose goodbye is no older
    than the first boot it accounted (all their results lost: a hole from 0, as ingest makes of a
    goodbye that arrives); one batch, the normal write path. Returns how many were written."""
    if not marks:
        return 0
    flush = getattr(store, "flush_loss", None)
    if flush is not None:
        flush()
    known = {(d, b) for d, b in store._q("SELECT device, boot FROM boots")}
    since = store._q("SELECT min(first_ts) FROM boots")[0][0]
    if since is None:
        return 0  # nothing accounted yet: every retained goodbye is older than this store
    mine = [m for m in marks if (m[0], m[1]) in known or since <= m[3] <= now_ms]
    if mine:
        store.write_batch(IngestBatch(ingest_ts=now_ms, seq_marks=mine))
    return len(mine)


__all__ = ["Mark", "apply_marks", "marks_of", "read_marks"]
