"""What a device claims is checked before it is stored (a hostile or broken node must not poison
the store): numbers that overflow a double, and time stamps from the future."""

from __future__ import annotations

import json

from edgefleet.service.ingest import MAX_AHEAD_MS, Inbound, decode_into
from edgefleet.service.store import IngestBatch, SQLiteStore

NOW = 1_800_000_000_000


def result(ts: int, score: str = "0.5") -> bytes:
    return (f'{{"v":1,"boot":"00000001","model":1,"thr":1,"dropped":0,'
            f'"res":[{{"seq":0,"ts":{ts},"score":{score},"anom":false,"inf_us":1}}]}}').encode()


def status(ts: int) -> bytes:
    return json.dumps({"v": 1, "boot": "00000001", "seq": 0, "ts": ts, "state": "online", "fw": "1.0.0",
                       "model": 99, "slot": "A", "thr": 1.0, "caps": []}).encode()


def test_an_overflowing_number_is_refused_not_stored_as_infinity():
    batch = IngestBatch(ingest_ts=NOW)
    assert decode_into(batch, Inbound("ef/v1/d-1/result", result(NOW, "1e999"), 1, 1, 0, NOW)) == "json"
    assert not batch.results and "out of range" in batch.rejects[0].reason


def test_a_far_future_time_stamp_is_refused_and_does_not_pin_the_registry(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    batch = IngestBatch(ingest_ts=NOW)
    assert decode_into(batch, Inbound("ef/v1/d-1/status", status(NOW), 1, 1, 0, NOW)) is None
    future = NOW + MAX_AHEAD_MS + 60_000
    assert decode_into(batch, Inbound("ef/v1/d-1/status", status(future), 1, 2, 0, NOW)) == "claim"
    assert decode_into(batch, Inbound("ef/v1/d-1/result", result(future), 1, 3, 0, NOW)) == "claim"
    # store-and-forward: results from hours ago are fine, a clock a little ahead too
    assert decode_into(batch, Inbound("ef/v1/d-1/result", result(NOW - 6 * 3600_000), 1, 4, 0, NOW)) is None
    assert decode_into(batch, Inbound("ef/v1/d-1/result", result(NOW + 5_000).replace(b'"seq":0', b'"seq":1'),
                                      1, 5, 0, NOW)) is None
    store.write_batch(batch)
    d = store.device("d-1")
    assert d.last_seen <= NOW + 5_000 and len(store.rejects()) == 2
    assert all(r.code == "claim" and "device clock" in r.reason for r in store.rejects())
    store.close()
