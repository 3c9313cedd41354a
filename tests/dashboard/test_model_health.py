"""The Models & OTA page's model-health numbers are the OTA manager's: same devices, same rates, same verdict.

One store and OtaRegistry in one SQLite file, a shadow campaign with devices in mixed states, and
the manager wired to the store exactly as `edgefleet serve` wires it (`start_ota_manager` in
edgefleet/commands/fleet.py). The manager is built but never connected: `_health` only reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboards import charts, ui
from dashboards.loaders import models
from edgefleet.protocol import ResultRecord
from edgefleet.service.ota.campaign import DEVICE_STATES, Policy, Target, canary_health, decide, stage_size
from edgefleet.service.ota.manager import OtaManager
from edgefleet.service.ota.registry import Campaign, OtaRegistry
from edgefleet.service.store import IngestBatch, SQLiteStore, open_store

from .conftest import APP, publish_shipped_model

OLD = 0  # the model every device ran before the campaign
N = 40  # windows per device and phase
# Rollout order; stage 1 (80%) covers the first four. Anomalous windows of N: before the offer
# (old model), then under the campaign's model, then in shadow mode (old model's call, new model's call).
DEVICES = {
    "r-1": ("reverted", 1, 36, None),  # many bad windows under the new model, then rolled back: says nothing now
    "t-1": ("trial", 2, 4, None),
    "s-1": ("shadow", 1, 0, (1, 3)),  # shadow outcomes, no results under the new model as the active one
    "c-1": ("confirmed", 1, 2, None),
    "x-1": ("trial", 1, 30, None),  # offered before a restart but in stage 2: not checked in stage 1
}


@dataclass
class Rollout:
    path: Path
    store: SQLiteStore
    reg: OtaRegistry
    campaign: Campaign


@pytest.fixture
def rollout(tmp_path: Path) -> Iterator[Rollout]:
    path = tmp_path / "fleet.db"
    store = open_store(path, synchronous="OFF")
    reg = OtaRegistry(path)
    version = publish_shipped_model(reg)
    c = reg.create_campaign(version, Target("all"), Policy(stages=[0.8, 1.0], shadow=True, shadow_s=600,
                                                            min_windows=20, abort_failures=0.5), "c-mixed")
    reg.update_campaign(c.id, devices=list(DEVICES))
    now = int(time.time() * 1000)
    offered = now - 200_000
    rows = []
    for d, (state, old_bad, new_bad, shadow) in DEVICES.items():
        reg.set_device_state(c.id, d, "offered", offered=True, old_model=OLD, ts=offered)
        reg.set_device_state(c.id, d, state, "unhealthy trial" if state == "reverted" else "")
        rows += [ResultRecord(d, "b0", i, offered - 100_000 + i * 1000, OLD, 1.0, 2.0, i < old_bad, 400)
                 for i in range(N)]
        if shadow is None:
            rows += [ResultRecord(d, "b1", N + i, offered + 10_000 + i * 1000, version, 1.0, 2.0, i < new_bad, 400)
                     for i in range(N)]
        else:
            rows += [ResultRecord(d, "b1", N + i, offered + 10_000 + i * 1000, OLD, 1.0, 2.0, i < shadow[0], 400,
                                  version, 0.5, 2.0, i < shadow[1]) for i in range(N)]
    store.write_batch(IngestBatch(now, 1, rows))
    yield Rollout(path, store, reg, reg.campaign(c.id))
    reg.close()
    store.close()


def manager_for(r: Rollout) -> OtaManager:
    """The OTA manager reading the store as `edgefleet serve` has it read (never connected here)."""
    mgr = OtaManager(r.reg, "127.0.0.1", 1883, devices=dict,
                     results=lambda d, since: [(x.model, x.anom) for x in r.store.score_history(d, since, limit=2000)])
    mgr.shadow_results = lambda model, since: [(x.device, x.anom, bool(x.shadow_anom))
                                               for x in r.store.shadow_results(model, since_ms=since, limit=50_000)]
    return mgr


def test_dashboard_counts_the_devices_and_rates_the_manager_checks(rollout: Rollout) -> None:
    c = rollout.campaign
    states = rollout.reg.device_states(c.id)
    shown = models.model_health(rollout.store, c, states, models.shadow_frame(rollout.store, c, states))

    rates = manager_for(rollout)._health(c, states)  # what the manager hands to `decide`
    assert shown.rates == rates
    members = c.devices[:stage_size(len(c.devices), c.policy.stages[c.stage])]
    assert shown.health == canary_health(c.policy, rates, members)

    # which devices count: the trial and confirmed ones by before vs after, the shadow one by its
    # shadow outcomes; not the reverted one, not a device outside the current stage
    counted = set(shown.comparison.loc[shown.comparison["counts"], "device"])
    assert counted == {"t-1", "s-1", "c-1"} and shown.health.devices == 3
    assert shown.rates["s-1"] == pytest.approx((1 / N, 3 / N, N))  # shadow, not before/after
    assert shown.health.new_rate == pytest.approx((4 / N + 3 / N + 2 / N) / 3)
    assert shown.health.old_rate == pytest.approx(max((2 / N + 1 / N + 1 / N) / 3, c.policy.anomaly_floor))
    # and the verdict agrees: the reverted device's bad windows do not abort the stage (one failure
    # in four is within this policy's limit)
    verdict = decide(c.policy, c.stage, c.devices, {d: s["state"] for d, s in states.items()},
                     {d: s["offered_ms"] / 1000 for d, s in states.items()}, time.time(), rates)
    assert not shown.health.failed and verdict.action == "wait"
    # the per-device table still shows every offered device's before/after rates
    table = shown.comparison.set_index("device")
    assert table.loc["r-1", "new_rate"] == pytest.approx(36 / N) and not table.loc["r-1", "counts"]


def test_the_page_shows_the_managers_numbers(monkeypatch, rollout: Rollout) -> None:
    c = rollout.campaign
    states = rollout.reg.device_states(c.id)
    health = canary_health(c.policy, manager_for(rollout)._health(c, states),
                           c.devices[:stage_size(len(c.devices), c.policy.stages[c.stage])])
    monkeypatch.setenv("EDGEFLEET_DB", str(rollout.path))
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.switch_page(ui.PAGE_MODELS).run()
    assert not at.exception, [e.value for e in at.exception]
    m = {x.label: x.value for x in at.metric}
    assert m["Old model anomaly rate"] == f"{health.old_rate:.1%}"
    assert m["New model anomaly rate"] == f"{health.new_rate:.1%}"
    assert m["Shift"] == f"{health.shift:.2g}x"


def test_ota_states_and_colours_come_from_the_campaign_states() -> None:
    assert set(models.OTA_STATES) == {*DEVICE_STATES, models.OTA_PENDING}
    assert set(charts.OTA_STATE_COLOURS) == set(models.OTA_STATES)
    assert [s for s in models.OTA_STATES if s != models.OTA_PENDING] == list(DEVICE_STATES)  # progress order
