"""Many MQTT connections per process: one paho client per node, driven by a few network threads.

Each `Shard` thread owns a set of nodes and their paho clients and runs one `selectors`
loop over all their sockets (paho's external-loop API: loop_read / loop_write /
loop_misc with socket open/close and write-interest callbacks). Nothing outside the
shard thread touches its clients or nodes: other threads hand it work through
`Shard.call(fn)`. Each node keeps at most `inflight_cap` result messages waiting for
their PUBACK (far below paho's 65,535 message ids), the rest wait in the node's own
bounded ring: that ring is the only backlog, so memory and loss are both bounded.
"""

from __future__ import annotations

import logging
import queue
import random
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device_sim.node import Outgoing, VirtualNode
from edgefleet.clock import now_ms
from edgefleet.protocol import ProtocolError, decode

log = logging.getLogger(__name__)


@dataclass
class LinkOptions:
    host: str
    port: int
    mqtt_version: str = "5"  # "5" or "3.1.1"
    keepalive: int = 30
    inflight_cap: int = 8  # result messages awaiting PUBACK per node
    max_batch_age_s: float = 5.0  # send a partial batch once its oldest result is this old
    connect_rate: float = 400.0  # new connections per second per shard (avoid SYN storms)
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 8.0
    password: Callable[[str], str] | None = None  # device id -> password (username = device id)
    # a broker cluster: every member's (host, port). A node starts on members[link.member] and moves
    # to the next member each time its connection fails or drops (empty: host, port only)
    members: tuple[tuple[str, int], ...] = ()
    tls: Callable[[str], Any] | None = None  # mqtts://: device id -> its ssl.SSLContext (None: plain TCP)
    # Fault injection for tests and benchmarks: every ota/data chunk passes through
    # hook(shard, link, body) -> the chunk as the node receives it, or None (lost).
    ota_data_hook: Callable[[Shard, NodeLink, dict], dict | None] | None = None


@dataclass
class NodeLink:
    """A node with its paho client and the counters the report needs."""

    node: VirtualNode
    client: mqtt.Client | None = None
    connected: bool = False
    flush: bool = True
    inflight: dict[int, int] = field(default_factory=dict)  # mid -> results carried
    sent_ms: dict[int, int] = field(default_factory=dict)  # mid -> window time of its oldest result
    next_try: float = 0.0
    backoff: float = 0.0
    connects: int = 0
    disconnects: int = 0
    acked_results: int = 0
    acked_messages: int = 0
    refused_results: int = 0
    births: int = 0
    refused_connects: int = 0  # CONNACK failures (bad credentials, not authorized, ...)
    debug_sent: int = 0
    oldest_ms: int = 0  # when the oldest pending result was added (for batch ageing)
    stopped: bool = False
    member: int = 0  # index into LinkOptions.members: the member this node connects to now
    failovers: int = 0  # moves to another member after a failed or lost connection
    subscribing: list = field(default_factory=list)  # the filters of the last SUBSCRIBE sent
    resubscribe_at: float = 0.0  # when to ask again for filters the broker refused (0: none)
    refused_subs: int = 0  # SUBACKs that refused a filter (NATS while JetStream elects leaders)


