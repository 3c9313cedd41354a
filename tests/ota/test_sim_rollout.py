"""OTA end to end with the real parts: simulated nodes (device_sim) on Mosquitto, `edgefleet serve`
(ingest + OTA manager) in its own process, campaigns created through the registry as the CLI does."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from device_sim.fleet import Fleet, FleetOptions
from device_sim.link import LinkOptions
from device_sim.plant import make_plant
from edgefleet.runtime import manifest
from edgefleet.runtime.artifact import Artifact
from edgefleet.service.broker import start_broker
from edgefleet.service.ota.campaign import Policy, Target, rollout_order
from edgefleet.service.ota.registry import OtaRegistry
from edgefleet.service.store import SQLiteStore

REPO = Path(__file__).resolve().parents[2]
FLEET_MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"


def release(version: int, key, *, threshold_scale: float = 1.0) -> tuple[bytes, bytes]:
    art = Artifact.from_bytes(FLEET_MODEL.read_bytes())
    art.model_version = version
    art.scoring.threshold = float(art.scoring.threshold) * threshold_scale
    blob = art.to_bytes()
    return blob, manifest.sign(manifest.build_body(blob, art, key.public_key(), model_id="fleet"), key)


@pytest.fixture()
def plant_and_service(tmp_path, signing_key, held_chunks):
    """The fleet, registry and store; nodes named in `held_chunks` lose every OTA chunk."""
    broker = start_broker(prefer="mosquitto", workdir=tmp_path / "broker")
    db = tmp_path / "fleet.db"
    serve = subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--broker", broker.url, "--db", str(db),
                              "--client-id", f"ota-e2e-{time.time_ns()}"], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "w"))
    fleet = Fleet(make_plant(30, seed=3), Artifact.from_bytes(FLEET_MODEL.read_bytes()),
                  LinkOptions(broker.host, broker.port,
                              ota_data_hook=lambda _sh, lk, body: None if lk.node.device_id in held_chunks else body),
                  FleetOptions(period_s=0.5, ota_public_key=signing_key.public_key(), seed=3))
    fleet.start()
    assert fleet.wait_connected(1.0, 30)
    runner = threading.Thread(target=fleet.run, daemon=True)
    runner.start()
    store = SQLiteStore(db)
    deadline = time.time() + 30
    while len(store.devices()) < 30 and time.time() < deadline:
        time.sleep(0.2)
    assert len(store.devices()) == 30, (tmp_path / "serve.log").read_text()[-2000:]
    registry = OtaRegistry(db)
    yield fleet, registry, store
    fleet.stop()
    runner.join(10)
    fleet.shutdown()
    serve.terminate()
    serve.wait(30)
    broker.stop()
    store.close()
    registry.close()


def wait_campaign(registry, cid, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        c = registry.campaign(cid)
        if c.state in ("completed", "aborted"):
            return c
        time.sleep(0.5)
    raise AssertionError(f"campaign still {registry.campaign(cid).state}: {registry.status(cid)}")


def versions(fleet) -> set[int]:
    return {lk.node.model_version for lk in fleet.links}


def test_staged_rollout_to_simulated_nodes(plant_and_service, signing_key):
    fleet, registry, store = plant_and_service
    blob, man = release(2, signing_key)
    registry.publish(blob, man, {}, signing_key.public_key())
    c = registry.create_campaign(2, Target.parse("all"), Policy(stages=[0.1, 0.5, 1.0], trial_s=2))
    done = wait_campaign(registry, c.id)
    assert done.state == "completed", registry.status(c.id)
    assert registry.status(c.id)[0]["by_state"] == {"confirmed": 30}
    assert versions(fleet) == {2}
    time.sleep(2.0)  # results under the new model reach the store, and births announce it
    assert {d.model for d in store.devices()} == {2}


def test_false_alarm_model_stopped_at_canaries_and_rolled_back(plant_and_service, signing_key):
    fleet, registry, store = plant_and_service
    blob, man = release(3, signing_key, threshold_scale=1e-3)  # flags every window
    registry.publish(blob, man, {}, signing_key.public_key())
    c = registry.create_campaign(3, Target.parse("all"), Policy(stages=[0.1, 1.0], trial_s=15, min_windows=5))
    done = wait_campaign(registry, c.id)
    assert done.state == "aborted", registry.status(c.id)
    canaries = set(done.devices[:3])
    assert set(registry.device_states(c.id)) == canaries  # the rest were never offered
    deadline = time.time() + 20
    while versions(fleet) != {1} and time.time() < deadline:
        time.sleep(0.5)
    assert versions(fleet) == {1}


def test_abort_counts_devices_that_had_confirmed_as_reverted(plant_and_service, held_chunks, signing_key):
    """An operator abort after most devices confirmed: each gets the campaign's revert command, goes
    back to model 1 and reports `reverted` under the campaign, so its counts say so."""
    fleet, registry, store = plant_and_service
    blob, man = release(2, signing_key)
    registry.publish(blob, man, {}, signing_key.public_key())
    cid = "c-abort-confirmed"
    last = rollout_order([lk.node.device_id for lk in fleet.links], cid)[-1]
    held_chunks.add(last)  # its download never ends: the campaign cannot complete before the abort
    registry.create_campaign(2, Target.parse("all"),
                             Policy(stages=[0.1, 1.0], trial_s=1, abort_anomaly_shift=1000.0), campaign_id=cid)
    deadline = time.time() + 60
    while registry.status(cid)[0]["by_state"].get("confirmed", 0) < 29 and time.time() < deadline:
        time.sleep(0.3)
    assert registry.status(cid)[0]["by_state"] == {"confirmed": 29, "accepted": 1}, registry.status(cid)
    registry.abort(cid)
    deadline = time.time() + 20
    while registry.status(cid)[0]["by_state"].get("reverted", 0) < 29 and time.time() < deadline:
        time.sleep(0.3)
    assert registry.status(cid)[0]["by_state"] == {"reverted": 29, "failed": 1}, registry.status(cid)
    assert versions(fleet) == {1}
    states = registry.device_states(cid)
    assert states[last]["state"] == "failed"  # the manager's "campaign aborted", or the node's cancel
    assert {s["reason"] for d, s in states.items() if d != last} == {"revert command"}
