"""The notifier against a real SQLite store, a real HTTP receiver that checks the HMAC, and a real
SMTP server (aiosmtpd): once per route, survives a restart, a down receiver gets it later,
flapping is held, escalation, shelving, data-loss alarms, e-mail with STARTTLS."""

from __future__ import annotations

import email
import json
from pathlib import Path

import pytest

from edgefleet.errors import EdgefleetError
from edgefleet.protocol import ResultRecord
from edgefleet.service.notify import Notifier, parse_notify_config, sign, verify
from edgefleet.service.notify.message import encode_body
from edgefleet.service.store import SQLiteStore
from edgefleet.service.store.base import AlarmChange, IngestBatch

from .receivers import MailSink, WebhookReceiver, self_signed

SECRET = "s3cret-for-tests-only"
T0 = 1_767_225_600_000
MIN = 60_000


class Clock:
    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def config(hook: WebhookReceiver | None = None, mail: MailSink | None = None, *, routes: list[dict] | None = None,
           **notify) -> object:
    channels = {}
    if hook is not None:
        channels["hook"] = {"type": "webhook", "url": hook.url, "secret_env": "HOOK_SECRET", "timeout_s": 2}
    if mail is not None:
        channels["mail"] = {"type": "email", "host": "127.0.0.1", "port": mail.port, "security": "none",
                            "from": "edgefleet@plant.example", "to": ["oncall@plant.example"]}
    data = {"notify": {"retry_min_s": 5, "retry_max_s": 60, **notify}, "channels": channels,
            "routes": routes if routes is not None else [{"name": "all", "channels": ["hook"]}]}
    return parse_notify_config(data, {"HOOK_SECRET": SECRET}, "test.toml")


@pytest.fixture(params=["sqlite", "postgresql"])
def reopen(request, tmp_path: Path):
    """Opens the test's store (again: what a restart of `serve` does), on either backend."""
    opened = []
    if request.param == "sqlite":
        def make():
            return SQLiteStore(tmp_path / "fleet.db", synchronous="NORMAL")
    else:
        from edgefleet.service.store.postgres import PostgresStore

        url = request.getfixturevalue("pg_server").create_db()

        def make():
            return PostgresStore(url)

    def opener():
        opened.append(make())
        return opened[-1]

    yield opener
    for s in opened:
        try:
            s.close()
        except Exception:
            pass


@pytest.fixture
def store(reopen):
    s = reopen()
    s.set_device_meta("pump-1", site="plant-north", line="l1", tags=("pumps",))
    s.set_device_meta("pump-2", site="plant-south", line="l9")
    return s


@pytest.fixture
def hook():
    r = WebhookReceiver(SECRET)
    yield r
    r.stop()


def change(op: str, device: str = "pump-1", ts: int = T0, severity: str = "major") -> AlarmChange:
    return AlarmChange(op, device, ts, severity, 0.3, 0.1, 0.3)


def test_signature_round_trip_and_tamper() -> None:
    body = encode_body({"id": "1:r:c", "event": "raised"})
    header = sign(SECRET, body, t=1_767_225_600)
    assert verify(SECRET, body, header, now=1_767_225_600 + 10)
    assert not verify(SECRET, body + b" ", header, now=1_767_225_600)
    assert not verify("other", body, header, now=1_767_225_600)
    assert not verify(SECRET, body, header, now=1_767_225_600 + 3600)  # replayed an hour later
    assert not verify(SECRET, body, "garbage")


