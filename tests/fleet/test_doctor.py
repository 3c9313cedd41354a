"""`edgefleet doctor` against real Mosquitto: the project's config passes, Debian's defaults fail the
queue check, an ACL that keeps the doctor out is "could not probe", a size limit is found; store
checks on real SQLite files; clock and disk rules on made-up facts; usage errors and a missing
broker end in one line, never a traceback."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from testkit import free_port, now_ms, stop_process, wait_port

from edgefleet.cli import main
from edgefleet.protocol import ResultRecord
from edgefleet.service import doctor
from edgefleet.service.broker import BrokerHandle, mosquitto_binary
from edgefleet.service.doctor import DeviceSkew, StoreFacts, check_clock, check_disk
from edgefleet.service.doctor import probes as doctor_probes
from edgefleet.service.store import SQLiteStore
from edgefleet.service.store.base import IngestBatch
from edgefleet.service.store.sqlite import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[2]
BROKER_CHECKS = {"broker.mqtt5", "broker.session", "broker.queue", "broker.message_size", "broker.retained",
                 "broker.shared_subscription"}


@contextmanager
def mosquitto_with(tmp_path: Path, *extra: str) -> Iterator[int]:
    """A Mosquitto with a minimal hand-written config (Debian's defaults plus `extra` lines); its port.
    Started as root it would switch to user mosquitto, who cannot read an ACL file under tmp_path."""
    port = free_port()
    conf = tmp_path / f"mosquitto-{port}.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false", "log_dest stderr",
             *(["user root"] if os.geteuid() == 0 else []), *extra]
    conf.write_text("\n".join(lines) + "\n")
    log = (tmp_path / f"mosquitto-{port}.log").open("wb")
    proc = subprocess.Popen([mosquitto_binary() or "mosquitto", "-c", str(conf)], stdout=log, stderr=log,
                            start_new_session=True)
    try:
        try:
            wait_port(port)
        except RuntimeError:
            raise RuntimeError(f"mosquitto did not start: {(tmp_path / f'mosquitto-{port}.log').read_text()}") from None
        yield port
    finally:
        stop_process(proc)
        log.close()


def doctor_json(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict[str, dict]]:
    """Run `edgefleet doctor --json ARGS` in-process: exit status and the checks by name."""
    code = main(["doctor", "--json", *args])
    out = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in out["checks"]}
    assert out["ok"] == (code == 0) and all(set(c) == {"name", "status", "detail", "fix"} for c in out["checks"])
    return code, checks


def store_with_results(path: Path, lags_ms: dict[str, int], n: int = 30) -> None:
    """A store whose devices' results arrived `lag` ms after their own timestamp."""
    store = SQLiteStore(path, synchronous="NORMAL")
    now = now_ms()
    try:
        for device, lag in lags_ms.items():
            recs = [ResultRecord(device, "b1", i, now - lag - i, 1, 0.01, 0.05, False, 400)
                    for i in range(n)]
            store.write_batch(IngestBatch(now, messages=1, results=recs))
    finally:
        store.close()


# ---------------------------------------------------------------- the broker

def test_project_broker_and_a_healthy_store_pass(mosquitto: BrokerHandle, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "fleet.db"
    store_with_results(db, {"pump-1": 150, "pump-2": 80})
    code, checks = doctor_json(capsys, "--broker", mosquitto.url, "--db", str(db))
    assert code == 0
    # `edgefleet broker` lets anonymous clients in on loopback (development): a warning, not a failure
    assert {n: c["status"] for n, c in checks.items() if c["status"] != "pass"} == {"broker.anonymous": "warn"}
    assert set(checks) == BROKER_CHECKS | {"broker.tls", "broker.anonymous", "store.file", "store.wal", "store.schema",
                                           "store.disk", "clock.skew"}
    assert "2,000 queued" in checks["broker.queue"]["detail"]
    assert "524,288-byte" in checks["broker.message_size"]["detail"]


def test_debian_default_queue_fails_naming_max_queued_messages(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    with mosquitto_with(tmp_path) as port:
        code = main(["doctor", "--broker", f"mqtt://127.0.0.1:{port}", "--skip", "store"])
    out = capsys.readouterr().out
    assert code == 1
    line = next(ln for ln in out.splitlines() if "broker.queue" in ln)
    assert line.startswith("✘") and "1,000 of 2,000" in out
    fix = out.split("broker.queue", 1)[1].split("fix:", 1)[1]
    assert "max_queued_messages" in fix and "max_queued_bytes" in fix
    for name in BROKER_CHECKS - {"broker.queue"}:  # the rest of Debian's defaults are fine
        assert f"✔ {name}" in out
    assert "1 failed" in out


def test_acl_that_keeps_the_doctor_out_is_could_not_probe(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic read $SYS/#\n")  # anonymous clients may do nothing else
    with mosquitto_with(tmp_path, f"acl_file {acl}") as port:
        code, checks = doctor_json(capsys, "--broker", f"mqtt://127.0.0.1:{port}", "--skip", "store")
    assert code == 0 and checks["broker.mqtt5"]["status"] == "pass"
    for name in BROKER_CHECKS - {"broker.mqtt5"}:
        assert checks[name]["status"] == "skip"
        assert checks[name]["detail"].startswith("could not probe: not authorized")
        assert "ef-doctor/#" in checks[name]["fix"]


def test_credentials_from_the_url_and_a_refused_login(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "doctor", "s3cret"], check=True)
    with mosquitto_with(tmp_path, "allow_anonymous false", f"password_file {passwords}",
                        "max_queued_messages 100000") as port:
        code, checks = doctor_json(capsys, "--broker", f"mqtt://doctor:s3cret@127.0.0.1:{port}", "--skip", "store")
        assert code == 0 and all(c["status"] == "pass" for c in checks.values()), \
            {k: (c["status"], c.get("detail")) for k, c in checks.items() if c["status"] != "pass"}
        code, checks = doctor_json(capsys, "--broker", f"mqtt://doctor:wrong@127.0.0.1:{port}", "--skip", "store")
    assert code == 0 and checks["broker.session"]["status"] == "skip"
    assert "could not probe: not authorized" in checks["broker.session"]["detail"]
    assert "wrong" not in json.dumps(checks)  # the password never shows


def test_a_size_limit_fails_and_is_reported(tmp_path: Path) -> None:
    with mosquitto_with(tmp_path, "max_queued_messages 100000", "max_packet_size 100000") as port:
        probe = doctor.probe_message_size("127.0.0.1", port)
        check = doctor.check_message_size(probe)
    assert not probe.delivered and probe.max_packet_size == 100_000
    assert 99_000 < probe.largest < 100_000  # payload + topic + header fit in 100,000 bytes
    assert check.status == "fail" and "max_packet_size" in check.fix and "100,000" in check.detail


def test_probes_leave_no_session_and_no_retained_message(mosquitto: BrokerHandle,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor_probes, "_token", lambda: "leftover")
    assert doctor.probe_persistent_session(mosquitto.host, mosquitto.port).delivered
    assert doctor.probe_retained(mosquitto.host, mosquitto.port).delivered
    seen: dict = {"msgs": []}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ef-doctor-leftover-away", protocol=mqtt.MQTTv5)
    c.on_connect = lambda _c, _u, flags, _rc, _p: seen.setdefault("present", flags.session_present)
    c.on_message = lambda _c, _u, m: seen["msgs"].append(m.topic)
    c.connect(mosquitto.host, mosquitto.port, clean_start=False)
    c.loop_start()
    try:
        c.subscribe("ef-doctor/leftover/#", 1)
        time.sleep(0.5)  # a retained message or a queued one would arrive right after the SUBACK
    finally:
        c.disconnect()
        c.loop_stop()
    assert seen["present"] is False and seen["msgs"] == []


def test_no_broker_is_a_clear_failure_without_traceback(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "EDGEFLEET_DB": str(tmp_path / "none.db")}
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "doctor", "--broker", f"mqtt://127.0.0.1:{port}"],
                          check=False, capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert proc.returncode == 1
    assert f"✘ broker.mqtt5: no MQTT broker answers at 127.0.0.1:{port}" in proc.stdout
    assert "fix: start the broker" in proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--burst", "0"], "--burst must be"),
    (["--broker", "http://127.0.0.1:1883"], "scheme must be mqtt://"),
])
def test_usage_errors_exit_2_in_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["doctor", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ---------------------------------------------------------------- the store

def test_fresh_store_passes_and_is_not_modified(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "fresh.db"
    SQLiteStore(db).close()
    before = hashlib.sha256(db.read_bytes()).hexdigest(), sorted(os.listdir(tmp_path))
    code, checks = doctor_json(capsys, "--skip", "broker", "--db", str(db))
    assert code == 0
    assert [checks[n]["status"] for n in ("store.file", "store.wal", "store.schema", "store.disk")] == ["pass"] * 4
    assert checks["clock.skew"]["status"] == "skip"  # no results yet
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), sorted(os.listdir(tmp_path))) == before  # no -wal, -shm


