"""Serial-to-MQTT bridge: gives a node without a network stack its MQTT identity.

The node (firmware/app/node_app.c) speaks COBS + CRC-32 frames (ef_serial,
docs/firmware.md) over a UART; each frame holds one link message "KIND BODY":

- node -> bridge: ``boot`` (up, waiting for hello; repeated until answered), ``will`` (the status to register as the
  MQTT last will), and protocol v1 ``status``, ``result`` (``summary`` from a node in summary mode),
  ``debug``, ``ota/state``, ``ota/req`` bodies, published on ``ef/v1/{device}/{kind}`` after validation;
- bridge -> node: ``hello MS`` (the bridge's clock; the node answers with will + birth)
  and ``cmd JSON`` (each ``ef/v1/{device}/cmd`` message, forwarded as received);
- over-the-air updates (the node application's OTA part, firmware/README.md): a valid ``ota/offer``
  (retained) goes to the node as ``offer CAMPAIGN MODEL SIZE CHUNK TRIAL_S SHADOW MLEN
  SHA256 SHADOW_S TLEN KLEN``; the bridge keeps the offer's signed documents, manifest, campaign
  ticket and keysets (MLEN, TLEN, KLEN bytes; docs/ota.md, "Authorization"), and answers the
  node's ``mreq CAMPAIGN MODEL OFF LEN`` with ``mdat CAMPAIGN MODEL OFF <bytes>`` from their
  concatenation; the node checks the ticket and keysets itself (the bridge is not trusted to);
  each valid ``ota/data`` goes as
  ``data CAMPAIGN MODEL OFF CRC <bytes>`` (base64 decoded, the CRC as sent, so the node
  checks it). The node's ``ota/req`` and ``ota/state`` are published like its other
  messages. Pieces stay under ``MAX_PIECE`` bytes so a node's receive buffer stays small.

The serial endpoint is ``tcp://HOST:PORT`` (QEMU's ``-serial tcp:...``) or a tty path
(a board's USB virtual COM port). When the link ends the bridge publishes the node's
``lost`` status and stops.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet import protocol
from edgefleet.device.framing import FrameDecoder, encode_frame, split_link
from edgefleet.errors import EdgefleetError
from edgefleet.protocol.connect import (
    TlsFiles,
    apply_tls,
    broker_credentials,
    client_tls,
    parse_broker_url,
    redact,
    tls_failure,
)

log = logging.getLogger("edgefleet.device.bridge")

DEVICE_TO_BROKER = ("status", "result", "summary", "debug", "ota/state", "ota/req")
BROKER_TO_DEVICE = ("cmd", "ota/offer", "ota/data")
MAX_PIECE = 256  # manifest bytes per `mdat` frame (the node asks for less)


class BridgeError(EdgefleetError):
    """The serial endpoint or the broker cannot be used."""


# ---- serial endpoints ----------------------------------------------------------------
class SerialLink:
    """A byte link: tcp://host:port or a tty/file path. recv() returns b'' at end of stream."""

    def __init__(self, endpoint: str, connect_timeout: float = 10.0, baud: int = 115200):
        self.endpoint = endpoint
        self.sock: socket.socket | None = None
        self.fd: int | None = None
        self._wlock = threading.Lock()
        if endpoint.startswith("tcp://"):
            u = urlsplit(endpoint)
            if not u.hostname or not u.port:
                raise BridgeError(f"serial endpoint {endpoint!r}: expected tcp://HOST:PORT")
            deadline = time.monotonic() + connect_timeout
            while True:
                try:
                    self.sock = socket.create_connection((u.hostname, u.port), timeout=2)
                    break
                except OSError as e:
                    if time.monotonic() > deadline:
                        raise BridgeError(f"cannot connect to {endpoint}: {e}") from e
                    time.sleep(0.2)
            self.sock.settimeout(0.2)
        else:
            try:
                self.fd = os.open(endpoint, os.O_RDWR | os.O_NOCTTY)
            except OSError as e:
                raise BridgeError(f"cannot open serial device {endpoint}: {e}") from e
            if os.isatty(self.fd):  # a board's USB virtual COM port: raw bytes at the board's speed
                import termios
                import tty
                tty.setraw(self.fd)
                attrs = termios.tcgetattr(self.fd)
                speed = getattr(termios, f"B{baud}", None)
                if speed is None:
                    raise BridgeError(f"unsupported baud rate {baud}")
                attrs[4] = attrs[5] = speed
                termios.tcsetattr(self.fd, termios.TCSANOW, attrs)

    def recv(self) -> bytes | None:
        """Bytes, None when nothing arrived within 0.2 s, b'' at end of stream."""
        if self.sock is not None:
            try:
                return self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                return b""
        import select
        r, _, _ = select.select([self.fd], [], [], 0.2)
        return os.read(self.fd, 65536) if r else None

    def send(self, data: bytes) -> None:
        with self._wlock:
            if self.sock is not None:
                self.sock.sendall(data)
            else:
                os.write(self.fd, data)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        if self.fd is not None:
            os.close(self.fd)


