"""An OTA campaign on a 3-member NATS cluster (MQTT 3.1.1 + JetStream) survives the loss of the member
the OTA manager is on: `edgefleet serve` (ingest + OTA manager) lists every member, its own first;
simulated nodes (device_sim, MQTT 3.1.1) spread over the other two. Mid-campaign the manager's member
gets SIGKILL; the manager moves to another member, resumes its persistent session (clean session
off), and the campaign completes with every node on the new model. docs/brokers.md has the figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from device_sim.fleet import Fleet, FleetOptions
from device_sim.link import LinkOptions
from device_sim.plant import make_plant
from edgefleet.runtime import keys, manifest
from edgefleet.runtime.artifact import Artifact
from edgefleet.service.cluster import nats_binary, start_cluster
from edgefleet.service.ota.campaign import Policy, Target
from edgefleet.service.ota.registry import OtaRegistry
from edgefleet.service.store import SQLiteStore

REPO = Path(__file__).resolve().parents[2]
FLEET_MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
NODES = 12


def _release(version: int, key) -> tuple[bytes, bytes]:
    art = Artifact.from_bytes(FLEET_MODEL.read_bytes())
    art.model_version = version
    blob = art.to_bytes()
    return blob, manifest.sign(manifest.build_body(blob, art, key.public_key(), model_id="fleet"), key)


def _wait(cond, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _log_time(stamp: str) -> float:
    """Seconds of a log line's `2026-12-06 22:43:43,649` stamp (differences only)."""
    import datetime

    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


@pytest.fixture()
def rig(tmp_path):
    """The cluster, `edgefleet serve` on members 3,1,2 and NODES nodes on members 1 and 2."""
    if nats_binary() is None:
        pytest.fail("nats-server is not installed: scripts/setup.sh installs it (scripts/apt-packages.txt)")
    key_path = tmp_path / "campaign.key"
    key = keys.generate(key_path)  # the nodes trust it; the service signs campaign tickets with it
    cluster = start_cluster(3, workdir=tmp_path / "nats")
    m1, m2, m3 = cluster.members
    db, log = tmp_path / "fleet.db", tmp_path / "serve.log"
    env = {**os.environ, "EDGEFLEET_CAMPAIGN_KEY": str(key_path)}
    serve = subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--broker", f"{m3.url},{m1.url},{m2.url}",
                              "--db", str(db), "--client-id", f"ota-cluster-{time.time_ns()}"], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    fleet = Fleet(make_plant(NODES, seed=5), Artifact.from_bytes(FLEET_MODEL.read_bytes()),
                  LinkOptions(m1.host, m1.ports.mqtt, mqtt_version="3.1.1",
                              members=((m1.host, m1.ports.mqtt), (m2.host, m2.ports.mqtt))),
                  FleetOptions(period_s=0.5, ota_public_key=key.public_key(), seed=5))
    fleet.start()
    runner = threading.Thread(target=fleet.run, daemon=True)
    store = registry = None
    try:
        assert fleet.wait_connected(1.0, 30)
        runner.start()
        store = SQLiteStore(db)
        assert _wait(lambda: len(store.devices()) == NODES, 40), log.read_text()[-2000:]
        registry = OtaRegistry(db)
        yield cluster, fleet, registry, key, log
    finally:
        fleet.stop()
        if runner.is_alive():
            runner.join(10)
        fleet.shutdown()
        serve.terminate()
        serve.wait(30)
        for closable in (store, registry):
            if closable is not None:
                closable.close()
        cluster.stop()


def test_campaign_completes_after_the_ota_managers_member_is_killed(rig):
    cluster, fleet, registry, key, log = rig
    m1, m2, m3 = cluster.members
    assert re.search(rf"OTA manager connected to {m3.host}:{m3.ports.mqtt} \(MQTT 3\.1\.1", log.read_text()), \
        log.read_text()[-2000:]
    blob, man = _release(2, key)
    registry.publish(blob, man, {}, key.public_key())
    c = registry.create_campaign(2, Target.parse("all"), Policy(stages=[0.25, 1.0], trial_s=2))

    def by_state() -> dict[str, int]:
        return registry.status(c.id)[0]["by_state"]

    def reported() -> int:  # devices whose last state came from the device (not the manager's "offered")
        return sum(n for st, n in by_state().items() if st != "offered")

    # mid-campaign: the canaries passed, the second stage's transfers under way
    assert _wait(lambda: registry.campaign(c.id).stage == 1 and by_state().get("confirmed", 0) < NODES
                 and sum(by_state().values()) > 3, 40), by_state()
    assert registry.campaign(c.id).state == "running"
    before, reported_before = by_state(), reported()
    killed = time.monotonic()
    m3.kill()
    first_report = None  # seconds from the kill to the first device report the manager records
    while registry.campaign(c.id).state not in ("completed", "aborted") and time.monotonic() - killed < 60:
        if first_report is None and reported() > reported_before:
            first_report = time.monotonic() - killed
        time.sleep(0.2)
    done_s = time.monotonic() - killed
    assert registry.campaign(c.id).state == "completed", (registry.campaign(c.id).reason, by_state(),
                                                          log.read_text()[-3000:])
    assert by_state() == {"confirmed": NODES}
    assert {lk.node.model_version for lk in fleet.links} == {2}
    text = log.read_text()
    sessions = re.findall(r"OTA manager connected to [\d.]+:(\d+) \(MQTT 3\.1\.1, session present: (\w+)", text)
    # it moved off the dead member and found its session (the devices' reports queued there) on another
    assert len(sessions) >= 2 and int(sessions[-1][0]) in (m1.ports.mqtt, m2.ports.mqtt), text[-3000:]
    assert sessions[-1][1] == "True", sessions
    stamps = re.findall(r"^(\S+ \S+) \w+ edgefleet\.service\.ota: OTA manager (lost|connected)", text, re.M)
    lost_at = next(t for t, what in stamps if what == "lost")
    back_at = next(t for t, what in stamps if what == "connected" and t > lost_at)
    session_s = (_log_time(back_at) - _log_time(lost_at))
    print(f"\nOTA manager's session back on another member {session_s:.1f} s after it lost its own")
    print(f"OTA on NATS, manager's member killed at {before}: first device report {first_report} s, "
          f"campaign completed {done_s:.1f} s after the kill; manager sessions (port, present) {sessions}")
