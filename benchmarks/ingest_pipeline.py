"""What limits ingest end to end: the batch cycle, the broker's window, the publishers, the cores.

Runs `store_postgres.py`'s end-to-end path (2 publishers, QoS 1, 10 results a message -> Mosquitto ->
`serve --role ingest` -> SQLite or PostgreSQL) with `serve` writing one JSON line per batch
(`edgefleet/service/ingest_phases.py`), in variants that each lift one suspect: more publishers with
larger windows, a larger Receive Maximum and batch, a longer batch timer. Per run it prints where
ingest's wall time went (idle = waiting for the first message of a batch, fill = waiting for the
batch's last, decode, write + commit, alarms, ack), the batch sizes, the broker's in-flight count
when a batch was taken, the share of time the publishers were blocked on their window, and the
share each part spent runnable but waiting for a core (other work on the shared 2 cores).

    .venv/bin/python benchmarks/ingest_pipeline.py [--results 200000] [--repeats 1] [--variants base,pubs4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402
from store_postgres import ROOT, ingest_run  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))

from pg import PgServer  # noqa: E402

from edgefleet.service.ingest_phases import PHASES  # noqa: E402

VARIANTS: dict[str, dict] = {
    "serial": {"env_extra": {"EDGEFLEET_INGEST_OVERLAP": "0"}},  # one thread: decode, write, ack in turn
    "base": {"env_extra": {"EDGEFLEET_INGEST_OVERLAP": "1"}},    # the decoder thread beside the worker
    "pubs4-w400": {"pubs": 4, "window": 400, "env_extra": {"EDGEFLEET_INGEST_OVERLAP": "1"}},  # publishers never short
    "rmax8000": {"env_extra": {"EDGEFLEET_RECEIVE_MAX": "8000", "EDGEFLEET_BATCH_MAX": "4000",
                               "EDGEFLEET_INGEST_OVERLAP": "1"}},
    "batch200ms": {"env_extra": {"EDGEFLEET_BATCH_MS": "200"}},
}


def summarize(run: dict) -> dict:
    """Shares of the ingest processes' wall time per phase, batch sizes, window occupancy."""
    batches = [b for t in run.pop("trace") for b in t]
    if not batches:
        return {}
    total = sum(b[p] for b in batches for p in PHASES)
    span = 1e3 * (batches[-1]["t"] - batches[0]["t"]) or 1.0  # ms from the first batch's ack to the last's
    return {"worker_busy": round(sum(b["write"] + b["alarms"] + b["ack"] for b in batches[1:]) / span, 2),
            "decode_busy": round(sum(b["decode"] for b in batches[1:]) / span, 2),
"batches": len(batches), "mean_msgs": round(statistics.mean(b["n"] for b in batches), 1),
            "full_share": round(sum(b["full"] for b in batches) / len(batches), 2),
            "phase_share": {p: round(sum(b[p] for b in batches) / total, 3) for p in PHASES},
            "phase_ms_median": {p: round(statistics.median(b[p] for b in batches), 1) for p in PHASES},
            "in_flight_median": statistics.median(b["in_flight"] for b in batches),
            "backlog_median": statistics.median(b["backlog"] for b in batches),
            # CPU of the thread doing each phase, per result (10 a message), against the phase's wall time
            "cpu_us_per_result": {p: round(1e3 * sum(b["cpu_ms"][p] for b in batches) / (10 * sum(b["n"] for b in batches)), 1)
                                  for p in ("decode", "write", "alarms", "ack")},
            "wall_us_per_result": {p: round(1e3 * sum(b[p] for b in batches) / (10 * sum(b["n"] for b in batches)), 1)
                                   for p in ("decode", "write", "alarms", "ack")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--variants", default="serial,base,pubs4-w400,rmax8000")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--name", default="ingest_pipeline")
    a = ap.parse_args()
    runs: dict[str, list[dict]] = {}
    with PgServer(fsync=True) as server, tempfile.TemporaryDirectory() as tmp:
        pg_pid = int((server.data / "postmaster.pid").read_text().split()[0])
        for r in range(a.repeats):
            for v in a.variants.split(","):
                for backend in a.backends.split(","):
                    db = str(Path(tmp) / f"{v}-{r}.db") if backend == "sqlite" else server.create_db("pipe")
                    got = ingest_run(backend, db, a.results, Path(tmp), 1,
                                     pg_pid if backend == "postgresql" else None, trace=True, **VARIANTS[v])
                    got["pipeline"] = summarize(got)
                    runs.setdefault(f"{backend}/{v}", []).append(got)
                    p = got["pipeline"]
                    print(f"{backend:10} {v:11} {got['results_per_s']:8,.0f} results/s (load {got['load_average_1min']});"
                          f" publishers done at {got['publish_seconds']:.1f} of {got['seconds']:.1f} s, blocked on "
                          f"window {100 * got['publisher_window_wait_share']:.0f} %; cores {got['cores_used']}; "
                          f"waiting for a core {got['waiting_for_a_core']}\n    batches {p['batches']} of "
                          f"{p['mean_msgs']} msgs ({100 * p['full_share']:.0f} % full), in flight at take "
                          f"{p['in_flight_median']}, backlog {p['backlog_median']}; busy: worker {p['worker_busy']}, "
                          f"decoding {p['decode_busy']}; a batch's time: "
                          + ", ".join(f"{k} {100 * x:.0f} %" for k, x in p["phase_share"].items())
                          + "; median ms: " + ", ".join(f"{k} {x}" for k, x in p["phase_ms_median"].items())
                          + "\n    us a result, CPU of the phase's thread / wall: " + ", ".join(
                              f"{k} {p['cpu_us_per_result'][k]} / {p['wall_us_per_result'][k]}" for k in p["cpu_us_per_result"]),
                          flush=True)
    med = {k: round(statistics.median(x["results_per_s"] for x in v)) for k, v in runs.items()}
    write_report(a.name, {"what": __doc__.split("\n")[0], "variants": VARIANTS, "median_results_per_s": med,
                          "runs": runs, "note": "2 cores shared with other work; load average per run"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
