"""Commissioning through the fleet service: what nodes report is stored, alarms ignore windows with
no verdict, an older store is upgraded in place, and `edgefleet commission` reaches a node."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from edgefleet.protocol import ResultRecord, encode
from edgefleet.service.alarms import AlarmPolicy, AlarmTracker
from edgefleet.service.ingest import Inbound, decode_into
from edgefleet.service.store import IngestBatch, SQLiteStore

from .support import wait_until

REPO = Path(__file__).resolve().parents[2]


def rec(seq: int, *, anom: bool, state: str = "", score: float = 1.0, hi: float | None = None,
        hi_thr: float | None = None) -> ResultRecord:
    return ResultRecord("m-1", "b0000001", seq, 1_000 * seq, 3, score, 2.0, anom, 10, state=state, hi=hi,
                        cls=None if state else 0, hi_thr=hi_thr)


def test_alarms_ignore_commissioning_and_uncommissioned_windows():
    t = AlarmTracker(AlarmPolicy(k=3, n=5, m=5))
    quiet = [rec(i, anom=False, state=s, score=50.0) for i, s in enumerate(["commissioning"] * 10 + ["uncommissioned"] * 10)]
    assert t.observe_many(quiet) == [] and not t.known("m-1")  # no verdict: not even a trend point
    raised = t.observe_many([rec(20 + i, anom=True, score=3.0) for i in range(3)])
    assert [c.op for c in raised] == ["raise"]
    # an active alarm is not cleared by windows outside every class either
    assert t.observe_many([rec(30 + i, anom=False, state="uncommissioned") for i in range(20)]) == []


def test_severity_follows_the_health_indicator_when_the_score_saturates():
    t = AlarmTracker(AlarmPolicy(k=3, n=5))
    changes = t.observe_many([rec(i, anom=True, score=2.5, hi=40.0, hi_thr=2.0) for i in range(3)])
    assert changes[0].severity == "critical"  # score/thr 1.25 alone would be a warning


def test_ingest_stores_status_comm_and_result_fields(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    batch = IngestBatch(ingest_ts=5)
    comm = {"state": "commissioned", "hash": "0123456789abcdef", "learned": 4, "classes": [
        {"rpm": [900, 990], "n": 64, "thr": 2.5, "hi_thr": 1.5}]}
    status = {"v": 1, "boot": "b0000001", "seq": 0, "ts": 3, "state": "online", "fw": "1.1.0", "model": 3,
              "slot": "A", "thr": 2.5, "caps": ["commission"], "comm": comm}
    result = {"v": 1, "boot": "b0000001", "model": 3, "thr": 2.5, "dropped": 0, "cls": 0, "hi_thr": 1.5,
              "res": [{"seq": 0, "ts": 4, "score": 0.5, "anom": False, "inf_us": 9, "hi": 0.8}]}
    commissioning = {"v": 1, "boot": "b0000001", "model": 3, "thr": 0.04, "dropped": 0,
                     "res": [{"seq": 1, "ts": 5, "score": 9.0, "anom": False, "inf_us": 9, "state": "uncommissioned"}]}
    for topic, body, kind in [("ef/v1/m-1/status", status, "status"), ("ef/v1/m-1/result", result, "result"),
                              ("ef/v1/m-1/result", commissioning, "result")]:
        assert decode_into(batch, Inbound(topic, encode(kind, body), 1, 0, 0, 5)) is None
    bad = dict(commissioning, res=[dict(commissioning["res"][0], anom=True)])  # no verdict, yet anomalous
    assert decode_into(batch, Inbound("ef/v1/m-1/result", encode("result", bad), 2, 0, 0, 5)) == "schema"
    store.write_batch(batch)
    d = store.device("m-1")
    assert d.comm == comm and d.comm_state == "commissioned"
    got = store.score_history("m-1")
    assert [(r.state, r.cls, r.hi, r.hi_thr) for r in got] == [("", 0, 0.8, 1.5), ("uncommissioned", None, None, None)]
    store.close()


def test_a_version_1_store_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE results(device TEXT NOT NULL, boot TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
          model INTEGER NOT NULL, score REAL NOT NULL, thr REAL NOT NULL, anom INTEGER NOT NULL,
          inf_us INTEGER NOT NULL, ingest_ts INTEGER NOT NULL, PRIMARY KEY(device, boot, seq)) WITHOUT ROWID;
        CREATE TABLE devices(device TEXT PRIMARY KEY, site TEXT, line TEXT, tags TEXT NOT NULL DEFAULT '[]',
          status TEXT NOT NULL DEFAULT 'unknown', status_ts INTEGER NOT NULL DEFAULT 0,
          boot TEXT, fw TEXT, model INTEGER, slot TEXT, thr REAL, caps TEXT NOT NULL DEFAULT '[]',
          first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, results INTEGER NOT NULL DEFAULT 0,
          last_score REAL, health TEXT NOT NULL DEFAULT 'unknown', ewma_score REAL, slope_per_h REAL,
          eta_s REAL, health_ts INTEGER);
        INSERT INTO results VALUES ('m-1', 'b0000001', 0, 1, 3, 0.5, 2.0, 0, 9, 2);
        INSERT INTO devices(device, first_seen, last_seen) VALUES ('m-1', 1, 1);
        PRAGMA user_version = 1;""")
    db.close()
    store = SQLiteStore(path)
    assert store.score_history("m-1")[0].state == "" and store.device("m-1").comm is None
    from edgefleet.service.store.sqlite import SCHEMA_VERSION

    assert store._q("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    from edgefleet.service.store.sqlite import StoreError

    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(path)


@pytest.fixture()
def own_broker(tmp_path):
    """A broker of this test's own: its nodes leave retained births that must not reach other tests."""
    from edgefleet.service.broker import start_broker

    with start_broker(prefer="mosquitto", workdir=tmp_path / "broker") as broker:
        yield broker


def test_commission_command_reaches_a_simulated_node_through_serve(own_broker, ingest, tmp_path):
    """Real Mosquitto, ingest and OTA manager on one store, simulated nodes that commission at start;
    `edgefleet commission` queues a re-learn that the manager sends and the node carries out."""
    from device_sim.fleet import Fleet, FleetOptions
    from device_sim.link import LinkOptions
    from device_sim.plant import make_plant
    from edgefleet.runtime.artifact import load_artifact
    from edgefleet.service.ota.manager import OtaManager
    from edgefleet.service.ota.registry import OtaRegistry

    mosquitto = own_broker
    svc = ingest(broker=mosquitto)
    db = svc.settings.db
    plant = make_plant(3, seed=9, prefix="cm-")
    fleet = Fleet(plant, load_artifact(REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"),
                  LinkOptions(mosquitto.host, mosquitto.port, mqtt_version=mosquitto.mqtt_version),
                  FleetOptions(period_s=0.1, ticks_per_period=2, commission=True, commission_windows=16))
    fleet.start()
    assert fleet.wait_connected(1.0, 30)
    runner = threading.Thread(target=fleet.run, daemon=True)
    runner.start()
    store = SQLiteStore(db)
    registry = OtaRegistry(db)
    mgr = OtaManager(registry, mosquitto.host, mosquitto.port, devices=lambda: {}, client_id="ota-comm-test",
                     tick_s=0.2)
    try:
        def states() -> dict[str, str]:
            return {d.device: d.comm_state for d in store.devices()}

        wait_until(lambda: states() == {f"cm-{i:04d}": "commissioned" for i in range(3)}, 30, "commissioned births")
        learned = store.device("cm-0001").comm["learned"]
        proc = subprocess.run([sys.executable, "-m", "edgefleet", "commission", "cm-0001", "--windows", "16",
                               "--db", db], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "queued" in proc.stdout and len(registry.pending_commands()) == 1
        mgr.start()
        wait_until(lambda: not registry.pending_commands(), 10, "the manager sent the command")
        wait_until(lambda: (store.device("cm-0001").comm or {}).get("learned", learned) > learned, 30,
                   "a newly learned baseline")
        rows = store.score_history("cm-0001", limit=10_000)
        assert {r.state for r in rows} >= {"", "commissioning"}
        assert all(r.cls is not None for r in rows if not r.state) and not store.alarms(active=True)
        bad = subprocess.run([sys.executable, "-m", "edgefleet", "commission", "cm-9999", "--db", db],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "never reported" in bad.stderr and "Traceback" not in bad.stderr
        typo = tmp_path / "flet.db"  # a mistyped --db is refused, not created empty
        bad = subprocess.run([sys.executable, "-m", "edgefleet", "commission", "cm-0001", "--db", typo],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and f"no store at {typo}" in bad.stderr and not typo.exists()
    finally:
        mgr.stop()
        fleet.stop()
        runner.join(10)
        fleet.shutdown()
        store.close()
        registry.close()
