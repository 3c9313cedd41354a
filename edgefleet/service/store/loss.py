"""Loss accounting: which result sequence numbers never arrived, per device and boot.

Every result carries (device, boot, seq) with seq counting from 0 per boot, so a hole in the
sequence is a lost result. The store keeps, per boot, the highest seq seen and the holes as
intervals [lo, hi]: bookkeeping is O(gaps), not O(results). A result that arrives late (after a
reconnect, from the node's store-and-forward ring) fills its hole. A hole younger than the
settle window is `pending`; older, it is `missing`. What the node itself reported as dropped
(its ring overflowed) is also a hole on the wire, so it is counted apart: `missing` is the
settled holes minus the node's own drops (docs/store.md, "Loss accounting").

A sequence number that jumps forward by more than `MAX_JUMP` (a broken or hostile node) opens no
hole: it is counted as a jump, so no device can make the store track billions of missing results.

A node that reboots loses the results still in its RAM (ring and link): they are the tail of the
old boot, after the last seq the store received from it. A node that kept its previous boot's id
and last assigned seq across the reset says so in its next birth (status `prev`), and ingest turns
that into a mark on the old boot, so the tail is a hole like any other (docs/protocol.md).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MAX_JUMP = 100_000  # a forward jump larger than this is a broken counter, not that many lost results
SETTLE_MS = 15 * 60 * 1000  # a hole younger than this may still fill (store-and-forward): pending


@dataclass(slots=True)
class BootState:
    """One boot's bookkeeping, as stored in the `boots` table."""

    max_seq: int = -1
    received: int = 0
    dropped: int = 0  # the highest `dropped` the node reported in this boot
    jumps: int = 0
    first_ts: int = 0
    last_ts: int = 0


@dataclass
class LossUpdate:
    """What one batch changes: boot rows to upsert, holes to open and holes to replace."""

    boots: dict[tuple[str, str], BootState] = field(default_factory=dict)
    opened: list[tuple[str, str, int, int]] = field(default_factory=list)  # device, boot, lo, hi
    filled: list[tuple[str, str, int, int, list[tuple[int, int]]]] = field(default_factory=list)
    # device, boot, old lo, old hi, the pieces that stay open
    quiet: set[tuple[str, str]] = field(default_factory=set)  # known boots that only took their next
    # results, their drop count unchanged: a store may write these rows later (they can be rebuilt)


_seq_of = operator.itemgetter(2)
_key_of = operator.itemgetter(0, 1)


