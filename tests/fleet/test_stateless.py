"""Stateless services on one PostgreSQL (issue 18, part 2): three `serve --role ingest` on a shared
subscription and two `serve --role ota` (one leads, one stands by), 30 simulated nodes taking a
staged OTA campaign. Mid-load and mid-campaign one ingest process and the leading OTA manager are
killed -9 (the ingest one restarts under its client id, to collect what the broker kept in its
session). The campaign completes under the standby (each node confirms, or reverts by its own
trial's verdict), and every result the broker acknowledged to a node is stored exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from device_sim.fleet import Fleet, FleetOptions
from device_sim.link import LinkOptions
from device_sim.plant import make_plant
from edgefleet.runtime import keys, manifest
from edgefleet.runtime.artifact import Artifact
from edgefleet.service.broker import start_broker
from edgefleet.service.ota.campaign import Policy, Target
from edgefleet.service.ota.registry import OtaRegistry
from edgefleet.service.store.postgres import PostgresStore

from .support import wait_until
from .test_leader import OtaProcess
from .test_resilience import ServeProcess

REPO = Path(__file__).resolve().parents[2]
FLEET_MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
NODES = 30


def release(version: int, key) -> tuple[bytes, bytes]:
    art = Artifact.from_bytes(FLEET_MODEL.read_bytes())
    art.model_version = version
    blob = art.to_bytes()
    return blob, manifest.sign(manifest.build_body(blob, art, key.public_key(), model_id="fleet"), key)


@pytest.mark.slow
def test_three_ingest_two_ota_managers_kill9_one_of_each_mid_load_and_mid_campaign(pg_server, tmp_path, unique,
                                                                                  monkeypatch):
    url = pg_server.create_db()
    key = keys.generate(tmp_path / "k.key")
    monkeypatch.setenv("EDGEFLEET_CAMPAIGN_KEY", str(tmp_path / "k.key"))  # the managers sign campaign tickets
    broker = start_broker(prefer="mosquitto", workdir=tmp_path / "broker")
    procs: list = []
    fleet = runner = None
    store = PostgresStore(url)
    reg = OtaRegistry(url)
    try:
        group = unique("g3")
        ingest_ids = [unique(f"ef-ingest-{i}") for i in range(3)]
        ingest = [ServeProcess(broker.url, url, cid, group, "--role", "ingest") for cid in ingest_ids]
        procs += ingest
        ota = [OtaProcess(broker.url, url, unique("ef-ota-a"))]
        ota[0].wait_for("OTA manager running")
        ota.append(OtaProcess(broker.url, url, unique("ef-ota-b")))
        ota[1].wait_for("standby: another process runs the OTA manager")
        procs += ota
        fleet = Fleet(make_plant(NODES, seed=3), Artifact.from_bytes(FLEET_MODEL.read_bytes()),
                      LinkOptions(broker.host, broker.port),
                      FleetOptions(period_s=0.2, ota_public_key=key.public_key(), seed=3))
        fleet.start()
        assert fleet.wait_connected(1.0, 30)
        runner = threading.Thread(target=fleet.run, daemon=True)
        runner.start()
        wait_until(lambda: len(store.devices()) == NODES, 60, "every node in the registry")
        blob, man = release(2, key)
        reg.publish(blob, man, {}, key.public_key())
        # a simulated machine may judge its own trial unhealthy and revert (its verdict, not the
        # takeover's): allow a few such failures per stage so the campaign runs to its end
        cid = reg.create_campaign(2, Target.parse("all"),
                                  Policy(stages=[0.1, 0.5, 1.0], trial_s=2, abort_failures=0.5)).id
        try:
            wait_until(lambda: reg.status(cid)[0]["by_state"].get("confirmed", 0) >= 3, 90,
                       "the canaries confirmed (mid-campaign)")
        except AssertionError:
            print(reg.status(cid), "".join(ota[0].lines[-40:]))
            raise
        ota[0].kill9()  # the leading OTA manager
        ingest[1].kill9()  # and one ingest process, mid-load
        procs.append(ServeProcess(broker.url, url, ingest_ids[1], group, "--role", "ingest"))
        ota[1].wait_for("OTA manager running", timeout=20)
        deadline = time.time() + 150
        while reg.campaign(cid).state not in ("completed", "aborted") and time.time() < deadline:
            time.sleep(0.5)
        status = reg.status(cid)[0]
        assert status["state"] == "completed", (status, "".join(ota[1].lines[-30:]))
        states = reg.device_states(cid)
        assert len(states) == NODES  # every node was offered the model, before or after the takeover
        own_verdict = {d for d, st in states.items()
                       if st["state"] == "reverted" and st["reason"] == "unhealthy at the end of the trial"}
        confirmed = {d for d, st in states.items() if st["state"] == "confirmed"}
        assert confirmed | own_verdict == set(states), status  # nothing stuck, nothing failed by the takeover
        assert len(confirmed) >= NODES - 3, status
        assert {lk.node.model_version for lk in fleet.links if lk.node.device_id in confirmed} == {2}
        fleet.stop()
        runner.join(15)
        assert fleet.drain(30), "the nodes did not hand over their rings"
        acked = {lk.node.device_id: lk.acked_results for lk in fleet.links}  # the broker owns these

        def stored() -> dict[str, int]:
            return dict(store._q("SELECT device, count(*) FROM results GROUP BY device"))
        deadline = time.time() + 60
        while stored() != acked and time.time() < deadline:
            time.sleep(0.5)
        got = stored()
        assert got == acked, {d: (got.get(d), n) for d, n in acked.items() if got.get(d) != n}
        print(f"\n{sum(acked.values())} results acknowledged to {NODES} nodes, as many stored, none twice; "
              f"campaign {cid} completed under the standby OTA manager: {len(confirmed)} confirmed, "
              f"{len(own_verdict)} reverted by their own trial")
    finally:
        if fleet is not None:
            fleet.stop()
            if runner is not None:
                runner.join(15)
            fleet.shutdown()
        for p in procs:
            try:
                p.terminate()
            except Exception:
                p.proc.kill()
        reg.close()
        store.close()
        broker.stop()
