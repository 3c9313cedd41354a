"""The PostgreSQL store beyond the shared contract (test_store_contract.py runs that on it too):
schema versions and migrations, one-line errors that never show a password, `--db postgresql://`
through the commands, and the OTA registry and command outbox in the same database. Against a real
server (tests/pg.py), never a mock."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgefleet.protocol import ResultRecord
from edgefleet.service.store import IngestBatch, StoreError, mask_url, open_store
from edgefleet.service.store.postgres import (
    SCHEMA_VERSION,
    PostgresStore,
    connect,
    migrate,
    schema_version,
)

REPO = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000_000
SECRET = "pg-test-secret"


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefleet", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def recs(device: str, seqs, boot: str = "b1") -> list[ResultRecord]:
    return [ResultRecord(device, boot, s, T0 + 1000 * s, 1, 0.5, 1.0, False, 5) for s in seqs]


def test_mask_url_hides_the_password_everywhere_it_can_be() -> None:
    assert mask_url("postgresql://ef:s3cr%40t@db.example:5432/fleet") == "postgresql://ef:***@db.example:5432/fleet"
    assert mask_url("postgres://ef@h/db?password=s3cret&sslmode=require") == \
        "postgres://ef@h/db?password=***&sslmode=require"
    assert mask_url("var/edgefleet.db") == "var/edgefleet.db"
    assert mask_url("postgresql://u:pa/ss@h/db") == "postgresql://u:***@h/db"  # an unencoded / or @ in it
    assert mask_url("postgresql://u:p@ss@h:5/db?a=1&PASSWORD=x") == "postgresql://u:***@h:5/db?a=1&PASSWORD=***"
    assert mask_url("postgresql://u:s3cret@[::1/db") == "postgresql://u:***@[::1/db"  # malformed: still masked
    assert mask_url("postgresql://db.plant/fleet") == "postgresql://db.plant/fleet"


def test_open_store_picks_the_backend_from_the_url(pg_server) -> None:
    url = pg_server.create_db()
    s = open_store(url)
    assert isinstance(s, PostgresStore) and SECRET not in s.path and "***" in s.path
    assert s.schema_version() == SCHEMA_VERSION
    s.close()


def test_wrong_password_unreachable_server_and_bad_url_are_one_line_without_the_password(pg_server) -> None:
    wrong = pg_server.url("postgres", password="not-the-" + SECRET)
    with pytest.raises(StoreError) as exc:
        open_store(wrong)
    msg = str(exc.value)
    assert "password authentication failed" in msg and "\n" not in msg and "not-the-" not in msg and "***" in msg
    with pytest.raises(StoreError, match="cannot connect") as exc:
        open_store(f"postgresql://ef:{SECRET}@127.0.0.1:1/fleet")  # nothing listens on port 1
    assert SECRET not in str(exc.value) and "\n" not in str(exc.value)
    for bad in (f"postgresql://ef:{SECRET}@127.0.0.1:notaport/x", f"postgresql://ef:{SECRET}@[::1/x"):
        with pytest.raises(StoreError) as exc:
            open_store(bad)
        assert SECRET not in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(StoreError) as exc:
        open_store(pg_server.url("no_such_database"))
    assert "no_such_database" in str(exc.value) and SECRET not in str(exc.value)


def test_the_commands_say_so_in_one_line(pg_server) -> None:
    for url in (pg_server.url("postgres", password="wrong-" + SECRET), f"postgresql://ef:{SECRET}@127.0.0.1:1/x"):
        for args in (["stats", "--db", url], ["ota", "status", "--db", url], ["commission", "d1", "--db", url]):
            p = cli(*args)
            assert p.returncode == 2, (args, p.stderr)
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("edgefleet: error:"), p.stderr
            assert SECRET not in p.stderr and "Traceback" not in p.stderr


def test_schema_version_table_and_migrations_run_twice_or_at_once_are_harmless(pg_server) -> None:
    url = pg_server.create_db()
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            connect(url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]  # four processes starting at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = connect(url)
    assert migrate(conn, url) == SCHEMA_VERSION  # again: nothing to do
    rows = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]  # each version applied once
    conn.close()


def test_a_newer_schema_and_a_foreign_database_are_refused(pg_server) -> None:
    url = pg_server.create_db()
    conn = connect(url)
    conn.execute("INSERT INTO schema_version(version, applied_ms) VALUES (%s, 0)", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} is newer") as exc:
        open_store(url)
    assert SECRET not in str(exc.value)
    p = cli("stats", "--db", url)
    assert p.returncode == 2 and "is newer than this edgefleet" in p.stderr and SECRET not in p.stderr
    foreign = pg_server.create_db()
    conn = connect(foreign, migrate_schema=False)
    conn.execute("CREATE TABLE results(x int)")  # someone else's table of that name
    assert schema_version(conn) == -1
    conn.close()
    with pytest.raises(StoreError, match="not an edgefleet store"):
        open_store(foreign)


def test_a_dropped_connection_is_reopened_and_the_batch_is_not_half_written(pg_server) -> None:
    """The server ends the session (as on a restart): the failed write raises, nothing of it stays,
    and the next one reconnects; ingest keeps the batch unacknowledged meanwhile and retries."""
    url = pg_server.create_db()
    s = PostgresStore(url)
    s.write_batch(IngestBatch(T0, 1, recs("d", range(5))))
    admin = connect(url, migrate_schema=False)
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'edgefleet'"
                  " AND pid <> pg_backend_pid()")
    admin.close()
    with pytest.raises(StoreError):
        s.write_batch(IngestBatch(T0, 1, recs("d", range(5, 10))))
    out = s.write_batch(IngestBatch(T0, 1, recs("d", range(5, 10))))
    assert (out.stored, out.duplicates) == (5, 0) and s.count_results() == 10
    s.close()


def test_stats_and_a_store_from_two_connections(pg_server) -> None:
    url = pg_server.create_db()
    a, b = PostgresStore(url), PostgresStore(url)
    a.write_batch(IngestBatch(T0, 1, recs("pump-1", [0, 1, 2])))
    out = b.write_batch(IngestBatch(T0, 1, recs("pump-1", [2, 3])))
    assert (out.stored, out.duplicates) == (1, 1)
    a.close()
    b.close()
    p = cli("stats", "--db", url, "--json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["results"] == 4 and got["devices"] == 1 and got["duplicates"] == 1


def test_ota_registry_and_command_outbox_live_in_the_same_database(pg_server) -> None:
    from edgefleet.service.ota.registry import OtaRegistry

    url = pg_server.create_db()
    s = PostgresStore(url)
    s.set_device_meta("pump-1", site="north")
    s.close()
    pub = str(REPO / "edgefleet" / "models" / "dev-signing.pub")
    p = cli("ota", "publish", str(REPO / "edgefleet" / "models" / "fleet-default"), "--db", url, "--public", pub)
    assert p.returncode == 0, p.stderr
    assert SECRET not in p.stdout + p.stderr and "***" in p.stdout
    reg = OtaRegistry(url)
    (model,) = reg.models()
    p = cli("ota", "rollout", str(model.version), "--db", url, "--target", "site=south")
    assert p.returncode == 2 and "matches none of the 1 devices" in p.stderr and SECRET not in p.stderr
    p = cli("ota", "rollout", str(model.version), "--db", url, "--target", "site=north", "--id", "c-pg")
    assert p.returncode == 0, p.stderr
    reg.set_device_state("c-pg", "pump-1", "offered", offered=True, old_model=1)
    reg.set_device_state("c-pg", "pump-1", "downloading")
    st = reg.device_states("c-pg")["pump-1"]
    assert st["state"] == "downloading" and st["offered_ms"] is not None and st["old_model"] == 1
    assert reg.offer_counts("c-pg") == {"pump-1": 1}
    assert json.loads(cli("ota", "status", "--db", url, "--json").stdout)["campaigns"][0]["by_state"] == \
        {"downloading": 1}
    assert blob_roundtrip(reg, model.version)
    p = cli("commission", "pump-1", "--db", url)
    assert p.returncode == 0, p.stderr
    (cmd_id, device, body), = reg.pending_commands()
    assert device == "pump-1" and body.get("op") == "commission"
    reg.mark_commands_sent([cmd_id])
    assert reg.pending_commands() == [] and reg.commands("pump-1")[0]["sent_ms"] is not None
    assert reg.queue_command("pump-1", {"op": "commission_end"}) > cmd_id
    reg.close()


def blob_roundtrip(reg, version: int) -> bool:
    artifact, manifest = reg.blobs(version)
    folder = REPO / "edgefleet" / "models" / "fleet-default"
    return artifact == next(folder.glob("*.efm")).read_bytes() and manifest == (folder / "manifest.json").read_bytes()


def test_doctor_reads_a_postgresql_store_without_changing_it_and_never_shows_the_password(pg_server) -> None:
    url = pg_server.create_db()
    p = cli("doctor", "--skip", "broker", "--db", url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "store.postgresql" in p.stdout and "empty database" in p.stdout and SECRET not in p.stdout + p.stderr
    conn = connect(url, migrate_schema=False)
    assert schema_version(conn) == 0  # the doctor created nothing
    conn.close()
    p = cli("doctor", "--skip", "broker", "--db", pg_server.url("postgres", password="wrong-" + SECRET))
    assert p.returncode == 1 and "password authentication failed" in " ".join(p.stdout.split())  # wrapped
    assert SECRET not in p.stdout + p.stderr and "Traceback" not in p.stderr


def test_model_train_picks_the_next_free_version_from_a_postgresql_store(pg_server) -> None:
    from edgefleet.commands.model import next_free_version
    from edgefleet.service.store import DeviceUpdate

    url = pg_server.create_db()
    assert next_free_version(url) == 1  # an empty database: nothing created by the look
    s = PostgresStore(url)
    s.write_batch(IngestBatch(T0, 1, devices=[DeviceUpdate("d1", T0, status="online", model=7)]))
    s.close()
    assert next_free_version(url) == 8


def test_an_older_schema_is_upgraded_in_place_keeping_its_rows(pg_server) -> None:
    from edgefleet.service.store.postgres import MIGRATIONS

    url = pg_server.create_db()
    conn = connect(url, migrate_schema=False)
    with conn.transaction():  # a database as the first PostgreSQL edgefleet left it
        for sql in MIGRATIONS[1]:
            conn.execute(sql)
        conn.execute("CREATE TABLE schema_version(version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL,"
                     " \"by\" TEXT NOT NULL DEFAULT '')")
        conn.execute("INSERT INTO schema_version(version, applied_ms) VALUES (1, 0)")
        conn.execute("INSERT INTO results(device, boot, seq, ts, model, score, thr, anom, inf_us, ingest_ts)"
                     " VALUES ('old', 'b1', 0, %s, 1, 0.5, 1.0, 0, 5, %s)", (T0, T0))
    conn.close()
    s = PostgresStore(url)
    assert s.schema_version() == SCHEMA_VERSION
    (r,) = s.score_history("old")
    assert (r.device, r.seq, r.score) == ("old", 0, 0.5)
    out = s.write_batch(IngestBatch(T0, 1, recs("old", [1, 2], boot="b1")))
    assert out.stored == 2 and s.count_results() == 3
    s.close()


def test_edgefleet_db_may_be_a_url(pg_server) -> None:
    import os

    url = pg_server.create_db()
    PostgresStore(url).close()
    p = subprocess.run([sys.executable, "-m", "edgefleet", "stats", "--json"], cwd=REPO, capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, EDGEFLEET_DB=url))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["results"] == 0
    p = subprocess.run([sys.executable, "-m", "edgefleet", "ota", "status", "--models"], cwd=REPO,
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, EDGEFLEET_DB=url))
    assert p.returncode == 0 and "no model published in postgresql://edgefleet:***@" in p.stdout, p.stderr
    assert SECRET not in p.stdout + p.stderr


def test_loss_bookkeeping_matches_sqlite_on_shuffled_late_and_repeated_results(pg_server, tmp_path) -> None:
    """Holes opened, filled, split and filled again within one batch and across batches: the
    PostgreSQL store's batched hole writes end where SQLite's row-by-row ones do."""
    import random

    from edgefleet.service.store import SQLiteStore
    from edgefleet.service.store.loss import SETTLE_MS

    rng = random.Random(7)
    arrivals = [(d, s) for d in ("a", "b", "c") for s in range(300) if rng.random() > 0.05]
    arrivals += rng.sample(arrivals, 40)  # redeliveries
    rng.shuffle(arrivals)  # late results everywhere
    batches = [arrivals[i:i + 37] for i in range(0, len(arrivals), 37)]
    lite, pg = SQLiteStore(tmp_path / "s.db"), PostgresStore(pg_server.create_db())
    for i, part in enumerate(batches):
        for store in (lite, pg):
            store.write_batch(IngestBatch(T0 + 1000 * i, len(part), [recs(d, [s])[0] for d, s in part]))
    gaps = "SELECT device, boot, lo, hi, opened_ms FROM seq_gaps ORDER BY 1, 2, 3"
    assert [tuple(r) for r in pg._q(gaps)] == [tuple(r) for r in lite._q(gaps)]
    boots = "SELECT device, boot, max_seq, received, dropped, jumps FROM boots ORDER BY 1, 2"
    assert [tuple(r) for r in pg._q(boots)] == [tuple(r) for r in lite._q(boots)]
    for now in (T0 + 10_000, T0 + SETTLE_MS + 20_000):
        assert pg.loss(now) == lite.loss(now)
    assert pg.loss(T0 + SETTLE_MS + 60_000)["missing"] > 0  # the 5 % that never came
    lite.close()
    pg.close()