# ---- the offer in link form ------------------------------------------------------------
def offer_link(msg: dict) -> tuple[bytes, bytes]:
    """A decoded ota/offer -> (its documents: manifest || ticket || keysets, the `offer` line).

    The line names each document's length (TLEN 0: no ticket, which the node refuses) and always
    carries SHADOW_S: the offer's shadow_s, trial_s when a shadow offer has none (the schema's
    default), 0 without shadow; the ticket signs the same values."""
    manifest, ticket, keys = (msg.get(k, "").encode("ascii") for k in ("manifest", "ticket", "keys"))
    shadow_s = msg.get("shadow_s", msg["trial_s"]) if msg["shadow"] else 0
    head = "offer %s %d %d %d %d %d %d %s %d %d %d" % (
        msg["campaign"], msg["model"], msg["size"], msg["chunk"], msg["trial_s"], int(msg["shadow"]),
        len(manifest), msg["sha256"], shadow_s, len(ticket), len(keys))
    return manifest + ticket + keys, head.encode("ascii")


# ---- the bridge ----------------------------------------------------------------------
@dataclass
class BridgeStats:
    frames_in: int = 0
    bad_frames: int = 0
    published: dict = field(default_factory=dict)
    invalid: int = 0
    cmds: int = 0
    ota_in: int = 0  # offers and chunks forwarded to the node