def test_one_signed_notification_per_route_and_none_after_a_restart(store, hook, reopen) -> None:
    cfg = config(hook, routes=[{"name": "north", "channels": ["hook"], "sites": ["plant-north"]},
                               {"name": "everything", "channels": ["hook"]},
                               {"name": "south", "channels": ["hook"], "sites": ["plant-south"]}])
    clock = Clock(T0 + 1000)
    n = Notifier(store, cfg, clock_ms=clock)
    n.tick()  # first run: starts after the (empty) journal
    store.apply_alarm_changes([change("raise")], [])
    out = n.tick()
    assert out["routed"] == 2 and out["sent"] == 2
    got = hook.wait(2)
    assert sorted(b["route"] for b in got) == ["everything", "north"]  # south does not match pump-1
    assert all(ok for _, _, ok in hook.received)  # every request carried a valid HMAC
    b = got[0]
    assert b["event"] == "raised" and b["kind"] == "health" and b["alarm"]["device"] == "pump-1"
    assert b["alarm"]["site"] == "plant-north" and b["alarm"]["severity"] == "major" and b["version"] == 1
    assert b["id"].endswith(":hook") and "pump-1 (plant-north/l1): health alarm raised, severity major" in b["text"]
    headers = hook.received[0][0]
    assert headers["X-Edgefleet-Delivery"] == hook.received[0][1]["id"]
    assert headers["X-Edgefleet-Event"] == "raised"
    # again, and after a restart on the same file: nothing new
    clock.t += 10 * MIN
    assert n.tick()["sent"] == 0
    again = Notifier(reopen(), cfg, clock_ms=clock)
    assert again.tick() == {"routed": 0, "escalated": 0, "sent": 0, "failed": 0}
    assert len(hook.received) == 2 and hook.attempts == 2


def test_a_down_receiver_gets_it_later_even_across_a_restart(store, hook, reopen) -> None:
    cfg = config(hook)
    clock = Clock(T0)
    n = Notifier(store, cfg, clock_ms=clock)
    n.tick()
    hook.stop()  # the receiver is down: connection refused
    store.apply_alarm_changes([change("raise")], [])
    assert n.tick()["sent"] == 0
    row, = store.outbox()
    assert row.state == "pending" and row.attempts == 1 and "unreachable" in row.last_error
    assert SECRET not in row.last_error
    clock.t += 3_000  # before the backoff (5 s): not tried
    n.tick()
    assert store.outbox()[0].attempts == 1
    clock.t += 3_000
    n.tick()
    assert store.outbox()[0].attempts == 2  # tried again, still down; next in 10 s
    store.close()
    # `serve` restarts meanwhile: the outbox is in the file
    s2 = reopen()
    n2 = Notifier(s2, cfg, clock_ms=clock)
    hook.start()
    clock.t += 11_000
    assert n2.tick()["sent"] == 1
    assert len(hook.wait(1)) == 1
    clock.t += 60 * MIN
    n2.tick()
    row, = s2.outbox()
    assert row.state == "sent" and row.attempts == 3 and len(hook.received) == 1


def test_a_receiver_that_answers_500_is_retried_with_backoff_then_given_up(store, hook) -> None:
    cfg = config(hook, give_up_h=0.01)  # 36 s
    clock = Clock(T0)
    n = Notifier(store, cfg, clock_ms=clock)
    n.tick()
    hook.status = 500
    store.apply_alarm_changes([change("raise")], [])
    times = []
    for _ in range(80):
        before = hook.attempts
        n.tick()
        if hook.attempts > before:
            times.append(clock.t - T0)
        clock.t += 1000
    assert times[:4] == [0, 5000, 15000, 35000]  # 5 s, then doubling
    row, = store.outbox()
    assert row.state == "failed" and "HTTP 500" in row.last_error and hook.received == []


def test_a_flapping_alarm_sends_one_reopen_per_quiet_period(store, hook) -> None:
    cfg = config(hook, reopen_every_min=30)
    clock = Clock(T0)
    n = Notifier(store, cfg, clock_ms=clock)
    n.tick()

    def step(op: str, minutes: float) -> None:
        clock.t = T0 + int(minutes * MIN)
        store.apply_alarm_changes([change(op, ts=clock.t)], [])
        n.tick()

    step("raise", 0)
    step("clear", 1)
    step("raise", 2)  # reopened (the store's 10-min hold-off): held, the raise was 2 min ago
    step("clear", 3)  # folds the held reopen: the operator's last word (cleared) holds
    step("raise", 4)  # held again
    assert [b["event"] for b in hook.bodies()] == ["raised", "cleared"]
    assert store.alarms(device="pump-1")[0].reopened == 2  # one alarm, reopened twice
    states = [(r.event, r.state) for r in reversed(store.outbox())]
    assert states == [("raised", "sent"), ("cleared", "sent"), ("reopened", "folded"), ("cleared", "folded"),
                      ("reopened", "held")]
    clock.t = T0 + 29 * MIN
    n.tick()
    assert len(hook.bodies()) == 2
    clock.t = T0 + 30 * MIN  # the quiet period (30 min after the raise notification) ends
    n.tick()
    reopen, = hook.wait(1, event="reopened")
    assert reopen["alarm"]["reopened"] == 2 and "reopened 2x" in reopen["text"]
    assert len(hook.bodies()) == 3


