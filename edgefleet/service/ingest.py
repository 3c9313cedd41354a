"""The ingest service: MQTT -> codec -> store, at least once, duplicates dropped.

Flow: paho's network thread puts each message into a bounded queue (a full queue
blocks it, so the broker holds back; the broker itself sends at most `receive_max`
unacknowledged QoS 1 messages). One worker thread takes up to `batch_max` messages
or waits `batch_ms`, decodes them (invalid ones become stored rejects with their
reason), writes the batch in one commit, feeds the new results to the alarm
tracker, and only then acknowledges the batch's QoS 1 messages. A crash before the
acknowledgement means the broker redelivers; the (device, boot, seq) key makes the
second copy a counted duplicate. A store failure keeps the batch and retries it.
With `ingest_overlap` a decoder thread takes and decodes the next batch while the worker
writes, commits and acknowledges the one before (it never acknowledges).
"""

from __future__ import annotations

import logging
import queue
import signal
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edgefleet import protocol
from edgefleet.clock import now_ms
from edgefleet.errors import EdgefleetError
from edgefleet.protocol import ProtocolError, ResultRecord
from edgefleet.protocol.connect import apply_tls, probe_mqtt_version, tls_failure
from edgefleet.service.alarms import AlarmPolicy, AlarmTracker, DeviceHealth
from edgefleet.service.config import Settings
from edgefleet.service.ingest_phases import BatchPhases
from edgefleet.service.machine_classes import MachineClasses
from edgefleet.service.store import (
    DeviceUpdate,
    Event,
    IngestBatch,
    Reject,
    Store,
    summary_sql,
)

log = logging.getLogger("edgefleet.service.ingest")
RETENTION_EVERY_S = 3600.0
GOODBYES_EVERY_S = 300.0  # how often the retained goodbyes are read back (service/goodbyes.py); 0: never
RETENTION_BUDGET = 20_000  # rows one pass deletes (in transactions of a few thousand: ingest goes on between)
RETENTION_AGAIN_S = 1.0  # a pass that used its whole budget runs again this soon, between batches


