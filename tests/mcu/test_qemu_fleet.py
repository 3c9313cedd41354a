"""A QEMU node in the live fleet: real Mosquitto, `edgefleet serve` into SQLite, simulated nodes
beside it, and `edgefleet bridge` giving the emulated Cortex-M4F its MQTT identity."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet import protocol
from edgefleet.service.broker import start_broker

from testkit import free_port

from .conftest import FLEET_MODEL, QEMU, REPO

DEVICE = "qemu-m4-1"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}


def wait_for(pred, timeout: float, what: str, diag=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{diag()}" if diag else ""))


def q(db: Path, sql: str, *args):
    with sqlite3.connect(db, timeout=5) as c:
        return c.execute(sql, args).fetchall()


@pytest.fixture
def fleet(mcu, recording, tmp_path):
    """Broker, ingest, 3 simulated nodes, the QEMU node and its bridge; all stopped afterwards."""
    procs: dict[str, subprocess.Popen] = {}
    broker = start_broker(prefer="mosquitto", workdir=tmp_path / "broker")
    url = f"mqtt://127.0.0.1:{broker.port}"
    db = tmp_path / "fleet.db"
    serial_port = free_port()
    rec, fs = recording

    def spawn(name, argv):
        procs[name] = subprocess.Popen(argv, cwd=REPO, env=ENV, stdout=(tmp_path / f"{name}.out").open("wb"),
                                       stderr=(tmp_path / f"{name}.log").open("wb"))

    try:
        spawn("serve", [sys.executable, "-m", "edgefleet", "serve", "--broker", url, "--db", str(db),
                        "--role", "ingest"])
        wait_for(lambda: "subscribed" in (tmp_path / "serve.log").read_text(), 30, "ingest subscribed")
        spawn("sim", [sys.executable, "-m", "edgefleet", "sim", "--broker", url, "--nodes", "3",
                      "--faulty", "0", "--prefix", "sim-"])
        # the node judges by the model's own threshold (calibrate below changes it); a commissioning
        # node is tested in tests/mcu/test_qemu_commission.py
        spawn("qemu", [*QEMU, "-serial", f"tcp:127.0.0.1:{serial_port},server,nowait",
                       "-kernel", str(mcu / "ef_mcu_node.elf"),
                       "-append", f"node {FLEET_MODEL} {fs} --samples {rec} --no-commission"])
        spawn("bridge", [sys.executable, "-m", "edgefleet", "bridge", "--serial", f"tcp://127.0.0.1:{serial_port}",
                         "--broker", url, "--device", DEVICE])
        yield {"url": url, "db": db, "procs": procs, "tmp": tmp_path, "rec": rec}
    finally:
        stop_all(procs)
        broker.stop()


def stop_all(procs: dict[str, subprocess.Popen]) -> None:
    """SIGTERM every process still running, then wait for each (kill after 10 s)."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def send_cmd(url: str, body: dict) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", int(url.rsplit(":", 1)[1]))
    c.loop_start()
    c.publish(protocol.topic(DEVICE, "cmd"), protocol.encode("cmd", body), qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def logs(f) -> str:
    db = f["db"]
    counts = q(db, "SELECT device, count(*) FROM results GROUP BY device") if db.exists() else "no store"
    return f"results per device: {counts}\n" + "\n".join(
        f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(f["tmp"].glob("*.log")))


def test_qemu_node_in_the_live_fleet(fleet):
    db, url = fleet["db"], fleet["url"]
    # results and birth status of the QEMU node land in the store beside the simulated ones
    wait_for(lambda: db.exists() and q(db, "SELECT count(*) FROM results WHERE device = ?", DEVICE)[0][0] >= 10
             and q(db, "SELECT count(DISTINCT device) FROM results WHERE device LIKE 'sim-%'")[0][0] == 3,
             60, "results of the QEMU node and the simulated ones", lambda: logs(fleet))
    status, fw, caps, thr0, boot = q(db, "SELECT status, fw, caps, thr, boot FROM devices WHERE device = ?", DEVICE)[0]
    assert (status, fw, json.loads(caps)) == ("online", "1.0.0", ["debug", "calib"])
    assert abs(thr0 - 0.648337) < 1e-6
    seqs = [s for (s,) in q(db, "SELECT seq FROM results WHERE device = ? AND boot = ? ORDER BY seq", DEVICE, boot)]
    assert seqs == list(range(len(seqs)))  # consecutive from 0: nothing lost on the serial link
    # calibrate: after n windows the node announces its own threshold in a new birth
    send_cmd(url, {"v": 1, "seq": 0, "id": "cal-1", "op": "calibrate", "n": 8})
    thr1 = wait_for(lambda: (r := q(db, "SELECT thr FROM devices WHERE device = ?", DEVICE)[0][0]) != thr0 and r,
                    30, "a calibrated threshold", lambda: logs(fleet))
    wait_for(lambda: q(db, "SELECT count(*) FROM results WHERE device = ? AND abs(thr - ?) < 1e-6", DEVICE, thr1)[0][0],
             20, "results under the calibrated threshold")
    # debug capture: one raw window with features, model input and output, answering the cmd id
    send_cmd(url, {"v": 1, "seq": 1, "id": "dbg-7", "op": "debug"})
    body = wait_for(lambda: q(db, "SELECT body FROM events WHERE device = ? AND kind = 'debug'", DEVICE),
                    30, "a debug capture", lambda: logs(fleet))[0][0]
    dbg = json.loads(body)
    assert dbg["id"] == "dbg-7" and dbg["boot"] == boot and len(dbg["samples"]) == 960
    assert len(dbg["features"]) == len(dbg["q_in"]) == len(dbg["q_out"]) == 32
    rec = np.fromfile(fleet["rec"], "<f4").reshape(-1, 960)  # the window is one of the recording's, to 6 digits
    got = np.asarray(dbg["samples"], np.float64)
    best = rec[np.abs(rec - got).max(axis=1).argmin()]
    assert np.allclose(got, best, rtol=6e-6, atol=1e-12)  # %.6g: 6 significant digits
    # an invalid cmd is ignored by the node and breaks nothing
    send_cmd(url, {"v": 1, "seq": 2, "id": "p-1", "op": "ping"})
    n_before = q(db, "SELECT count(*) FROM results WHERE device = ?", DEVICE)[0][0]
    wait_for(lambda: q(db, "SELECT count(*) FROM results WHERE device = ?", DEVICE)[0][0] > n_before + 5, 20,
             "results after the commands")
    # the emulated board goes away: the bridge reports the node lost and stops
    qemu = fleet["procs"]["qemu"]
    qemu.send_signal(signal.SIGTERM)
    qemu.wait(10)
    assert fleet["procs"]["bridge"].wait(15) == 0
    wait_for(lambda: q(db, "SELECT status FROM devices WHERE device = ?", DEVICE)[0][0] == "lost", 20, "lost status")
    assert q(db, "SELECT count(*) FROM rejected")[0][0] == 0
