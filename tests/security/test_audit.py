"""The audit log and the accounts behind the dashboard's sign-in: the store contract on SQLite and PostgreSQL
(append-only: the database itself refuses UPDATE, DELETE, TRUNCATE), `audit.perform` (role checked, outcome
recorded), `edgefleet users` / `edgefleet audit` on good and bad input, and the dashboard's writes per role
(AppTest, sign-in on) landing in the log under the signed-in name."""

from __future__ import annotations

import getpass
import json
import sqlite3
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from edgefleet.cli import main as cli
from edgefleet.errors import EdgefleetError
from edgefleet.runtime import keys
from edgefleet.service import audit
from edgefleet.service.accounts import (
    AccessDenied,
    hash_password,
    password_problem,
    permits,
    verify_password,
)
from edgefleet.service.ota.campaign import Policy, Target
from edgefleet.service.ota.registry import OtaRegistry
from edgefleet.service.store import SQLiteStore, open_store
from edgefleet.service.store.accounts import APPEND_ONLY
from edgefleet.service.store.sqlite import SCHEMA_VERSION
from edgefleet.toolchain.model_folder import ModelFolder

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboards" / "app.py")
FAST = {"n": 2**10, "r": 8, "p": 1}  # test hashes: the scheme, not the cost
PW = {"vic": "marble-cactus-wind-31", "ann": "tulip-orbit-lantern-42", "eve": "violet-engine-ridge-77",
      "root-admin": "copper-meadow-flint-58"}


# ---------- the store contract, both backends ----------

def contract(store, alter) -> None:
    """users: add, duplicate refused, password change moves updated_ms, remove; audit: append, read by time,
    newest first; `alter(sql)` runs raw SQL on the database and must fail for UPDATE/DELETE on audit."""
    assert store.users() == [] and store.user("ann") is None
    store.add_user("ann", "operator", hash_password(PW["ann"], **FAST), 1_000)
    with pytest.raises(EdgefleetError, match="exists already"):
        store.add_user("ann", "admin", "x", 2_000)
    assert store.set_user_password("ann", hash_password("new-secret-stone-7", **FAST), 5_000)
    assert not store.set_user_password("nobody", "x", 5_000)
    u = store.user("ann")
    assert (u.role, u.created_ms, u.updated_ms) == ("operator", 1_000, 5_000)
    assert verify_password("new-secret-stone-7", u.pw_hash) and not verify_password(PW["ann"], u.pw_hash)

    ids = [store.append_audit(t, "ann", "dashboard", "alarm.ack", f"alarm {t}", {"note": "n"}, "ok")
           for t in (10_000, 20_000, 30_000)]
    assert ids == sorted(ids)
    assert [e.ts for e in store.audit()] == [30_000, 20_000, 10_000]
    assert [e.ts for e in store.audit(since_ms=20_000)] == [30_000, 20_000]
    assert store.audit(limit=1)[0].detail == {"note": "n"}
    for sql in ("UPDATE audit SET who = 'mallory'", "DELETE FROM audit", "DELETE FROM audit WHERE ts = 10000"):
        with pytest.raises(Exception, match=APPEND_ONLY):
            alter(sql)
    assert [e.who for e in store.audit()] == ["ann"] * 3  # unchanged
    assert store.remove_user("ann") and not store.remove_user("ann") and store.users() == []


def test_store_contract_sqlite(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "f.db")
    raw = sqlite3.connect(tmp_path / "f.db", isolation_level=None)
    try:
        contract(store, lambda sql: raw.execute(sql))
    finally:
        raw.close()
        store.close()


def test_store_contract_postgresql(pg_server) -> None:
    import psycopg

    url = pg_server.create_db()
    store = open_store(url)
    raw = psycopg.connect(url, autocommit=True)
    try:
        contract(store, lambda sql: raw.execute(sql))
        with pytest.raises(psycopg.Error, match=APPEND_ONLY):
            raw.execute("TRUNCATE audit")
        assert len(store.audit()) == 3
    finally:
        raw.close()
        store.close()


