"""Shadow rollouts end to end: simulated nodes on a real Mosquitto, `edgefleet serve` (ingest + OTA
manager) in its own process, the campaign started with `edgefleet ota rollout --shadow`."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from edgefleet.service.ota.campaign import Policy, Target
from edgefleet.service.ota.registry import OtaRegistry

from .test_sim_rollout import REPO, plant_and_service, release, versions, wait_campaign  # noqa: F401


def rollout(db, *args) -> str:
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "ota", "rollout", *map(str, args), "--db", str(db)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def ota_states(store, device: str) -> list[str]:
    return [e.body["state"] for e in reversed(store.events(device, kind="ota/state"))]


def test_shadow_rollout_reports_both_models_then_completes(plant_and_service, signing_key):
    fleet, registry, store = plant_and_service
    blob, man = release(2, signing_key)  # the same weights under a new version: same scores
    registry.publish(blob, man, {}, signing_key.public_key())
    rollout(registry.path, 2, "--stages", "10%,100%", "--shadow", "0.05", "--trial", "0.02", "--id", "c2-shadow")
    c = registry.campaign("c2-shadow")
    assert (c.policy.shadow, c.policy.shadow_s, c.policy.trial_s) == (True, 3, 1)
    done = wait_campaign(registry, "c2-shadow")
    assert done.state == "completed", registry.status("c2-shadow")
    assert registry.status("c2-shadow")[0]["by_state"] == {"confirmed": 30}
    assert versions(fleet) == {2}
    time.sleep(1.5)  # the last shadow results reach the store
    rows = store.shadow_results(2)
    assert {r.device for r in rows} == set(done.devices)  # every device ran a shadow phase
    assert {(r.model, r.shadow_model) for r in rows} == {(1, 2)}  # the old model decided meanwhile
    assert all(abs(r.shadow_score - r.score) <= 1e-5 * max(r.score, 1e-9) for r in rows)  # same windows
    assert all(r.shadow_thr > 0 and r.shadow_anom == (r.shadow_score > r.shadow_thr) for r in rows)
    canary = done.devices[0]
    seen = ota_states(store, canary)
    assert seen.index("shadow") < seen.index("trial") < seen.index("confirmed"), seen


def test_false_alarm_candidate_stopped_in_shadow_never_switches(plant_and_service, signing_key):
    fleet, registry, store = plant_and_service
    blob, man = release(3, signing_key, threshold_scale=1e-3)  # flags every window
    registry.publish(blob, man, {}, signing_key.public_key())
    rollout(registry.path, 3, "--stages", "10%,100%", "--shadow", "2", "--id", "c3-shadow")
    switched = set()
    deadline = time.time() + 90
    while registry.campaign("c3-shadow").state not in ("completed", "aborted") and time.time() < deadline:
        switched |= versions(fleet) - {1}
        time.sleep(0.2)
    done = registry.campaign("c3-shadow")
    assert done.state == "aborted" and "model health" in done.reason, registry.status("c3-shadow")
    assert switched == set()  # shadow mode: no node ever ran the bad model
    canaries = set(done.devices[:3])
    assert set(registry.device_states("c3-shadow")) == canaries
    rows = store.shadow_results(3)
    assert {r.device for r in rows} <= canaries and rows
    assert sum(r.shadow_anom for r in rows) / len(rows) > 0.9 > sum(r.anom for r in rows) / len(rows)
    deadline = time.time() + 20
    while any(lk.node.ota.slots.trial for lk in fleet.links) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(lk.node.ota.slots.trial for lk in fleet.links)  # the revert ended every shadow phase
    assert versions(fleet) == {1}


def test_policy_shadow_fields_round_trip_the_registry(tmp_path, signing_key):
    """Campaigns written before shadow_s existed still load (the field defaults to 0)."""
    reg = OtaRegistry(tmp_path / "r.db")
    blob, man = release(2, signing_key)
    reg.publish(blob, man, {}, signing_key.public_key())
    c = reg.create_campaign(2, Target("all"), Policy(stages=[1.0], shadow=True, shadow_s=42), "c")
    assert reg.campaign("c").policy.shadow_s == 42
    old = {k: v for k, v in json.loads(reg.db.execute("SELECT policy FROM ota_campaigns").fetchone()[0]).items()
           if k != "shadow_s"}
    reg.db.execute("UPDATE ota_campaigns SET policy = ? WHERE id = ?", (json.dumps(old), c.id))
    assert reg.campaign("c").policy.shadow_s == 0
    reg.close()