def test_severity_rises_are_sent_and_falls_are_not_and_min_severity_filters(store, hook) -> None:
    cfg = config(hook, routes=[{"name": "major", "channels": ["hook"], "min_severity": "major"}])
    clock = Clock(T0)
    n = Notifier(store, cfg, clock_ms=clock)
    n.tick()
    store.apply_alarm_changes([change("raise", severity="warning")], [])
    n.tick()
    assert hook.bodies() == []  # warning is below this route's minimum
    store.apply_alarm_changes([change("update", severity="critical")], [])
    store.apply_alarm_changes([change("update", severity="major")], [])
    store.apply_alarm_changes([change("clear", severity="major")], [])
    n.tick()
    assert [(b["event"], b["alarm"]["severity"]) for b in hook.wait(2)] == [("severity", "critical"),
                                                                           ("cleared", "major")]
    assert hook.bodies()[0]["detail"] == {"previous": "warning"}
    # announced as major, stepped down to warning, then cleared: the clear still goes where it was announced
    store.apply_alarm_changes([change("raise", device="pump-2", severity="major")], [])
    store.apply_alarm_changes([change("update", device="pump-2", severity="warning")], [])
    store.apply_alarm_changes([change("clear", device="pump-2", severity="warning")], [])
    n.tick()
    assert [(b["event"], b["alarm"]["device"]) for b in hook.wait(4)[2:]] == [("raised", "pump-2"),
                                                                              ("cleared", "pump-2")]


def test_unacknowledged_escalates_once_by_email_acknowledged_does_not(store, hook) -> None:
    mail = MailSink()
    try:
        cfg = config(hook, mail, routes=[{"name": "ops", "channels": ["hook"], "escalate_after_min": 15,
                                          "escalate_to": ["mail"]}])
        clock = Clock(T0)
        n = Notifier(store, cfg, clock_ms=clock)
        n.tick()
        store.apply_alarm_changes([change("raise"), change("raise", device="pump-2")], [])
        n.tick()
        assert len(hook.wait(2)) == 2
        a2 = store.active_alarm("pump-2")
        clock.t = T0 + 10 * MIN
        store.ack_alarm(a2.id, "ana", clock.t)
        assert n.tick()["escalated"] == 0
        clock.t = T0 + 15 * MIN
        assert n.tick()["escalated"] == 1
        frm, to, raw = mail.wait(1)[0]
        msg = email.message_from_bytes(raw)
        assert to == ["oncall@plant.example"] and frm == "edgefleet@plant.example"
        assert "NOT ACKNOWLEDGED" in msg["Subject"] and "pump-1" in msg["Subject"]
        assert "unacknowledged for 15 min" in msg.get_payload()
        clock.t = T0 + 60 * MIN
        n.tick()
        assert len(mail.messages) == 1 and len(hook.bodies()) == 2  # once; never for the acknowledged one
    finally:
        mail.stop()


