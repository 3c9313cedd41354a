"""Loss accounting (docs/store.md): per device and boot, which sequence numbers never arrived,
kept apart from what the node says it dropped; late results fill their holes; a counter that jumps
by billions costs one counted jump, not billions of rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgefleet.protocol import ResultRecord
from edgefleet.service.store import IngestBatch, Store
from edgefleet.service.store.loss import MAX_JUMP, SETTLE_MS, BootState, account

REPO = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000_000


def recs(device: str, boot: str, seqs, dropped: int = 0) -> list[ResultRecord]:
    return [ResultRecord(device, boot, s, T0 + 1000 * s, 1, 0.5, 1.0, False, 5, dropped=dropped) for s in seqs]


def write(store: Store, results: list[ResultRecord], at: int = T0) -> None:
    store.write_batch(IngestBatch(ingest_ts=at, results=results))


def test_holes_open_fill_and_split_in_o_of_gaps():
    boots: dict = {}
    holes: dict = {}
    upd = account([("d", "b", s, s, 0) for s in (0, 1, 2, 6, 7, 12)], boots, holes)
    assert holes[("d", "b")] == [(3, 5), (8, 11)] and boots[("d", "b")].max_seq == 12
    assert [o[2:] for o in upd.opened] == [(3, 5), (8, 11)]
    account([("d", "b", 4, 4, 0), ("d", "b", 8, 8, 0)], boots, holes)  # late, out of order
    assert holes[("d", "b")] == [(3, 3), (5, 5), (9, 11)] and boots[("d", "b")].received == 8


def test_a_new_boot_starts_from_zero_without_a_false_gap_and_a_huge_jump_is_one_count():
    boots = {("d", "old"): BootState(max_seq=500, received=501)}
    holes: dict = {}
    account([("d", "new", 0, 0, 0), ("d", "new", 1, 1, 0)], boots, holes)
    assert holes.get(("d", "new"), []) == [] and boots[("d", "old")].max_seq == 500
    account([("d", "new", 3_000_000_000, 2, 0)], boots, holes)
    assert holes.get(("d", "new"), []) == [] and boots[("d", "new")].jumps == 1
    account([("d", "new", 3_000_000_000 + MAX_JUMP, 3, 0)], boots, holes)  # just within: a real hole
    assert holes[("d", "new")] == [(3_000_000_001, 3_000_000_000 + MAX_JUMP - 1)]


def test_store_counts_missing_pending_and_dropped_apart(open_db):
    store = open_db()
    write(store, recs("a", "b1", [0, 1, 2, 5, 6]))  # 3, 4 lost
    write(store, recs("b", "b1", [0, 3, 4], dropped=2))  # 1, 2 dropped by its own ring
    write(store, recs("a", "b1", [4]), at=T0 + 60_000)  # 4 arrives late
    write(store, recs("a", "b1", [4, 5]), at=T0 + 70_000)  # duplicates change nothing
    fresh = store.loss(T0 + 1000)
    assert fresh["missing"] == 0 and fresh["pending_gaps"] == 1 and fresh["dropped_on_node"] == 2  # b's holes are its drops
    settled = store.loss(T0 + SETTLE_MS + 1)
    assert settled["missing"] == 1 and settled["pending_gaps"] == 0  # a's seq 3; b's holes are its drops
    assert settled["devices"]["a"]["missing"] == 1 and settled["devices"]["a"]["received"] == 6
    assert settled["devices"]["b"]["missing"] == 0 and settled["devices"]["b"]["dropped_on_node"] == 2
    store.close()


def test_stats_cli_reports_loss_overall_and_per_device(open_db):
    store = open_db()
    db = getattr(store, "url", None) or store.path  # a file, or a postgresql:// URL
    write(store, recs("pump-1", "b1", [0, 1, 5]))
    store.close()
    run = lambda *a: subprocess.run([sys.executable, "-m", "edgefleet", "stats", "--db", str(db), "--json", *a],  # noqa: E731
                                    cwd=REPO, capture_output=True, text=True, timeout=60)
    out = json.loads(run().stdout)
    assert {"missing", "pending_gaps", "dropped_on_node", "seq_jumps"} <= set(out)
    assert out["missing"] + out["pending_gaps"] == 3  # 2, 3, 4: settled or not depends on the clock
    one = json.loads(run("--device", "pump-1").stdout)["device"]
    assert one["received"] == 3 and one["missing"] + one["pending_gaps"] == 3
    bad = run("--device", "nope")
    assert bad.returncode == 2 and "not in" in bad.stderr


def test_two_processes_sharing_the_file_account_as_one(open_db):
    """Ingest processes in a shared group split one device's messages: each store sees the other's
    commits (SQLite: PRAGMA data_version, then it reloads its bookkeeping; PostgreSQL: the boots rows
    are read and locked in each batch's transaction), so no false hole stays open."""
    a, b = open_db(), open_db()
    for i in range(0, 40, 4):
        write(a, recs("d", "b1", [i, i + 1]))
        write(b, recs("d", "b1", [i + 2, i + 3]))
    loss = a.loss(T0 + SETTLE_MS + 1)
    assert loss["missing"] == 0 and loss["pending_gaps"] == 0 and loss["devices"] == {}
    a.close()
    b.close()


def test_a_device_that_keeps_losing_raises_a_data_loss_alarm_which_clears_when_it_stops(open_db):
    store = open_db()
    hour, settle = 3_600_000, SETTLE_MS + 1
    write(store, recs("lossy", "b1", [i for i in range(200) if i % 10]))  # 1 in 10 lost: 20 holes
    write(store, recs("fine", "b1", range(200)))
    assert store.track_loss(T0 + settle) == [("raise", "lossy")]
    assert [a["device"] for a in store.loss_alarms(active=True)] == ["lossy"]
    assert store.track_loss(T0 + settle + 60_000) == []  # still active, not raised twice
    assert store.track_loss(T0 + settle + hour + 60_000) == [("clear", "lossy")]  # an hour without a new loss
    assert store.loss_alarms(active=True) == [] and len(store.loss_alarms()) == 1
    series = store.loss_series(T0)
    assert {d for _, d, *_ in series} == {"lossy"} and series[0][2] == 20
    store.close()


def test_a_clean_goodbye_reveals_a_loss_at_the_very_end(open_db):
    """Results lost after the last one that arrived leave no hole; the node's offline status says
    how far its results went (`res_seq`), which opens one. A lying huge mark is a counted jump."""
    import json as _json

    from edgefleet.service.ingest import Inbound, decode_into

    store = open_db()
    write(store, recs("d", "b0000001", range(10)))
    batch = IngestBatch(ingest_ts=T0 + 20_000)
    bye = {"v": 1, "boot": "b0000001", "seq": 1, "ts": T0 + 20_000, "state": "offline", "res_seq": 14}
    assert decode_into(batch, Inbound("ef/v1/d/status", _json.dumps(bye).encode(), 1, 1, 0, T0 + 20_000)) is None
    liar = {"v": 1, "boot": "b0000002", "seq": 0, "ts": T0 + 20_000, "state": "offline", "res_seq": 4_000_000_000}
    assert decode_into(batch, Inbound("ef/v1/e/status", _json.dumps(liar).encode(), 1, 2, 0, T0 + 20_000)) is None
    store.write_batch(batch)
    loss = store.loss(T0 + 20_000 + SETTLE_MS + 1)
    assert loss["devices"]["d"]["missing"] == 5 and loss["seq_jumps"] == 1  # 10..14
    write(store, recs("d", "b0000001", [12]), at=T0 + 30_000)  # one of them arrives late after all
    assert store.loss(T0 + 30_000 + SETTLE_MS + 1)["devices"]["d"]["missing"] == 4
    store.close()


def test_a_flush_of_in_order_rows_never_writes_a_boot_row_back_over_another_writers(open_db):
    """SQLite keeps a boot's in-order updates in memory and writes them later (flush_loss: on a stats
    read, every 5 s, at close). If another process wrote the row since, the kept row is older: written
    back, it put the row's max_seq below a hole the other process had stored, and the next reload
    opened that hole again (UNIQUE seq_gaps: three `serve` on one file stuck retrying). PostgreSQL
    keeps no rows in memory; the same sequence must hold there too."""
    a, b = open_db(), open_db()
    write(a, recs("d", "b1", range(10)))  # a new boot: its row is written at once
    a._flushed = __import__("time").monotonic()  # noqa: SLF001 (SQLite: the next in-order rows stay in memory)
    write(a, recs("d", "b1", range(10, 20)))
    write(b, recs("d", "b1", range(25, 30)))  # b replays 10..19, opens the hole 20..24, writes the row
    a.loss(T0)  # a's flush of its kept row (max_seq 19) must not go over b's (29)
    write(b, recs("d", "b1", range(30, 35)))  # raised IntegrityError (UNIQUE seq_gaps) before the fix
    write(a, recs("d", "b1", range(20, 25)))  # the late ones fill the hole
    for s in (a, b):
        loss = s.loss(T0 + SETTLE_MS + 1)
        assert loss["missing"] == 0 and loss["pending_gaps"] == 0, loss
    assert b.count_results() == 35
    a.close()
    b.close()
