"""Simulated nodes on the shipped v2 fleet model: every result carries its velocity (mm/s) and
running speed, and the anomalous results of a machine that develops unbalance say why."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from device_sim.fleet import Fleet, FleetOptions
from device_sim.link import LinkOptions
from device_sim.physics import Fault
from device_sim.plant import make_plant
from edgefleet.runtime.artifact import load_artifact

MODEL = Path(__file__).resolve().parents[2] / "edgefleet" / "models" / "fleet-v2" / "model.efm"


def test_results_carry_velocity_speed_and_the_why_of_an_unbalance(mosquitto, recorder_factory):
    art = load_artifact(MODEL)
    assert art.features.params.version == 2
    rec = recorder_factory(mosquitto.port)
    plant = make_plant(4, seed=3, rates=(12000.0,))
    fleet = Fleet(plant, art, LinkOptions("127.0.0.1", mosquitto.port),
                  FleetOptions(period_s=0.4, ticks_per_period=2, commission=True, commission_windows=20))
    fleet.start()
    assert fleet.wait_connected(1.0, 10)
    runner = threading.Thread(target=fleet.run, args=(22.0,), daemon=True)
    runner.start()
    time.sleep(11.0)  # 20 windows of commissioning at 0.4 s, plus the settle test's slack
    dev = plant.nodes[1].device_id
    fleet.inject_fault(dev, Fault.UNBALANCE, peak_mm_s=6.0)
    runner.join(30)
    assert fleet.drain(10)
    fleet.shutdown()
    results = [(d, r) for d, b, _ in rec.of("result") for r in b["res"]]
    assert results and all("vrms" in r and "rpm" in r for _, r in results)
    healthy = [r["vrms"] for d, r in results if d != dev]
    assert 0.2 < min(healthy) and max(healthy) < 4.5  # ISO 20816 zones A/B
    judged_bad = [r for d, r in results if d == dev and r["anom"]]
    assert len(judged_bad) >= 5
    assert all(r["why"] and r["hint"] for r in judged_bad)
    hints = [r["hint"] for r in judged_bad]
    assert hints.count("unbalance") >= len(hints) // 2, hints
    rpm = judged_bad[-1]["rpm"]
    top = judged_bad[-1]["why"][0]
    f1 = rpm / 60  # the band that rises most holds 1x or touches it (a line's lobe spans ~2 Hz)
    assert ("lo" in top and top["lo"] - 0.1 * f1 <= f1 < top["hi"] + 0.1 * f1) or top.get("name") == "vrms", top
    assert judged_bad[-1]["vrms"] > max(healthy)
    assert not any(r.get("why") for d, r in results if not r["anom"])
