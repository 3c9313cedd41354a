"""Notification config checks (one line each, no secret shown) and the alarms / notify commands."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgefleet.errors import ConfigError
from edgefleet.service.notify import load_notify_config, parse_notify_config
from edgefleet.service.store import SQLiteStore
from edgefleet.service.store.base import AlarmChange

from .receivers import MailSink, WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
SECRET = "do-not-print-me-42"
HOOK = {"type": "webhook", "url": "https://hooks.plant.example/ef", "secret_env": "EF_HOOK_SECRET"}
ENV = {"EF_HOOK_SECRET": SECRET}


def cfg(channels: dict, routes: list | None = None, **notify) -> dict:
    out = {"channels": channels, "routes": routes if routes is not None else [{"name": "r", "channels": list(channels)}]}
    if notify:
        out["notify"] = notify
    return out


@pytest.mark.parametrize("data, message", [
    (cfg({"x": {"type": "pager", "url": "http://a"}}), "channel 'x': unknown channel type 'pager' (one of webhook, email)"),
    (cfg({"h": HOOK}, [{"name": "r", "channels": ["nope"]}]), "route 'r': unknown channel 'nope' (defined: h)"),
    (cfg({"h": {**HOOK, "url": "ftp://files.example/x"}}), "url must be an http:// or https:// URL with a host"),
    (cfg({"h": {**HOOK, "url": "http:///no-host"}}), "url must be an http:// or https:// URL with a host"),
    (cfg({"h": {**HOOK, "secret_env": "UNSET_VAR"}}), "secret_env names $UNSET_VAR, which is not set or empty"),
    (cfg({"h": {"type": "webhook", "url": "https://a.example/"}}), "channel 'h': missing secret"),
    (cfg({"m": {"type": "email", "host": "smtp.example", "from": "a@b", "to": []}}), "to must name at least one"),
    (cfg({"m": {"type": "email", "host": "smtp.example", "from": "a@b", "to": "c@d", "security": "ssl"}}),
     "security must be one of starttls, tls, none"),
    (cfg({"m": {"type": "email", "host": "smtp.example", "from": "a@b", "to": "c@d", "username": "u"}}),
     "missing password"),
    (cfg({"h": HOOK}, [{"name": "r", "channels": ["h"], "min_severity": "high"}]), "min_severity must be one of"),
    (cfg({"h": HOOK}, [{"name": "r", "channels": ["h"], "kinds": ["power"]}]), "unknown kind 'power'"),
    (cfg({"h": HOOK}, [{"name": "r", "channels": ["h"], "escalate_after_min": 5}]),
     "escalate_after_min and escalate_to go together"),
    (cfg({"h": HOOK}, [{"name": "r", "channels": ["h"], "sitse": ["x"]}]), "unknown key(s) sitse"),
    (cfg({"h": HOOK}, [{"name": "r", "channels": ["h"]}, {"name": "r", "channels": ["h"]}]), "r repeats"),
])
def test_bad_configs_are_one_line(data, message) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_notify_config(data, ENV, "n.toml")
    text = str(exc.value)
    assert message in text and text.startswith("n.toml: ") and "\n" not in text and SECRET not in text


def test_defaults_and_secrets_stay_out_of_repr(tmp_path) -> None:
    assert not load_notify_config(None).enabled  # no config: notifications off
    c = parse_notify_config(cfg({"h": {**HOOK, "url": "https://hooks.plant.example/T0K3N/path"}}), ENV)
    assert c.enabled and c.reopen_every_min == 30 and c.routes[0].kinds == ("health", "data-loss")
    assert c.channels["h"].secret == SECRET and SECRET not in repr(c)
    assert c.channels["h"].where == "https://hooks.plant.example"  # what logs show: no token-bearing path
    bad = tmp_path / "n.toml"
    bad.write_text("[channels\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_notify_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_notify_config(tmp_path / "missing.toml")


def run(*argv: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "edgefleet", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_serve_refuses_a_bad_config_in_one_line_before_starting(tmp_path) -> None:
    conf = tmp_path / "notify.toml"
    conf.write_text('[channels.ops]\ntype = "webhook"\nurl = "https://h.example/x"\nsecret_env = "EF_NOPE"\n'
                    '[[routes]]\nname = "all"\nchannels = ["ops"]\n')
    p = run("serve", "--broker", "mqtt://127.0.0.1:1", "--db", str(tmp_path / "f.db"), "--notify-config", str(conf))
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [f"edgefleet: error: {conf}: channel 'ops': secret_env names $EF_NOPE, "
                                             "which is not set or empty"]
    assert not (tmp_path / "f.db").exists()  # nothing started
    conf.write_text('[channels.ops]\ntype = "teams"\n')
    p = run("serve", "--db", str(tmp_path / "f.db"), env={"EDGEFLEET_NOTIFY_CONFIG": str(conf)})
    assert p.returncode == 2 and "unknown channel type 'teams'" in p.stderr and "Traceback" not in p.stderr


def _store_with_alarm(db: Path) -> int:
    s = SQLiteStore(db)
    s.set_device_meta("pump-1", site="north")
    s.apply_alarm_changes([AlarmChange("raise", "pump-1", int(time.time() * 1000), "major", 0.3, 0.1, 0.3)], [])
    aid = s.active_alarm("pump-1").id
    s.close()
    return aid


def test_alarms_shelve_list_unshelve(tmp_path) -> None:
    db = tmp_path / "f.db"
    aid = _store_with_alarm(db)
    p = run("alarms", "shelve", str(aid), "--for", "4h", "--reason", "bearing ordered", "--by", "ana", "--db", str(db))
    assert p.returncode == 0, p.stderr
    assert f"shelved health alarm {aid} until" in p.stdout and "(by ana: bearing ordered)" in p.stdout
    p = run("alarms", "list", "--json", "--db", str(db))
    row, = json.loads(p.stdout)
    assert row["shelved_by"] == "ana" and row["shelve_reason"] == "bearing ordered" and row["shelved_until"]
    s = SQLiteStore(db)
    shelf, = s.shelves()
    assert 4 * 3600_000 - 60_000 < shelf.until_ts - shelf.ts <= 4 * 3600_000
    s.close()
    assert "SHELVED until" in run("alarms", "list", "--db", str(db)).stdout
    assert run("alarms", "unshelve", str(aid), "--by", "bo", "--db", str(db)).returncode == 0
    p = run("alarms", "unshelve", str(aid), "--by", "bo", "--db", str(db))
    assert p.returncode == 2 and p.stderr.strip() == f"edgefleet: error: health alarm {aid} is not shelved"
    for argv, msg in [(["shelve", str(aid), "--for", "4 hours"], "expected a number and a unit"),
                      (["shelve", str(aid), "--for", "40d"], "at most 30 days"),
                      (["shelve", "999", "--for", "1h"], "no health alarm with id 999"),
                      (["shelve", "x7", "--for", "1h"], "expected a number (health alarm) or loss-N"),
                      (["shelve", str(aid), "--for", "1h", "--reason", " "], "must not be empty")]:
        if "--reason" not in argv:
            argv += ["--reason", "r"]
        p = run("alarms", *argv, "--by", "ana", "--db", str(db))
        assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = run("alarms", "list", "--db", str(tmp_path / "none.db"))
    assert p.returncode == 2 and "no store at" in p.stderr


def test_notify_check_test_and_log(tmp_path) -> None:
    hook, mail = WebhookReceiver(SECRET), MailSink()
    try:
        conf = tmp_path / "n.toml"
        conf.write_text(f'[channels.ops]\ntype = "webhook"\nurl = "{hook.url}"\nsecret_env = "EF_HOOK_SECRET"\n'
                        f'[channels.mail]\ntype = "email"\nhost = "127.0.0.1"\nport = {mail.port}\nsecurity = "none"\n'
                        'from = "ef@plant.example"\nto = ["oncall@plant.example"]\n'
                        '[[routes]]\nname = "north"\nchannels = ["ops"]\nsites = ["north"]\nmin_severity = "major"\n'
                        'escalate_after_min = 30\nescalate_to = ["mail"]\n')
        p = run("notify", "check", str(conf), env=ENV)
        assert p.returncode == 0, p.stderr
        assert "route north: health, data-loss alarms, major+, sites=north -> ops; escalate after 30 min to mail" in p.stdout
        assert SECRET not in p.stdout + p.stderr
        p = run("notify", "test", str(conf), "north", env=ENV)
        assert p.returncode == 0, p.stdout + p.stderr
        assert hook.wait(1)[0]["event"] == "test" and len(mail.wait(1)) == 1
        hook.stop()
        p = run("notify", "test", str(conf), "north", env=ENV)
        assert p.returncode == 1 and "ops (webhook http://127.0.0.1:" in p.stdout and "FAILED" in p.stdout
        p = run("notify", "test", str(conf), "south", env=ENV)
        assert p.returncode == 2 and "no route 'south'" in p.stderr
        db = tmp_path / "f.db"
        _store_with_alarm(db)
        p = run("notify", "log", "--db", str(db))
        assert p.returncode == 0 and "none yet" in p.stdout
    finally:
        hook.stop()
        mail.stop()



def test_alarms_shelve_on_a_postgresql_store(pg_server) -> None:
    from edgefleet.service.store.postgres import PostgresStore

    url = pg_server.create_db()
    s = PostgresStore(url)
    s.apply_alarm_changes([AlarmChange("raise", "pump-9", int(time.time() * 1000), "major", 0.3, 0.1, 0.3)], [])
    aid = s.active_alarm("pump-9").id
    p = run("alarms", "shelve", str(aid), "--for", "30m", "--reason", "valve swap", "--by", "bo", "--db", url)
    assert p.returncode == 0, p.stderr
    shelf, = s.shelves()
    assert (shelf.alarm_id, shelf.by, shelf.reason, shelf.until_ts - shelf.ts) == (aid, "bo", "valve swap", 1_800_000)
    p = run("alarms", "list", "--db", url)
    assert "SHELVED until" in p.stdout and "pump-9" in p.stdout
    s.close()
