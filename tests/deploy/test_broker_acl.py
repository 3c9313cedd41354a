"""Per-device credentials and permissions (dynamic-security plugin), enforced by a real Mosquitto
running the deploy/ config."""

import time
from pathlib import Path

import pytest
from security.mosq import INGEST_PW, SECRET, Peer, deploy_broker

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def secured_broker(tmp_path):
    """deploy/mosquitto/mosquitto.conf (dynamic-security plugin) with accounts from deploy_passwords."""
    with deploy_broker(tmp_path) as port:
        yield port


def connect(port, user, password, client_id=None):
    p = Peer(port, user, password, client_id or "")
    return p.c, p.rc


def test_device_may_publish_only_its_own_topics(secured_broker):
    from edgefleet.service.credentials import device_password

    port = secured_broker
    got = []
    ingest, rc = connect(port, "ef-ingest-1", INGEST_PW)
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
    ingest, rc = connect(port, "ef-ingest-1", INGEST_PW, client_id="ef-ingest-1")
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


def test_device_may_subscribe_only_to_its_own_downlink(secured_broker):
    from edgefleet.service.credentials import device_password

    dev = Peer(secured_broker, "sim-0001", device_password(SECRET, "sim-0001"))
    assert dev.ok
    for topic in ("ef/v1/sim-0001/cmd", "ef/v1/sim-0001/ota/offer", "ef/v1/sim-0001/ota/data"):
        assert dev.subscribe(topic) == ["Granted QoS 1"], topic
    for topic in ("ef/v1/sim-0002/cmd", "ef/v1/sim-0001/#", "ef/v1/+/result", "#", "$SYS/#",
                  "$share/ingest/ef/v1/+/result", "$share/x/ef/v1/sim-0001/cmd", "$CONTROL/dynamic-security/#"):
        assert dev.subscribe(topic) == ["Not authorized"], topic
    dev.close()


def test_deploy_config_binds_client_ids_to_usernames_and_uses_the_plugin():
    conf = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    assert "use_username_as_clientid true" in conf
    assert "mosquitto_dynamic_security.so" in conf and "acl_file" not in conf and "password_file" not in conf


def test_only_services_write_downlink(secured_broker):
    """Commands and OTA offers come from the service accounts; a device cannot send them to another
    device, nor publish under another device's uplink."""
    from edgefleet.service.credentials import device_password

    port = secured_broker
    target = Peer(port, "sim-0001", device_password(SECRET, "sim-0001"))
    assert [target.subscribe(f"ef/v1/sim-0001/{k}") for k in ("cmd", "ota/offer")] == [["Granted QoS 1"]] * 2
    service = Peer(port, "ef-ota", INGEST_PW)
    assert service.subscribe("ef/v1/+/ota/state") == ["Granted QoS 1"]
    rogue = Peer(port, "sim-0002", device_password(SECRET, "sim-0002"))
    for kind in ("cmd", "ota/offer", "ota/data"):
        rogue.c.publish(f"ef/v1/sim-0001/{kind}", b"{}", qos=1).wait_for_publish(5)
    rogue.c.publish("ef/v1/sim-0001/ota/state", b"{}", qos=1).wait_for_publish(5)  # a spoofed "rejected"
    service.c.publish("ef/v1/sim-0001/cmd", b"{}", qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert target.messages == ["ef/v1/sim-0001/cmd"]  # only the service's
    assert service.messages == []  # no ota/state in sim-0001's name
    for p in (target, rogue, service):
        p.close()