def test_a_version_6_sqlite_store_gains_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.executescript("DROP TABLE users; DROP TABLE audit; PRAGMA user_version=6;")
    raw.close()
    store = SQLiteStore(path)
    try:
        store.append_audit(1, "x", "cli", "user.add", "y", {}, "ok")
        assert len(store.audit()) == 1
        assert store._q("PRAGMA user_version")[0][0] == SCHEMA_VERSION >= 7
    finally:
        store.close()


# ---------- the gate ----------

def test_perform_checks_the_role_and_records_every_outcome(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "f.db")
    viewer, op = audit.Actor("vic", "viewer", "dashboard"), audit.Actor("ann", "operator", "dashboard")
    nobody = audit.Actor("anonymous", None, "dashboard")
    ran = []
    with pytest.raises(AccessDenied, match="vic is a viewer and may not acknowledge alarms"):
        audit.perform(store, viewer, "alarm.ack", "alarm 1", {}, lambda: ran.append(1))
    with pytest.raises(AccessDenied, match="sign in to start OTA campaigns"):
        audit.perform(store, nobody, "campaign.start", "v3", {}, lambda: ran.append(1))
    with pytest.raises(AccessDenied, match="needs the engineer role"):
        audit.perform(store, op, "campaign.abort", "c1", {}, lambda: ran.append(1))
    assert ran == []  # refused before the write ran
    assert audit.perform(store, op, "alarm.ack", "alarm 1", {"note": "x"}, lambda: True) is True

    def boom() -> None:
        raise EdgefleetError("no health alarm with id 9")
    with pytest.raises(EdgefleetError):
        audit.perform(store, op, "alarm.shelve", "alarm 9", {}, boom)
    audit.perform(store, op, "alarm.ack", "alarm 1", {}, lambda: False)
    assert [(e.who, e.action, e.outcome) for e in reversed(store.audit())] == [
        ("vic", "alarm.ack", "denied"), ("anonymous", "campaign.start", "denied"), ("ann", "campaign.abort", "denied"),
        ("ann", "alarm.ack", "ok"), ("ann", "alarm.shelve", "failed: no health alarm with id 9"),
        ("ann", "alarm.ack", "no change")]
    assert permits("admin", "user.add") and not permits("engineer", "user.add") and not permits(None, "alarm.ack")
    store.close()


def test_password_rules() -> None:
    assert password_problem("short") and password_problem("change-me-now") and password_problem("aaaaaaaaaaaaaaaa")
    assert password_problem("ann-quartz-9-lamp", "ann")  # contains the name
    assert password_problem(PW["ann"], "ann") is None
    h = hash_password(PW["ann"], **FAST)
    assert h.startswith("scrypt$1024$8$1$") and verify_password(PW["ann"], h)
    assert not verify_password(PW["ann"] + "x", h) and not verify_password(PW["ann"], "garbage")


# ---------- the CLI ----------

def test_users_and_audit_commands(tmp_path: Path, monkeypatch, capsys) -> None:
    db = str(tmp_path / "f.db")
    me = getpass.getuser()
    monkeypatch.setenv("EDGEFLEET_PASSWORD", "change-me-now-please")
    assert cli(["users", "add", "ann", "--role", "operator", "--db", db]) == 2
    monkeypatch.setenv("EDGEFLEET_PASSWORD", PW["ann"])
    assert cli(["users", "add", "ann", "--role", "operator", "--db", db]) == 0
    assert cli(["users", "add", "ann", "--role", "admin", "--db", db]) == 2
    pw_file = tmp_path / "pw"
    pw_file.write_text(PW["eve"] + "\n")
    monkeypatch.delenv("EDGEFLEET_PASSWORD")
    assert cli(["users", "add", "eve", "--role", "engineer", "--password-file", str(pw_file), "--db", db]) == 0
    assert cli(["users", "add", "x", "--role", "viewer", "--password-file", str(tmp_path / "nope"), "--db", db]) == 2
    assert cli(["users", "add", "bad name", "--role", "viewer", "--db", db]) == 2
    assert cli(["users", "remove", "zed", "--db", db]) == 2
    assert cli(["users", "remove", "ann", "--db", db]) == 0
    assert cli(["users", "list", "--db", str(tmp_path / "missing.db")]) == 2
    assert cli(["audit", "--since", "last tuesday", "--db", db]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for line in ("placeholder or common password", "exists already", "cannot read --password-file",
                 "user name 'bad name'", "no user 'zed'", "no store at", "--since 'last tuesday'"):
        assert line in err
    assert cli(["users", "list", "--db", db]) == 0
    assert capsys.readouterr().out.split()[:2] == ["eve", "engineer"]
    assert cli(["audit", "--since", "1h", "--json", "--db", db]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["who"], r["via"], r["action"], r["target"], r["outcome"].split(":")[0]) for r in rows] == [
        (me, "cli", "user.add", "ann", "ok"), (me, "cli", "user.add", "ann", "failed"),
        (me, "cli", "user.add", "eve", "ok"), (me, "cli", "user.remove", "zed", "failed"),
        (me, "cli", "user.remove", "ann", "ok")]
    assert all("pw" not in json.dumps(r["detail"]) for r in rows)  # no password or hash in the log
    assert cli(["audit", "--db", db]) == 0
    assert "user.remove ann  -> ok" in capsys.readouterr().out


