"""PostgreSQL stopped mid-load under `serve --role ingest` (docs/store.md): ingest keeps the batch
unacknowledged and retries, the store reconnects when the server is back, and every published
result is stored exactly once."""

from __future__ import annotations

import threading
import time

import pytest

from edgefleet.errors import EdgefleetError
from edgefleet.service.store.postgres import PostgresStore

from .conftest import purge_session
from .support import Publisher, wait_until
from .test_resilience import PER_MSG, ServeProcess, assert_exactly_once, publish_load


@pytest.mark.slow
def test_postgresql_down_mid_load_loses_and_duplicates_nothing(mosquitto, pg_server, unique) -> None:
    from pg import PgServer

    server = PgServer()  # its own, as this test stops it (pg_server: skipped, saying why, without the binaries)
    try:
        url = server.create_db()
        cid, group = unique("ef-ingest-pgdown"), unique("gd")
        serve = ServeProcess(mosquitto.url, url, cid, group, "--role", "ingest")
        store = PostgresStore(url)
        devices = [unique("o") for _ in range(20)]
        msgs_per_device = 100  # 20,000 results
        pub = Publisher(mosquitto.host, mosquitto.port, unique("pub"))
        done = threading.Event()
        threading.Thread(target=publish_load, args=(pub, devices, msgs_per_device, 400.0, done), daemon=True).start()

        def stored() -> int:
            try:
                return store.count_results()
            except EdgefleetError:
                return -1  # the server is down, or our connection went with its restart
        wait_until(lambda: stored() >= 4000, 60, "a fifth of the load stored")
        server.halt()
        time.sleep(2.0)  # the load goes on: ingest cannot commit, so it acknowledges nothing
        server.start()
        assert done.wait(120), "publisher did not finish"
        total = len(devices) * msgs_per_device * PER_MSG
        wait_until(lambda: stored() >= total, 90, "every published result stored")
        assert_exactly_once(store, devices, msgs_per_device * PER_MSG)
        assert any("store write failed" in line for line in serve.lines)  # it did meet the outage
        assert serve.terminate() == 0
        print(f"\nPostgreSQL down 2 s mid-load: {total} published, {total} stored once; "
              f"{sum('store write failed' in x for x in serve.lines)} failed writes retried")
        pub.close()
        store.close()
        purge_session((mosquitto.host, mosquitto.port), cid)
    finally:
        server.stop()
