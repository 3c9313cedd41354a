"""At least once, exactly once in the store: kill -9 of ingest and a Mosquitto restart mid-load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgefleet import protocol
from edgefleet.service.broker import start_broker
from edgefleet.service.store import SQLiteStore

from .conftest import purge_session
from .support import Publisher, result_payload, wait_until

REPO = Path(__file__).resolve().parents[2]
PER_MSG = 10


def publish_load(pub: Publisher, devices: list[str], msgs_per_device: int, rate_msgs: float,
                 done: threading.Event) -> None:
    """Round-robin over devices, `rate_msgs` messages per second, QoS 1."""
    t0 = time.monotonic()
    k = 0
    for i in range(msgs_per_device):
        for dev in devices:
            pub.publish(protocol.topic(dev, "result"), result_payload(i * PER_MSG, PER_MSG))
            k += 1
            ahead = k / rate_msgs - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    pub.wait_all(120)
    done.set()


def assert_exactly_once(store: SQLiteStore, devices: list[str], per_device: int) -> None:
    rows = store._q("SELECT device, count(*), count(DISTINCT seq), min(seq), max(seq) FROM results GROUP BY device")
    assert sorted(rows) == sorted((d, per_device, per_device, 0, per_device - 1) for d in devices)


class ServeProcess:
    """`edgefleet serve` as a real child process, with its log captured."""

    def __init__(self, broker_url: str, db: Path | str, client_id: str, group: str, *extra: str) -> None:
        env = dict(os.environ, EDGEFLEET_SESSION_EXPIRY_S="300", EDGEFLEET_SQLITE_SYNC="NORMAL",
                   EDGEFLEET_STATS_INTERVAL_S="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgefleet", "serve", "--broker", broker_url, "--db", str(db),
             "--client-id", client_id, "--group", group, *extra], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.subscribed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.subscribed.wait(30):
            self.proc.kill()
            raise AssertionError("serve did not subscribe:\n" + "".join(self.lines[-30:]))

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if "subscribed to" in line:
                self.subscribed.set()

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.mark.slow
def test_kill9_of_ingest_mid_load_loses_and_duplicates_nothing(mosquitto, tmp_path, unique) -> None:
    db = tmp_path / "kill.db"
    cid, group = unique("ef-ingest-kill"), unique("gk")
    devices = [unique("k") for _ in range(20)]
    msgs_per_device = 100  # 20 x 100 x 10 = 20,000 results
    serve = ServeProcess(mosquitto.url, db, cid, group)
    store = SQLiteStore(db)
    pub = Publisher(mosquitto.host, mosquitto.port, unique("pub"))
    done = threading.Event()
    loader = threading.Thread(target=publish_load, args=(pub, devices, msgs_per_device, 400.0, done), daemon=True)
    loader.start()
    wait_until(lambda: store.count_results() >= 4000, 60, "a fifth of the load stored")
    serve.kill9()
    killed_at = store.count_results()
    time.sleep(1.0)  # the load goes on while nobody consumes: the broker queues for the session
    serve = ServeProcess(mosquitto.url, db, cid, group)
    assert done.wait(120), "publisher did not finish"
    total = len(devices) * msgs_per_device * PER_MSG
    wait_until(lambda: store.count_results() >= total, 90, "every published result stored")
    time.sleep(0.5)
    assert killed_at < total
    assert_exactly_once(store, devices, msgs_per_device * PER_MSG)
    print(f"\nkill -9 at {killed_at} of {total} stored; redelivered duplicates dropped: {store.counts().duplicates}")
    assert serve.terminate() == 0
    assert any("ingest stopped" in line for line in serve.lines)
    pub.close()
    store.close()
    purge_session((mosquitto.host, mosquitto.port), cid)


@pytest.mark.slow
def test_mosquitto_restart_mid_load_loses_and_duplicates_nothing(ingest, tmp_path, unique) -> None:
    """With a plain persistent subscription (ingest_group ""). Mosquitto 2.0.11 restores
    sessions from its persistence file but not their *shared* subscriptions, so in shared
    mode whatever is published before ingest re-subscribes is dropped by the broker
    (docs/store.md, "Broker restarts")."""
    with start_broker(prefer="mosquitto", persistence_dir=tmp_path / "persist", workdir=tmp_path / "broker") as broker:
        svc = ingest(broker, ingest_group="")
        devices = [unique("r") for _ in range(10)]
        msgs_per_device = 150  # 15,000 results
        pub = Publisher(broker.host, broker.port, unique("pub"))
        done = threading.Event()
        loader = threading.Thread(target=publish_load, args=(pub, devices, msgs_per_device, 400.0, done),
                                  daemon=True)
        loader.start()
        wait_until(lambda: svc.store.count_results() >= 3000, 60, "a fifth of the load stored")
        broker.restart()  # clean stop (saves its persistence file) and start on the same port
        assert done.wait(120), "publisher did not finish after the restart"
        total = len(devices) * msgs_per_device * PER_MSG
        wait_until(lambda: svc.store.count_results() >= total, 90, "every published result stored")
        time.sleep(0.5)
        assert svc.counters.connects >= 2  # it did lose the broker and come back
        assert_exactly_once(svc.store, devices, msgs_per_device * PER_MSG)
        pub.close()