# ---------- the dashboard's writes per role (AppTest, sign-in on) ----------

@pytest.fixture
def ota_db(tmp_path: Path, monkeypatch):
    path = tmp_path / "fleet.db"
    store = open_store(path, synchronous="OFF")
    for name, role in (("vic", "viewer"), ("ann", "operator"), ("eve", "engineer"), ("root-admin", "admin")):
        store.add_user(name, role, hash_password(PW[name], **FAST), int(time.time() * 1000) - 1000)
    reg = OtaRegistry(path)
    folder = ModelFolder(ROOT / "edgefleet" / "models" / "cwru-de-12k")
    entry = reg.publish(folder.artifact_bytes(), folder.manifest(), folder.card(),
                        keys.load_public(ROOT / "edgefleet" / "models" / "dev-signing.pub"))
    reg.create_campaign(entry.version, Target("all"), Policy(stages=[1.0]), "c1")
    monkeypatch.setenv("EDGEFLEET_DB", str(path))
    monkeypatch.setenv("EDGEFLEET_DASHBOARD_AUTH", "on")
    yield store, reg
    reg.close()
    store.close()


def signed_in(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert [t.value for t in at.title] == ["edgefleet: sign in"] and not at.dataframe
    at.text_input(key="ef_user").input(name)
    at.text_input(key="ef_password").input(PW[name])
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"Signed in as **{name}**" in " ".join(c.value for c in at.caption)
    return at


def test_campaign_abort_needs_an_engineer_and_users_page_an_admin(ota_db) -> None:
    store, reg = ota_db
    at = signed_in("ann")
    at.switch_page("views/models.py").run()
    at.button(key="ota_abort").click().run()
    assert [e.value for e in at.error] == ["refused: ann is an operator and may not abort OTA campaigns (needs the "
                                           "engineer role)"]
    assert reg.campaign("c1").state == "running"
    with pytest.raises(Exception):
        at.switch_page("views/users.py").run()  # not in an operator's navigation
    at = signed_in("eve")
    at.switch_page("views/models.py").run()
    at.button(key="ota_abort").click().run()
    assert [e.value for e in at.error] == ["Reason: aborted by eve (dashboard)"]  # the campaign's, not a refusal
    assert reg.campaign("c1").state == "aborting"
    at = signed_in("root-admin")
    at.switch_page("views/users.py").run()
    assert not at.exception
    assert sorted(at.dataframe[0].value["user"]) == ["ann", "eve", "root-admin", "vic"]
    at.switch_page("views/audit.py").run()
    shown = at.dataframe[0].value
    assert list(shown["action"])[:2] == ["sign-in", "campaign.abort"]  # newest first
    log = [(e.who, e.action, e.target, e.outcome) for e in reversed(store.audit()) if e.action != "sign-in"]
    assert log == [("ann", "campaign.abort", "c1", "denied"), ("eve", "campaign.abort", "c1", "ok")]


def test_cli_writes_are_recorded_as_the_os_user(tmp_path: Path, capsys) -> None:
    from dashboards.sample_fleet import populate

    db = str(tmp_path / "fleet.db")
    store = open_store(db, synchronous="OFF")
    fleet = populate(store, per_line=2, minutes=5)
    alarm = store.alarms(active=True)[0]
    store.close()
    me = getpass.getuser()
    model = ROOT / "edgefleet" / "models" / "cwru-de-12k"
    pub = ROOT / "edgefleet" / "models" / "dev-signing.pub"
    assert cli(["alarms", "shelve", str(alarm.id), "--for", "1h", "--reason", "bearing ordered", "--by", "ana",
                "--db", db]) == 0
    assert cli(["alarms", "unshelve", str(alarm.id), "--by", "ana", "--db", db]) == 0
    assert cli(["alarms", "unshelve", str(alarm.id), "--by", "ana", "--db", db]) == 2  # not shelved any more
    assert cli(["commission", fleet.devices[0], "--db", db]) == 0
    assert cli(["ota", "publish", str(model), "--public", str(pub), "--db", db]) == 0
    assert cli(["ota", "rollout", "1", "--id", "c-audit", "--db", db]) == 0
    assert cli(["ota", "abort", "c-audit", "--db", db]) == 0
    assert cli(["ota", "abort", "c-audit", "--db", db]) == 2  # aborting already
    capsys.readouterr()
    store = open_store(db)
    try:
        log = [(e.who, e.via, e.action, e.target, e.outcome.split(":")[0]) for e in reversed(store.audit())]
    finally:
        store.close()
    assert log == [(me, "cli", "alarm.shelve", str(alarm.id), "ok"), (me, "cli", "alarm.unshelve", str(alarm.id), "ok"),
                   (me, "cli", "alarm.unshelve", str(alarm.id), "no change"),
                   (me, "cli", "commission", fleet.devices[0], "ok"), (me, "cli", "model.publish", str(model), "ok"),
                   (me, "cli", "campaign.start", "c-audit", "ok"), (me, "cli", "campaign.abort", "c-audit", "ok"),
                   (me, "cli", "campaign.abort", "c-audit", "failed")]


def test_file_commands_record_in_the_fleet_database_when_there_is_one(tmp_path: Path, monkeypatch, capsys) -> None:
    db = tmp_path / "fleet.db"
    monkeypatch.setenv("EDGEFLEET_DB", str(db))
    assert cli(["pki", "init", "--dir", str(tmp_path / "pki")]) == 0  # no database yet: runs, says so
    assert "not in an audit log: no fleet database at" in capsys.readouterr().err
    SQLiteStore(db).close()
    assert cli(["pki", "issue", "sim-0001", "--dir", str(tmp_path / "pki")]) == 0
    assert cli(["pki", "revoke", "sim-0404", "--dir", str(tmp_path / "pki")]) == 2
    assert cli(["keys", "generate", "--out", str(tmp_path / "k.pem")]) == 0
    store = SQLiteStore(db)
    try:
        log = [(e.who, e.action, e.target, e.outcome.split(":")[0]) for e in reversed(store.audit())]
    finally:
        store.close()
    me = getpass.getuser()
    assert log == [(me, "pki.issue", "sim-0001", "ok"), (me, "pki.revoke", "sim-0404", "failed"),
                   (me, "keys.generate", str(tmp_path / "k.pem"), "ok")]


def test_users_page_adds_and_removes_accounts_and_refuses_a_weak_password(ota_db) -> None:
    store, _ = ota_db
    at = signed_in("root-admin")
    at.switch_page("views/users.py").run()
    at.text_input(key="user_new_name").input("olga")
    at.selectbox(key="user_new_role").set_value("operator")
    at.text_input(key="user_new_pw").input("password-1234")
    at.button(key="FormSubmitter:user_add-Add").click().run()
    assert any("placeholder or common password" in e.value for e in at.error) and store.user("olga") is None
    at.text_input(key="user_new_pw").input("granite-fjord-saffron-5")
    at.button(key="FormSubmitter:user_add-Add").click().run()
    assert not at.exception and store.user("olga").role == "operator"
    assert verify_password("granite-fjord-saffron-5", store.user("olga").pw_hash)
    at.selectbox(key="user_pick").set_value("vic")
    at.button(key="FormSubmitter:user_change-Remove user").click().run()
    assert store.user("vic") is None
    assert [(e.who, e.action, e.target, e.outcome) for e in reversed(store.audit()) if e.action.startswith("user.")] == [
        ("root-admin", "user.add", "olga", "ok"), ("root-admin", "user.remove", "vic", "ok")]
