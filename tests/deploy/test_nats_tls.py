"""Compose's nats-cluster profile serves MQTT only over mutual TLS with the fleet PKI: the nats-pki
service's own command (from `docker compose config`) run here on the output of pki-init's, and a real
nats-server (the version compose pins) running deploy/nats/nats.conf as one member (only the ports,
paths and the cluster block changed: one member cannot form the three-member JetStream cluster).
The certificate is the account (verify_and_map, users from `edgefleet pki nats-users`, which nats-pki
runs): a service and a device connect with their fleet certificates alone and a result goes from one to
the other; no certificate, another CA's certificate, plain MQTT, or a fleet certificate with no user are
refused; a device may publish and subscribe only as itself; a revoked certificate is refused once the
users are written again and the member reloads; and `edgefleet serve` (ingest, as compose's ingest-nats
runs it) stores a device's result over mqtts://."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from testkit import free_port

from deploy.test_compose import REPO, compose_bin
from deploy.test_pki_init import run_pki_init

ENV = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}


@functools.lru_cache(maxsize=None)
def compose_services(profile: str) -> dict:
    env_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"ef-nats-tls-{os.getpid()}.env"
    env_file.write_text((REPO / "deploy" / ".env.example").read_text())
    try:
        proc = subprocess.run([compose_bin(), "-f", str(REPO / "docker-compose.yml"), "--env-file", str(env_file),
                               "--profile", profile, "config", "--format", "json"],
                              capture_output=True, text=True, timeout=60, cwd=REPO)
    finally:
        env_file.unlink()
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["services"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """pki-init's then nats-pki's commands, as the containers run them, with the volumes as folders."""
    services = compose_services("nats-cluster")
    root = tmp_path_factory.mktemp("volumes")
    first = run_pki_init(services["pki-init"]["command"][0].replace("$$", "$"), root, host="broker.plant.example")
    assert first.returncode == 0, first.stderr[-2000:]
    svc = services["nats-pki"]
    assert svc["profiles"] == ["nats-cluster"] and svc["depends_on"]["pki-init"]["condition"] == \
        "service_completed_successfully"
    assert {v["target"] for v in svc["volumes"]} == {"/pki", "/nats-pki"}
    command = svc["command"][0].replace("$$", "$")
    script = (command.replace("/nats-pki/", "@NATS_PKI@").replace("'/pki'", f"'{root}/pki'")
              .replace(" /pki/", f" {root}/pki/").replace(" /pki ", f" {root}/pki ")
              .replace("@NATS_PKI@", f"{root}/nats-pki/"))
    assert script.count(f"{root}/pki") == len(re.findall(r"(?<![\w-])/pki\b", command)), script  # every path moved
    (root / "nats-pki").mkdir()
    from edgefleet.service import pki as pki_mod
    for dev in ("dev-7", "dev-8"):  # devices issued before nats-pki runs get their NATS users
        pki_mod.issue(root / "pki", dev)
    env = {**ENV, "EDGEFLEET_HOST": "broker.plant.example", "PATH": f"{REPO / '.venv' / 'bin'}:{ENV.get('PATH', '')}"}
    for _ in range(2):  # a second `up` keeps the members' certificate
        proc = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        if _ == 0:
            issued = (root / "nats-pki" / "server.crt").read_bytes()
    assert (root / "nats-pki" / "server.crt").read_bytes() == issued
    assert sorted(p.name for p in (root / "nats-pki").iterdir()) == ["ca.crt", "server.crt", "server.key",
                                                                      "users.conf"]
    assert (root / "nats-pki" / "server.key").stat().st_mode & 0o077 == 0
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(issued)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in names} == {"nats-1", "nats-2", "nats-3", "localhost", "127.0.0.1",
                                             "broker.plant.example"}
    pki_mod.issue(root / "pki", "dev-9")  # issued after nats-users wrote the accounts: no user yet
    pki_mod.init(root / "other-ca", server_names=["localhost"])  # someone else's CA
    pki_mod.issue(root / "other-ca", "dev-7")
    return root


def member_config(root: Path, work: Path, ports: dict[str, int]) -> Path:
    """deploy/nats/nats.conf for one member on this machine: each change asserted to apply once."""
    conf = (REPO / "deploy" / "nats" / "nats.conf").read_text()
    edits = [("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{ports['client']}"),
             ("http: 0.0.0.0:8222", f"http: 127.0.0.1:{ports['http']}"),
             ("store_dir: /data/jetstream", f"store_dir: {work / 'js'}"),
             ("stream_replicas: 3", "stream_replicas: 1"),
             ("listen: 0.0.0.0:8883", f"listen: 127.0.0.1:{ports['mqtt']}")]
    for old, new in edits:
        assert conf.count(old) == 1, old
        conf = conf.replace(old, new)
    conf, n = re.subn(r"\ncluster \{.*?\n\}\n", "\n", conf, flags=re.S)
    assert n == 1
    assert conf.count('"/etc/nats/pki/') == 3 and "verify_and_map: true" in conf
    assert 'include "pki/users.conf"' in conf  # relative to the config: /etc/nats/pki in compose
    conf = conf.replace('"/etc/nats/pki/', f'"{root}/nats-pki/')
    (work / "pki").symlink_to(root / "nats-pki")
    path = work / "member.conf"
    path.write_text(conf)
    return path


@pytest.fixture(scope="module")
def member(pki, tmp_path_factory):
    """One nats-server running the deployed config; yields its MQTT port."""
    binary = shutil.which("nats-server")
    if binary is None:
        pytest.fail("nats-server is not installed: scripts/setup.sh installs it (scripts/apt-packages.txt)")
    work = tmp_path_factory.mktemp("nats-member")
    ports = {"client": free_port(), "http": free_port(), "mqtt": free_port()}
    conf = member_config(pki, work, ports)
    env = {**ENV, "NATS_SERVER_NAME": "nats-1"}
    check = subprocess.run([binary, "-c", str(conf), "-t"], capture_output=True, text=True, timeout=10, env=env)
    assert check.returncode == 0, check.stderr
    log = (work / "nats.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(conf)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (work / "nats.log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", ports["mqtt"]), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (work / "nats.log").read_text()[-2000:]
                time.sleep(0.2)
        yield {"port": ports["mqtt"], "log": work / "nats.log", "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Client:
    """An MQTT 3.1.1 client (NATS has no v5); `result` is 'ok' or why the connection did not come up."""

    def __init__(self, port: int, ca: Path | None, cert: Path | None = None, key: Path | None = None, *,
                 user: str | None = None, password: str | None = None, timeout: float = 8.0,
                 client_id: str | None = None):
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        connack: dict = {}
        done = threading.Event()
        self.disconnects = 0
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{time.time_ns()}",
                        protocol=mqtt.MQTTv311)
        c.on_connect = lambda _c, _u, _f, rc, _p=None: (connack.setdefault("rc", rc), done.set())
        c.on_disconnect = lambda *a: (setattr(self, "disconnects", self.disconnects + 1), done.set())
        c.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        c.on_subscribe = lambda *a: self.subscribed.set()
        if ca is not None:
            ctx = ssl.create_default_context(cafile=str(ca))
            if cert is not None:
                ctx.load_cert_chain(str(cert), str(key))
            c.tls_set_context(ctx)
        if user:
            c.username_pw_set(user, password)
        self.client = c
        try:
            c.connect("127.0.0.1", port, keepalive=20)
        except (OSError, ssl.SSLError) as e:
            self.result = f"refused: {e}"
            return
        c.loop_start()
        done.wait(timeout)
        rc = connack.get("rc")
        self.result = "ok" if rc is not None and not rc.is_failure else f"refused: {rc or 'no CONNACK'}"
        if self.result != "ok":
            self.close()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def ingest_client(pki: Path, port: int, **kw) -> Client:
    sp = pki / "service-pki"
    return Client(port, sp / "ca.crt", sp / "ef-ingest-1.crt", sp / "ef-ingest-1.key", **kw)


def device_client(pki: Path, port: int, name: str, **kw) -> Client:
    return Client(port, pki / "pki" / "ca.crt", pki / "pki" / f"{name}.crt", pki / "pki" / f"{name}.key", **kw)


def wait_messages(c: Client, n: int, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while len(c.messages) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return c.messages


def test_service_and_device_connect_with_fleet_certificates(pki, member):
    ingest = ingest_client(pki, member["port"])
    assert ingest.result == "ok"
    device = device_client(pki, member["port"], "dev-7")
    try:
        assert device.result == "ok"
        ingest.client.subscribe("ef/v1/+/result", qos=1)
        assert ingest.subscribed.wait(5)
        device.client.publish("ef/v1/dev-7/result", b'{"over":"tls"}', qos=1).wait_for_publish(5)
        assert wait_messages(ingest, 1) == [("ef/v1/dev-7/result", b'{"over":"tls"}')]
    finally:
        device.close()
        ingest.close()


def test_without_a_fleet_certificate_with_a_user_nobody_gets_in(pki, member):
    port, ca = member["port"], pki / "pki" / "ca.crt"
    dev = (pki / "pki" / "dev-7.crt", pki / "pki" / "dev-7.key")
    assert Client(port, ca, user="ef-device", password="a-password").result.startswith("refused")  # no certificate
    foreign = Client(port, ca, pki / "other-ca" / "dev-7.crt", pki / "other-ca" / "dev-7.key")
    assert foreign.result.startswith("refused")  # same name, another CA
    assert Client(port, None, user="ef-device", password="a-password").result.startswith("refused")  # plain MQTT
    assert device_client(pki, port, "dev-9").result.startswith("refused")  # the fleet's CA, but no user (yet)
    assert Client(port, ca, *dev, user="ef-ingest-1", password="guess").result.startswith("refused")  # no claiming
    # the client checks the member too: a CA that did not sign the member's certificate fails the handshake
    assert Client(port, pki / "other-ca" / "ca.crt", *dev).result.startswith("refused")
    assert Client(port, ca, *dev).result == "ok"  # the control
    assert "TLS handshake error" in member["log"].read_text()  # the no-certificate, foreign and plain ones


def test_a_device_publishes_and_reads_only_as_itself(pki, member):
    """What Mosquitto's per-device roles give, on NATS: dev-7 cannot publish a result as dev-8, nor read
    dev-8's commands, nor everyone's results; its own topics work."""
    port = member["port"]
    ingest, dev7, dev8 = ingest_client(pki, port), device_client(pki, port, "dev-7"), device_client(pki, port, "dev-8")
    try:
        assert (ingest.result, dev7.result, dev8.result) == ("ok", "ok", "ok")
        ingest.client.subscribe("ef/v1/+/result", qos=1)
        assert ingest.subscribed.wait(5)
        granted: dict = {}
        dev7.client.on_subscribe = lambda _c, _u, mid, codes, _p=None: granted.setdefault(mid, [c.is_failure
                                                                                               for c in codes])
        _, own = dev7.client.subscribe("ef/v1/dev-7/cmd", qos=1)
        _, other = dev7.client.subscribe("ef/v1/dev-8/cmd", qos=1)
        _, wide = dev7.client.subscribe("ef/v1/+/result", qos=1)
        deadline = time.monotonic() + 5
        while len(granted) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (granted.get(own), granted.get(other), granted.get(wide)) == ([False], [True], [True]), granted
        dev7.client.publish("ef/v1/dev-8/result", b"forged", qos=1)
        dev7.client.publish("ef/v1/dev-7/result", b"own", qos=1).wait_for_publish(5)
        dev8.client.publish("ef/v1/dev-8/cmd", b"{}", qos=1)  # a device may not write another's (or any) downlink
        ingest.client.publish("ef/v1/dev-7/cmd", b'{"op":"ping"}', qos=1)  # the service may
        time.sleep(1.0)
        assert ("ef/v1/dev-7/result", b"own") in ingest.messages
        assert all(p != b"forged" for _, p in ingest.messages), ingest.messages
        assert dev7.messages == [("ef/v1/dev-7/cmd", b'{"op":"ping"}')], dev7.messages
        log = member["log"].read_text()
        assert 'Publish Violation - User "CN=dev-7,O=edgefleet", Subject "ef.v1.dev-8.result"' in log
    finally:
        for c in (dev7, dev8, ingest):
            c.close()


def test_a_device_taking_ingests_client_id_does_not_push_ingest_off(pki, member):
    """MQTT client ids are unique per NATS account: devices and services live in two, so a device that
    connects as `ef-ingest-1` gets a session of its own in DEVICES (one account: ingest was replaced,
    then the two pushed each other off on every reconnect)."""
    port = member["port"]
    ingest = ingest_client(pki, port, client_id="ef-ingest-1")
    dev7 = device_client(pki, port, "dev-7")
    intruder = None
    try:
        assert (ingest.result, dev7.result) == ("ok", "ok")
        ingest.client.subscribe("ef/v1/+/result", qos=1)
        assert ingest.subscribed.wait(5)
        intruder = device_client(pki, port, "dev-8", client_id="ef-ingest-1")
        assert intruder.result == "ok"
        dev7.client.publish("ef/v1/dev-7/result", b"after", qos=1).wait_for_publish(5)
        assert ("ef/v1/dev-7/result", b"after") in wait_messages(ingest, 1)
        assert ingest.disconnects == 0 and "Replacing old client" not in member["log"].read_text()
    finally:
        for c in (intruder, dev7, ingest):
            if c is not None:
                c.close()


def test_a_revoked_certificate_is_refused_after_the_users_are_written_again(pki, member):
    """NATS 2.9 reads no CRL: revocation is the user leaving the accounts file, applied by a reload."""
    from edgefleet.service import nats_auth
    from edgefleet.service import pki as pki_mod

    port = member["port"]
    before = device_client(pki, port, "dev-8")
    assert before.result == "ok"
    before.close()
    pki_mod.revoke(pki / "pki", "dev-8")
    n, warnings = nats_auth.write_users(pki / "pki", pki / "nats-pki" / "users.conf")
    assert any(w.startswith("dev-8: revoked") for w in warnings)
    member["proc"].send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "Reloaded server configuration" not in member["log"].read_text():
        assert time.monotonic() < deadline, member["log"].read_text()[-2000:]
        time.sleep(0.1)
    assert device_client(pki, port, "dev-8").result.startswith("refused")
    assert device_client(pki, port, "dev-9").result == "ok"  # issued earlier, has a user since this write
    assert device_client(pki, port, "dev-7").result == "ok"


def test_ingest_stores_a_result_over_mqtts_as_compose_runs_it(pki, member, tmp_path):
    """`serve --role ingest --broker mqtts://nats-3:8883,...` with its certificate in the environment
    (EDGEFLEET_MQTT_CA/CERT/KEY) and no password: the certificate is its account, as ingest-nats runs it."""
    from edgefleet import protocol

    svc = compose_services("nats-cluster")["ingest-nats"]
    assert "EDGEFLEET_BROKER_PASSWORD" not in svc["environment"] and "@" not in " ".join(svc["command"])
    assert {k: svc["environment"][k] for k in ("EDGEFLEET_MQTT_CA", "EDGEFLEET_MQTT_CERT", "EDGEFLEET_MQTT_KEY")} == \
        {"EDGEFLEET_MQTT_CA": "/pki/ca.crt", "EDGEFLEET_MQTT_CERT": "/pki/ef-ingest-1.crt",
         "EDGEFLEET_MQTT_KEY": "/pki/ef-ingest-1.key"}
    db = tmp_path / "fleet.db"
    sp = pki / "service-pki"
    env = {**ENV, "EDGEFLEET_MQTT_CA": str(sp / "ca.crt"),
           "EDGEFLEET_MQTT_CERT": str(sp / "ef-ingest-1.crt"), "EDGEFLEET_MQTT_KEY": str(sp / "ef-ingest-1.key")}
    log = tmp_path / "serve.log"
    serve = subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--role", "ingest", "--client-id",
                              "ef-ingest-1", "--broker", f"mqtts://127.0.0.1:{member['port']}",
                              "--mqtt-version", "3.1.1", "--db", str(db)],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    device = None
    try:
        deadline = time.monotonic() + 30
        while "subscribed" not in log.read_text():
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        device = device_client(pki, member["port"], "dev-7")
        assert device.result == "ok"
        now = int(time.time() * 1000)
        body = protocol.encode("result", {"v": 1, "boot": "0badc0de", "model": 1, "thr": 1.0, "dropped": 0,
                                          "res": [{"seq": 0, "ts": now, "score": 0.25, "anom": False, "inf_us": 50}]})
        device.client.publish("ef/v1/dev-7/result", body, qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 20
        rows: list = []
        while not rows and time.monotonic() < deadline:
            if db.exists():
                with sqlite3.connect(db, timeout=5) as c:
                    try:
                        rows = c.execute("SELECT device, score FROM results").fetchall()
                    except sqlite3.OperationalError:  # tables not made yet
                        pass
            time.sleep(0.2)
        assert rows == [("dev-7", 0.25)], log.read_text()[-2000:]
    finally:
        if device is not None:
            device.close()
        serve.terminate()
        try:
            serve.wait(15)
        except subprocess.TimeoutExpired:
            serve.kill()