class Bridge:
    """One node's link to the broker. run() returns when the link ends or stop is set."""

    def __init__(self, serial: str, broker: str, device: str, *, connect_timeout: float = 10.0,
                 baud: int = 115200, tls: TlsFiles | None = None):
        protocol.topic(device, "result")  # validates the id
        self.serial_url, self.broker, self.device = serial, broker, device
        self.host, self.port = parse_broker_url(broker)
        self.tls = client_tls(broker, tls)  # mqtts://: CA, client certificate (checked now: one line if bad)
        self.connect_timeout = connect_timeout
        self.baud = baud
        self.stats = BridgeStats()
        self.client: mqtt.Client | None = None
        self.will: bytes | None = None
        self.last_status: dict | None = None
        self.last_info: mqtt.MQTTMessageInfo | None = None
        self.cmd_queue: queue.Queue[tuple[str, bytes]] = queue.Queue()  # (kind, payload) from the broker
        self.offer: dict | None = None  # the current ota/offer
        self.documents = b""  # its manifest || ticket || keysets: what `mreq` reads
        self.decoder = FrameDecoder()

    def _connect_mqtt(self, will: bytes) -> None:
        if self.client is not None:  # a new boot: a new will needs a new connection
            if self.last_info is not None:
                self.last_info.wait_for_publish(5)  # nothing of the old boot is left behind
            self.client.disconnect()
            self.client.loop_stop()
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.device,
                        protocol=mqtt.MQTTv5)
        user, password = broker_credentials(self.broker)
        if user:
            c.username_pw_set(user, password)
        apply_tls(c, self.tls)
        c.will_set(protocol.topic(self.device, "status"), will, qos=1, retain=True)
        connected = threading.Event()

        def on_connect(client, userdata, flags, rc, props=None):
            if not rc.is_failure:
                client.subscribe([(protocol.topic(self.device, k), 1) for k in BROKER_TO_DEVICE])
                connected.set()

        def on_message(client, userdata, msg):
            self.cmd_queue.put((msg.topic.split("/", 3)[3], bytes(msg.payload)))

        c.on_connect = on_connect
        c.on_message = on_message
        try:
            c.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            raise BridgeError((tls_failure(e, self.host) if self.tls else None)
                              or f"cannot connect to broker {redact(self.broker)}: {e}") from e
        c.loop_start()
        if not connected.wait(self.connect_timeout):
            c.loop_stop()
            raise BridgeError(f"broker {self.broker} did not accept {self.device}")
        self.client = c

    def _publish(self, kind: str, body: bytes) -> None:
        try:
            msg = protocol.decode(kind, body)
        except protocol.ProtocolError as e:
            self.stats.invalid += 1
            log.warning("node sent an invalid %s message (%s): not published", kind, e)
            return
        if kind == "status":
            self.last_status = msg
        if self.client is None:
            log.warning("%s before the node's will: not published", kind)
            return
        self.last_info = self.client.publish(protocol.topic(self.device, kind), body, qos=1,
                                             retain=(kind == "status"))
        self.stats.published[kind] = self.stats.published.get(kind, 0) + 1

    def _hello(self, link: SerialLink) -> None:
        link.send(encode_frame(b"hello %d" % int(time.time() * 1000)))

    def _to_node(self, link: SerialLink, kind: str, payload: bytes) -> None:
        """One broker message to the node: cmd as received, OTA messages in link form."""
        if kind == "cmd":
            link.send(encode_frame(b"cmd " + payload))
            self.stats.cmds += 1
            return
        if kind == "ota/offer" and not payload:  # the retained offer was cleared
            self.offer, self.documents = None, b""
            return
        try:
            msg = protocol.decode(kind, payload)
        except protocol.ProtocolError as e:
            self.stats.invalid += 1
            log.warning("invalid %s for %s (%s): not forwarded", kind, self.device, e)
            return
        if kind == "ota/offer":
            self.offer = msg
            self.documents, head = offer_link(msg)
            link.send(encode_frame(head))
        else:
            data = base64.b64decode(msg["data"])
            head = "data %s %d %d %d " % (msg["campaign"], msg["model"], msg["off"], msg["crc"])
            link.send(encode_frame(head.encode() + data))
        self.stats.ota_in += 1

    def _manifest_piece(self, link: SerialLink, body: bytes) -> None:
        """`mreq CAMPAIGN MODEL OFF LEN` -> `mdat CAMPAIGN MODEL OFF <bytes>` from the current offer."""
        try:
            campaign, model, off, n = body.decode("ascii").split(" ")
            model_v, off_v, n_v = int(model), int(off), int(n)
        except ValueError:
            self.stats.invalid += 1
            log.warning("malformed mreq %r", body[:80])
            return
        o = self.offer
        if o is None or (o["campaign"], o["model"]) != (campaign, model_v):
            return  # no such offer (cleared or superseded): the node times out and gives up
        docs = self.documents
        if not 0 <= off_v < len(docs) or n_v <= 0:
            return
        piece = docs[off_v:off_v + min(n_v, MAX_PIECE)]
        link.send(encode_frame(b"mdat %s %d %d " % (campaign.encode(), model_v, off_v) + piece))

    def _handle(self, link: SerialLink, payload: bytes) -> None:
        kind, body = split_link(payload)
        if kind == "mreq":
            self._manifest_piece(link, body)
        elif kind == "boot":
            if body:  # a node that cannot start says why (e.g. "sensor")
                log.warning("node %s reports a boot problem: %s", self.device, body.decode("ascii", "replace"))
            self._hello(link)
        elif kind == "will":
            try:
                protocol.decode("status", body)
            except protocol.ProtocolError as e:
                log.warning("node sent an invalid will (%s)", e)
                return
            boot = json.loads(body)["boot"]
            if self.client is None or self.will is None or json.loads(self.will)["boot"] != boot:
                self._connect_mqtt(body)  # a new boot: register its will (a repeated hello keeps the session)
            self.will = body
        elif kind in DEVICE_TO_BROKER:
            self._publish(kind, body)
        else:
            self.stats.invalid += 1
            log.warning("unknown link message %r", kind)

    def _lost(self) -> None:
        """The link ended: say so on the node's behalf (its boot, the next status seq, now)."""
        if self.client is None or self.last_status is None:
            return
        body = {"v": 1, "boot": self.last_status["boot"], "seq": self.last_status["seq"] + 1,
                "ts": int(time.time() * 1000), "state": "lost"}
        info = self.client.publish(protocol.topic(self.device, "status"), protocol.encode("status", body),
                                   qos=1, retain=True)
        info.wait_for_publish(5)

    def run(self, stop: threading.Event | None = None) -> int:
        stop = stop or threading.Event()
        link = SerialLink(self.serial_url, self.connect_timeout, self.baud)
        try:
            # no hello before the node's `boot`: QEMU's CMSDK UART model can lose bytes that
            # arrive before the guest enables its receiver (docs/mcu.md)
            while not stop.is_set():
                while not self.cmd_queue.empty():
                    self._to_node(link, *self.cmd_queue.get())
                data = link.recv()
                if data == b"":
                    log.info("serial link %s ended", self.serial_url)
                    break
                if data:
                    for payload in self.decoder.feed(data):
                        self.stats.frames_in += 1
                        self._handle(link, payload)
                    self.stats.bad_frames = self.decoder.dropped
        finally:
            self._lost()
            if self.client is not None:
                if self.last_info is not None:
                    self.last_info.wait_for_publish(5)
                self.client.disconnect()
                self.client.loop_stop()
            link.close()
        return 0