def test_a_shelved_alarm_sends_nothing_and_escalates_only_after_its_shelf(store, hook) -> None:
    cfg = config(hook, routes=[{"name": "ops", "channels": ["hook"], "escalate_after_min": 15,
                                "escalate_to": ["hook"]}])
    clock = Clock(T0)
    n = Notifier(store, cfg, clock_ms=clock)
    n.tick()
    store.apply_alarm_changes([change("raise")], [])
    a = store.active_alarm("pump-1")
    store.shelve_alarm("health", a.id, by="ana", reason="bearing ordered", ts=T0, until_ts=T0 + 60 * MIN)
    n.tick()
    assert hook.bodies() == [] and [r.state for r in store.outbox()] == ["shelved"]
    clock.t = T0 + 50 * MIN  # unacknowledged for 50 min, but shelved
    store.apply_alarm_changes([change("update", severity="critical", ts=clock.t)], [])
    n.tick()
    assert hook.bodies() == []
    shelf, = store.shelves(kind="health", alarm_id=a.id)
    assert (shelf.by, shelf.reason, shelf.ts, shelf.until_ts) == ("ana", "bearing ordered", T0, T0 + 60 * MIN)
    assert shelf.active(clock.t) and not shelf.active(T0 + 60 * MIN)
    clock.t = T0 + 70 * MIN  # shelf over 10 min ago: the 15 min count from its end
    n.tick()
    assert hook.bodies() == []
    clock.t = T0 + 75 * MIN
    n.tick()
    esc, = hook.wait(1)
    assert esc["event"] == "escalation" and esc["alarm"]["severity"] == "critical"
    # shelving a cleared or unknown alarm is refused in one line
    store.apply_alarm_changes([change("clear", ts=clock.t)], [])
    with pytest.raises(EdgefleetError, match="cleared already"):
        store.shelve_alarm("health", a.id, by="x", reason="y", ts=clock.t, until_ts=clock.t + MIN)
    with pytest.raises(EdgefleetError, match="no health alarm with id 999"):
        store.shelve_alarm("health", 999, by="x", reason="y", ts=clock.t, until_ts=clock.t + MIN)


def test_shelving_after_queueing_stops_a_pending_retry(store, hook) -> None:
    clock = Clock(T0)
    n = Notifier(store, config(hook), clock_ms=clock)
    n.tick()
    hook.stop()
    store.apply_alarm_changes([change("raise")], [])
    n.tick()
    a = store.active_alarm("pump-1")
    store.shelve_alarm("health", a.id, by="ana", reason="known", ts=clock.t, until_ts=clock.t + 60 * MIN)
    hook.start()
    clock.t += 30_000
    n.tick()
    assert hook.bodies() == [] and store.outbox()[0].state == "shelved"


def _results(device: str, seqs, ts0: int) -> list[ResultRecord]:
    return [ResultRecord(device, "0000000b", s, ts0 + s, 3, 0.01, 0.1, False, 400) for s in seqs]


def test_data_loss_alarms_are_routed_by_kind(store, hook) -> None:
    cfg = config(hook, routes=[{"name": "loss", "channels": ["hook"], "kinds": ["data-loss"]},
                               {"name": "health", "channels": ["hook"], "kinds": ["health"]}])
    clock = Clock(T0)
    n = Notifier(store, cfg, clock_ms=clock)
    n.tick()
    # 20 results arrive, 190 between them never do (a broker queue that overflowed)
    store.write_batch(IngestBatch(T0, results=_results("pump-2", [*range(10), *range(200, 210)], T0)))
    assert store.track_loss(T0 + 16 * MIN) == [("raise", "pump-2")]  # holes older than the settle window
    clock.t = T0 + 16 * MIN
    n.tick()
    b, = hook.wait(1)
    assert (b["kind"], b["event"], b["route"]) == ("data-loss", "raised", "loss")
    assert b["alarm"]["missing"] == 190 and "190 results missing" in b["text"]


def test_email_over_starttls_with_a_private_ca(store, tmp_path) -> None:
    cert = self_signed(tmp_path)
    mail = MailSink(cert)
    try:
        data = {"channels": {"mail": {"type": "email", "host": "localhost", "port": mail.port, "security": "starttls",
                                      "cafile": str(cert[0]), "from": "ef@plant.example", "to": "a@plant.example"}},
                "routes": [{"name": "r", "channels": ["mail"]}]}
        n = Notifier(store, parse_notify_config(data, {}), clock_ms=Clock(T0))
        n.tick()
        store.apply_alarm_changes([change("raise")], [])
        assert n.tick()["sent"] == 1
        _, to, raw = mail.wait(1)[0]
        assert to == ["a@plant.example"] and b"pump-1" in raw
        # the same server without trusting its certificate: refused, one line, retried later
        data["channels"]["mail"].pop("cafile")
        n2 = Notifier(store, parse_notify_config(data, {}), clock_ms=Clock(T0))
        store.apply_alarm_changes([change("raise", device="pump-2")], [])
        assert n2.tick()["sent"] == 0
        err = [r for r in store.outbox() if r.device == "pump-2"][0].last_error
        assert "TLS failed" in err and "\n" not in err
    finally:
        mail.stop()


