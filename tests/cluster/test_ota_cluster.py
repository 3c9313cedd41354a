"""An OTA campaign on a 3-member NATS cluster (MQTT 3.1.1 + JetStream) survives the loss of the member
the OTA manager is on: `edgefleet serve` (ingest + OTA manager) lists every member, its own first;
simulated nodes (device_sim, MQTT 3.1.1) spread over the other two and trust the service's campaign
key. Once the canaries passed and the second stage's offers are out, the manager's member gets
SIGKILL (started again 10 s later, as its supervisor would); the manager moves to another member,
resumes its persistent session (clean session off), and the campaign completes with every node on
the new model and no offer left retained. The short
variant of benchmarks/ota_cluster.py (docs/brokers.md has the figures). Before the OTA manager spoke
3.1.1 it could not connect to NATS at all ("Unsupported protocol version") and this campaign stalled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.service.cluster import nats_binary

REPO = Path(__file__).resolve().parents[2]
NODES = 12


def test_campaign_completes_after_the_ota_managers_member_is_killed(tmp_path):
    if nats_binary() is None:
        pytest.fail("nats-server is not installed: scripts/setup.sh installs it (scripts/apt-packages.txt)")
    out = tmp_path / "ota.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ota_cluster.py"), "--runs", "1",
                           "--no-baseline", "--restart-after", "10", "--nodes", str(NODES),
                           "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())["results"]["kill"]["runs"][0]
    assert r["mid_campaign_at_kill"] and r["states_at_kill"].get("confirmed", 0) < NODES, r
    assert r["campaign"] == "completed", r
    assert r["by_state"] == {"confirmed": NODES} and r["node_models"] == [2], r
    sessions = r["manager_sessions"]  # (port, session present): first on the victim, last on a survivor
    assert sessions[0] == [r["victim_port"], False] and sessions[-1][0] != r["victim_port"], sessions
    assert sessions[-1][1] is True, sessions  # the reports queued for it while it moved were kept
    assert r["manager_back_s"] is not None and r["retained_offers_left"] == 0, r


def test_a_report_delivered_again_does_not_undo_a_confirmation(tmp_path):
    """What made one in three kill runs abort before the fix: after the move, NATS delivered a node's
    old `accepted` again (an ack-wait after the lost connection). Taken, it put the confirmed node back
    in flight, the manager offered it again, and its "not newer" rejection counted as a failure."""
    from edgefleet.runtime import keys, manifest
    from edgefleet.runtime.artifact import Artifact
    from edgefleet.service.ota.campaign import Policy, Target
    from edgefleet.service.ota.manager import OtaManager
    from edgefleet.service.ota.registry import OtaRegistry

    key = keys.generate(tmp_path / "k.key")
    art = Artifact.from_bytes((REPO / "edgefleet" / "models" / "fleet-default" / "model.efm").read_bytes())
    art.model_version = 2
    blob = art.to_bytes()
    registry = OtaRegistry(tmp_path / "fleet.db")
    try:
        registry.publish(blob, manifest.sign(manifest.build_body(blob, art, key.public_key(), model_id="f"), key),
                         {}, key.public_key())
        c = registry.create_campaign(2, Target.parse("all"), Policy(stages=[1.0], trial_s=1), "c2")
        mgr = OtaManager(registry, "127.0.0.1", 1, devices=dict, ticket_key=None)
        registry.set_device_state(c.id, "n1", "offered", offered=True)
        registry.set_device_state(c.id, "n2", "offered", offered=True)

        def report(device: str, boot: str, seq: int, state: str) -> bool:
            return mgr._record(device, {"v": 1, "boot": boot, "seq": seq, "ts": 1, "campaign": c.id, "model": 2,
                                        "state": state})

        assert report("n1", "b1", 0, "accepted") and report("n1", "b1", 1, "trial")
        assert report("n1", "b1", 2, "confirmed")
        assert not report("n1", "b1", 0, "accepted") and not report("n1", "b1", 1, "trial")  # delivered again
        assert registry.device_state(c.id, "n1") == "confirmed"
        assert "older report delivered again" in registry.history("n1")[0]["reason"]
        # the manager restarted (no seq remembered): a confirmed device's old progress is still not taken
        mgr2 = OtaManager(registry, "127.0.0.1", 1, devices=dict, ticket_key=None)
        assert not mgr2._record("n1", {"v": 1, "boot": "b1", "seq": 0, "ts": 1, "campaign": c.id, "model": 2,
                                       "state": "accepted"})
        assert registry.device_state(c.id, "n1") == "confirmed"
        # a new boot counts from 0 again and is taken; so is a confirmed device's later revert
        assert report("n2", "b1", 5, "accepted") and report("n2", "b2", 0, "accepted")
        assert report("n1", "b1", 3, "reverted") and registry.device_state(c.id, "n1") == "reverted"
    finally:
        registry.close()
