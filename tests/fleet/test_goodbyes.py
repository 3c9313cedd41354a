"""Goodbyes read back from the broker's retained statuses (edgefleet/service/goodbyes.py), against
a real Mosquitto and both stores: a tail lost with its goodbye still counts, once; a goodbye from
before the store does not."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from edgefleet.protocol import ResultRecord, codec
from edgefleet.service.goodbyes import apply_marks, marks_of, read_marks
from edgefleet.service.store import IngestBatch

T0 = 1_800_000_000_000


RETAINED: list[tuple[int, str]] = []  # (broker port, topic) each test retained: cleared after it


@pytest.fixture(autouse=True)
def _clear_retained():
    """The session broker is shared: a retained status left behind reaches every later ingest's
    subscription (test_ingest counted 6 messages more than it sent)."""
    yield
    by_port: dict[int, list[tuple[str, bytes]]] = {}
    for port, topic in RETAINED:
        by_port.setdefault(port, []).append((topic, b""))
    RETAINED.clear()
    for port, msgs in by_port.items():
        publish_retained(port, msgs, remember=False)


def publish_retained(url_port: int, msgs: list[tuple[str, bytes]], *, remember: bool = True) -> None:
    if remember:
        RETAINED.extend((url_port, t) for t, _ in msgs)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", url_port)
    c.loop_start()
    try:
        for topic, payload in msgs:
            c.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def status(device: str, boot: str, ts: int = T0 + 60_000, **extra) -> tuple[str, bytes]:
    body = {"v": 1, "boot": boot, "seq": 3, "ts": ts, "state": "offline", **extra}
    return codec.topic(device, "status"), codec.encode("status", body)


def test_a_goodbye_the_queue_dropped_is_read_back_from_the_retained_status(mosquitto, open_db, unique):
    store = open_db()
    a, b, c, d, e = (unique("gb") for _ in range(5))
    rec = [ResultRecord(dev, "0000000a", s, T0 + s, 1, 0.1, 1.0, False, 5) for dev, n in ((a, 5), (b, 10), (d, 2))
           for s in range(n)]
    store.write_batch(IngestBatch(ingest_ts=T0, results=rec))
    publish_retained(mosquitto.port, [
        status(a, "0000000a", res_seq=7),  # results 5-7 lost with the goodbye: a hole of 3
        status(b, "0000000a", res_seq=9),  # everything arrived: nothing changes
        status(c, "0000000b", res_seq=40),  # a boot whose every result was lost: a hole of 41
        status(e, "0000000e", res_seq=9, ts=T0 - 1),  # a goodbye older than anything in the store: left alone
        status(d, "0000000c", prev={"boot": "0000000a", "res_seq": 3}, state="online", fw="1.1.0", model=1,
               slot="A", thr=1.0, caps=["debug"]),  # a birth after a reset names the old boot's end
        (codec.topic(unique("gb"), "status"), b'{"v":1,"boot":"zz"'),  # garbage someone retained
    ])
    marks, statuses = read_marks(f"mqtt://127.0.0.1:{mosquitto.port}", quiet_s=0.5, timeout_s=30)
    mine = {m for m in marks if m[0] in (a, b, c, d, e)}
    assert mine == {(a, "0000000a", 7, T0 + 60_000), (b, "0000000a", 9, T0 + 60_000), (c, "0000000b", 40, T0 + 60_000),
                    (d, "0000000a", 3, T0 + 60_000), (e, "0000000e", 9, T0 - 1)}
    assert statuses >= 6
    for _ in range(2):  # applied twice: marks are idempotent
        assert apply_marks(store, [m for m in marks if m[0] in (a, b, c, d, e)], T0 + 120_000) == 4
        loss = store.loss(T0 + 10**9, settle_ms=0)["devices"]
        assert (loss[a]["missing"], loss[a]["received"]) == (3, 5)
        assert loss[d]["missing"] == 2
        assert (loss[c]["missing"], loss[c]["received"]) == (41, 0)
        assert b not in loss and e not in loss


def test_marks_of_takes_only_valid_statuses():
    topic, payload = status("dev-1", "0000000a", res_seq=5)
    assert marks_of(topic, payload) == [("dev-1", "0000000a", 5, T0 + 60_000)]
    assert marks_of(topic, b"\xff" * 10) == []
    assert marks_of(codec.topic("dev-1", "result"), payload) == []
    assert marks_of("ef/v1/a b/status", payload) == []
    assert marks_of(topic, codec.encode("status", {"v": 1, "boot": "0000000a", "seq": 1, "ts": T0,
                                                   "state": "offline"})) == []


def test_ingest_reads_the_goodbyes_back_on_its_own(mosquitto, ingest, unique, monkeypatch):
    """`edgefleet serve` does it every GOODBYES_EVERY_S: a boot whose last results and goodbye never came
    through ingest's session still ends at the seq its retained goodbye names."""
    import time

    import edgefleet.service.ingest as ingest_mod

    monkeypatch.setattr(ingest_mod, "GOODBYES_EVERY_S", 0.5)
    svc = ingest()
    dev, now = unique("gbi"), int(time.time() * 1000)
    body = codec.result_message("0000000a", 1, 1.0, [{"seq": s, "ts": now + s, "score": 0.1, "anom": False,
                                                      "inf_us": 5} for s in range(5)])
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    try:
        c.publish(codec.topic(dev, "result"), codec.encode("result", body), qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()
    deadline = time.monotonic() + 20
    while svc.counters.stored < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert svc.counters.stored == 5
    # the goodbye (res_seq 8: results 5-8 lost) reaches the broker's retained store only: ingest's own
    # subscription is told to skip it, as a full session queue would have dropped it
    from edgefleet.service.ingest import ingest_filters

    svc._client.unsubscribe([f for f in ingest_filters(svc.settings.ingest_group or None) if f.endswith("/status")])
    time.sleep(0.5)
    publish_retained(mosquitto.port, [status(dev, "0000000a", ts=now + 10, res_seq=8)])
    deadline = time.monotonic() + 20
    missing = 0
    while time.monotonic() < deadline:
        from edgefleet.service.store import SQLiteStore

        other = SQLiteStore(svc.settings.db)  # another connection, as `edgefleet stats` reads it
        try:
            missing = other.loss(now + 10**9, settle_ms=0)["devices"].get(dev, {}).get("missing", 0)
        finally:
            other.close()
        if missing:
            break
        time.sleep(0.3)
    assert missing == 4