@dataclass(frozen=True)
class Inbound:
    """One MQTT message as received: enough to decode it and to acknowledge it later."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int  # connection it arrived on: acks for an older connection are not sent
    rx_ms: int


def ingest_filters(group: str | None) -> list[str]:
    """Topic filters ingest subscribes to; with a group, as MQTT v5 shared subscriptions."""
    base = [f"{protocol.codec.TOPIC_ROOT}/+/{kind}" for kind in protocol.INGEST_KINDS]
    return [f"$share/{group}/{t}" for t in base] if group else base


MAX_AHEAD_MS = 10 * 60 * 1000  # a device clock this far ahead of the broker's receive time is not believed


def check_claims(kind: str, body: dict, rx_ms: int) -> None:
    """What a device claims that the service can check: no time stamp more than MAX_AHEAD_MS after
    the message arrived (a far-future `ts` would pin the device's registry entry for good)."""
    if rx_ms <= 0:
        return  # no receive time to hold the claim against
    stamps = [r["ts"] for r in body["res"]] if kind == "result" else [body.get("ts", 0)]
    latest = max(stamps)
    if latest > rx_ms + MAX_AHEAD_MS:
        raise ProtocolError("claim", f"ts {latest} is {(latest - rx_ms) / 1000:.0f} s after the message "
                                     f"arrived (limit {MAX_AHEAD_MS // 1000} s): the device clock is wrong")


def decode_into(batch: IngestBatch, msg: Inbound, max_payload: int = protocol.MAX_PAYLOAD) -> str | None:
    """Add one message to `batch` (results, registry facts, events or a reject); returns the
    reject code, or None if accepted. Never raises for bad input."""
    batch.messages += 1
    try:
        m = protocol.decode_message(msg.topic, msg.payload, max_size=max_payload)
        check_claims(m.kind, m.body, msg.rx_ms)
        if m.kind == "result":
            batch.results.extend(protocol.result_records(m.device, m.body))
        elif m.kind == "summary":  # a node in summary mode: checked beyond the schema (summary_record)
            batch.summaries.append(protocol.summary_record(m.device, m.body))
        elif m.kind == "status":
            b = m.body
            batch.devices.append(DeviceUpdate(
                m.device, int(b["ts"]), status=b["state"], boot=b["boot"], fw=b.get("fw"),
                model=int(b["model"]) if "model" in b else None, slot=b.get("slot"),
                thr=float(b["thr"]) if "thr" in b else None,
                caps=tuple(b["caps"]) if "caps" in b else None, site=b.get("site"), line=b.get("line"),
                tags=tuple(b["tags"]) if "tags" in b else None, comm=b.get("comm")))
            batch.events.append(Event(m.device, int(b["ts"]), m.kind, b))
            if "res_seq" in b:  # how far this boot's results go: a loss at the end shows too
                batch.seq_marks.append((m.device, b["boot"], int(b["res_seq"]), int(b["ts"])))
            if "prev" in b:  # a birth after a reset: the previous boot's tail, lost from RAM, shows too
                batch.seq_marks.append((m.device, b["prev"]["boot"], int(b["prev"]["res_seq"]), int(b["ts"])))
        else:  # ota/state, debug: kept as device events
            batch.events.append(Event(m.device, int(m.body["ts"]), m.kind, m.body))
        return None
    except ProtocolError as exc:
        batch.rejects.append(Reject(msg.rx_ms, msg.topic, exc.code, exc.detail, bytes(msg.payload[:256]),
                                    len(msg.payload)))
        return exc.code
    except Exception as exc:  # a bug must not stop the service: keep the message as a reject
        log.exception("unexpected error decoding a message on %s", msg.topic[:100])
        batch.rejects.append(Reject(msg.rx_ms, msg.topic, "internal", f"{type(exc).__name__}: {exc}"[:500],
                                    bytes(msg.payload[:256]), len(msg.payload)))
        return "internal"


@dataclass
class IngestCounters:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    acked: int = 0
    alarms_raised: int = 0
    store_errors: int = 0
    connects: int = 0
    rejects_by_code: dict[str, int] = field(default_factory=dict)
    summaries: int = 0  # node summaries stored (store/summary_sql.py); their duplicates count in `duplicates`


class IngestService:
    """`start()` connects and consumes in background threads; `stop()` finishes the current
    batch, acknowledges it and disconnects."""

    def __init__(self, settings: Settings, store: Store, *, policy: AlarmPolicy | None = None,
                 clock_ms: Callable[[], int] = now_ms) -> None:
        self.settings = settings
        self.store = store
        self.clock_ms = clock_ms
        self.machine_classes = MachineClasses(getattr(store, "machine_classes", None))
        self.tracker = AlarmTracker(policy or settings.alarm_policy(), iso_class_of=self.machine_classes.of)
        self.counters = IngestCounters()
        self.phases = BatchPhases(settings.ingest_trace)
        # ingest_overlap: a decoder thread hands decoded batches over (one at a time) while this one writes
        self._handoff: queue.Queue | None = queue.Queue(maxsize=1) if settings.ingest_overlap else None
        self._arrived = 0  # messages paho handed over: minus counters.acked, what the broker has in flight
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize=settings.receive_max + settings.batch_max)
        self._generation = 0
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._tls: ssl.SSLContext | None = None  # mqtts:// (settings.tls())
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # the broker answered the subscription (SUBACK)
        self._health_due: dict[str, float] = {}
        self._last_stats = time.monotonic()
        self._last_counts = (0, 0, 0, 0)
        self._next_retention = time.monotonic() + RETENTION_EVERY_S  # `serve` applies it at start
        self.goodbyes_every_s = GOODBYES_EVERY_S
        self._marks: list | None = None  # read back by the goodbyes thread, written by the worker
        self._marks_lock = threading.Lock()
        self.mqtt_version = settings.mqtt_version
        self._member = 0  # index into settings.broker_members: the broker member in use
        self._connect_kw: dict[str, Any] = {}

    # ---------- MQTT side (paho network thread) ----------

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return
        self._generation += 1
        self.counters.connects += 1
        group = (self.settings.ingest_group or None) if self.mqtt_version == "5" else None
        filters = ingest_filters(group)
        if self.mqtt_version == "5":
            client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
        else:
            client.subscribe([(f, 1) for f in filters])
        members = self.settings.broker_members
        where = "%s:%d" % members[self._member] if len(members) > 1 else self.settings.broker_display
        log.info("connected to %s (MQTT %s, session present: %s); subscribed to %s",
                 where, self.mqtt_version, getattr(flags, "session_present", "?"),
                 ", ".join(filters))
        self._connected.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, rcs: list[Any], _p: Any) -> None:
        self._subscribed.set()
        refused = [str(r) for r in rcs if getattr(r, "is_failure", False) or r == 0x80]
        if refused:  # a broker with per-account permissions (docs/security.md) said no: nothing will arrive
            log.error("the broker refused ingest's subscription (%s): give account %s read access to "
                      "ef/v1/# (the ef-service role)", ", ".join(refused), self.settings.credentials()[0] or "(anonymous)")

    def _on_disconnect(self, client: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from broker (%s); reconnecting, unacknowledged messages will be redelivered", rc)
            self._next_member(client)

    def _next_member(self, client: Any, *_: Any) -> None:
        """A broker cluster (several members in broker_url): the next reconnect goes to the next member,
        where the persistent session, replicated by the cluster, still holds our messages."""
        members = self.settings.broker_members
        if len(members) > 1 and not self._stopping.is_set():
            self._member = (self._member + 1) % len(members)
            host, port = members[self._member]
            log.warning("moving to broker member %s:%d", host, port)
            client.connect_async(host, port, **self._connect_kw)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not acknowledged: the broker delivers it again to the next session
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        self._arrived += 1
        self._queue.put(Inbound(topic, msg.payload, msg.qos, msg.mid, self._generation, self.clock_ms()))

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        if self.mqtt_version == "5":
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.ingest_client_id, protocol=mqtt.MQTTv5,
                            manual_ack=True)
        else:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.ingest_client_id, protocol=mqtt.MQTTv311,
                            clean_session=False, manual_ack=True)
        user, password = s.credentials()
        if user:
            c.username_pw_set(user, password)
        apply_tls(c, self._tls)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._next_member
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.reconnect_delay_set(min_delay=0.25, max_delay=5)  # short: see docs/store.md on broker restarts
        return c

    # ---------- lifecycle ----------

    def start(self, connect_timeout: float = 30.0) -> None:
        members = self.settings.broker_members
        host, port = members[0]
        if self.settings.retention_days:
            self.store.set_retention_days(self.settings.retention_days)
        deadline = time.monotonic() + connect_timeout
        self._tls = self.settings.tls()
        if self.mqtt_version == "auto":
            while (v := next((v for h, p in members if (v := probe_mqtt_version(h, p, tls=self._tls))), None)) is None:
                if time.monotonic() > deadline:
                    raise EdgefleetError(f"no MQTT broker answers at {self.settings.broker_display}")
                log.info("waiting for the broker at %s", self.settings.broker_display)
                time.sleep(1.0)
            self.mqtt_version = v
        if self.mqtt_version != "5":
            if self.settings.ingest_group:  # each process would get every message: refuse, say why
                raise EdgefleetError(
                    f"--group {self.settings.ingest_group}: {self.settings.broker_display} speaks MQTT "
                    f"{self.mqtt_version} only, without shared subscriptions; run one ingest process "
                    "without --group there (docs/brokers.md)")
            log.info("MQTT %s broker: one ingest process on a plain subscription, persistent session "
                     "(clean session off), no Receive Maximum (docs/brokers.md)", self.mqtt_version)
        self._client = self._make_client()
        log.info("ingest %s -> %s (client id %s, group %s, batch <= %d msgs / %d ms, receive max %d)",
                 self.settings.broker_display, getattr(self.store, "path", type(self.store).__name__),
                 self.settings.ingest_client_id, self.settings.ingest_group, self.settings.batch_max,
                 self.settings.batch_ms, self.settings.receive_max)
        self._worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self._worker.start()
        if self.goodbyes_every_s > 0 and self.mqtt_version == "5" and hasattr(self.store, "_q"):
            threading.Thread(target=self._goodbyes_loop, name="ingest-goodbyes", daemon=True).start()
        props = None
        if self.mqtt_version == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.settings.session_expiry_s
            props.ReceiveMaximum = self.settings.receive_max
        self._connect_kw = {"keepalive": 30, **({"clean_start": False, "properties": props}
                                                if self.mqtt_version == "5" else {})}
        while True:
            try:
                self._client.connect(host, port, **self._connect_kw)
                break
            except OSError as exc:
                # a wrong CA, an expired certificate, a plain listener: waiting does not help
                if self._tls is not None and (why := tls_failure(exc, host)):
                    self.stop(2.0)
                    raise EdgefleetError(why) from None
                if time.monotonic() > deadline:
                    raise EdgefleetError(f"cannot connect to {self.settings.broker_display}: {exc}") from exc
                self._member = (self._member + 1) % len(members)  # a cluster: try the next member
                host, port = members[self._member]
                time.sleep(0.5)
        self._client.loop_start()
        if not self._connected.wait(max(1.0, deadline - time.monotonic())):
            self.stop()
            raise EdgefleetError(f"broker at {self.settings.broker_display} did not accept the ingest session")
        # started means receiving: a message published once start() returns reaches this session (a fresh,
        # non-persistent session would otherwise miss what came before the broker's SUBACK)
        if not self._subscribed.wait(max(1.0, deadline - time.monotonic())):
            log.warning("the broker has not answered ingest's subscription yet; messages before it may be missed")

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(timeout)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        log.info("ingest stopped: %s", self.summary())

    def run_forever(self) -> None:
        """Run until SIGINT/SIGTERM (used by `edgefleet serve`)."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        while not done.wait(0.5):
            if self._worker is not None and not self._worker.is_alive():
                raise EdgefleetError("the ingest worker stopped unexpectedly (see the log above)")
        self.stop()

    def summary(self) -> dict[str, Any]:
        c = self.counters
        return {"received": c.received, "stored": c.stored, "summaries": c.summaries, "duplicates": c.duplicates,
                "rejected": c.rejected,
                "batches": c.batches, "acked": c.acked, "store_errors": c.store_errors,
                "rejects_by_code": dict(c.rejects_by_code)}

    # ---------- the worker ----------

    def _take_batch(self, free_at: float | None) -> tuple[list[Inbound], dict[str, float]]:
        """Up to batch_max messages, waiting at most batch_ms after the first; with the phase marks
        (`free_at`: when the taker was last free, the start of its idle time)."""
        start = free_at or time.monotonic()
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return [], {}
        t = {"start": start, "idle": time.monotonic()}
        items = [first]
        deadline = time.monotonic() + self.settings.batch_ms / 1000.0
        while len(items) < self.settings.batch_max:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    items.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        t["fill"] = time.monotonic()
        return items, t

    def _decode_loop(self) -> None:
        """With ingest_overlap: take and decode the next batch while the worker writes, commits and
        acknowledges the one before. Nothing is acknowledged here; the handoff holds one batch, so at
        most two batches are unacknowledged at a time (receive_max >= 2 x batch_max keeps both full)."""
        free_at = None
        while True:
            items, t = self._take_batch(free_at)
            if not items:
                if self._stopping.is_set():
                    self._hand_over(None)  # the worker writes what it holds, then ends
                    return
                continue
            c0 = time.thread_time()
            batch = self._decode(items)
            t["decode"], t["decode_cpu"] = time.monotonic(), time.thread_time() - c0
            self._hand_over((items, batch, t))  # waits while the worker still writes the one before
            free_at = time.monotonic()

    def _hand_over(self, item: tuple | None) -> None:
        """Put `item` in the handoff once the worker is ready for it; dropped if the worker has ended while
        stopping (its messages were never acknowledged: the broker delivers them to the next session)."""
        while True:
            try:
                self._handoff.put(item, timeout=0.2)
                return
            except queue.Full:
                if self._stopping.is_set() and not (self._worker and self._worker.is_alive()):
                    return

    def _next(self, free_at: float | None) -> tuple[list[Inbound], IngestBatch | None, dict[str, float]] | None:
        """The worker's next batch: decoded by the decoder thread (overlap), else taken here. None: stop."""
        if self._handoff is None:
            items, t = self._take_batch(free_at)
            if not items and self._stopping.is_set():
                return None
            return items, None, t
        try:
            got = self._handoff.get(timeout=0.2)
        except queue.Empty:
            return [], None, {}
        return got

    def _work(self) -> None:
        if self._handoff is not None:
            threading.Thread(target=self._decode_loop, name="ingest-decoder", daemon=True).start()
        free_at = None
        while (got := self._next(free_at)) is not None:
            items, batch, t = got
            if items:
                while True:  # a batch is retried until the store takes it (or we are stopping)
                    try:
                        self._process(items, batch, t)
                        break
                    except Exception:
                        self.counters.store_errors += 1
                        log.exception("store write failed; %d messages stay unacknowledged, retrying", len(items))
                        batch = None  # decoded again: the failed write may have changed it
                        if self._stopping.wait(1.0):
                            return
                free_at = time.monotonic()
            self._maybe_log_stats()
            self._maybe_apply_retention()
            self._maybe_apply_marks()

    def _goodbyes_loop(self) -> None:
        """Every goodbyes_every_s: read the nodes' retained goodbyes back from the broker (a goodbye the
        broker dropped from our full session queue took a boot's lost tail out of sight; the retained
        copy still says how far the boot went) and hand the marks to the worker, which writes them."""
        from edgefleet.service import goodbyes

        warned = False
        while not self._stopping.wait(self.goodbyes_every_s):
            host, port = self.settings.broker_members[self._member]
            try:
                marks, n = goodbyes.read_marks(f"{'mqtts' if self._tls else 'mqtt'}://{host}:{port}",
                                               credentials=self.settings.credentials(), tls=self._tls,
                                               client_id=f"{self.settings.ingest_client_id}-goodbyes")
            except (EdgefleetError, OSError) as exc:
                if not warned:
                    log.warning("cannot read the retained goodbyes back (%s): a tail lost with its goodbye "
                                "stays out of `missing` until this works", exc)
                    warned = True
                continue
            log.debug("read %d seq marks from %d retained statuses", len(marks), n)
            with self._marks_lock:
                self._marks = marks

    def _maybe_apply_marks(self) -> None:
        """In the worker (the store's one writer): write the marks the goodbyes thread read."""
        with self._marks_lock:
            marks, self._marks = self._marks, None
        if not marks:
            return
        from edgefleet.service import goodbyes

        try:
            wrote = goodbyes.apply_marks(self.store, marks, self.clock_ms())
        except Exception:  # the store is busy or down: the next read brings them again
            log.exception("writing the goodbyes' seq marks failed; the next read retries")
            return
        if wrote:
            log.info("goodbyes read back: %d seq marks written (lost tails now count in `missing`)", wrote)

    def _maybe_apply_retention(self) -> None:
        """Hourly: drop telemetry older than the store's retention setting (rollups are kept longer), at most
        RETENTION_BUDGET rows per pass, so a large backlog is worked off between ingest batches."""
        now = time.monotonic()
        if now < self._next_retention:
            return
        self._next_retention = now + RETENTION_EVERY_S
        try:
            removed = self.store.apply_retention(self.clock_ms(), budget=RETENTION_BUDGET)
            removed += summary_sql.prune(self.store, self.clock_ms(), self.store.retention_days())
            if removed >= RETENTION_BUDGET:
                self._next_retention = now + RETENTION_AGAIN_S
            if removed:
                log.info("retention (%.4g days): removed %d old rows", self.store.retention_days(), removed)
        except Exception:
            log.exception("applying retention failed; will try again in an hour")

    def _decode(self, items: list[Inbound]) -> IngestBatch:
        """The batch of `items`: results, registry facts, events, and a reject for each invalid one."""
        batch = IngestBatch(ingest_ts=self.clock_ms())
        for msg in items:
            code = decode_into(batch, msg, self.settings.max_payload)
            if code is not None:
                rc = self.counters.rejects_by_code
                rc[code] = rc.get(code, 0) + 1
                if rc[code] <= 5 or rc[code] % 10000 == 0:
                    log.warning("rejected message on %s: %s (%d %s rejects so far)", msg.topic[:100],
                                batch.rejects[-1].reason[:200], rc[code], code)
        return batch

    def _process(self, items: list[Inbound], batch: IngestBatch | None, t: dict[str, float]) -> None:
        """Write `items` (decoded into `batch` already, or now) in one commit, feed the alarm tracker, then
        acknowledge them: never before the commit returned."""
        c0 = time.thread_time()  # CPU of this thread per phase: the rest of a phase's time is waiting
        if batch is None:
            batch = self._decode(items)
            t["decode"], t["decode_cpu"] = time.monotonic(), time.thread_time() - c0
        t["taken"] = time.monotonic()
        c1 = time.thread_time()
        now = batch.ingest_ts
        for u in batch.devices:
            self.machine_classes.saw_site(u.device, u.site)
        for device in {r.device for r in batch.results}:
            if not self.tracker.known(device):  # after a restart: rebuild its window from the store
                active = self.store.active_alarm(device)
                self.tracker.prime(device, self.store.recent_results(device, self.tracker.policy.trend_points),
                                   active.severity if active else None, active.peak_score if active else 0.0)
        if batch.summaries:  # too old: a reject stored with the batch, as a result would be
            batch.summaries, refused = summary_sql.split_too_old(batch.summaries, now, self.store.retention_days())
            batch.rejects.extend(refused)
            self._prime_from_summaries(batch.summaries)
        outcome = self.store.write_batch(batch)
        t["write"], c2 = time.monotonic(), time.thread_time()
        s_out = summary_sql.write_summaries(self.store, batch.summaries, now)  # its own commit, before the acks
        seen = outcome.new + [summary_sql.as_result(s) for s in s_out.new]
        changes = self.tracker.observe_many(sorted(seen, key=lambda r: (r.device, r.ts, r.seq)))
        health = self._health_updates(seen, changes)
        if changes or health:
            self.store.apply_alarm_changes(changes, health)
        for ch in changes:
            lvl = logging.WARNING if ch.op != "clear" else logging.INFO
            log.log(lvl, "alarm %s: %s severity %s (score %.4g, threshold %.4g)", ch.op, ch.device, ch.severity,
                    ch.score, ch.thr)
        t["alarms"], c3 = time.monotonic(), time.thread_time()
        in_flight = self._arrived - self.counters.acked
        self._ack(items)
        t["ack"], c4 = time.monotonic(), time.thread_time()
        if "start" in t:
            self.phases.record(t, len(items), len(items) >= self.settings.batch_max, in_flight=in_flight,
                               backlog=self._queue.qsize(), cpu_ms={
                                   "decode": round(1e3 * t.get("decode_cpu", 0.0), 2), "write": round(1e3 * (c2 - c1), 2),
                                   "alarms": round(1e3 * (c3 - c2), 2), "ack": round(1e3 * (c4 - c3), 2)})
        c = self.counters
        c.received += len(items)
        c.stored += outcome.stored
        c.duplicates += outcome.duplicates + s_out.duplicates
        c.summaries += s_out.stored
        c.rejected += len(batch.rejects) + len(outcome.refused)  # refused: older than the raw horizon
        c.batches += 1
        c.alarms_raised += sum(ch.op == "raise" for ch in changes)

    def _prime_from_summaries(self, summaries: list) -> None:
        """A summary-only device the tracker does not know (after a restart): its window from its stored summaries."""
        for device in {s.device for s in summaries}:
            if not self.tracker.known(device):
                active = self.store.active_alarm(device)
                hist = [summary_sql.as_result(s) for s in summary_sql.summaries(
                    self.store, device, limit=self.tracker.policy.trend_points)]
                self.tracker.prime(device, hist, active.severity if active else None,
                                   active.peak_score if active else 0.0)

    def _health_updates(self, new: list[ResultRecord], changes: list) -> list[DeviceHealth]:
        now = time.monotonic()
        due = {ch.device for ch in changes}
        for r in new:
            if self._health_due.get(r.device, 0.0) <= now:
                due.add(r.device)
        out = []
        for device in due:
            self._health_due[device] = now + self.settings.health_interval_s
            h = self.tracker.health(device)
            if h is not None:
                out.append(h)
        return out

    def _ack(self, items: list[Inbound]) -> None:
        client, gen = self._client, self._generation
        if client is None:
            return
        for msg in items:
            if msg.qos > 0 and msg.generation == gen:
                client.ack(msg.mid, msg.qos)
                self.counters.acked += 1

    def _maybe_log_stats(self) -> None:
        now = time.monotonic()
        dt = now - self._last_stats
        if dt < self.settings.stats_interval_s:
            return
        c = self.counters
        cur = (c.received, c.stored, c.duplicates, c.rejected)
        d = [a - b for a, b in zip(cur, self._last_counts)]
        if any(d):
            log.info("ingest: %.0f msg/s, %.0f results/s stored, %d duplicates, %d rejected in the last %.0f s"
                     " (queue %d); %s", d[0] / dt, d[1] / dt, d[2], d[3], dt, self._queue.qsize(), self.phases.line())
        self._last_stats, self._last_counts = now, cur
        track = getattr(self.store, "track_loss", None)
        if track is not None:
            try:
                for op, device in track(now_ms()):
                    log.warning("data-loss alarm %s: %s (results missing in the last hour)", op, device)
            except Exception:  # accounting must never stop ingest
                log.exception("loss tracking failed")
