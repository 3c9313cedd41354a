"""Shared-subscription theft: a device with valid credentials joins ingest's `$share/ingest/...`
group. With the ACL file alone Mosquitto accepts the subscription, hands the thief its share of
results and drops them (no read right): ingest loses them. With the dynamic-security plugin
(deploy/ config) the subscription is refused in the SUBACK and ingest stores every result."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from fleet.support import result_payload, wait_until
from testkit import free_port

from edgefleet.service.config import load_settings
from edgefleet.service.credentials import device_password
from edgefleet.service.ingest import IngestService
from edgefleet.service.store.sqlite import SQLiteStore
from security.mosq import (
    INGEST_PW,
    SECRET,
    Peer,
    deploy_config,
    legacy_config,
    mosquitto,
    write_accounts,
)

N = 200


def run_attack(port: int, db: Path) -> dict:
    """Ingest (group `ingest`, as compose runs it) + a thief device in the same group + a device
    publishing N results, one per message, QoS 1. Returns what each side got."""
    settings = load_settings({}, broker_url=f"mqtt://ef-ingest-1@127.0.0.1:{port}", broker_password=INGEST_PW,
                             db=str(db), ingest_client_id="ef-ingest-1", ingest_group="ingest", mqtt_version="5",
                             sqlite_sync="NORMAL", stats_interval_s=60.0)
    store = SQLiteStore(settings.db, synchronous="NORMAL")
    svc = IngestService(settings, store)
    svc.start()
    thief = Peer(port, "sim-0002", device_password(SECRET, "sim-0002"))
    dev = Peer(port, "sim-0001", device_password(SECRET, "sim-0001"))
    try:
        assert thief.ok and dev.ok
        subacks = [thief.subscribe(f"$share/ingest/ef/v1/+/{k}") for k in ("result", "status")]
        subacks.append(thief.subscribe("ef/v1/+/result"))
        time.sleep(0.3)
        for seq in range(N):
            dev.c.publish("ef/v1/sim-0001/result", result_payload(seq, 1), qos=1).wait_for_publish(5)
        try:
            wait_until(lambda: store.count_results() >= N, 10, "all results stored")
        except AssertionError:
            time.sleep(1.0)  # let anything still in flight land before counting what was lost
        return {"stored": store.count_results(), "thief_got": len(thief.messages), "subacks": subacks}
    finally:
        for p in (dev, thief):
            p.close()
        svc.stop()
        store.close()


def test_dynsec_refuses_a_device_in_the_ingest_group_and_ingest_stores_everything(tmp_path) -> None:
    accounts = tmp_path / "dynamic-security.json"
    write_accounts(accounts)
    port = free_port()
    with mosquitto(deploy_config(tmp_path, port, accounts), port):
        got = run_attack(port, tmp_path / "fleet.db")
    assert got["subacks"] == [["Not authorized"]] * 3
    assert got["thief_got"] == 0
    assert got["stored"] == N


def test_the_acl_file_alone_let_the_thief_take_results(tmp_path) -> None:
    """The same attack on the config deploy/ had before: the test above would fail on it."""
    passwords = tmp_path / "passwords"
    write_accounts(passwords, fmt="passwd")
    port = free_port()
    with mosquitto(legacy_config(tmp_path, port, passwords), port):
        got = run_attack(port, tmp_path / "fleet.db")
    assert got["subacks"][0] != ["Not authorized"]  # accepted
    assert got["thief_got"] == 0  # the thief receives nothing itself (no read right) ...
    assert got["stored"] < N * 0.75  # ... yet ingest loses about half


def test_deploy_writes_no_weak_or_placeholder_secret(tmp_path) -> None:
    import os
    import sys

    env = dict(os.environ, EDGEFLEET_FLEET_SECRET="change-me-to-a-long-random-string",
               EDGEFLEET_INGEST_PASSWORD="x" * 20)
    proc = subprocess.run([sys.executable, "-m", "edgefleet.service.deploy_passwords", "--out",
                           str(tmp_path / "a.json")], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "placeholder" in proc.stderr and "Traceback" not in proc.stderr
    env.update(EDGEFLEET_FLEET_SECRET="y" * 20, EDGEFLEET_INGEST_PASSWORD="short")
    proc = subprocess.run([sys.executable, "-m", "edgefleet.service.deploy_passwords", "--out",
                           str(tmp_path / "a.json")], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "at least" in proc.stderr and not (tmp_path / "a.json").exists()


def test_ingest_says_so_when_the_broker_refuses_its_subscription(tmp_path, caplog) -> None:
    """An ingest process started with a device's account gets nothing: it logs why instead of
    waiting in silence."""
    accounts = tmp_path / "dynamic-security.json"
    write_accounts(accounts)
    port = free_port()
    with mosquitto(deploy_config(tmp_path, port, accounts), port):
        settings = load_settings({}, broker_url=f"mqtt://sim-0001@127.0.0.1:{port}",
                                 broker_password=device_password(SECRET, "sim-0001"), db=str(tmp_path / "f.db"),
                                 ingest_client_id="sim-0001", mqtt_version="5", sqlite_sync="NORMAL")
        store = SQLiteStore(settings.db, synchronous="NORMAL")
        svc = IngestService(settings, store)
        with caplog.at_level("ERROR", logger="edgefleet.service.ingest"):
            svc.start()
            wait_until(lambda: "refused ingest's subscription" in caplog.text, 5, "the refusal logged")
        svc.stop()
        store.close()
    assert "Not authorized" in caplog.text and device_password(SECRET, "sim-0001") not in caplog.text