def test_store_in_use_by_serve_is_read_beside_it(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    store_with_results(db, {"pump-1": 200})
    live = SQLiteStore(db)  # holds the WAL open, as `edgefleet serve` does
    try:
        checks = {c.name: c for c in doctor.run_store_checks(db)}
    finally:
        live.close()
    assert all(c.status == "pass" for c in checks.values()), checks
    assert "30 results" in checks["store.file"].detail


def test_store_from_a_newer_edgefleet_fails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "newer.db"
    SQLiteStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    code, checks = doctor_json(capsys, "--skip", "broker", "--db", str(db))
    assert code == 1
    assert checks["store.schema"]["status"] == "fail"
    assert f"schema version {SCHEMA_VERSION + 1} is newer" in checks["store.schema"]["detail"]
    assert "upgrade edgefleet" in checks["store.schema"]["fix"]


def test_missing_store_warns_and_unwritable_or_garbage_fails(tmp_path: Path) -> None:
    missing = {c.name: c for c in doctor.run_store_checks(tmp_path / "sub" / "none.db")}
    assert missing["store.file"].status == "warn" and "creates it" in missing["store.file"].detail
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    assert doctor.run_store_checks(junk)[0].status == "fail"
    if os.geteuid() != 0:  # root writes anything
        ro = tmp_path / "ro"
        ro.mkdir()
        SQLiteStore(ro / "fleet.db").close()
        ro.chmod(0o500)
        try:
            assert doctor.run_store_checks(ro / "fleet.db")[0].status == "fail"
        finally:
            ro.chmod(0o700)


def facts(**kw) -> StoreFacts:
    base = {"path": "f.db", "exists": True, "writable": True, "size_bytes": 10**9, "data_bytes": 10**9,
            "journal_mode": "wal", "user_version": SCHEMA_VERSION, "results": 5_000_000,
            "results_per_day": 2_400_000, "retention_days": 30.0, "free_bytes": 10**12}
    return StoreFacts(**{**base, **kw})


def test_disk_runway_warns_under_7_days_and_fails_under_1() -> None:
    # 200 B/result x 2.4 M results/day = 480 MB/day
    assert check_disk(facts(free_bytes=10**12)).status == "pass"  # retention caps it at 14.4 GB
    assert check_disk(facts(free_bytes=int(3e9))).status == "warn"  # ~6 days
    assert "6.2 days" in check_disk(facts(free_bytes=int(3e9))).detail
    assert check_disk(facts(free_bytes=int(3e8))).status == "fail"
    assert check_disk(facts(results_per_day=0)).status == "pass"  # no rate: nothing to project


def test_clock_skew_warns_over_a_minute_and_fails_past_retention(tmp_path: Path) -> None:
    ok = [DeviceSkew("a", 20, 150.0, 400)]
    assert check_clock(ok).status == "pass"
    ahead = ok + [DeviceSkew("b", 20, -95_000.0, -96_000)]
    c = check_clock(ahead)
    assert c.status == "warn" and "b (-95.0 s)" in c.detail and "NTP" in c.fix
    behind = ok + [DeviceSkew("c", 20, 40 * 86_400_000.0, 40 * 86_400_000)]
    assert check_clock(behind, retention_days=30).status == "fail"
    assert check_clock([]).status == "skip"
    db = tmp_path / "skew.db"  # the same from a real store
    store_with_results(db, {"good": 300, "slow-clock": 5 * 60_000})
    checks = {c.name: c for c in doctor.run_store_checks(db)}
    assert checks["clock.skew"].status == "warn" and "slow-clock (+5.0 min)" in checks["clock.skew"].detail
