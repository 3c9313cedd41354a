"""Per-device credentials and the ACL, enforced by a real Mosquitto."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from testkit import free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-fleet-secret-0123456789"


@pytest.fixture()
def secured_broker(tmp_path):
    if not shutil.which("mosquitto"):
        pytest.fail("mosquitto is not installed (scripts/setup.sh installs it)")
    from edgefleet.service import deploy_passwords

    env = {"EDGEFLEET_FLEET_SECRET": SECRET, "EDGEFLEET_INGEST_PASSWORD": "ingest-pw"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert deploy_passwords.main(["--devices", "3", "--out", str(tmp_path / "passwords")]) == 0
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    port = free_port()
    conf = tmp_path / "m.conf"
    # as root, mosquitto drops to user "mosquitto", which cannot read pytest's 0700 tmp dirs
    run_as = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"{run_as}listener {port} 127.0.0.1\nallow_anonymous false\n"
                    f"password_file {tmp_path / 'passwords'}\nacl_file {REPO / 'deploy/mosquitto/acl'}\n"
                    "use_username_as_clientid true\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def connect(port, user, password, client_id=None):
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"{user}-{time.time_ns()}",
                    protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    result = {}
    c.on_connect = lambda cl, ud, flags, rc, props: result.setdefault("rc", rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.time() + 5
    while "rc" not in result and time.time() < deadline:
        time.sleep(0.02)
    return c, result.get("rc")


def test_device_may_publish_only_its_own_topics(secured_broker):
    from edgefleet.service.credentials import device_password

    port = secured_broker
    got = []
    ingest, rc = connect(port, "ef-ingest-1", "ingest-pw")
    assert not rc.is_failure
    ingest.on_message = lambda c, u, m: got.append(m.topic)
    ingest.subscribe("ef/v1/+/result", qos=1)
    time.sleep(0.3)
    dev, rc = connect(port, "sim-0001", device_password(SECRET, "sim-0001"))
    assert not rc.is_failure
    dev.publish("ef/v1/sim-0001/result", b"{}", qos=1).wait_for_publish(5)
    dev.publish("ef/v1/sim-0002/result", b"{}", qos=1).wait_for_publish(5)  # impersonation
    time.sleep(0.5)
    assert got == ["ef/v1/sim-0001/result"]
    for c in (dev, ingest):
        c.loop_stop()
        c.disconnect()


def test_wrong_password_and_unknown_device_are_refused(secured_broker):
    _, rc = connect(secured_broker, "sim-0001", "not-the-password")
    assert rc is not None and rc.is_failure
    _, rc = connect(secured_broker, "sim-9999", "whatever")
    assert rc is not None and rc.is_failure


def test_a_device_cannot_take_over_a_service_session(secured_broker):
    """A device that connects with the client id of ingest (using its own valid credentials) gets its
    own username as client id instead: the ingest session stays connected and keeps receiving."""
    from edgefleet.service.credentials import device_password

    port = secured_broker
    got = []
    disconnected = []
    ingest, rc = connect(port, "ef-ingest-1", "ingest-pw", client_id="ef-ingest-1")
    assert not rc.is_failure
    ingest.on_message = lambda c, u, m: got.append(m.topic)
    ingest.on_disconnect = lambda *a: disconnected.append(a)
    ingest.subscribe("ef/v1/+/result", qos=1)
    time.sleep(0.3)
    thief, rc = connect(port, "sim-0002", device_password(SECRET, "sim-0002"), client_id="ef-ingest-1")
    assert not rc.is_failure
    dev, _ = connect(port, "sim-0001", device_password(SECRET, "sim-0001"))
    for _ in range(5):
        dev.publish("ef/v1/sim-0001/result", b"{}", qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert disconnected == [] and len(got) == 5
    for c in (dev, thief, ingest):
        c.loop_stop()
        c.disconnect()


def test_deploy_config_binds_client_ids_to_usernames():
    conf = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    assert "use_username_as_clientid true" in conf
    acl = (REPO / "deploy" / "mosquitto" / "acl").read_text()
    from edgefleet.service.deploy_passwords import SERVICE_USERS

    assert all(f"user {u}" in acl for u in SERVICE_USERS)