def account(results: Sequence[Sequence], boots: dict[tuple[str, str], BootState],
            holes: dict[tuple[str, str], list[tuple[int, int]]],
            marks: list[tuple[str, str, int, int]] = (),
            load_holes: Callable[[tuple[str, str]], list[tuple[int, int]]] | None = None, *,
            dropped_at: int = 4, keys: Sequence[tuple[str, str]] | None = None) -> LossUpdate:
    """Fold new results (device, boot, seq, ts, dropped), and the last sequence numbers nodes said
    they reached (`marks`: device, boot, seq, ts), into the boot states and holes known so far.
    A result may be any sequence with device, boot, seq, ts first and `dropped` at `dropped_at` (a
    ResultRecord as it is), and `keys` its (device, boot) pairs if the caller has them already: at
    ingest rate every tuple built per result shows.

    `boots` and `holes` hold the current state of every (device, boot) in the batch (missing keys:
    a new boot); both are updated in place and the changes returned for the store to write.
    `load_holes(key)` gives a boot's stored holes the first time one of them may change (absent from
    `holes`); without it such a boot has none yet.

    One pass in arrival order takes the usual result, the next seq of a known boot, with a few
    attribute updates (this is the per-result cost of accounting at ingest); any other result waits
    for the general path, per boot in seq order, after the pass: the outcome is the same as folding
    each boot's results in seq order (tests/fleet/test_loss_fastpath.py)."""
    upd = LossUpdate()
    changed = upd.boots
    loud: set[tuple[str, str]] = set()  # known boots whose node reported more drops: written at once
    per: dict[tuple[str, str], list[tuple[str, str, int, int, int]]] = {}  # the general path, per boot
    get = boots.get
    for key, row in zip(keys if keys is not None else map(_key_of, results), results):
        st = get(key)
        if st is not None and row[2] == st.max_seq + 1:  # a boot's seqs are unique, so the fast path
            # can never step past one of its results waiting for the general path: the order holds
            st.max_seq = row[2]
            st.received += 1
            ts = row[3]
            if ts > st.last_ts:
                st.last_ts = ts
            if ts < st.first_ts or not st.first_ts:
                st.first_ts = ts
            if row[dropped_at] > st.dropped:
                st.dropped = row[dropped_at]
                loud.add(key)
            changed[key] = st
            continue
        group = per.get(key)
        if group is None:
            per[key] = [row]
        else:
            group.append(row)
    quiet = upd.quiet = changed.keys() - loud - per.keys()

    def open_holes(key: tuple[str, str]) -> list[tuple[int, int]]:
        got = holes.get(key)
        if got is None:
            got = holes[key] = load_holes(key) if load_holes is not None else []
        return got

    for key, rows in per.items():
        st = boots.get(key)
        if st is None:
            st = boots[key] = BootState(first_ts=min(r[3] for r in rows))
        changed[key] = st
        if len(rows) > 1:
            rows.sort(key=_seq_of)
            first, last = rows[0][2], rows[-1][2]
            if first == st.max_seq + 1 and last - first + 1 == len(rows):  # the next ones, in order
                st.received += len(rows)
                st.dropped = max(st.dropped, max(r[dropped_at] for r in rows))
                lo_ts, hi_ts = min(r[3] for r in rows), max(r[3] for r in rows)
                st.first_ts = min(st.first_ts, lo_ts) if st.first_ts else lo_ts
                st.last_ts = max(st.last_ts, hi_ts)
                st.max_seq = last
                continue
        elif rows[0][2] == st.max_seq + 1:  # a new boot's first result, in order
            row = rows[0]
            seq, ts, dropped = row[2], row[3], row[dropped_at]
            st.received += 1
            st.dropped = max(st.dropped, dropped)
            st.first_ts = min(st.first_ts, ts) if st.first_ts else ts
            st.last_ts = max(st.last_ts, ts)
            st.max_seq = seq
            continue
        open_ = open_holes(key)
        for row in rows:
            seq, ts, dropped = row[2], row[3], row[dropped_at]
            st.received += 1
            st.dropped = max(st.dropped, dropped)
            st.first_ts = min(st.first_ts, ts) if st.first_ts else ts
            st.last_ts = max(st.last_ts, ts)
            if seq > st.max_seq:
                if seq > st.max_seq + 1:
                    if seq - st.max_seq - 1 > MAX_JUMP:
                        st.jumps += 1
                    else:
                        open_.append((st.max_seq + 1, seq - 1))
                        upd.opened.append((*key, st.max_seq + 1, seq - 1))
                st.max_seq = seq
                continue
            for i, (lo, hi) in enumerate(open_):  # a late result: it fills (part of) a hole
                if lo <= seq <= hi:
                    pieces = [p for p in ((lo, seq - 1), (seq + 1, hi)) if p[0] <= p[1]]
                    open_[i:i + 1] = pieces
                    upd.filled.append((*key, lo, hi, pieces))
                    break
    for device, boot, seq, ts in marks:  # "my results go up to seq": what never came is a hole too
        key = (device, boot)
        st = boots.setdefault(key, BootState(first_ts=ts, last_ts=ts))
        if seq > st.max_seq:
            quiet.discard(key)
            if seq - st.max_seq > MAX_JUMP:
                st.jumps += 1
            else:
                open_holes(key).append((st.max_seq + 1, seq))
                upd.opened.append((*key, st.max_seq + 1, seq))
            st.max_seq = seq
            upd.boots[key] = st
    return upd


def figures(boots: list[tuple[str, str, int, int, int]], holes: list[tuple[str, str, int, int, int]],
            now_ms: int, settle_ms: int = SETTLE_MS) -> dict[str, dict[str, int]]:
    """Per device: received, dropped_on_node, seq_jumps, boots, missing and pending_gaps, from the
    boot rows (device, boot, received, dropped, jumps) and the holes (device, boot, lo, hi, opened_ms).

    Per boot, the node's own drops are holes on the wire too, so they are taken out of the holes
    once: first out of the settled ones (`missing`), what is left of them out of the young ones
    (`pending_gaps`), so missing + pending_gaps + dropped_on_node never counts a result twice. Drops
    come out of the settled holes first so that a young drop cannot hide in `missing` as a loss
    nobody had (a false data-loss alarm); an older loss in the same boot is then shown low by up to
    the young drops until they settle."""
    per_boot: dict[tuple[str, str], list[int]] = {}  # settled, pending
    for d, b, lo, hi, opened in holes:
        e = per_boot.setdefault((d, b), [0, 0])
        e[0 if opened <= now_ms - settle_ms else 1] += hi - lo + 1
    out: dict[str, dict[str, int]] = {}
    seen: set[tuple[str, str]] = set()
    for d, b, received, dropped, jumps in boots:
        seen.add((d, b))
        e = out.setdefault(d, dict.fromkeys(("received", "dropped_on_node", "seq_jumps", "boots", "missing",
                                               "pending_gaps"), 0))
        settled, pending = per_boot.get((d, b), (0, 0))
        e["received"] += received
        e["dropped_on_node"] += dropped
        e["seq_jumps"] += jumps
        e["boots"] += 1
        e["missing"] += max(0, settled - dropped)
        e["pending_gaps"] += max(0, pending - max(0, dropped - settled))
    for (d, b), (settled, pending) in per_boot.items():  # holes of a boot row not read (none dropped)
        if (d, b) not in seen:
            e = out.setdefault(d, dict.fromkeys(("received", "dropped_on_node", "seq_jumps", "boots", "missing",
                                                   "pending_gaps"), 0))
            e["missing"] += settled
            e["pending_gaps"] += pending
    return out


__all__ = ["BootState", "LossUpdate", "MAX_JUMP", "SETTLE_MS", "account", "figures"]
