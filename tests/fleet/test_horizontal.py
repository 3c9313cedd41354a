"""Horizontal ingest (docs/store.md): two `edgefleet serve` processes on one shared subscription
split the load; one is killed mid-load and restarted; every result is stored once. On SQLite they
share a file (one host); on PostgreSQL (`--role ingest`, stateless) they share a database server."""

from __future__ import annotations

import ast
import threading

import pytest

from edgefleet.service.store import SQLiteStore
from edgefleet.service.store.loss import SETTLE_MS

from .conftest import purge_session
from .support import Publisher, wait_until
from .test_resilience import PER_MSG, ServeProcess, assert_exactly_once, publish_load


def stored_by(proc: ServeProcess) -> int:
    """Results this process committed, from the summary it logs when it stops."""
    for line in reversed(proc.lines):
        if "ingest stopped:" in line:
            return ast.literal_eval(line.split("ingest stopped:", 1)[1].strip())["stored"]
    raise AssertionError("no stop summary in the log:\n" + "".join(proc.lines[-20:]))


@pytest.mark.slow
def test_two_ingest_processes_split_the_load_and_survive_a_kill(mosquitto, tmp_path, unique) -> None:
    db = tmp_path / "shared.db"
    group = unique("g2")
    ids = [unique("ef-ingest-a"), unique("ef-ingest-b")]
    a, b = (ServeProcess(mosquitto.url, db, cid, group) for cid in ids)
    store = SQLiteStore(db)
    devices = [unique("h") for _ in range(20)]
    msgs_per_device = 100  # 20,000 results
    pub = Publisher(mosquitto.host, mosquitto.port, unique("pub"))
    done = threading.Event()
    threading.Thread(target=publish_load, args=(pub, devices, msgs_per_device, 400.0, done), daemon=True).start()
    wait_until(lambda: store.count_results() >= 5000, 60, "a quarter of the load stored")
    b.kill9()  # mid-load; its session keeps the messages it was sent but had not acknowledged
    b = ServeProcess(mosquitto.url, db, ids[1], group)
    assert done.wait(120), "publisher did not finish"
    total = len(devices) * msgs_per_device * PER_MSG
    wait_until(lambda: store.count_results() >= total, 90, "every published result stored")
    assert_exactly_once(store, devices, msgs_per_device * PER_MSG)
    assert a.terminate() == 0 and b.terminate() == 0
    share_a, share_b = stored_by(a), stored_by(b)
    assert share_a > 0.1 * total and share_b > 0  # both took part (b only after its restart)
    print(f"\nstored by A {share_a}, by B after restart {share_b}, of {total}")
    pub.close()
    store.close()
    for cid in ids:
        purge_session((mosquitto.host, mosquitto.port), cid)


@pytest.mark.slow
def test_two_ingest_processes_share_one_postgresql_and_survive_a_kill(mosquitto, pg_server, unique) -> None:
    """The stateless-services idea, first step: two `serve --role ingest` on a shared subscription and
    one PostgreSQL. Each device's messages are split between them, so both insert the same boots and
    update the same device rows; one is killed -9 mid-load and restarted. Stored == published, no
    result twice, and the loss accounting (kept per boot by both) sees no hole."""
    from pg import PASSWORD

    from edgefleet.clock import now_ms
    from edgefleet.service.store.postgres import PostgresStore

    url = pg_server.create_db()
    group = unique("gpg")
    ids = [unique("ef-ingest-pa"), unique("ef-ingest-pb")]
    a, b = (ServeProcess(mosquitto.url, url, cid, group, "--role", "ingest") for cid in ids)
    store = PostgresStore(url)
    devices = [unique("p") for _ in range(20)]
    msgs_per_device = 100  # 20,000 results
    pub = Publisher(mosquitto.host, mosquitto.port, unique("pub"))
    done = threading.Event()
    threading.Thread(target=publish_load, args=(pub, devices, msgs_per_device, 400.0, done), daemon=True).start()
    wait_until(lambda: store.count_results() >= 5000, 60, "a quarter of the load stored")
    b.kill9()
    b = ServeProcess(mosquitto.url, url, ids[1], group, "--role", "ingest")
    assert done.wait(120), "publisher did not finish"
    total = len(devices) * msgs_per_device * PER_MSG
    wait_until(lambda: store.count_results() >= total, 90, "every published result stored")
    assert_exactly_once(store, devices, msgs_per_device * PER_MSG)
    assert a.terminate() == 0 and b.terminate() == 0
    share_a, share_b = stored_by(a), stored_by(b)
    assert share_a > 0.1 * total and share_b > 0
    logs = "".join(a.lines + b.lines)
    assert PASSWORD not in logs and "store: postgresql://edgefleet:***@" in logs  # the URL logged, masked
    loss = store.loss(now_ms() + SETTLE_MS + 1)
    assert (loss["missing"], loss["pending_gaps"], loss["devices"]) == (0, 0, {})
    assert sum(d.results for d in store.devices()) == total  # device rows updated by both, none lost
    print(f"\nPostgreSQL: stored by A {share_a}, by B after restart {share_b}, of {total}; "
          f"duplicates dropped {store.counts().duplicates}")
    pub.close()
    store.close()
    for cid in ids:
        purge_session((mosquitto.host, mosquitto.port), cid)
