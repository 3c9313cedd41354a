"""The OTA manager: runs campaigns over MQTT.

Publishes retained offers to the devices of the current stage (a bounded
number of transfers at a time), serves `ota/data` chunks on each `ota/req`
(resumable: the device asks by offset), records every `ota/state`, and once a
second asks `campaign.decide` whether to wait, advance, complete or abort.
On abort it clears the offers and orders devices that took the new model to
revert to the previous slot; the command names the campaign, so a device that had
already confirmed reports its `reverted` under it and is counted there.

Under faults (lost chunks, reboots, a broker restart) a campaign still ends in a
consistent state: the manager keeps a persistent MQTT session, so device reports
sent while it reconnects wait for it at the broker; a device's retained offer is
cleared once it confirmed or rejected (a reconnect does not offer it again); a
retryable failure (`campaign.retryable`) gets a fresh offer; an offer not acted
on is re-published; and a report for a campaign this registry does not know
(someone else's offer) goes to the device's history only.

On a broker cluster (`members`: every member's host and port) the manager moves to the next
member when its connection fails or drops, as ingest does; the persistent session, which the
cluster replicates, holds what devices reported meanwhile. On an MQTT 3.1.1 broker (NATS,
RabbitMQ) that session is clean session off instead of v5's session expiry (docs/brokers.md).
"""

from __future__ import annotations

import base64
import logging
import ssl
import threading
import time
import zlib
from collections import deque
from typing import Any, Callable

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgefleet import protocol
from edgefleet.clock import now_ms
from edgefleet.protocol.connect import apply_tls, probe_mqtt_version
from edgefleet.runtime import trust
from edgefleet.service.ota.campaign import (
    HEALTH_LOOKBACK_MS,
    IN_FLIGHT,
    NOT_STARTED,
    ROLLBACK,
    RUNS_CANDIDATE,
    TERMINAL_BAD,
    TERMINAL_OK,
    Target,
    before_after_rates,
    decide,
    health_rates,
    retryable,
    rollout_order,
    shadow_rates,
    stage_size,
)
from edgefleet.service.ota.registry import Campaign, OtaRegistry

log = logging.getLogger("edgefleet.service.ota")

# device id -> {"site", "line", "tags", "model"}; the manager's view of the fleet
DeviceLookup = Callable[[], dict[str, dict[str, Any]]]
# (device, since_ms) -> list of (model version, anomalous) for recent results
ResultsLookup = Callable[[str, int], list[tuple[int, bool]]]
# (shadow model, since_ms) -> (device, active model anomalous, shadow model anomalous) per shadow-scored window
ShadowLookup = Callable[[int, int], list[tuple[str, bool, bool]]]


def default_ticket_key() -> Ed25519PrivateKey | None:
    """The campaign key `edgefleet serve` signs tickets with: $EDGEFLEET_CAMPAIGN_KEY, else the engineer's
    signing key when this host has one (a single-machine setup; a plant gives the service its own key,
    trusted for campaigns only: `edgefleet keys trust campaign.pub --role campaign`)."""
    import os
    from pathlib import Path

    from edgefleet.runtime import keys

    path = os.environ.get("EDGEFLEET_CAMPAIGN_KEY")
    if path:
        return keys.load_private(Path(path))
    return keys.load_private(keys.DEFAULT_KEY) if Path(keys.DEFAULT_KEY).exists() else None


SUBSCRIPTIONS = [("ef/v1/+/ota/req", 1), ("ef/v1/+/ota/state", 1)]


