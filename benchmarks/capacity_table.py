"""docs/capacity.md's tables, computed from measured figures only: what 10,000, 100,000 and 1,000,000 nodes
need at one result a second and at one summary every 5 minutes (cores of the broker, of ingest and of the
PostgreSQL server; disk per day and kept under the retention defaults), and where one instance of each part
stops. Nothing is measured here: every input is read from a JSON in benchmarks/results/ and written out with
the file it came from (benchmarks/results/capacity.json), so the document can name it.

    .venv/bin/python benchmarks/capacity_table.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _report import write_report  # noqa: E402

from edgefleet.service.rollups import KEEP_DAYS, MINUTE_MS  # noqa: E402
from edgefleet.service.store.sqlite import DEFAULT_RETENTION_DAYS  # noqa: E402

RES = ROOT / "benchmarks" / "results"
NODES = (10_000, 100_000, 1_000_000)
SUMMARY_EVERY_S = 300
PER_MSG = 10  # results per message at 1 result/s: a node sends every 10 s (what the throughput figures use)


def load(name: str) -> dict:
    return json.loads((RES / name).read_text())


def inputs() -> dict:
    """Each per-unit cost with the file it comes from."""
    sim = load("sim_fleet.json")
    tls = load("tls_overhead.json")["summary"]
    # the newer of a full run (store writes and --ingest) and a --skip-store run, each with one ingest process
    got = []
    for f in ("store_postgres.json", "store_postgres_ingest.json"):
        e = load(f).get("ingest_end_to_end", {}) if (RES / f).exists() else {}
        if "cores_used" in e.get("postgresql/1", {}):
            got.append((load(f)["machine"]["date"], f, e))
    _, e2e_file, e2e = max(got)
    stores = load("store_postgres.json")["median"]
    one_msg, ten_msg = load("ingest_throughput_1per_msg.json"), load("ingest_throughput.json")
    summ = load("summary_ingest.json")
    roll = {(r["shape"], r["store"]): r for r in load("rollup_ingest.json")["results"]
            if r["code"] == "now" and r["rollups"]}
    cap = load("capacity_store.json")
    pg1, sq1 = e2e["postgresql/1"], e2e["sqlite/1"]
    ten_1per = one_msg["results_per_s"]
    return {
        "broker_us_per_msg_plain": (1e6 * sim["mosquitto_cpu_per_s"] / sim["published_per_s"], "sim_fleet.json"),
        "broker_us_per_msg_mtls": (1e6 * tls["mtls"]["mosquitto_cpu_per_s"] / tls["mtls"]["published_per_s"],
                                   "tls_overhead.json"),
        "mtls_connect_s_per_1000_nodes": (tls["mtls"]["connect_s"], "tls_overhead.json"),
        "ingest_us_per_result_pg": (1e6 * pg1["cores_used"]["ingest"] / pg1["results_per_s"],
                                    e2e_file),
        "ingest_us_per_result_sqlite": (1e6 * sq1["cores_used"]["ingest"] / sq1["results_per_s"],
                                        e2e_file),
        "pg_server_us_per_result": (1e6 * pg1["cores_used"]["postgresql"] / pg1["results_per_s"],
                                    e2e_file),
        "ingest_results_per_s_pg_1proc": (pg1["results_per_s"], e2e_file),
        "ingest_results_per_s_sqlite_1proc": (sq1["results_per_s"], e2e_file),
        "sqlite_writer_results_per_s": (stores["sqlite/1"]["results_per_s"], "store_postgres.json"),
        "pg_writer_results_per_s_2proc": (stores["postgresql/2"]["results_per_s"], "store_postgres.json"),
        "one_per_msg_cost_factor": (ten_msg_rate(ten_msg, one_msg) / ten_1per,
                                    "ingest_throughput_1per_msg.json, ingest_scaling.json"),
        "sqlite_summaries_per_s": (summ["summaries_per_s"], "summary_ingest.json"),
        "summary_wire_bytes": (summ["wire_per_node_hour"]["summaries"]["bytes"] / 12, "summary_ingest.json"),
        "result_wire_bytes_10": (summ["wire_per_node_hour"]["results_10_per_message"]["bytes"] / 3600,
                                 "summary_ingest.json"),
        "pg_summary_us": (roll[("worst", "postgresql")]["client_us"] + roll[("worst", "postgresql")]["server_us"],
                          "rollup_ingest.json"),
        "pg_summary_server_us": (roll[("worst", "postgresql")]["server_us"], "rollup_ingest.json"),
        "bytes_raw": (cap["postgresql"]["bytes_per_row"]["results"], "capacity_store.json"),
        "bytes_1m": (cap["postgresql"]["bytes_per_row"]["rollup_1m"], "capacity_store.json"),
        "bytes_1h": (cap["postgresql"]["long_range"]["rollup_1h_bytes_per_row"], "capacity_store.json"),
        "bytes_summary": (cap["postgresql"]["bytes_per_row"]["summaries"], "capacity_store.json"),
        "bytes_raw_sqlite": (cap["sqlite"]["bytes_per_row"]["results"], "capacity_store.json"),
    }


def ten_msg_rate(ten: dict, one: dict) -> float:
    """The 10-results-a-message rate of the host the 1-result run was made on, so the factor compares like with
    like: ingest_throughput.json when it is that host's, else ingest_scaling.json's one SQLite process (10 a
    message, QoS 1: the same host and day as ingest_throughput_1per_msg.json)."""
    if one["machine"].get("cpu") == ten["machine"].get("cpu"):
        return ten["results_per_s"]
    sc = load("ingest_scaling.json")
    assert sc["machine"].get("cpu") == one["machine"].get("cpu") and sc["per_msg"] == 10
    return next(r["results_per_s"] for r in sc["rows"] if r["store"] == "sqlite" and r["processes"] == 1)


def need(x: dict, n: int, mode: str) -> dict:
    v = {k: val for k, (val, _) in x.items()}
    raw_days, m_days, h_days = DEFAULT_RETENTION_DAYS, max(KEEP_DAYS[MINUTE_MS], DEFAULT_RETENTION_DAYS), 3650
    if mode == "results":
        rate, msgs = n * 1.0, n / PER_MSG
        ingest = rate * v["ingest_us_per_result_pg"] / 1e6
        store = rate * v["pg_server_us_per_result"] / 1e6
        raw_day = n * 86_400 * v["bytes_raw"]
        minute_rows = n * 1440
    else:
        rate = msgs = n / SUMMARY_EVERY_S
        # a summary is one message of one record touching one minute and one hour row: the rollups' worst shape
        ingest = rate * (v["ingest_us_per_result_pg"] * v["one_per_msg_cost_factor"]) / 1e6
        store = rate * v["pg_summary_server_us"] / 1e6
        raw_day = n * (86_400 / SUMMARY_EVERY_S) * v["bytes_summary"]
        minute_rows = n * (86_400 / SUMMARY_EVERY_S)
    m_day, h_day = minute_rows * v["bytes_1m"], n * 24 * v["bytes_1h"]
    return {"nodes": n, "mode": mode, "records_per_s": rate, "messages_per_s": msgs,
            "broker_cores_mtls": msgs * v["broker_us_per_msg_mtls"] / 1e6,
            "broker_cores_mtls_1_per_msg": (n * v["broker_us_per_msg_mtls"] / 1e6) if mode == "results" else None,
            "ingest_cores": ingest, "pg_cores": store,
            "disk_gb_per_day": (raw_day + m_day + h_day) / 1e9,
            "disk_gb_raw_day": raw_day / 1e9, "disk_gb_rollups_day": (m_day + h_day) / 1e9,
            "disk_tb_kept_1y": (raw_day * raw_days + m_day * m_days + h_day * 365) / 1e12,
            "disk_tb_kept_10y": (raw_day * raw_days + m_day * m_days + h_day * h_days) / 1e12}


def _gb(x: float) -> str:
    return f"{x * 1000:,.0f} MB" if x < 1 else f"{x:,.1f} GB" if x < 1000 else f"{x / 1000:,.1f} TB"


def _tb(x: float) -> str:
    return f"{x * 1000:,.0f} GB" if x < 1 else f"{x:,.1f} TB"


def main() -> int:
    x = inputs()
    rows = [need(x, n, mode) for mode in ("results", "summaries") for n in NODES]
    print("inputs:")
    for k, (val, src) in x.items():
        print(f"  {k:36} {val:12,.2f}   {src}")
    print(f"\n{'nodes':>10} {'mode':10} {'msg/s':>9} {'broker':>7} {'ingest':>7} {'pg':>6} {'GB/day':>9} {'TB 1y':>7}")
    for r in rows:
        print(f"{r['nodes']:>10,} {r['mode']:10} {r['messages_per_s']:>9,.0f} {r['broker_cores_mtls']:>7.2f}"
              f" {r['ingest_cores']:>7.2f} {r['pg_cores']:>6.2f} {r['disk_gb_per_day']:>9,.1f}"
              f" {r['disk_tb_kept_1y']:>7.2f}")
    print("\nmarkdown (docs/capacity.md):\n")
    print("| nodes | records/s | messages/s | broker cores (mTLS) | ingest cores | PostgreSQL cores |"
          " disk per day: raw + rollups | kept: 1 year | kept: 10 years |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        one = r["broker_cores_mtls_1_per_msg"]
        print(f"| {r['nodes']:,} ({r['mode']}) | {r['records_per_s']:,.0f} | {r['messages_per_s']:,.0f} |"
              f" {r['broker_cores_mtls']:.2f}{f' ({one:.1f} at 1 a message)' if one else ''} | {r['ingest_cores']:.2f} |"
              f" {r['pg_cores']:.2f} | {_gb(r['disk_gb_raw_day'])} + {_gb(r['disk_gb_rollups_day'])} |"
              f" {_tb(r['disk_tb_kept_1y'])} | {_tb(r['disk_tb_kept_10y'])} |")
    write_report("capacity", {"what": "docs/capacity.md's tables, computed from the inputs (each with its JSON)",
                              "inputs": {k: {"value": round(val, 3), "from": src} for k, (val, src) in x.items()},
                              "results_per_message": PER_MSG, "summary_every_s": SUMMARY_EVERY_S,
                              "retention_days": {"raw": DEFAULT_RETENTION_DAYS,
                                                 "rollup_1m": KEEP_DAYS[MINUTE_MS], "rollup_1h": 3650},
                              "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
