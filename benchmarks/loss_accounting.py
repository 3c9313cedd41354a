"""What loss accounting costs the store: results/s written with and without it, side by side.

Batches of 1,000 results from 2,000 devices (one boot each, consecutive sequence numbers, 1 % of
them lost on the way so holes open), written to two fresh SQLite stores per round, synchronous=NORMAL,
one with accounting and one without, batch by batch in turns (which goes first alternates), so a
machine whose load changes under the run slows both alike; medians over the rounds reported, of
the two rates and of the slowdown within each round. Beside the two rates (which a
busy shared machine makes noisy), the time spent inside the store's accounting step itself
(`SQLiteStore._account`, timed around each call in the runs with accounting) as a share of the
whole write time of the same run: the cost of accounting measured without a second run to compare.

    .venv/bin/python benchmarks/loss_accounting.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402

from edgefleet.protocol import ResultRecord  # noqa: E402
from edgefleet.service.store import IngestBatch, SQLiteStore  # noqa: E402

DEVICES, BATCH, BATCHES = 2000, 1000, 100
ROUNDS = int(os.environ.get("EF_BENCH_ROUNDS", "7"))


def batches(seed: int) -> list[list[ResultRecord]]:
    rng = np.random.default_rng(seed)
    seq = np.zeros(DEVICES, int)
    out, t = [], 1_800_000_000_000
    for _ in range(BATCHES):
        devs = rng.integers(0, DEVICES, BATCH)
        b = []
        for d in devs:
            s = int(seq[d])
            seq[d] += 1
            if rng.random() < 0.01:
                continue  # lost on the way: a hole
            t += 1
            b.append(ResultRecord(f"dev-{d:05d}", "b0000001", s, t, 1, 0.5, 1.0, False, 5))
        out.append(b)
    return out


def run(data: list[list[ResultRecord]], first: bool) -> dict[bool, tuple[float, float]]:
    """Two fresh stores, one with accounting and one without, written batch by batch in turns (the
    one to go first alternating), each write timed on its own: a load that changes under the run
    weighs on both alike. Per mode: results/s, and the share of its write time spent in the
    accounting step."""
    with tempfile.TemporaryDirectory() as d:
        stores, spent, took = {}, {True: 0.0, False: 0.0}, {True: 0.0, False: 0.0}
        for mode in (True, False):
            store = stores[mode] = SQLiteStore(Path(d) / f"{mode}.db", synchronous="NORMAL", account_loss=mode)

            def timed(*a, _inner=store._account, _mode=mode, **kw):
                t = time.perf_counter()
                try:
                    return _inner(*a, **kw)
                finally:
                    spent[_mode] += time.perf_counter() - t
            store._account = timed
        n = sum(len(b) for b in data)
        for i, b in enumerate(data):
            for mode in ((first, not first) if i % 2 == 0 else (not first, first)):
                t = time.perf_counter()
                stores[mode].write_batch(IngestBatch(ingest_ts=1_800_000_000_000 + i, results=b))
                took[mode] += time.perf_counter() - t
        for mode, store in stores.items():
            t = time.perf_counter()
            store.flush_loss()  # what accounting left in memory is written too, and timed
            dt = time.perf_counter() - t
            spent[mode] += dt
            took[mode] += dt
            store.close()
    return {mode: (n / took[mode], spent[mode] / took[mode]) for mode in (True, False)}


def main() -> int:
    data = batches(1)
    rounds: dict[bool, list[float]] = {True: [], False: []}
    shares: list[float] = []
    load = [os.getloadavg()]
    for i in range(ROUNDS):
        got = run(data, first=i % 2 == 0)
        for mode, (rate, share) in got.items():
            rounds[mode].append(rate)
            if mode:
                shares.append(share)
        load.append(os.getloadavg())
    off, on = statistics.median(rounds[False]), statistics.median(rounds[True])
    paired = statistics.median((a - b) / a for a, b in zip(rounds[False], rounds[True]))  # within each round
    share = statistics.median(shares)
    print(f"store writes, {DEVICES} devices, batches of {BATCH}: without accounting {off:,.0f} results/s, "
          f"with {on:,.0f} results/s ({(off - on) / off:+.1%} slower; per round, median {paired:+.1%}); inside "
          f"the accounting step {share:.1%} of the write time ({share / on * 1e6:.2f} us per result), median of "
          f"{ROUNDS} rounds; load average (1 min) {min(x[0] for x in load):.1f}-{max(x[0] for x in load):.1f}")
    write_report("loss_accounting", {"devices": DEVICES, "batch": BATCH, "batches": BATCHES, "rounds_n": ROUNDS,
                                     "results_per_s": {"without": off, "with": on}, "slowdown": (off - on) / off,
                                     "slowdown_paired_median": paired,
                                     "accounting_share_of_write_time": share,
                                     "accounting_us_per_result": share / on * 1e6,
                                     "load_avg": os.getloadavg(), "load_avg_per_round": load,
                                     "rounds": {"without": rounds[False], "with": rounds[True],
                                                "accounting_share": shares}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
