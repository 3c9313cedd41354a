"""Ingest against a real Mosquitto: storage, dedup, rejects with reasons, alarms, stats CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from edgefleet import protocol
from edgefleet.errors import EdgefleetError
from edgefleet.service.broker import start_broker
from edgefleet.service.ingest import Inbound, decode_into, ingest_filters
from edgefleet.service.store import IngestBatch

from .support import Publisher, result_payload, wait_until


def test_decode_into_sorts_messages_and_keeps_reasons() -> None:
    b = IngestBatch(ingest_ts=1)
    good = result_payload(0, 3)
    birth = protocol.encode("status", {"v": 1, "boot": "0000000a", "seq": 0, "ts": 5, "state": "online",
                                       "fw": "1.0.0", "model": 3, "slot": "A", "thr": 0.05, "caps": []})
    assert decode_into(b, Inbound("ef/v1/d1/result", good, 1, 1, 1, 0)) is None
    assert decode_into(b, Inbound("ef/v1/d1/status", birth, 1, 2, 1, 0)) is None
    assert decode_into(b, Inbound("ef/v1/d1/result", b"{", 1, 3, 1, 0)) == "json"
    assert decode_into(b, Inbound("ef/v1/d 1/result", good, 1, 4, 1, 0)) == "topic"
    assert (len(b.results), len(b.devices), len(b.events), len(b.rejects), b.messages) == (3, 1, 1, 2, 4)
    assert b.rejects[0].payload == b"{" and b.rejects[1].reason.startswith("device id")
    assert ingest_filters("g") == [f"$share/g/ef/v1/+/{k}" for k in protocol.INGEST_KINDS]


def test_ingest_stores_dedups_rejects_and_raises_alarms(ingest, mosquitto, unique, tmp_path) -> None:
    svc = ingest()
    dev, sick = unique("pump"), unique("fan")
    pub = Publisher(mosquitto.host, mosquitto.port, unique("pub"))
    birth = {"v": 1, "boot": "0000000a", "seq": 0, "ts": int(time.time() * 1000), "state": "online",
             "fw": "1.0.0", "model": 3, "slot": "A", "thr": 0.05, "caps": ["ota"], "site": "north", "line": "L2"}
    pub.publish(protocol.topic(dev, "status"), protocol.encode("status", birth), retain=True)
    for i in range(20):
        pub.publish(protocol.topic(dev, "result"), result_payload(i * 10, 10))
    pub.publish(protocol.topic(dev, "result"), result_payload(50, 10))  # a duplicate message
    bad = [(protocol.topic(dev, "result"), b"not json"),
           (protocol.topic(dev, "result"), result_payload(0, 1).replace(b'"v":1', b'"v":9')),
           (f"ef/v1/{dev}!/result", result_payload(0, 1)),
           (protocol.topic(dev, "status"), b"")]
    for topic, payload in bad:
        pub.publish(topic, payload)
    for i in range(10):  # sick machine: anomalous windows from the start
        pub.publish(protocol.topic(sick, "result"), result_payload(i, 1, score=lambda s: 0.3))
    pub.wait_all()
    store = svc.store
    wait_until(lambda: svc.counters.received >= 36, 20, "all messages ingested")
    c = store.counts()
    assert (c.results, c.duplicates, c.rejected) == (210, 10, 4)
    # every QoS 1 message acknowledged after its commit: its 36, and any status another test left retained
    # on the session broker (a subscription receives those too)
    assert svc.counters.acked == svc.counters.received >= 36
    assert store.reject_counts() == {"json": 2, "schema": 1, "topic": 1}
    reasons = {r.code: r.reason for r in store.rejects()}
    assert "v: expected 1, got 9" in reasons["schema"]
    d = store.device(dev)
    assert (d.status, d.site, d.line, d.results, d.fw) == ("online", "north", "L2", 200, "1.0.0")
    alarms = store.alarms(device=sick)
    assert len(alarms) == 1 and alarms[0].active and alarms[0].severity == "critical"
    assert store.device(sick).health == "alarm"
    pub.close()

    out = subprocess.run([sys.executable, "-m", "edgefleet", "stats", "--db", svc.settings.db, "--json"],
                         capture_output=True, text=True, check=True, timeout=60)
    stats = json.loads(out.stdout)
    assert (stats["results"], stats["devices"], stats["alarms"], stats["rejected"]) == (210, 2, 1, 4)
    bad_cli = subprocess.run([sys.executable, "-m", "edgefleet", "stats", "--db", str(tmp_path / "none.db")],
                             capture_output=True, text=True, timeout=60)
    assert bad_cli.returncode == 2 and "no store" in bad_cli.stderr


def test_embedded_amqtt_fallback_speaks_mqtt_311(ingest, unique) -> None:
    with start_broker(prefer="amqtt") as broker:
        with pytest.raises(EdgefleetError, match="MQTT 3.1.1 only, without shared subscriptions"):
            ingest(broker, mqtt_version="auto")  # a --group: each process would get every message
        svc = ingest(broker, mqtt_version="auto", ingest_group="")  # one process, plain subscription
        assert svc.mqtt_version == "3.1.1"
        pub = Publisher(broker.host, broker.port, unique("pub"), version="3.1.1")
        dev = unique("m")
        for i in range(5):
            pub.publish(protocol.topic(dev, "result"), result_payload(i * 4, 4))
        pub.publish(protocol.topic(dev, "result"), result_payload(0, 4))
        pub.wait_all()
        wait_until(lambda: svc.counters.received >= 6, 20, "amqtt messages ingested")
        assert (svc.store.count_results(), svc.counters.duplicates) == (20, 4)
        pub.close()
        svc.stop()
