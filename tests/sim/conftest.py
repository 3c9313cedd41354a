"""A real Mosquitto on a free port for the simulator tests, and a subscriber that records traffic."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgefleet.runtime.artifact import load_artifact
from edgefleet.protocol import ProtocolError, decode_message
from testkit import free_port, wait_port

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "edgefleet" / "models" / "cwru-de-12k" / "model.efm"


class Mosquitto:
    """Mosquitto with a two-line config (plus persistence when a test needs a restart)."""

    def __init__(self, workdir: Path, persist: bool = False) -> None:
        exe = shutil.which("mosquitto")
        if exe is None:
            pytest.fail("mosquitto is not installed (scripts/apt-packages.txt lists it)")
        self.exe = exe
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.conf = workdir / "mosquitto.conf"
        text = f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        if persist:  # keep sessions and queued messages across a restart
            # as root, mosquitto would drop to its own user, who cannot write a private tmp dir
            text += f"persistence true\npersistence_location {workdir}/\nuser {getpass.getuser()}\n"
        self.conf.write_text(text)
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT)
        wait_port(self.port, up=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
        wait_port(self.port, up=False)


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Make (not start) a Mosquitto in its own folder; every one made is stopped afterwards."""
    made: list[Mosquitto] = []

    def make(persist: bool = False) -> Mosquitto:
        d = tmp_path / f"broker{len(made)}"
        d.mkdir()
        made.append(Mosquitto(d, persist))
        return made[-1]

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def mosquitto(tmp_path):
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def persistent_mosquitto(tmp_path):
    broker = Mosquitto(tmp_path, persist=True)
    broker.start()
    yield broker
    broker.stop()


class Recorder:
    """Subscribes to ef/v1/+/+ with a persistent QoS 1 session and keeps every decoded message."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None) -> None:
        self.lock = threading.Lock()
        self.messages: dict[str, list] = defaultdict(list)  # kind -> [(device, body, retain)]
        self.invalid: list[tuple[str, str]] = []  # (topic, reason) of anything the codec refused
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-recorder",
                                  protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("ef/v1/+/#", qos=1)
        self.client.on_message = self._on_message
        self.ready = threading.Event()
        self.client.on_subscribe = lambda *a: self.ready.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.ready.wait(10), "recorder did not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        try:
            m = decode_message(msg.topic, msg.payload)  # every message the sim sends must be valid
        except ProtocolError as exc:
            with self.lock:
                self.invalid.append((msg.topic, str(exc)))
            return
        with self.lock:
            self.messages[m.kind].append((m.device, m.body, bool(msg.retain)))

    def of(self, kind: str) -> list:
        with self.lock:
            return list(self.messages[kind])

    def results(self) -> dict[str, list[int]]:
        """device -> received result seqs (in arrival order)."""
        out: dict[str, list[int]] = defaultdict(list)
        for dev, body, _ in self.of("result"):
            out[dev] += [r["seq"] for r in body["res"]]
        return out

    def wait(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def recorder_factory():
    made = []

    def make(port: int, username: str | None = None, password: str | None = None) -> Recorder:
        r = Recorder(port, username, password)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
        assert r.invalid == [], r.invalid[:3]  # the simulator sent only valid protocol v1


@pytest.fixture(scope="session")
def artifact():
    """The shipped reference model: what matters here is the node mechanics, not its accuracy."""
    return load_artifact(MODEL)