class OtaManager:
    shadow_results: ShadowLookup | None = None  # set by the service: shadow-mode outcomes from the store

    def __init__(self, registry: OtaRegistry, host: str, port: int, *, devices: DeviceLookup,
                 results: ResultsLookup | None = None, max_transfers: int = 200,
                 username: str | None = None, password: str | None = None,
                 client_id: str = "edgefleet-ota", tick_s: float = 1.0,
                 session_expiry_s: int = 86_400, tls: ssl.SSLContext | None = None,
                 ticket_key: Ed25519PrivateKey | None | str = "default",
                 members: list[tuple[str, int]] | None = None, mqtt_version: str = "5") -> None:
        self.registry = registry
        # signs each offer's campaign ticket (docs/ota.md, "Authorization"); nodes refuse offers without one
        self.ticket_key = default_ticket_key() if ticket_key == "default" else ticket_key
        if self.ticket_key is None:
            log.warning("OTA manager has no campaign key (EDGEFLEET_CAMPAIGN_KEY): nodes will refuse its offers")
        self.devices = devices
        self.results = results
        self.max_transfers = max_transfers
        self.tick_s = tick_s
        self._inbox: deque[tuple[str, str, dict]] = deque()
        self._blobs: dict[int, tuple[bytes, bytes]] = {}
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bytes_sent = 0
        self._campaign_cache: dict[str, Campaign] = {}
        self._known: set[str] = set()  # campaign ids seen in the registry
        self._refusers: set[str] = set()  # devices that said an offer was not authorized (warned once each)
        self._offer_sent: dict[tuple[str, str], float] = {}  # (campaign, device) -> last offer time
        self._last_report: dict[str, tuple[Any, int]] = {}  # device -> (boot, seq) of its last ota/state taken
        self.session_expiry_s = session_expiry_s
        # a broker cluster: every member, host:port first; the manager moves on when one fails it
        self.members = list(members) if members else [(host, port)]
        self._member = 0  # index into members: the member in use
        self.mqtt_version = mqtt_version  # "5", "3.1.1" or "auto" (probed in start())
        self.connects = 0  # sessions opened (a move to another member adds one)
        self._client_id, self._auth, self._tls = client_id, (username, password), tls
        self.client = self._make_client("3.1.1" if mqtt_version == "3.1.1" else "5")
        self.host, self.port = host, port

    def _make_client(self, version: str) -> mqtt.Client:
        """A persistent session either way: clean start off with a session expiry on v5 (set in
        start()), clean session off on 3.1.1."""
        if version == "5":
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv5)
        else:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv311,
                            clean_session=False)
        if self._auth[0]:
            c.username_pw_set(*self._auth)
        apply_tls(c, self._tls)  # mqtts:// (Settings.tls())
        c.max_queued_messages_set(50_000)  # bound paho's QoS 1 backlog well under 65,535
        # back soon after a broker restart; on a cluster the next member is tried at once
        c.reconnect_delay_set(1 if len(self.members) == 1 else 0.25, 5)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._next_member
        c.on_subscribe = self._on_subscribe
        return c

    # ------------------------------------------------------------ MQTT

    def _on_connect(self, client, _u, _f, rc, _p) -> None:
        if rc.is_failure:
            log.error("OTA manager could not connect: %s", rc)
            return
        self.connects += 1
        client.subscribe(SUBSCRIPTIONS)
        log.info("OTA manager connected to %s:%d (MQTT %s, session present: %s)", self.host, self.port,
                 "3.1.1" if client.protocol == mqtt.MQTTv311 else "5", getattr(_f, "session_present", "?"))

    def _on_subscribe(self, client, _u, _mid, rcs, _p) -> None:
        """NATS refuses a subscription (SUBACK 0x80) on a live connection while JetStream elects new
        leaders after a member is lost: without a retry the manager would hear no device again."""
        if any(getattr(r, "is_failure", False) for r in rcs) and not self._stop.is_set():
            log.warning("the broker refused the OTA manager's subscription (%s); trying again in 2 s",
                        ", ".join(str(r) for r in rcs))
            retry = threading.Timer(2.0, lambda: client.is_connected() and client.subscribe(SUBSCRIPTIONS))
            retry.daemon = True
            retry.start()

    def _on_disconnect(self, client, _u, _f, rc, _p) -> None:
        if not self._stop.is_set():
            log.warning("OTA manager lost %s:%d (%s); reconnecting, its session keeps the devices' reports",
                        self.host, self.port, rc)
            self._next_member(client)

    def _next_member(self, client, *_: Any) -> None:
        """A broker cluster: paho's next reconnect goes to the next member, where the session,
        replicated by the cluster, still holds the devices' reports (ingest does the same)."""
        if len(self.members) > 1 and not self._stop.is_set():
            self._member = (self._member + 1) % len(self.members)
            self.host, self.port = self.members[self._member]
            log.warning("OTA manager moving to broker member %s:%d", self.host, self.port)
            client.connect_async(self.host, self.port, **self._connect_kw())

    def _connect_kw(self) -> dict[str, Any]:
        if self.client.protocol != mqtt.MQTTv5:
            return {"keepalive": 30}
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        return {"keepalive": 30, "clean_start": False, "properties": props}

    def _on_message(self, _c, _u, msg: mqtt.MQTTMessage) -> None:
        try:
            m = protocol.decode_message(msg.topic, msg.payload)
        except protocol.ProtocolError as exc:
            log.warning("ignoring invalid %s: %s", msg.topic, exc)
            return
        if m.kind == "ota/req":
            self._serve_chunk(m.device, m.body)  # answered at once: transfers stay fast
        else:
            self._inbox.append((m.device, m.kind, m.body))

    def _publish(self, device: str, kind: str, body: dict | None, *, retain: bool = False, qos: int = 1) -> None:
        if body is None:
            payload = b""
        else:
            self._seq = (self._seq + 1) % 2**32
            payload = protocol.encode(kind, {"v": protocol.PROTOCOL_VERSION, "seq": self._seq, **body})
        self.bytes_sent += len(payload)
        self.client.publish(protocol.topic(device, kind), payload, qos=qos, retain=retain)

    def _serve_chunk(self, device: str, req: dict) -> None:
        """On paho's thread: reads only the campaign cache and preloaded blobs, never SQLite."""
        c = self._campaign_cache.get(req["campaign"])
        if c is None or c.model != req["model"] or c.state != "running" or c.model not in self._blobs:
            return
        blob, _ = self._blobs[c.model]
        off, n = int(req["off"]), int(req["len"])
        data = blob[off:off + min(n, 4096)]
        if off >= len(blob) or not data:
            return
        self._publish(device, "ota/data", {"campaign": c.id, "model": c.model, "off": off,
                                           "crc": zlib.crc32(data), "data": base64.b64encode(data).decode()})

    def _blob(self, version: int) -> tuple[bytes, bytes]:
        if version not in self._blobs:
            self._blobs[version] = self.registry.blobs(version)
        return self._blobs[version]

    # ------------------------------------------------------------ lifecycle

    def start(self, connect_timeout: float = 30.0) -> None:
        """Connect with a persistent session: what devices report while the manager is away
        (a broker restart, a service restart, a lost cluster member) is queued for it, not lost."""
        from edgefleet.errors import EdgefleetError
        from edgefleet.protocol.connect import tls_failure

        deadline = time.monotonic() + connect_timeout
        where = ",".join("%s:%d" % m for m in self.members)
        if self.mqtt_version == "auto":
            while (v := next((v for h, p in self.members if (v := probe_mqtt_version(h, p, tls=self._tls))),
                             None)) is None:
                if time.monotonic() > deadline:
                    raise EdgefleetError(f"OTA manager: no MQTT broker answers at {where}")
                time.sleep(1.0)
            self.mqtt_version = v
            if v != "5":
                self.client = self._make_client(v)
                log.info("OTA manager: MQTT %s broker, persistent session with clean session off", v)
        self.host, self.port = self.members[self._member]
        while True:
            try:
                self.client.connect(self.host, self.port, **self._connect_kw())
                break
            except OSError as exc:  # a wrong CA, an expired certificate: one line, not a traceback
                if self._tls is not None and (why := tls_failure(exc, self.host)):
                    raise EdgefleetError(why) from None
                if isinstance(exc, ssl.SSLError):
                    raise EdgefleetError(str(exc)) from None
                if time.monotonic() > deadline:
                    raise EdgefleetError(f"OTA manager cannot connect to {where}: {exc}") from None
                self._member = (self._member + 1) % len(self.members)  # a cluster: try the next member
                self.host, self.port = self.members[self._member]
                time.sleep(0.5)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="ota-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.client.loop_stop()
        self.client.disconnect()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.step()
            except Exception:  # a bad campaign must not kill the service
                log.exception("OTA manager step failed")

    # ------------------------------------------------------------ the campaign loop

    def step(self, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        touched: dict[str, set[str]] = {}
        while self._inbox:
            device, _kind, body = self._inbox.popleft()
            if self._record(device, body):
                touched.setdefault(body["campaign"], set()).add(device)
        self._send_commands()
        active = self.registry.campaigns(("running", "aborting"))
        for c in active:
            self._blob(c.model)  # preload before chunk requests can arrive
        self._campaign_cache = {c.id: c for c in active}
        for c in list(self._campaign_cache.values()):
            if c.state == "aborting":
                self._rollback(c)
            else:
                self._follow_up(c, touched.get(c.id, set()), now)
                self._advance(c, now)

    def _send_commands(self) -> None:
        """Publish the commands the CLI and the dashboard queued (commissioning, ...)."""
        pending = self.registry.pending_commands()
        for _, device, body in pending:
            try:
                self._publish(device, "cmd", body)
            except protocol.ProtocolError as exc:  # queued by hand into the table: drop, say why
                log.warning("queued command for %s is not a valid cmd, dropped: %s", device, exc)
        if pending:
            self.registry.mark_commands_sent([i for i, _, _ in pending])
            log.info("sent %d queued device command(s)", len(pending))

    def _record(self, device: str, body: dict) -> bool:
        """Store one ota/state report; False when it is not campaign progress."""
        cid, state, reason = body["campaign"], body["state"], body.get("reason", "")
        if cid == "none" and reason.startswith("unauthorized offer") and len(self._refusers) < 10_000 \
                and device not in self._refusers:
            self._refusers.add(device)  # once per device: what an operator needs to unblock a stuck campaign
            log.warning("%s refuses this service's offers (%s): it does not trust the key this service signs "
                        "campaign tickets with ($EDGEFLEET_CAMPAIGN_KEY, else the engineer's signing key); trust it "
                        "on the fleet (`edgefleet keys trust KEY.pub --role campaign`) or give the service the "
                        "fleet's campaign key", device, reason[:160])
        if cid not in self._known:
            if not self.registry.has_campaign(cid):
                self.registry.add_history(cid, device, state, reason)  # not ours (or "none": no trial)
                return False
            self._known.add(cid)
        current = self.registry.device_state(cid, device)
        if current is None:  # never offered this campaign: a device's word does not make it a member
            self.registry.add_history(cid, device, state, f"ignored (not offered this campaign): {reason}"[:300])
            return False
        if self._redelivered(device, body) or (current in TERMINAL_OK and state in IN_FLIGHT):
            # an older report delivered again after a reconnect (a broker cluster redelivers what the lost
            # connection had not acknowledged, up to an ack-wait later): taking it would put a device that
            # confirmed back to "accepted", offer it again, and count its "not newer" rejection as a failure
            self.registry.add_history(cid, device, state, f"ignored (older report delivered again): {reason}"[:300])
            return False
        if state == "rejected" and current == "confirmed":
            # the retained offer seen again after a reconnect, refused by a device that already runs it
            self.registry.add_history(cid, device, state, f"ignored (already confirmed): {reason}")
            return False
        self.registry.set_device_state(cid, device, state, reason)
        return True

    def _redelivered(self, device: str, body: dict) -> bool:
        """True for a report not newer than the last one taken from this device in the same boot
        (ota/state's seq counts up per boot: the C node and the simulator alike)."""
        boot, seq = body.get("boot"), body.get("seq")
        last = self._last_report.get(device)
        if last is not None and last[0] == boot and isinstance(seq, int) and seq <= last[1]:
            return True
        if isinstance(seq, int):
            self._last_report[device] = (boot, seq)
        return False

    def _follow_up(self, c: Campaign, touched: set[str], now: float) -> None:
        """Clear offers of devices that are done, offer again after a retryable failure, and
        re-publish offers nobody acted on."""
        states = self.registry.device_states(c.id)
        counts: dict[str, int] | None = None
        for d in touched:
            s = states.get(d)
            if s is None:
                continue
            if retryable(s["state"], s["reason"]):
                counts = counts if counts is not None else self.registry.offer_counts(c.id)
                if counts.get(d, 1) <= c.policy.retries:
                    self._offer(c, d, reason=f"retry {counts.get(d, 1)}: {s['reason']}"[:200])
                    continue
            if s["state"] in TERMINAL_OK | TERMINAL_BAD:
                self._publish(d, "ota/offer", None, retain=True)
                self._offer_sent.pop((c.id, d), None)
        for d, s in states.items():
            # "accepted" too: a node that rebooted mid-download needs the retained offer, and a broker
            # killed (not stopped) loses what it had not saved yet; a node still downloading ignores it
            if s["state"] not in ("offered", "accepted"):
                continue
            last = max(s["updated_ms"] / 1000, self._offer_sent.get((c.id, d), 0.0))
            if now - last > c.policy.offer_resend_s:
                self._publish(d, "ota/offer", self._offer_body(c, d), retain=True)
                self._offer_sent[(c.id, d)] = now

    def _offer_body(self, c: Campaign, device: str) -> dict:
        """The offer with its ticket: this campaign, this device, this model and trial policy, signed."""
        blob, manifest = self._blob(c.model)
        sha = self.registry.model(c.model).sha256
        body = {"campaign": c.id, "model": c.model, "size": len(blob), "sha256": sha,
                "chunk": 1024, "trial_s": c.policy.trial_s, "shadow": c.policy.shadow,
                **({"shadow_s": c.policy.shadow_s} if c.policy.shadow else {}), "manifest": manifest.decode()}
        if self.ticket_key is not None:
            body["ticket"] = trust.sign_ticket(
                self.ticket_key, campaign=c.id, device=device, model=c.model, sha256=sha, trial_s=c.policy.trial_s,
                shadow=c.policy.shadow, shadow_s=c.policy.shadow_s if c.policy.shadow else 0).decode()
        keysets = self.registry.keysets()
        if keysets:
            body["keys"] = " ".join(k.decode() for k in keysets)
        return body

    def _offer(self, c: Campaign, device: str, *, old_model: int | None = None, reason: str = "") -> None:
        self._publish(device, "ota/offer", self._offer_body(c, device), retain=True)
        self._offer_sent[(c.id, device)] = time.time()
        self.registry.set_device_state(c.id, device, "offered", reason, offered=True, old_model=old_model)

    def _advance(self, c: Campaign, now: float) -> None:
        if not c.devices:
            fleet = self.devices()
            target = Target.parse(c.target)
            chosen = [d for d, meta in fleet.items() if target.matches(meta) and (meta.get("model") or 0) < c.model]
            if not chosen:
                self.registry.update_campaign(c.id, state="completed", reason="no target device needs this model")
                log.info("campaign %s: no devices to update", c.id)
                return
            c.devices = rollout_order(chosen, c.id)
            self.registry.update_campaign(c.id, devices=c.devices)
            log.info("campaign %s: model %d to %d devices in stages %s", c.id, c.model, len(c.devices),
                     ",".join(f"{s:.0%}" for s in c.policy.stages))
        states = self.registry.device_states(c.id)
        members = c.devices[:stage_size(len(c.devices), c.policy.stages[c.stage])]
        in_flight = sum(1 for s in states.values() if s["state"] not in TERMINAL_OK | TERMINAL_BAD)
        fleet = None
        for d in members:
            if d in states or in_flight >= self.max_transfers:
                continue
            fleet = fleet or self.devices()
            self._offer(c, d, old_model=(fleet.get(d) or {}).get("model"))
            in_flight += 1
        states = self.registry.device_states(c.id)
        simple = {d: s["state"] for d, s in states.items()}
        offered_at = {d: s["offered_ms"] / 1000 for d, s in states.items() if s["offered_ms"]}
        decision = decide(c.policy, c.stage, c.devices, simple, offered_at, now, self._health(c, states))
        for d in decision.timed_out:
            self.registry.set_device_state(c.id, d, "timeout", "no outcome within the stage timeout")
            self._publish(d, "ota/offer", None, retain=True)
        if decision.action == "advance":
            self.registry.update_campaign(c.id, stage=c.stage + 1)
            log.info("campaign %s: stage %d passed, advancing to %.0f%%", c.id, c.stage + 1,
                     100 * c.policy.stages[c.stage + 1])
        elif decision.action == "complete":
            self.registry.update_campaign(c.id, state="completed")
            self._clear_offers(c)
            log.info("campaign %s completed", c.id)
        elif decision.action == "abort":
            log.warning("campaign %s aborted: %s", c.id, decision.reason)
            self.registry.update_campaign(c.id, state="aborting", reason=decision.reason)
            c.state, c.reason = "aborting", decision.reason
            self._rollback(c)

    def _anomaly(self, c: Campaign, states: dict[str, dict]) -> dict[str, tuple[float, float, int]] | None:
        if self.results is None:
            return None
        out = {}
        since = min((s["offered_ms"] or now_ms()) for s in states.values()) - HEALTH_LOOKBACK_MS if states else now_ms()
        for d, s in states.items():
            if s["state"] not in RUNS_CANDIDATE:
                continue
            if (rates := before_after_rates(self.results(d, since), c.model)) is not None:
                out[d] = rates
        return out

    def _health(self, c: Campaign, states: dict[str, dict]) -> dict[str, tuple[float, float, int]] | None:
        """Model health per device: shadow outcomes (both models on the same windows) where a device
        has them, else its anomaly rate before vs after the switch."""
        simple = {d: s["state"] for d, s in states.items()}
        rates = health_rates(simple, self._anomaly(c, states) or {}, self._shadow_anomaly(c, states))
        return rates or None

    def _shadow_anomaly(self, c: Campaign, states: dict[str, dict]) -> dict[str, tuple[float, float, int]]:
        if self.shadow_results is None or not c.policy.shadow or not states:
            return {}
        since = min((s["offered_ms"] or now_ms()) for s in states.values())
        return shadow_rates(self.shadow_results(c.model, since), set(states))

    def _clear_offers(self, c: Campaign) -> None:
        for d in self.registry.device_states(c.id):
            self._publish(d, "ota/offer", None, retain=True)

    def _rollback(self, c: Campaign) -> None:
        """Abort: stop offering, and send every device that took the new model back."""
        self._clear_offers(c)
        for d, s in self.registry.device_states(c.id).items():
            if s["state"] in ROLLBACK:
                self._publish(d, "cmd", {"id": f"revert-{c.id}"[:64], "op": "revert", "campaign": c.id})
                if s["state"] in NOT_STARTED:
                    self.registry.set_device_state(c.id, d, "failed", "campaign aborted")
        self.registry.update_campaign(c.id, state="aborted")
        log.warning("campaign %s: rollback ordered (%s)", c.id, c.reason)
