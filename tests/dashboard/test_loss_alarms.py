"""Data-loss alarms on the Alarms page (listed and acknowledged like machine alarms) and unshelving from the
dashboard (health and data-loss), through the store: a real SQLite where a device really lost results."""

from __future__ import annotations

import time

from dashboards import ui
from dashboards.loaders import alarms
from edgefleet.protocol import ResultRecord
from edgefleet.service.store import IngestBatch
from edgefleet.service.store.loss import SETTLE_MS

from .conftest import open_page


def lose_results(store, device: str = "lossy-7") -> int:
    """A device whose every 10th result never arrives, then the loss tracker's pass: a data-loss alarm."""
    t0 = int(time.time() * 1000) - SETTLE_MS - 60_000
    recs = [ResultRecord(device, "b1", s, t0 + s * 100, 1, 0.1, 1.0, False, 5) for s in range(200) if s % 10]
    store.write_batch(IngestBatch(t0 + 20_000, 1, recs))
    assert ("raise", device) in store.track_loss(t0 + 20_000 + SETTLE_MS + 1)
    (a,) = [a for a in store.loss_alarms(True) if a["device"] == device]
    return a["id"]


def test_loss_alarm_frame_and_acknowledgement(fleet_db) -> None:
    s = fleet_db.store
    aid = lose_results(s)
    df = alarms.loss_alarm_frame(s, "active, unacknowledged")
    row = df.set_index("alarm").loc[f"loss-{aid}"]
    assert row["device"] == "lossy-7" and row["missing"] >= 15 and row["state"] == "active"
    assert s.ack_loss_alarm(aid, "ana", 123, "switch replaced") is True
    assert s.ack_loss_alarm(aid, "bob", 124) is False  # once
    assert alarms.loss_alarm_frame(s, "active, unacknowledged").empty
    row = alarms.loss_alarm_frame(s, "active").set_index("alarm").loc[f"loss-{aid}"]
    assert (row["state"], row["acked_by"], row["note"]) == ("active, acked", "ana", "switch replaced")
    assert s.ack_loss_alarm(999_999, "ana", 1) is False


def test_alarms_page_acknowledges_a_data_loss_alarm_and_unshelves(monkeypatch, fleet_db) -> None:
    monkeypatch.setenv("EDGEFLEET_DASHBOARD_AUTH", "off")
    s = fleet_db.store
    aid = lose_results(s)
    health = s.alarms(active=True)[0]
    now = int(time.time() * 1000)
    s.shelve_alarm("data-loss", aid, by="ops", reason="network work", ts=now, until_ts=now + 3_600_000)
    s.shelve_alarm("health", health.id, by="ops", reason="bearing ordered", ts=now, until_ts=now + 3_600_000)
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_ALARMS)
    assert any(h.value == "Data-loss alarms" for h in at.subheader)
    shown = set(alarms.shelved_now(s)["alarm"])
    assert shown == {f"loss-{aid}", str(health.id)}
    assert set(at.selectbox(key="unshelve_alarm").options) >= {f"loss-{aid} lossy-7 (data-loss, shelved by ops: "
                                                               "network work)"}

    at.selectbox(key="loss_ack_alarm").set_value(aid)
    at.text_input(key="loss_ack_note").input("switch on line 2 replaced")
    at.text_input(key="loss_ack_by").input("ana")
    next(b for b in at.button if b.label == "Acknowledge data-loss alarm").click().run()
    assert not at.exception
    (a,) = [a for a in s.loss_alarms(True) if a["id"] == aid]
    assert (a["acked_by"], a["note"]) == ("ana", "switch on line 2 replaced")
    assert any(f"loss-{aid} acknowledged" in m.value for m in at.success)

    at.selectbox(key="unshelve_alarm").set_value(f"loss-{aid}")
    at.text_input(key="unshelve_by").input("ana")
    next(b for b in at.button if b.label == "Unshelve").click().run()
    assert not at.exception
    assert set(alarms.shelved_now(s)["alarm"]) == {str(health.id)}  # the health alarm's shelf is untouched
    (shelf,) = [x for x in s.shelves(kind="data-loss") if x.alarm_id == aid]
    assert shelf.ended_by == "ana" and shelf.ended_ts is not None
    assert any(f"loss-{aid} unshelved" in m.value for m in at.success)
    at.run()  # the outcome outlives the refresh
    assert any(f"loss-{aid} unshelved" in m.value for m in at.success)


def test_loss_acknowledgement_and_machine_names_on_postgres(pg_server) -> None:
    """The same store methods on PostgreSQL (portable SQL through the store's placeholder rewrite)."""
    from edgefleet.service.store import open_store

    store = open_store(pg_server.create_db())
    try:
        aid = lose_results(store)
        assert store.ack_loss_alarm(aid, "ana", 123, "switch replaced") is True
        assert store.ack_loss_alarm(aid, "bob", 124) is False
        (a,) = store.loss_alarms(True)
        assert (a["acked_ts"], a["acked_by"], a["note"]) == (123, "ana", "switch replaced")
        store.set_machine_meta("lossy-7", {"name": "Pump 3", "tags": {"type": "pump"}})
        store.set_machine_meta("lossy-7", {"name": "Pump 4", "tags": {"type": "pump"}})  # replaced, not added
        assert store.machine_meta() == {"lossy-7": {"name": "Pump 4", "tags": {"type": "pump"}}}
        store.set_machine_meta("lossy-7", {})
        assert store.machine_meta() == {}
    finally:
        store.close()
