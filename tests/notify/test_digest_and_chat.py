"""Slack and Teams webhook formats and the daily digest, against a real SQLite store, real HTTP
receivers and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
from pathlib import Path

import pytest

from edgefleet.errors import ConfigError
from edgefleet.service.notify import Notifier, parse_notify_config
from edgefleet.service.notify.message import build_body, build_digest, chat_payload
from edgefleet.service.store import SQLiteStore
from edgefleet.service.store.base import AlarmChange

from .receivers import MailSink, WebhookReceiver

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
HOUR = 60 * MIN


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "fleet.db", synchronous="NORMAL")
    s.set_device_meta("pump-1", site="north", line="l1", tags=("pumps",))
    s.set_device_meta("fan-7", site="south", line="l2")
    return s


@pytest.fixture
def receivers():
    made: list[WebhookReceiver] = []

    def make() -> WebhookReceiver:
        made.append(WebhookReceiver(""))  # no secret: accepts unsigned posts, as Slack and Teams do
        return made[-1]

    yield make
    for r in made:
        r.stop()


def cfg(channels: dict, routes: list[dict], **notify):
    return parse_notify_config({"notify": {"retry_min_s": 1, **notify}, "channels": channels, "routes": routes},
                               {}, "test.toml")


def change(op: str, device: str, ts: int, severity: str = "major") -> AlarmChange:
    return AlarmChange(op, device, ts, severity, 0.3, 0.1, 0.3)


def test_chat_formats_need_no_secret_but_the_json_format_does() -> None:
    ok = cfg({"s": {"type": "webhook", "url": "https://hooks.slack.example/T/B/x", "format": "slack"}},
             [{"name": "r", "channels": ["s"]}])
    assert ok.channels["s"].format == "slack" and ok.channels["s"].secret == ""
    with pytest.raises(ConfigError, match="missing secret"):
        cfg({"j": {"type": "webhook", "url": "https://x.example/h"}}, [{"name": "r", "channels": ["j"]}])
    with pytest.raises(ConfigError, match="format must be one of json, slack, teams"):
        cfg({"s": {"type": "webhook", "url": "https://x.example/h", "format": "discord"}}, [{"name": "r", "channels": ["s"]}])
    for bad in ("7:00", "24:00", "07:60", 7):
        with pytest.raises(ConfigError, match="digest_utc must be a UTC time"):
            cfg({"s": {"type": "webhook", "url": "https://x.example/h", "format": "slack"}},
                [{"name": "r", "channels": ["s"], "digest_utc": bad}])


def test_payload_shapes() -> None:
    body = build_body(key="1:r:s", event="raised", kind="health", route="r", ts=T0,
                      alarm={"id": 3, "device": "pump-1", "site": "north", "severity": "critical", "raised_ts": T0,
                             "thr": 0.1, "peak_score": 0.5}, dashboard_url="https://ops.example")
    slack = chat_payload(body, "slack")
    assert slack["text"].startswith("[edgefleet] pump-1 (north): health alarm raised, severity critical")
    assert "<https://ops.example/alarms?alarm=3|Open the dashboard>" in slack["blocks"][0]["text"]["text"]
    assert slack["metadata"]["event_payload"]["id"] == "1:r:s"
    teams = chat_payload(body, "teams")
    card = teams["attachments"][0]["content"]
    assert teams["type"] == "message" and card["type"] == "AdaptiveCard"
    assert "pump-1" in card["body"][0]["text"] and card["actions"][0]["url"] == "https://ops.example/alarms?alarm=3"  # the alarm picked in the form
    with pytest.raises(ValueError):
        chat_payload(body, "irc")


def test_slack_and_teams_receive_an_alarm_in_their_format(store, receivers) -> None:
    slack, teams = receivers(), receivers()
    c = cfg({"slack": {"type": "webhook", "url": slack.url, "format": "slack"},
             "teams": {"type": "webhook", "url": teams.url, "format": "teams"}},
            [{"name": "ops", "channels": ["slack", "teams"]}])
    n = Notifier(store, c, clock_ms=Clock(T0 + 1000))
    n.tick()
    store.apply_alarm_changes([change("raise", "pump-1", T0 + 500)], [])
    assert n.tick()["sent"] == 2
    (_, s_body, _), = slack.received
    (_, t_body, _), = teams.received
    assert "pump-1 (north/l1): health alarm raised, severity major" in s_body["text"]
    assert t_body["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert "X-Edgefleet-Signature" not in slack.received[0][0]  # no secret, no signature header


def test_daily_digest_once_a_day_at_its_time_across_a_restart(store, receivers, tmp_path) -> None:
    hook = receivers()
    mail = MailSink()
    try:
        c = cfg({"slack": {"type": "webhook", "url": hook.url, "format": "slack"},
                 "mail": {"type": "email", "host": "127.0.0.1", "port": mail.port, "security": "none",
                          "from": "edgefleet@plant.example", "to": ["lead@plant.example"]}},
                [{"name": "north-daily", "channels": ["slack", "mail"], "sites": ["north"], "events": ["cleared"],
                  "digest_utc": "07:00"}])
        clock = Clock(T0 + 6 * HOUR)
        n = Notifier(store, c, clock_ms=clock)
        n.tick()
        # yesterday evening an alarm came and went; this morning one is active; fan-7 (south) is not this route's
        store.apply_alarm_changes([change("raise", "pump-1", T0 + 1 * HOUR)], [])
        store.apply_alarm_changes([change("clear", "pump-1", T0 + 2 * HOUR)], [])
        store.apply_alarm_changes([change("raise", "pump-1", T0 + 5 * HOUR, "critical")], [])
        store.apply_alarm_changes([change("raise", "fan-7", T0 + 5 * HOUR)], [])
        clock.t = T0 + 6 * HOUR + 59 * MIN
        n.tick()
        assert hook.bodies() == [] or all("digest" not in b["text"] for b in hook.bodies())
        clock.t = T0 + 7 * HOUR
        out = n.tick()
        assert out["sent"] >= 2
        digest = [b for b in hook.bodies() if "daily digest" in b["text"]]
        assert len(digest) == 1
        assert digest[0]["text"].startswith("[edgefleet] daily digest (north-daily): 1 active alarm (1 critical), "
                                            "1 unacknowledged; in the last 24 h 2 raised, 1 cleared; 0 data-loss alarms active")
        assert "fan-7" not in digest[0]["blocks"][0]["text"]["text"]
        msg = email.message_from_bytes(mail.wait(1)[0][2])
        assert "daily digest" in msg["Subject"] and "critical pump-1 (north)" in msg.get_payload()
        # later the same day, and after a restart: no second digest
        clock.t = T0 + 12 * HOUR
        assert n.tick()["routed"] == 0
        again = Notifier(SQLiteStore(tmp_path / "fleet.db", synchronous="NORMAL"), c, clock_ms=clock)
        assert again.tick()["routed"] == 0
        # the next day at 07:00: the next one
        clock.t = T0 + 31 * HOUR
        assert again.tick()["routed"] == 2
        assert len([b for b in hook.bodies() if "daily digest" in b["text"]]) == 2
    finally:
        mail.stop()


def test_digest_body_lists_at_most_fifty_alarms() -> None:
    active = [{"id": i, "device": f"m{i}", "site": "s", "severity": "warning", "raised_ts": T0} for i in range(60)]
    body = build_digest(key="digest:2026-01-01:r:c", route="r", ts=T0, summary={"active": active})
    text = chat_payload(body, "slack")["blocks"][0]["text"]["text"]
    assert text.count("\n- ") == 50 and "... and 10 more" in text