def test_the_first_run_does_not_send_history(store, hook) -> None:
    store.apply_alarm_changes([change("raise")], [])  # before notifications were set up
    n = Notifier(store, config(hook), clock_ms=Clock(T0))
    assert n.tick()["routed"] == 0 and hook.bodies() == []
    store.apply_alarm_changes([change("raise", device="pump-2")], [])
    n.tick()
    assert [b["alarm"]["device"] for b in hook.wait(1)] == ["pump-2"]


def test_body_is_stored_once_and_sent_byte_for_byte(store, hook) -> None:
    n = Notifier(store, config(hook), clock_ms=Clock(T0))
    n.tick()
    store.apply_alarm_changes([change("raise")], [])
    n.tick()
    row, = store.outbox()
    assert json.loads(row.body) == hook.wait(1)[0]


def test_the_delivery_log_follows_the_store_retention(store, hook) -> None:
    store.set_retention_days(1)
    clock = Clock(T0)
    n = Notifier(store, config(hook), clock_ms=clock)
    n.tick()
    store.apply_alarm_changes([change("raise")], [])
    n.tick()
    assert len(store.outbox()) == 1 and len(store.alarm_events()) == 1
    clock.t = T0 + 2 * 86_400_000
    Notifier(store, config(hook), clock_ms=clock).tick()
    assert store.outbox() == [] and store.alarm_events() == [] and store.notify_cursor() == 1


def test_a_down_channel_with_a_backlog_does_not_starve_another(store, hook, tmp_path) -> None:
    from testkit import free_port

    dead = free_port()  # nothing listens here
    data = {"notify": {"retry_min_s": 5},
            "channels": {"dead": {"type": "webhook", "url": f"http://127.0.0.1:{dead}/x", "secret": "s",
                                  "timeout_s": 1},
                         "hook": {"type": "webhook", "url": hook.url, "secret": SECRET}},
            "routes": [{"name": "everything", "channels": ["dead"]},
                       {"name": "south", "channels": ["hook"], "sites": ["plant-south"]}]}
    n = Notifier(store, parse_notify_config(data, {}), clock_ms=Clock(T0))
    n.tick()
    for i in range(250):
        store.set_device_meta(f"m-{i:03d}", site="plant-north")
    store.apply_alarm_changes([change("raise", device=f"m-{i:03d}") for i in range(250)]
                              + [change("raise", device="pump-2")], [])
    out = n.tick()
    assert out["sent"] == 1 and hook.wait(1)[0]["alarm"]["device"] == "pump-2"
    attempts = [r.attempts for r in store.outbox(limit=1000) if r.channel == "dead"]
    assert len(attempts) == 251 and sorted(attempts)[-2:] == [0, 1]  # the dead channel was tried once


def test_a_notification_says_why_the_machine_alarms(store, hook) -> None:
    """The raising result's fault hint and bands (features v2) go into the text and the body."""
    n = Notifier(store, config(hook), clock_ms=Clock(T0 + 1000))
    n.tick()
    why = '[{"lo":22.1,"hi":27.4,"share":0.62},{"name":"vrms","share":0.21}]'
    store.apply_alarm_changes([AlarmChange("raise", "pump-1", T0, "major", 0.3, 0.1, 0.3, why=why,
                                           hint="unbalance")], [])
    assert n.tick()["sent"] == 1
    b = hook.wait(1)[0]
    assert "likely unbalance (22.1-27.4 Hz, vrms)" in b["text"]
    assert b["alarm"]["hint"] == "unbalance" and b["alarm"]["why"][0] == {"lo": 22.1, "hi": 27.4, "share": 0.62}
