"""What summary mode saves: bytes and messages per node-hour on the wire, and store writes of summaries
(`summary_sql.write_summaries`: dedupe key + both rollups) beside results (`write_batch`) into fresh SQLite
stores, interleaved, median of `--runs`. A summary every `--every` s of windows at 1 s, `--devices` devices.

    .venv/bin/python benchmarks/summary_ingest.py [--devices 2000] [--summaries 20000] [--every 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import write_report  # noqa: E402
from edgefleet import protocol  # noqa: E402
from edgefleet.protocol import ResultRecord  # noqa: E402
from edgefleet.service.store import IngestBatch, SQLiteStore, summary_sql  # noqa: E402

T0 = int(time.time() * 1000) // 3_600_000 * 3_600_000 - 6 * 3_600_000


def wire(every_s: int) -> dict:
    """One node-hour at one window a second: results (1 and 10 a message) against summaries."""
    rng = random.Random(2)
    scores = [0.01 + 0.04 * rng.random() for _ in range(3600)]
    out = {}
    for per in (1, 10):
        msgs = [protocol.encode("result", protocol.result_message("0000000a", 3, 0.05, [
            {"seq": s, "ts": T0 + s * 1000, "score": scores[s], "anom": False, "inf_us": 412}
            for s in range(k, k + per)])) for k in range(0, 3600, per)]
        out[f"results_{per}_per_message"] = {"messages": len(msgs), "bytes": sum(map(len, msgs))}
    sums = [protocol.encode("summary", protocol.summary_of_scores("0000000a", k, T0 + (k + 1) * every_s * 1000,
                                                                   every_s * 1000, 3, 0.05,
                                                                   scores[k * every_s:(k + 1) * every_s], 0))
            for k in range(3600 // every_s)]
    out["summaries"] = {"messages": len(sums), "bytes": sum(map(len, sums)), "every_s": every_s}
    return out


def summary_records(devices: int, total: int, every_s: int) -> list:
    rng = random.Random(1)
    out = []
    for k in range(total):
        i, t = k % devices, k // devices
        scores = [0.05 * (1 + rng.random()) for _ in range(20)]
        body = protocol.summary_of_scores("00000001", t, T0 + (t + 1) * every_s * 1000 + i, every_s * 1000, 2, 0.3,
                                          scores, 0)
        body["n"] = every_s  # the period's windows (the stand-in scores above keep the records cheap to build)
        out.append(protocol.summary_record(f"m-{i:04d}", body))
    return out


def result_batches(devices: int, total: int, size: int) -> list[IngestBatch]:
    rng = random.Random(1)
    recs = [ResultRecord(f"m-{k % devices:04d}", "00000001", k // devices, T0 + (k // devices) * 1000 + k % devices,
                         2, 0.05 * (1 + rng.random()), 0.3, False, 400) for k in range(total)]
    return [IngestBatch(T0 + 6 * 3_600_000, size, recs[k:k + size]) for k in range(0, total, size)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--summaries", type=int, default=20_000)
    ap.add_argument("--every", type=int, default=300)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    sums = summary_records(a.devices, a.summaries, a.every)
    results = result_batches(a.devices, a.summaries, a.batch)
    s_rates, r_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(a.runs):
            st = SQLiteStore(Path(tmp) / f"s{run}.db", synchronous="FULL")
            t = time.perf_counter()
            for k in range(0, len(sums), a.batch):
                summary_sql.write_summaries(st, sums[k:k + a.batch], T0 + 6 * 3_600_000)
            s_rates.append(len(sums) / (time.perf_counter() - t))
            assert sum(r[3] for d in ("m-0000",) for r in st.rollup_rows(d, 3_600_000, 0, 2**62)) == \
                a.every * (a.summaries // a.devices)
            st.close()
            st = SQLiteStore(Path(tmp) / f"r{run}.db", synchronous="FULL")
            t = time.perf_counter()
            for b in results:
                st.write_batch(b)
            r_rates.append(a.summaries / (time.perf_counter() - t))
            st.close()
            print(f"run {run}: {s_rates[-1]:,.0f} summaries/s, {r_rates[-1]:,.0f} results/s", flush=True)
    s_med, r_med = statistics.median(s_rates), statistics.median(r_rates)
    w = wire(a.every)
    report = {"devices": a.devices, "summaries": a.summaries, "every_s": a.every, "batch": a.batch, "runs": a.runs,
              "summaries_per_s": s_med, "results_per_s": r_med, "windows_per_s_in_summaries": s_med * a.every,
              "summaries_per_s_runs": s_rates, "results_per_s_runs": r_rates, "wire_per_node_hour": w}
    print(f"SQLite (FULL sync), batches of {a.batch} from {a.devices} devices, median of {a.runs}: "
          f"{s_med:,.0f} summaries/s ({s_med * a.every:,.0f} windows/s summarized) vs {r_med:,.0f} results/s")
    print(f"per node-hour at 1 window/s: results {w['results_1_per_message']}, 10 a message "
          f"{w['results_10_per_message']}, summaries every {a.every} s {w['summaries']}")
    write_report("summary_ingest", report)


if __name__ == "__main__":
    main()
