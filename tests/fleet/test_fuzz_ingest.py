"""100,000 malformed payloads through real Mosquitto: each rejected with a reason, valid traffic intact."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter

import pytest

from edgefleet import protocol

from .malformed import malformed
from .support import Publisher, result_payload, wait_until

N_BAD = 100_000
VALID_EVERY = 50


def test_generator_only_yields_refused_messages() -> None:
    codes = Counter()
    for topic, payload in malformed(3000, seed=1):
        with pytest.raises(protocol.ProtocolError) as info:
            protocol.decode_message(topic, payload)
        codes[info.value.code] += 1
    assert set(codes) <= set(protocol.REASON_CODES) and len(codes) >= 4, codes


def _publish_fuzz(host: str, port: int, client_id: str, good: str, out: mp.Queue) -> None:
    """In a child process (the ingest under test keeps this process's CPU): publish the
    malformed payloads with valid results mixed in; report what the codec says of each."""
    pub = Publisher(host, port, client_id, window=100)
    n_valid = 0
    codes: Counter[str] = Counter()
    for i, (topic, payload) in enumerate(malformed(N_BAD, seed=3)):
        try:
            protocol.decode_message(topic, payload)
        except protocol.ProtocolError as exc:
            codes[exc.code] += 1
        pub.publish(topic, payload)
        if i % VALID_EVERY == 0:
            pub.publish(protocol.topic(good, "result"), result_payload(n_valid * 5, 5))
            n_valid += 1
    pub.wait_all(300)
    out.put((n_valid, dict(codes)))


@pytest.mark.slow
def test_100k_malformed_payloads_are_each_rejected_and_valid_traffic_is_unaffected(ingest, mosquitto, unique) -> None:
    svc = ingest()
    good = unique("good")
    t0 = time.monotonic()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_publish_fuzz, args=(mosquitto.host, mosquitto.port, unique("fuzz"), good, out))
    child.start()
    n_valid, expected_codes = out.get(timeout=300)
    child.join(30)
    assert child.exitcode == 0
    total = N_BAD + n_valid
    wait_until(lambda: svc.counters.received >= total, 300, "all messages ingested", interval=0.5)
    elapsed = time.monotonic() - t0
    store = svc.store
    assert svc._worker.is_alive()
    assert svc.counters.rejected == N_BAD and svc.counters.store_errors == 0
    assert store.reject_counts() == dict(expected_codes)  # each one stored, with the codec's reason
    assert "internal" not in store.reject_counts()
    assert all(r.reason and r.code in protocol.REASON_CODES for r in store.rejects(limit=2000))
    assert store.count_results() == n_valid * 5
    hist = store.score_history(good, limit=10 * n_valid)
    assert [r.seq for r in hist] == list(range(n_valid * 5))
    print(f"\n{total} messages ({N_BAD} malformed) in {elapsed:.1f} s: {total / elapsed:.0f} msg/s; "
          f"reject codes {dict(expected_codes)}")
