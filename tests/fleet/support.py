"""Test helpers for the fleet suite: a bounded QoS 1 publisher and result payloads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet import protocol

T0 = 1_767_225_600_000


def result_payload(seq0: int, n: int, *, boot: str = "0000000a", thr: float = 0.05,
                   score: Callable[[int], float] = lambda s: 0.01, ts0: int | None = None) -> bytes:
    base = int(time.time() * 1000) if ts0 is None else ts0
    res = [{"seq": s, "ts": base + s, "score": score(s), "anom": score(s) > thr, "inf_us": 400}
           for s in range(seq0, seq0 + n)]
    return protocol.encode("result", protocol.result_message(boot, 3, thr, res))


class Publisher:
    """paho publisher keeping at most `window` QoS 1 messages unacknowledged (paho loses
    messages beyond 65,535 in flight, and each PUBACK costs it O(in flight): 100 publishes
    ~10k msg/s where 2,000 gave 2.6k); reconnects and resends on its own."""

    def __init__(self, host: str, port: int, client_id: str, *, window: int = 100, version: str = "5") -> None:
        proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)
        self._slots = threading.BoundedSemaphore(window)
        self._lock = threading.Lock()
        self.acked = 0
        self.sent = 0
        self.client.on_publish = self._on_publish
        self.client.reconnect_delay_set(0.2, 2)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def _on_publish(self, *_args) -> None:
        with self._lock:
            self.acked += 1
        self._slots.release()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._slots.acquire()
        with self._lock:
            self.sent += 1
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish failed: {info.rc}")

    def wait_all(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < self.sent:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.sent - self.acked} publishes not acknowledged")
            time.sleep(0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
