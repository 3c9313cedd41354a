"""What loss accounting costs the store: results/s written with and without it, side by side.

Batches of 1,000 results from 2,000 devices (one boot each, consecutive sequence numbers, 1 % of
them lost on the way so holes open), written to a fresh SQLite store each time, synchronous=NORMAL,
alternating the two modes over several rounds; medians reported.

    .venv/bin/python benchmarks/loss_accounting.py
"""

from __future__ import annotations

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


def run(account: bool, data: list[list[ResultRecord]]) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = SQLiteStore(Path(d) / "s.db", synchronous="NORMAL", account_loss=account)
        n = sum(len(b) for b in data)
        t0 = time.perf_counter()
        for i, b in enumerate(data):
            store.write_batch(IngestBatch(ingest_ts=1_800_000_000_000 + i, results=b))
        dt = time.perf_counter() - t0
        store.close()
    return n / dt


def main() -> int:
    data = batches(1)
    rounds = {True: [], False: []}
    for _ in range(5):
        for mode in (False, True):
            rounds[mode].append(run(mode, data))
    off, on = statistics.median(rounds[False]), statistics.median(rounds[True])
    print(f"store writes, {DEVICES} devices, batches of {BATCH}: without accounting {off:,.0f} results/s, "
          f"with {on:,.0f} results/s ({(off - on) / off:+.1%} slower)")
    write_report("loss_accounting", {"devices": DEVICES, "batch": BATCH, "batches": BATCHES,
                                     "results_per_s": {"without": off, "with": on}, "slowdown": (off - on) / off,
                                     "rounds": {"without": rounds[False], "with": rounds[True]}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