class Shard(threading.Thread):
    """One network thread: a selector over the sockets of its nodes' clients."""

    def __init__(self, links: list[NodeLink], opts: LinkOptions, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.links = links
        self.opts = opts
        self.sel = selectors.DefaultSelector()
        self.inbox: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()
        self._halt = threading.Event()
        self._wake_r, self._wake_w = _wake_pair()
        self.sel.register(self._wake_r, selectors.EVENT_READ, None)
        self.errors = 0
        self.ack_latency_ms: list[int] = []  # window -> PUBACK, oldest result of each message

    # --- called from other threads -------------------------------------------------------
    def call(self, fn: Callable[[], Any]) -> None:
        """Run fn() in this shard's thread (soon)."""
        self.inbox.put(fn)
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    def stop(self) -> None:
        self._halt.set()
        self.call(lambda: None)

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        pending = list(self.links)
        random.shuffle(pending)
        last_misc = 0.0
        start = time.monotonic()
        started = 0
        while not self._halt.is_set():
            now = time.monotonic()
            # first connections, rate limited
            allowed = int((now - start) * self.opts.connect_rate) + 1 - started
            while pending and allowed > 0:
                self._connect(pending.pop())
                started += 1
                allowed -= 1
            for key, ev in self.sel.select(timeout=0.05 if pending else 0.2):
                if key.data is None:
                    self._drain_wake()
                    continue
                link: NodeLink = key.data
                c = link.client
                if c is None:
                    continue
                if ev & selectors.EVENT_READ:
                    c.loop_read()
                if ev & selectors.EVENT_WRITE and link.client is c:
                    c.loop_write()
            self._run_inbox()
            if now - last_misc >= 0.5:
                last_misc = now
                self._misc(now)
        self._run_inbox()  # results posted before stop() still reach their nodes
        self._shutdown()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _run_inbox(self) -> None:
        while True:
            try:
                fn = self.inbox.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            except Exception:  # a bug in one job must not stop every node of the shard
                self.errors += 1
                log.exception("shard job failed")

    def _misc(self, now: float) -> None:
        age_ms = now_ms() - int(self.opts.max_batch_age_s * 1000)
        for link in self.links:
            c = link.client
            if c is None or link.stopped:
                continue
            if c.socket() is not None:
                c.loop_misc()  # keepalive pings; also gives up on a CONNACK that never comes
            if link.connected:
                if link.node.pending() and link.oldest_ms and link.oldest_ms <= age_ms:
                    self.pump(link, flush=True)
                if link.resubscribe_at and now >= link.resubscribe_at:
                    link.resubscribe_at = 0.0
                    link.client.subscribe(link.subscribing)
            elif link.next_try and now >= link.next_try:
                self._reconnect(link)

    # --- connection management ----------------------------------------------------------
    def _new_client(self, link: NodeLink) -> mqtt.Client:
        node = link.node
        v5 = self.opts.mqtt_version == "5"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=node.device_id, userdata=link,
                        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                        **({} if v5 else {"clean_session": True}))
        c.max_inflight_messages_set(self.opts.inflight_cap + 4)  # + birth, debug, spare
        c.max_queued_messages_set(0)
        c.connect_timeout = 3.0
        c.suppress_exceptions = True
        if self.opts.password is not None:
            c.username_pw_set(node.device_id, self.opts.password(node.device_id))
        if self.opts.tls is not None:
            c.tls_set_context(self.opts.tls(node.device_id))
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        return c

    def _set_will(self, link: NodeLink) -> None:
        will = link.node.death(now_ms(), "lost")
        assert link.client is not None
        link.client.will_set(will.topic, will.payload, qos=1, retain=True)

    def _member_addr(self, link: NodeLink) -> tuple[str, int]:
        """The broker member this node uses now."""
        members = self.opts.members
        return members[link.member % len(members)] if members else (self.opts.host, self.opts.port)

    def _session_args(self) -> dict[str, Any]:
        """CONNECT settings of a node: a clean session that ends with the connection."""
        if self.opts.mqtt_version != "5":
            return {"clean_start": mqtt.MQTT_CLEAN_START_FIRST_ONLY, "properties": None}
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        return {"clean_start": True, "properties": props}

    def _connect(self, link: NodeLink) -> None:
        link.client = self._new_client(link)
        self._set_will(link)
        host, port = self._member_addr(link)
        try:
            link.client.connect(host, port, keepalive=self.opts.keepalive, **self._session_args())
        except OSError as exc:
            log.debug("%s: connect failed: %s", link.node.device_id, exc)
            self._schedule_retry(link)

    def _reconnect(self, link: NodeLink) -> None:
        link.next_try = 0.0
        c = link.client
        assert c is not None
        try:
            self._set_will(link)
            if len(self.opts.members) > 1:  # on to the member _schedule_retry picked (same session settings)
                host, port = self._member_addr(link)
                c.connect_async(host, port, keepalive=self.opts.keepalive, **self._session_args())
            c.reconnect()
        except OSError as exc:
            log.debug("%s: reconnect failed: %s", link.node.device_id, exc)
            self._schedule_retry(link)

    def _schedule_retry(self, link: NodeLink) -> None:
        o = self.opts
        if len(o.members) > 1:  # a member that failed us: try the next one (its peers hold the cluster's state)
            link.member = (link.member + 1) % len(o.members)
            link.failovers += 1
            if link.failovers % len(o.members):  # within a round over the members: no growing backoff
                link.next_try = time.monotonic() + o.reconnect_min_s * random.uniform(0.5, 1.0)
                return
        link.backoff = min(o.reconnect_max_s, max(o.reconnect_min_s, link.backoff * 2))
        link.next_try = time.monotonic() + link.backoff * random.uniform(0.5, 1.0)

    def reboot(self, link: NodeLink) -> None:
        """Device reboot: drop the connection without DISCONNECT (the will fires), new boot."""
        c = link.client
        if c is not None:
            sock = c.socket()
            if sock is not None:
                self._on_socket_close(c, link, sock)
                sock.close()
            link.client = None
        link.connected = False
        link.inflight.clear()
        link.sent_ms.clear()
        link.node.reboot()
        self._connect(link)

    # --- paho callbacks (run in this thread) --------------------------------------------
    def _on_socket_open(self, client, link, sock) -> None:
        self.sel.register(sock, selectors.EVENT_READ, link)

    def _on_socket_close(self, client, link, sock) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _on_register_write(self, client, link, sock) -> None:
        try:
            self.sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, link)
        except (KeyError, ValueError):
            pass

    def _on_unregister_write(self, client, link, sock) -> None:
        try:
            self.sel.modify(sock, selectors.EVENT_READ, link)
        except (KeyError, ValueError):
            pass

    def _on_connect(self, client, link: NodeLink, flags, rc, props) -> None:
        if rc.is_failure:
            link.refused_connects += 1
            if link.refused_connects == 1:
                log.warning("%s: broker refused the connection: %s", link.node.device_id, rc)
            return
        link.connected = True
        link.connects += 1
        link.backoff = 0.0
        link.flush = True
        subs = [(link.node.topics["cmd"], 1)]
        if link.node.ota is not None:
            subs += [(link.node.topics["ota/offer"], 1), (link.node.topics["ota/data"], 1)]
        link.subscribing, link.resubscribe_at = subs, 0.0
        client.subscribe(subs)
        link.node.announce = False
        self.send(link, link.node.birth(now_ms()))
        link.births += 1
        while link.node.ota_outbox:
            self.send(link, link.node.ota_outbox.pop(0))
        self.pump(link)

    def _on_disconnect(self, client, link: NodeLink, flags, rc, props) -> None:
        if link.connected and not link.stopped:
            link.disconnects += 1
        link.connected = False
        if not link.stopped and link.client is client:
            self._schedule_retry(link)

    def _on_subscribe(self, client, link: NodeLink, mid, rcs, props) -> None:
        """A broker may refuse a subscription on a live connection: NATS does (SUBACK 0x80) while JetStream
        elects new leaders after a member is lost. The node would then never hear its offers, chunks or
        commands; it asks again for the refused filters a second later, on the same connection."""
        refused = [f for f, r in zip(link.subscribing, rcs) if getattr(r, "is_failure", False)]
        if refused and link.client is client and not link.stopped:
            link.refused_subs += 1
            log.debug("%s: broker refused %s; subscribing again in 1 s", link.node.device_id, refused)
            link.subscribing, link.resubscribe_at = refused, time.monotonic() + 1.0

    def _on_publish(self, client, link: NodeLink, mid, rc, props) -> None:
        n = link.inflight.pop(mid, None)
        if n is None:
            return
        ts = link.sent_ms.pop(mid, None)
        if ts is not None and len(self.ack_latency_ms) < 1_000_000:
            self.ack_latency_ms.append(now_ms() - ts)
        if rc.is_failure:
            link.refused_results += n
            log.warning("%s: broker refused a result message: %s", link.node.device_id, rc)
        else:
            link.acked_results += n
            link.acked_messages += 1
        self.pump(link)

    def _on_message(self, client, link: NodeLink, msg) -> None:
        kind = "ota/offer" if msg.topic.endswith("/ota/offer") else "ota/data" if msg.topic.endswith("/ota/data") \
            else "cmd"
        if kind != "cmd":
            if not msg.payload:
                return  # a cleared retained offer
            try:
                body = decode(kind, msg.payload)
            except ProtocolError as exc:
                log.warning("%s: ignored an invalid %s: %s", link.node.device_id, kind, exc)
                return
            if kind == "ota/data" and self.opts.ota_data_hook is not None:
                body = self.opts.ota_data_hook(self, link, body)
                if body is None:
                    return
            for out in link.node.handle_ota(kind, body, now_ms()):
                self.send(link, out)
            return
        try:
            body = decode("cmd", msg.payload)
        except ProtocolError as exc:
            log.warning("%s: ignored an invalid command: %s", link.node.device_id, exc)
            return
        if body["op"] == "reboot":
            if body["id"] not in link.node.handled_cmds:
                link.node.handled_cmds.append(body["id"])
                self.call(lambda: self.reboot(link))
            return
        for out in link.node.handle_command(body, now_ms()):
            self.send(link, out)

    # --- publishing -----------------------------------------------------------------------
    def send(self, link: NodeLink, out: Outgoing) -> bool:
        """Publish a non-result message now (status, debug); False if not connected.

        An OTA outcome (`ota/state`) made while offline (a trial ending during a broker
        outage) waits in the node's OTA outbox for the next connection instead: the
        server must learn it, or the campaign waits for it until the stage timeout."""
        if not link.connected or link.client is None:
            if out.topic == link.node.topics["ota/state"]:
                link.node.ota_outbox.append(out)
            return False
        info = link.client.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)
        if out.topic == link.node.topics["debug"] and info.rc == mqtt.MQTT_ERR_SUCCESS:
            link.debug_sent += 1
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def pump(self, link: NodeLink, *, flush: bool = False) -> None:
        """Hand ring results to the client while the node has PUBACK credit."""
        node = link.node
        while link.connected and len(link.inflight) < self.opts.inflight_cap:
            out = node.next_message(flush=flush or link.flush)
            if out is None:
                break
            assert link.client is not None
            info = link.client.publish(out.topic, out.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break
            node.commit(out.results)
            link.inflight[info.mid] = out.results
            link.sent_ms[info.mid] = out.oldest_ms
        if not node.pending():
            link.flush = False
            link.oldest_ms = 0
        elif node.ring:
            link.oldest_ms = node.ring[0][1]

    def deliver(self, link: NodeLink, ts_ms: int, score: float, inf_us: int, verdict: Any = None,
                reading: Any = None) -> bool:
        """A new window result for this node (in this thread): ring, then send if possible."""
        anom = link.node.add_result(ts_ms, score, inf_us, verdict=verdict, reading=reading)
        if link.node.announce and link.connected:
            link.node.announce = False
            self.send(link, link.node.birth(now_ms()))
            link.births += 1
        if not link.oldest_ms:
            link.oldest_ms = ts_ms
        self.pump(link)
        return anom

    def _shutdown(self) -> None:
        """Clean goodbye: an 'offline' status (retained), then DISCONNECT (no will)."""
        for link in self.links:
            link.stopped = True
            c = link.client
            if c is None:
                continue
            if link.connected:
                self.send(link, link.node.death(now_ms(), "offline"))
                c.disconnect()
                for _ in range(5):
                    if not c.want_write():
                        break
                    c.loop_write()
        # give the last writes a moment to leave the sockets
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(
                link.client is not None and link.client.want_write() for link in self.links):
            for key, ev in self.sel.select(timeout=0.05):
                if key.data is not None and key.data.client is not None and ev & selectors.EVENT_WRITE:
                    key.data.client.loop_write()
        for link in self.links:
            sock = link.client.socket() if link.client is not None else None
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        self.sel.close()


def _wake_pair():
    import socket

    r, w = socket.socketpair()
    r.setblocking(False)
    w.setblocking(False)
    return r, w


__all__ = ["LinkOptions", "NodeLink", "Shard", "now_ms"]
