"""Nothing lost without a trace at a reboot (issue 20): the results a node held in RAM when it
reset are the tail of its old boot; its next birth names that boot and its last seq (status
`prev`), so the store counts the tail. Also: the node's own drops are not counted twice while
young, and boots whose rows were not written yet (a crash) are rebuilt from the stored results."""

from __future__ import annotations

import json
import time

from device_sim.node import VirtualNode
from edgefleet import protocol
from edgefleet.protocol import ResultRecord
from edgefleet.service.ingest import Inbound, decode_into
from edgefleet.service.store import IngestBatch, SQLiteStore
from edgefleet.service.store.loss import SETTLE_MS

from .support import Publisher, wait_until

T0 = 1_800_000_000_000


def sim_node(device: str) -> VirtualNode:
    return VirtualNode(device_id=device, fs=12800.0, model_version=3, threshold=1.0, boot="0badcafe")


def publish_ring(pub: Publisher, node: VirtualNode, n: int) -> None:
    """Hand the node's oldest `n` results to the broker, one message each, as its link does."""
    for _ in range(n):
        out = node.next_message()
        pub.publish(out.topic, out.payload)
        node.commit(out.results)
    pub.wait_all(20)


def test_a_warm_reset_counts_the_tail_it_lost_and_a_power_cut_does_not_end_to_end(ingest, mosquitto, unique):
    """Real Mosquitto, ingest and SQLite: 4 of 10 results published, reset, the birth of the new
    boot carries prev = (old boot, 9), so results 4-9 count as missing; a node reset by a power
    cut (no retained record) sends no prev: its tail stays unseen, as before."""
    svc = ingest()
    warm, cold = unique("warm"), unique("cold")
    pub = Publisher(mosquitto.host, mosquitto.port, unique("pub"))
    nodes = {warm: sim_node(warm), cold: sim_node(cold)}
    now = int(time.time() * 1000)
    for dev, node in nodes.items():
        for i in range(10):
            node.add_result(now + i, 0.1, 500)
        publish_ring(pub, node, 4)
        old = node.boot
        node.reboot(power_cut=dev == cold)
        birth = node.birth(now + 20)
        body = protocol.decode("status", birth.payload)
        assert (body.get("prev") == {"boot": old, "res_seq": 9}) == (dev == warm)
        pub.publish(birth.topic, birth.payload, retain=True)
        for i in range(2):
            node.add_result(now + 30 + i, 0.1, 500)
        publish_ring(pub, node, 2)
    store = svc.store
    wait_until(lambda: store.count_results() >= 12 and all(store.loss(now, d)["devices"].get(d, {}).get("boots") == 2
                                                           for d in nodes), 20, "both boots of both nodes stored")
    later = int(time.time() * 1000) + 1
    every = store.loss(later, settle_ms=0)["devices"]  # every hole counted, settled or not
    assert every[warm]["missing"] == 6 and every[warm]["received"] == 6
    assert cold not in every  # nothing said how far the old boot went
    young = store.loss(later, warm)["devices"][warm]
    assert young["pending_gaps"] == 6 and young["missing"] == 0  # inside the settle window
    # the birth is retained and sent at every connect: a second copy changes nothing
    pub.publish(birth.topic, nodes[warm].birth(now + 40).payload, retain=True)
    pub.wait_all(20)
    time.sleep(0.5)
    assert store.loss(int(time.time() * 1000) + 1, settle_ms=0)["devices"][warm]["missing"] == 6
    pub.close()


