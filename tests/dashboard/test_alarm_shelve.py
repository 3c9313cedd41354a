"""The Alarms page's Shelve form: written through the store (who, until when, why), shown in the table."""

from __future__ import annotations

from dashboards import ui

from .conftest import open_page


def test_shelve_form_records_the_shelf_and_the_table_shows_it(monkeypatch, fleet_db) -> None:
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_ALARMS)
    table = at.dataframe[0].value
    assert set(table["shelved"]) == {""}
    target = int(table["id"].iloc[0])
    at.selectbox(key="shelve_alarm").set_value(target)
    at.selectbox(key="shelve_for").set_value("1 day")
    at.text_input(key="shelve_by").input("ann")
    next(b for b in at.button if b.label == "Shelve").click().run()
    assert not at.exception
    assert any("who (By) and why (Reason)" in e.value for e in at.error)  # no reason: refused, nothing written
    assert fleet_db.store.shelves() == []
    at.text_input(key="shelve_reason").input("bearing ordered")
    next(b for b in at.button if b.label == "Shelve").click().run()
    shelf, = fleet_db.store.shelves()
    assert (shelf.kind, shelf.alarm_id, shelf.by, shelf.reason) == ("health", target, "ann", "bearing ordered")
    assert shelf.until_ts - shelf.ts == 24 * 3_600_000
    assert any(f"Alarm #{target} shelved for 1 day" in s.value for s in at.success)
    shown = at.dataframe[0].value.set_index("id")
    assert shown.loc[target, "shelved"].startswith("until ") and "by ann: bearing ordered" in shown.loc[target, "shelved"]
    assert not any(o.startswith(f"#{target} ") for o in at.selectbox(key="shelve_alarm").options)  # shelved
    at.run()  # the message outlives a refresh
    assert any(f"Alarm #{target} shelved" in s.value for s in at.success)


def test_the_notification_delivery_log_is_on_the_alarms_page(monkeypatch, fleet_db) -> None:
    a = fleet_db.store.alarms(active=True)[0]
    now = a.raised_ts
    fleet_db.store.route_events(None, [
        ("1:ops:hook", 1, "health", a.id, a.device, "raised", "ops", "hook", "sent", now, now, "{}"),
        ("2:ops:hook", 2, "health", a.id, a.device, "cleared", "ops", "hook", "pending", now, now, "{}")])
    fleet_db.store.outbox_set_state(fleet_db.store.outbox()[0].id, "pending", error="h.example unreachable",
                                    attempt=True)
    at = open_page(monkeypatch, fleet_db.path, ui.PAGE_ALARMS)
    assert not at.exception
    exp = next(e for e in at.expander if e.label.startswith("Notifications"))
    assert exp.label == "Notifications sent: 1, waiting: 1, failed: 0"
    log = at.dataframe[-1].value
    assert list(log["event"]) == ["cleared", "raised"] and list(log["state"]) == ["pending", "sent"]
    assert log["error"].iloc[0] == "h.example unreachable" and log["attempts"].iloc[0] == 1


def test_a_shelved_data_loss_alarm_is_marked_on_the_system_page(monkeypatch, tmp_path) -> None:
    import time

    from edgefleet.protocol import ResultRecord
    from edgefleet.service.store import DeviceUpdate, IngestBatch, SQLiteStore
    from edgefleet.service.store.loss import SETTLE_MS

    db = tmp_path / "loss.db"
    store = SQLiteStore(db)
    now = int(time.time() * 1000)
    t0 = now - SETTLE_MS - 120_000
    store.write_batch(IngestBatch(ingest_ts=t0, devices=[DeviceUpdate("pump-7", t0, site="north")], results=[
        ResultRecord("pump-7", "b0000001", s, t0 + s, 1, 0.1, 1.0, False, 5) for s in range(100) if s % 10]))
    assert store.track_loss(now) == [("raise", "pump-7")]
    (alarm,) = store.loss_alarms(active=True)
    store.shelve_alarm("data-loss", alarm["id"], by="ops", reason="switch swap", ts=now, until_ts=now + 3_600_000)
    store.close()
    at = open_page(monkeypatch, db, ui.PAGE_SYSTEM)
    assert not at.exception
    table = next(df.value for df in at.dataframe if "shelved" in df.value.columns)
    row = table.iloc[0]
    assert row["alarm"] == f"loss-{alarm['id']}" and row["shelved"].endswith("by ops: switch swap")
