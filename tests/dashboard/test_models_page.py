"""The Models & OTA page under AppTest, on a real SQLite file populated through OtaRegistry and the store API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboards import ui
from edgefleet.protocol import ResultRecord
from edgefleet.service.ota.campaign import Policy, Target
from edgefleet.service.ota.registry import OtaRegistry
from edgefleet.service.store import DeviceUpdate, IngestBatch, open_store
from edgefleet.toolchain.model_folder import ModelFolder

from .conftest import APP, MODEL, publish_shipped_model

PAGE = ui.PAGE_MODELS
DEVICES = [f"n-{i:02d}" for i in range(6)]
STATES = {"n-00": "confirmed", "n-01": "confirmed", "n-02": "trial", "n-03": "downloading", "n-04": "failed"}  # n-05 pending
OLD_ANOM, NEW_ANOM = 2, 10  # anomalous windows out of 40 per device under the old / new model


@dataclass
class OtaDB:
    path: Path
    reg: OtaRegistry
    version: int
    campaign: str


@pytest.fixture
def ota_db(tmp_path: Path) -> Iterator[OtaDB]:
    """One published model, a running shadow campaign over 6 devices, old and new model results."""
    path = tmp_path / "fleet.db"
    store = open_store(path, synchronous="OFF")
    now = int(time.time() * 1000)
    store.write_batch(IngestBatch(now - 200_000, 6, [], [DeviceUpdate(d, now - 200_000, status="online", model=0,
                                                                      site="north", line="L1") for d in DEVICES]))
    results = []
    for d in DEVICES[:3]:
        for i in range(40):
            results.append(ResultRecord(d, "0000abcd", i, now - 180_000 + i * 1000, 0, 1.0, 2.667, i < OLD_ANOM, 400))
            results.append(ResultRecord(d, "0000abce", i, now - 100_000 + i * 1000, 1, 1.0, 2.667, i < NEW_ANOM,
                                        400))
    store.write_batch(IngestBatch(now - 50_000, 1, results))
    store.close()

    reg = OtaRegistry(path)
    version = publish_shipped_model(reg)
    c = reg.create_campaign(version, Target("all"), Policy(stages=[0.5, 1.0], shadow=True, trial_s=600),
                            "c1-shadow")
    reg.update_campaign(c.id, devices=DEVICES)
    for d, s in STATES.items():
        reg.set_device_state(c.id, d, "offered", offered=True, old_model=0, ts=now - 120_000)
        reg.set_device_state(c.id, d, s, "bad hash" if s == "failed" else "")
    yield OtaDB(path, reg, version, c.id)
    reg.close()


def open_models(monkeypatch, db: Path) -> AppTest:
    monkeypatch.setenv("EDGEFLEET_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


COLUMNS = {"ota_models_table": "tflm_arena_bytes", "ota_campaigns_table": "stages", "ota_devices_table": "offered",
           "ota_shadow_table": "new_windows", "ota_shadow_compare_table": "new_median"}  # a column only that table has


def table(at: AppTest, key: str):
    (df,) = [d.value for d in at.dataframe if COLUMNS[key] in d.value.columns]
    return df


def submit(at: AppTest, **fields) -> AppTest:
    for key, value in fields.items():
        widget = at.text_input(key=key) if key in ("ota_target", "ota_stages", "ota_id") else at.number_input(key=key)
        widget.set_value(value)
    at.button(key="FormSubmitter:ota_start-Start campaign").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_registry_lists_model_with_card(monkeypatch, ota_db) -> None:
    at = open_models(monkeypatch, ota_db.path)
    models = table(at, "ota_models_table")
    card = ModelFolder(MODEL).card()
    row = models.iloc[0]
    assert list(models["version"]) == [ota_db.version] and row["model_id"] == "cwru-de-12k"
    assert row["size"] == len(ModelFolder(MODEL).artifact_bytes())
    assert row["auc_int8"] == card["evaluation"]["auc_int8"]
    assert row["tflm_arena_bytes"] == card["tflm_arena_bytes"]
    assert row["activation_ram_bytes"] == card["footprint"]["activation_ram_bytes"]
    assert any("Model card: cwru-de-12k" in m.value for m in at.markdown)


def test_state_counts_stages_devices_and_shadow_rates(monkeypatch, ota_db) -> None:
    at = open_models(monkeypatch, ota_db.path)
    camps = table(at, "ota_campaigns_table")
    (status,) = ota_db.reg.status()
    row = camps.set_index("campaign").loc[ota_db.campaign]
    for state, n in status["by_state"].items():
        assert row[state] == n, state
    assert row["pending"] == len(DEVICES) - sum(status["by_state"].values()) == 1
    assert row["stage"] == "1/2 (50%)" and row["state"] == "running"
    # stage 1 = 3 devices: 2 confirmed, 1 in trial; stage 2: 1 downloading, 1 failed, 1 pending
    texts = [p.proto.text for p in at.get("progress")]
    assert any("Stage 1 (50%): 3 devices · 2 confirmed · 0 failed · 1 in flight · 0 pending ← current" in t
               for t in texts), texts
    assert any("Stage 2 (100%): 3 devices · 0 confirmed · 1 failed · 1 in flight · 1 pending" in t for t in texts)
    devs = table(at, "ota_devices_table").set_index("device")
    assert devs.loc["n-04", "state"] == "failed" and devs.loc["n-04", "reason"] == "bad hash"
    assert devs.loc["n-05", "state"] == "pending"
    rates = table(at, "ota_shadow_table").set_index("device")
    assert rates.loc["n-00", "old_rate"] == pytest.approx(OLD_ANOM / 40)
    assert rates.loc["n-00", "new_rate"] == pytest.approx(NEW_ANOM / 40)
    assert rates.loc["n-03", "new_windows"] == 0
    m = {x.label: x.value for x in at.metric}
    assert m["New model anomaly rate"] == f"{NEW_ANOM / 40:.1%}" and m["Shift"] == "5x"


SHADOW = {"n-00": (1, 12), "n-01": (0, 3)}  # device -> (old, new) anomalous windows of 30 in shadow mode


def test_shadow_comparison_of_both_models_on_the_same_windows(monkeypatch, ota_db) -> None:
    ota_db.reg.update_campaign(ota_db.campaign, state="completed")
    c = ota_db.reg.create_campaign(ota_db.version, Target("all"),
                                   Policy(stages=[1.0], shadow=True, shadow_s=600, trial_s=60), "c2-shadow")
    ota_db.reg.update_campaign(c.id, devices=DEVICES[:3])
    now = int(time.time() * 1000)
    for d in DEVICES[:3]:
        ota_db.reg.set_device_state(c.id, d, "offered", offered=True, old_model=0, ts=now - 60_000)
        ota_db.reg.set_device_state(c.id, d, "shadow")
    rows = []
    for d, (old_n, new_n) in SHADOW.items():
        for i in range(30):
            rows.append(ResultRecord(d, "0000abcf", i, now - 40_000 + i * 1000, 0, 0.5 + (i < old_n) * 4.0, 2.667,
                                     i < old_n, 400, ota_db.version, 0.1 + (i < new_n) * 9.0, 2.0, i < new_n))
    rows.append(ResultRecord("n-09", "0000abcf", 0, now - 1000, 0, 1.0, 2.667, False, 400, ota_db.version, 9.0,
                             2.0, True))  # a device outside the campaign: not counted
    store = open_store(ota_db.path)
    store.write_batch(IngestBatch(now, 1, rows))
    store.close()

    at = open_models(monkeypatch, ota_db.path)
    assert at.selectbox(key="ota_campaign").value == "c2-shadow"
    cmp = table(at, "ota_shadow_compare_table").set_index("device")
    assert sorted(cmp.index) == ["n-00", "n-01"] and set(cmp["windows"]) == {30}
    assert cmp.loc["n-00", "old_rate"] == pytest.approx(1 / 30) and cmp.loc["n-00", "new_rate"] == pytest.approx(12 / 30)
    assert cmp.loc["n-01", "shift"] == pytest.approx((3 / 30) / 0.02)  # old rate 0 floored at 2%
    assert cmp.loc["n-00", "new_median"] == pytest.approx(0.1) and cmp.loc["n-00", "state"] == "shadow"
    m = {x.label: x.value for x in at.metric}
    assert m["Shadow windows"] == "60"
    assert m["Old model anomaly rate (shadow)"] == f"{1 / 60:.1%}"
    assert m["New model anomaly rate (shadow)"] == f"{15 / 60:.1%}"
    assert m["Shadow shift"] == f"{(15 / 60) / 0.02:.2g}x"
    charts = [ch for ch in at.get("vega_lite_chart") if "log10_score" in str(ch.proto)]
    assert charts, "the score distribution chart is drawn"
    assert "log10_thr" in str(charts[0].proto)  # with each model's threshold
    camps = table(at, "ota_campaigns_table").set_index("campaign")
    assert camps.loc["c2-shadow", "mode"] == "shadow 10 min + trial 1 min" and camps.loc["c2-shadow", "shadow"] == 3


def test_shadow_campaign_without_shadow_results_says_so(monkeypatch, ota_db) -> None:
    at = open_models(monkeypatch, ota_db.path)
    assert any("No shadow results yet" in c.value for c in at.caption)


def test_abort_sets_aborting(monkeypatch, ota_db) -> None:
    at = open_models(monkeypatch, ota_db.path)
    at.button(key="ota_abort").click().run()
    assert not at.exception
    assert ota_db.reg.campaign(ota_db.campaign).state == "aborting"
    assert table(at, "ota_campaigns_table")["state"].tolist() == ["aborting"]
    assert any("aborted by operator" in e.value for e in at.error)


def test_start_campaign_through_the_form(monkeypatch, ota_db) -> None:
    at = open_models(monkeypatch, ota_db.path)
    submit(at, ota_stages="10%,100%", ota_id="c-form")  # one campaign is still running: refused, shown
    assert any("still running" in e.value for e in at.error)
    assert [c.id for c in ota_db.reg.campaigns()] == [ota_db.campaign]

    ota_db.reg.update_campaign(ota_db.campaign, state="completed")
    submit(at, ota_target="site=north", ota_stages="10%,100%", ota_shadow=5.0, ota_fails=20.0, ota_shift=2.5,
           ota_id="c-form")
    c = ota_db.reg.campaign("c-form")
    assert (c.model, c.target, c.state) == (ota_db.version, "site=north", "running")
    assert c.policy == Policy(stages=[0.1, 1.0], abort_failures=0.2, abort_anomaly_shift=2.5, stage_timeout_s=600.0,
                              trial_s=60, shadow=True, shadow_s=300)  # shadow 5 min, then the 1 min trial
    assert not at.error and "c-form" in table(at, "ota_campaigns_table")["campaign"].tolist()


@pytest.mark.parametrize("stages", ["5%,2%,100%", "5%,25%", "abc"])
def test_invalid_stages_show_an_error_and_create_nothing(monkeypatch, ota_db, stages) -> None:
    ota_db.reg.update_campaign(ota_db.campaign, state="completed")
    at = open_models(monkeypatch, ota_db.path)
    submit(at, ota_stages=stages, ota_id="c-bad")
    assert any("stages" in e.value for e in at.error), [e.value for e in at.error]
    assert [c.id for c in ota_db.reg.campaigns()] == [ota_db.campaign]


def test_missing_database_waits_and_creates_nothing(monkeypatch, tmp_path: Path) -> None:
    db = tmp_path / "nope" / "fleet.db"
    monkeypatch.setenv("EDGEFLEET_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert any("No fleet database" in w.value for w in at.warning)
    assert not at.dataframe and not db.exists() and not db.parent.exists()