def test_the_record_survives_boots_that_assigned_nothing_and_a_lying_prev_is_one_jump(tmp_path):
    node = sim_node("n1")
    for i in range(5):
        node.add_result(T0 + i, 0.1, 500)
    node.reboot()
    node.reboot()  # reset again before a result: the record still names the first boot
    assert node.prev_boot == ("0badcafe", 4)
    store = SQLiteStore(tmp_path / "s.db", synchronous="NORMAL")
    batch = IngestBatch(ingest_ts=T0)
    liar = {"v": 1, "boot": "0000000b", "seq": 0, "ts": T0, "state": "online", "fw": "1.0.0", "model": 1,
            "slot": "A", "thr": 0.1, "caps": [], "prev": {"boot": "0000000a", "res_seq": 4_000_000_000}}
    assert decode_into(batch, Inbound("ef/v1/liar/status", json.dumps(liar).encode(), 1, 1, 0, T0)) is None
    half = {**liar, "prev": {"boot": "0000000a"}}  # prev without res_seq: refused, one line, stored as a reject
    assert decode_into(batch, Inbound("ef/v1/liar/status", json.dumps(half).encode(), 1, 2, 0, T0)) == "schema"
    store.write_batch(batch)
    loss = store.loss(T0 + SETTLE_MS + 1)
    assert loss["seq_jumps"] == 1 and loss["missing"] == 0 and loss["pending_gaps"] == 0
    store.close()


def recs(device: str, boot: str, seqs, dropped: int = 0) -> list[ResultRecord]:
    return [ResultRecord(device, boot, s, T0 + 1000 * s, 1, 0.5, 1.0, False, 5, dropped=dropped) for s in seqs]


def test_pending_gaps_leave_out_what_the_node_dropped_itself(open_db):
    """A ring overflow is a hole on the wire and a `dropped` count: before the fix it showed in
    pending_gaps and in dropped_on_node until it settled. Per boot, drops come out of the settled
    holes first and then out of the young ones, so nothing is counted twice at any age."""
    store = open_db()
    store.write_batch(IngestBatch(ingest_ts=T0, results=recs("d", "b1", [0, 1, 5, 6], dropped=3)))  # 2-4 dropped
    young = store.loss(T0 + 1000)["devices"]["d"]
    assert (young["pending_gaps"], young["missing"], young["dropped_on_node"]) == (0, 0, 3)
    store.write_batch(IngestBatch(ingest_ts=T0 + 60_000, results=recs("d", "b1", [8], dropped=3)))  # 7 lost
    both = store.loss(T0 + 61_000)["devices"]["d"]
    assert (both["pending_gaps"], both["missing"], both["dropped_on_node"]) == (1, 0, 3)
    settled = store.loss(T0 + 60_000 + SETTLE_MS + 1)["devices"]["d"]
    assert (settled["pending_gaps"], settled["missing"]) == (0, 1)
    # another boot's drops do not hide this boot's loss
    store.write_batch(IngestBatch(ingest_ts=T0, results=recs("d", "b2", [0, 9], dropped=0)))
    again = store.loss(T0 + 60_000 + SETTLE_MS + 1)["devices"]["d"]
    assert again["missing"] == 1 + 8 and again["dropped_on_node"] == 3
    store.close()


def test_boots_not_written_before_a_crash_are_rebuilt_from_the_stored_results(tmp_path):
    """In-order updates of a boot reach its row every few seconds (store cost); a crash in between
    leaves the row behind its committed results. The next store to load the boot replays them, so
    no false hole opens and the counts stay exact."""
    path = tmp_path / "s.db"
    first = SQLiteStore(path, synchronous="NORMAL")
    for lo in range(0, 50, 10):
        first.write_batch(IngestBatch(ingest_ts=T0 + lo, results=recs("d", "b1", range(lo, lo + 10))))
    first.write_batch(IngestBatch(ingest_ts=T0 + 60, results=recs("d", "b1", [52, 53])))  # 50, 51 lost
    first.write_batch(IngestBatch(ingest_ts=T0 + 70, results=recs("d", "b1", range(54, 60))))
    assert first._dirty  # something is still only in memory ...
    first._db.close()  # ... and the process dies (no flush)
    second = SQLiteStore(path, synchronous="NORMAL")
    second.write_batch(IngestBatch(ingest_ts=T0 + 80, results=recs("d", "b1", [60, 61, 63])))  # 62 lost
    loss = second.loss(T0 + 80 + SETTLE_MS + 1)["devices"]["d"]
    assert (loss["received"], loss["missing"], loss["pending_gaps"]) == (61, 3, 0)
    second.close()
    third = SQLiteStore(path)  # what a reader in another process sees once the rows are written
    assert third.loss(T0 + 80 + SETTLE_MS + 1)["devices"]["d"]["received"] == 61
    third.close()
