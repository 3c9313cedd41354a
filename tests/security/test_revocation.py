"""Per-device random secrets, revoked one device at a time, against a real Mosquitto running the
deploy/ config: on the running broker through the plugin's control topic (the device is cut off at
once, the others keep their sessions), and offline in the plugin's file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testkit import free_port

from edgefleet.service.credentials import device_password, load_secrets
from security.mosq import ADMIN_PW, INGEST_PW, SECRET, Peer, deploy_config, mosquitto

REPO = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}


def cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefleet", *argv], cwd=REPO, env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def fleet(tmp_path):
    """Accounts with a random secret per device (deploy_passwords --credentials) and an admin account."""
    accounts, creds = tmp_path / "dynamic-security.json", tmp_path / "device-credentials.json"
    proc = subprocess.run([sys.executable, "-m", "edgefleet.service.deploy_passwords", "--devices", "3",
                           "--credentials", str(creds), "--out", str(accounts)], cwd=REPO, capture_output=True,
                          text=True, env={**ENV, "EDGEFLEET_INGEST_PASSWORD": INGEST_PW,
                                          "EDGEFLEET_BROKER_ADMIN_PASSWORD": ADMIN_PW})
    assert proc.returncode == 0, proc.stderr
    port = free_port()
    return {"port": port, "conf": deploy_config(tmp_path, port, accounts), "accounts": accounts, "creds": creds}


def test_secrets_are_random_per_device_and_private(fleet) -> None:
    secrets = load_secrets(fleet["creds"])
    assert sorted(secrets) == ["sim-0000", "sim-0001", "sim-0002"] and len(set(secrets.values())) == 3
    assert all(s != device_password(SECRET, d) for d, s in secrets.items())  # nothing derived
    assert stat.S_IMODE(fleet["creds"].stat().st_mode) == 0o600
    assert stat.S_IMODE(fleet["accounts"].stat().st_mode) == 0o600
    assert not any(s in fleet["accounts"].read_text() for s in secrets.values())  # the broker has hashes only


def test_revoke_on_the_running_broker_cuts_one_device_off(fleet) -> None:
    port, creds = fleet["port"], fleet["creds"]
    secrets = load_secrets(creds)
    with mosquitto(fleet["conf"], port):
        ingest = Peer(port, "ef-ingest-1", INGEST_PW)
        assert ingest.subscribe("ef/v1/+/result") == ["Granted QoS 1"]
        devs = {d: Peer(port, d, s, d) for d, s in secrets.items()}
        assert all(p.ok for p in devs.values())
        assert not Peer(port, "sim-0001", secrets["sim-0000"]).ok  # another device's secret is no use
        proc = cli("device", "revoke", "sim-0001", "--broker", f"mqtt://ef-admin@127.0.0.1:{port}",
                   "--credentials", str(creds), env={"EDGEFLEET_BROKER_PASSWORD": ADMIN_PW})
        assert proc.returncode == 0, proc.stderr
        assert not any(s in proc.stdout + proc.stderr for s in secrets.values())
        deadline = time.time() + 5
        while devs["sim-0001"].disconnects == 0 and time.time() < deadline:
            time.sleep(0.05)
        assert devs["sim-0001"].disconnects >= 1  # cut off at once
        assert not Peer(port, "sim-0001", secrets["sim-0001"], "sim-0001").ok
        for d in ("sim-0000", "sim-0002"):  # the others keep their connections and keep working
            assert devs[d].disconnects == 0
            devs[d].c.publish(f"ef/v1/{d}/result", b"{}", qos=1).wait_for_publish(5)
        time.sleep(0.3)
        assert sorted(ingest.messages) == ["ef/v1/sim-0000/result", "ef/v1/sim-0002/result"]
        assert sorted(load_secrets(creds)) == ["sim-0000", "sim-0002"]
        assert load_secrets(creds)["sim-0000"] == secrets["sim-0000"]
        # a new device, on the running broker: its own secret, its own topics only
        proc = cli("device", "add", "line2-press", "--broker", f"mqtt://ef-admin@127.0.0.1:{port}",
                   "--credentials", str(creds), env={"EDGEFLEET_BROKER_PASSWORD": ADMIN_PW})
        assert proc.returncode == 0, proc.stderr
        new = Peer(port, "line2-press", load_secrets(creds)["line2-press"], "line2-press")
        assert new.ok and new.subscribe("ef/v1/line2-press/cmd") == ["Granted QoS 1"]
        assert new.subscribe("$share/ingest/ef/v1/+/result") == ["Not authorized"]
        for p in (*devs.values(), ingest, new):
            p.close()
    with mosquitto(fleet["conf"], port):  # the plugin saved the change: still revoked after a restart
        assert not Peer(port, "sim-0001", secrets["sim-0001"], "sim-0001").ok
        assert Peer(port, "sim-0000", secrets["sim-0000"], "sim-0000").ok


def test_offline_revoke_in_the_file_and_bad_input(fleet) -> None:
    port, creds, accounts = fleet["port"], fleet["creds"], fleet["accounts"]
    secrets = load_secrets(creds)
    proc = cli("device", "revoke", "sim-0002", "--security", str(accounts), "--credentials", str(creds))
    assert proc.returncode == 0 and "restart the broker" in proc.stdout, proc.stderr
    with mosquitto(fleet["conf"], port):
        assert not Peer(port, "sim-0002", secrets["sim-0002"], "sim-0002").ok
        assert Peer(port, "sim-0000", secrets["sim-0000"], "sim-0000").ok
    for argv, why in ((("add", "sim-0000", "--security", str(accounts)), "already has an account"),
                      (("revoke", "nobody", "--security", str(accounts)), "no account"),
                      (("add", "bad/id", "--security", str(accounts)), "must be 1-64"),
                      (("revoke", "sim-0000"), "--broker URL"),
                      (("revoke", "sim-0000", "--broker", "mqtt://ef-admin:pw@127.0.0.1:1"), "not in the URL"),
                      (("revoke", "sim-0000", "--broker", f"mqtt://sim-0000@127.0.0.1:{port}"), "cannot reach")):
        proc = cli("device", *argv, "--credentials", str(creds), env={"EDGEFLEET_BROKER_PASSWORD": "x" * 16})
        assert proc.returncode == 2 and why in proc.stderr and "Traceback" not in proc.stderr, (argv, proc.stderr)
    assert json.loads(creds.read_text()).keys() == {"sim-0000", "sim-0001"}


def test_sim_logs_in_with_each_devices_own_secret(fleet, tmp_path) -> None:
    port = fleet["port"]
    with mosquitto(fleet["conf"], port):
        report = tmp_path / "sim.json"
        proc = cli("sim", "--broker", f"mqtt://127.0.0.1:{port}", "--credentials", str(fleet["creds"]), "--nodes",
                   "3", "--faulty", "0", "--duration", "3", "--mqtt-version", "5", "--report", str(report))
        assert proc.returncode == 0, proc.stderr[-1500:]
        got = json.loads(report.read_text())
        assert got["refused_connects"] == 0 and got["published"] >= 3
        proc = cli("sim", "--broker", f"mqtt://127.0.0.1:{port}", "--credentials", str(fleet["creds"]), "--nodes",
                   "5", "--faulty", "0", "--duration", "1")
        assert proc.returncode == 2 and "no secret for 2 of the 5 nodes" in proc.stderr


def test_sim_workers_get_every_credential(tmp_path) -> None:
    """`sim --procs 2` hands its workers the credentials: derived (--fleet-secret, through the
    environment, not argv) as well as the credentials file."""
    from security.mosq import deploy_broker

    with deploy_broker(tmp_path, devices=4) as port:
        report = tmp_path / "sim.json"
        proc = cli("sim", "--broker", f"mqtt://127.0.0.1:{port}", "--fleet-secret", SECRET, "--procs", "2",
                   "--nodes", "4", "--faulty", "0", "--duration", "3", "--mqtt-version", "5", "--report", str(report))
        assert proc.returncode == 0, proc.stderr[-1500:]
        got = json.loads(report.read_text())
        assert got["refused_connects"] == 0 and got["published"] >= 4, got
