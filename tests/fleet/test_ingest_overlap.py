"""Ingest's decode/write overlap (`ingest_overlap`, the default): the next batch is decoded while the one
before commits, and still no message is acknowledged before the commit that stored it; a write that
fails is retried, nothing lost or doubled. Real Mosquitto, real SQLite; the store only watches."""

from __future__ import annotations

import time

import pytest

from edgefleet import protocol
from edgefleet.service.ingest import IngestService
from edgefleet.service.store import SQLiteStore, StoreError

from .conftest import ingest_settings, purge_session
from .support import Publisher, result_payload, wait_until


class WatchedStore(SQLiteStore):
    """At each write: how many messages ingest had acknowledged, how many were committed before, and
    whether a decoded batch was waiting (the overlap at work). Writes are slowed as a busy disk would."""

    svc: IngestService
    fail_at: int = -1  # this write raises once, as a lost database connection would

    def write_batch(self, batch):
        self.log.append((self.svc.counters.acked, self.committed, self.svc._handoff is not None
                         and self.svc._handoff.full()))
        time.sleep(0.03)
        if len(self.log) == self.fail_at:
            self.fail_at = -1
            raise StoreError("connection lost (test)")
        out = super().write_batch(batch)
        self.committed += batch.messages
        return out


@pytest.mark.parametrize("overlap", [1, 0])
def test_overlap_decodes_ahead_but_never_acks_before_the_commit(mosquitto, tmp_path, unique, overlap) -> None:
    name = unique("ov")
    settings = ingest_settings(mosquitto, tmp_path / "s.db", name, batch_max=40, batch_ms=20, receive_max=200,
                               ingest_overlap=overlap)
    store = WatchedStore(settings.db, synchronous="NORMAL")
    store.log, store.committed, store.fail_at = [], 0, 5
    svc = IngestService(settings, store)
    store.svc = svc
    svc.start()
    pub = Publisher(mosquitto.host, mosquitto.port, unique("pub"))
    try:
        devices = [unique("dev") for _ in range(4)]
        for i in range(100):
            for d in devices:
                pub.publish(protocol.topic(d, "result"), result_payload(i * 5, 5))
        pub.wait_all()
        wait_until(lambda: store.count_results() >= 2000, 60, "2,000 results stored")
        wait_until(lambda: svc.counters.acked >= 400, 10, "every message acknowledged")
    finally:
        pub.close()
        svc.stop()
        purge_session(settings.broker_host_port, settings.ingest_client_id)
    assert store.count_results() == 2000 and store.counts().duplicates == 0  # each result once
    # its 400, and any status another test left retained on the session broker (delivered on subscribe)
    assert svc.counters.store_errors == 1 and svc.counters.acked == svc.counters.received >= 400
    # at every write, acknowledged <= committed before it: a message is acked only after its commit
    assert all(acked <= committed for acked, committed, _ in store.log), store.log
    # with the overlap, the next batch was decoded and waiting while a write ran; without, never
    waiting = sum(w for _, _, w in store.log)
    assert (waiting > 0) if overlap else (waiting == 0), store.log
    store.close()
