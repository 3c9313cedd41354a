"""loss.account's one-pass fast path (the next seq of a known boot) against a plain reference: fold
every boot's results in seq order, whatever order and batching they arrive in."""

from __future__ import annotations

import random

from edgefleet.protocol import ResultRecord
from edgefleet.service.store.loss import BootState, account

DROPPED = ResultRecord._fields.index("dropped")


def reference(stream: list[tuple[str, str, int, int, int]]) -> dict:
    """Per boot: (max_seq, received, dropped, first_ts, last_ts, the seqs never received below max_seq)."""
    out: dict = {}
    for d, b, seq, ts, dropped in stream:
        e = out.setdefault((d, b), {"seqs": set(), "dropped": 0, "ts": []})
        e["seqs"].add(seq)
        e["dropped"] = max(e["dropped"], dropped)
        e["ts"].append(ts)
    return {k: (max(e["seqs"]), len(e["seqs"]), e["dropped"], min(e["ts"]), max(e["ts"]),
                set(range(max(e["seqs"]) + 1)) - e["seqs"]) for k, e in out.items()}


def stream_of(rng: random.Random) -> list[tuple[str, str, int, int, int]]:
    """A few devices and boots, results mostly in order, some lost for good, some late, drops rising."""
    rows = []
    for dev in range(6):
        for boot in range(rng.randint(1, 2)):
            dropped = 0
            for seq in range(rng.randint(1, 60)):
                if rng.random() < 0.1:
                    continue  # lost for good
                if rng.random() < 0.05:
                    dropped += rng.randint(1, 3)
                rows.append((f"d{dev}", f"{boot:08x}", seq, 1_000 + seq * 10 + rng.randint(0, 3), dropped))
    late = [r for r in rows if rng.random() < 0.15]  # store-and-forward: these arrive much later
    rows = [r for r in rows if r not in late]
    for i in range(len(rows) - 1):  # local reordering inside and across messages
        if rng.random() < 0.1:
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
    rows += late
    return rows


def fold(rows: list, rng: random.Random, as_records: bool) -> tuple[dict, dict, set]:
    boots: dict[tuple[str, str], BootState] = {}
    holes: dict[tuple[str, str], list[tuple[int, int]]] = {}
    wrong_quiet: set = set()
    i = 0
    while i < len(rows):
        n = rng.choice([1, 2, 5, 17, 64])
        batch, i = rows[i:i + n], i + n
        before = {k: (st.max_seq, st.dropped) for k, st in boots.items()}
        if as_records:
            recs = [ResultRecord(d, b, s, t, 1, 0.1, 1.0, False, 5, dropped=dr) for d, b, s, t, dr in batch]
            upd = account(recs, boots, holes, dropped_at=DROPPED, keys=[(r.device, r.boot) for r in recs])
        else:
            upd = account(batch, boots, holes)
        for k in upd.quiet:  # quiet: a known boot that only took its next results, its drops unchanged
            mine = sorted(r[2] for r in batch if (r[0], r[1]) == k)
            was = before.get(k)
            if was is None or mine != list(range(was[0] + 1, was[0] + 1 + len(mine))) or boots[k].dropped != was[1]:
                wrong_quiet.add(k)
        assert set(upd.boots) >= {(r[0], r[1]) for r in batch}
    return boots, holes, wrong_quiet


def test_any_order_and_batching_folds_to_the_reference():
    for seed in range(60):
        rng = random.Random(seed)
        rows = stream_of(rng)
        want = reference(rows)
        for as_records in (False, True):
            boots, holes, wrong_quiet = fold(rows, random.Random(seed + 1000), as_records)
            assert not wrong_quiet, (seed, wrong_quiet)
            assert set(boots) == set(want)
            for k, (max_seq, received, dropped, first_ts, last_ts, gone) in want.items():
                st = boots[k]
                assert (st.max_seq, st.received, st.dropped, st.first_ts, st.last_ts) == \
                    (max_seq, received, dropped, first_ts, last_ts), (seed, k)
                open_ = {s for lo, hi in holes.get(k, []) for s in range(lo, hi + 1)}
                assert open_ == gone, (seed, k)
                assert sum(hi - lo + 1 for lo, hi in holes.get(k, [])) == len(gone)  # no overlapping holes


def test_a_boot_whose_batch_starts_out_of_order_is_not_quiet_and_still_counted_once():
    boots = {("d", "b"): BootState(max_seq=4, received=5, first_ts=1)}
    holes: dict = {}
    upd = account([("d", "b", 7, 70, 0), ("d", "b", 5, 50, 0), ("d", "b", 6, 60, 0)], boots, holes)
    assert ("d", "b") not in upd.quiet and not upd.opened and holes.get(("d", "b"), []) == []
    assert (boots[("d", "b")].max_seq, boots[("d", "b")].received, boots[("d", "b")].last_ts) == (7, 8, 70)
    upd = account([("d", "b", 8, 80, 0), ("d", "b", 10, 100, 2)], boots, holes)  # next, then a hole
    assert ("d", "b") not in upd.quiet and upd.opened == [("d", "b", 9, 9)] and boots[("d", "b")].dropped == 2
    upd = account([("d", "b", 11, 110, 2)], boots, holes)
    assert upd.quiet == {("d", "b")}
    upd = account([("d", "b", 12, 120, 3)], boots, holes)  # the node reports more drops: written at once
    assert not upd.quiet and boots[("d", "b")].dropped == 3
