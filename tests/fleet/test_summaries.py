"""Node summaries (issue 18 item 4): a node in summary mode reports count, anomalies and min/mean/p95/max per
period. The store keeps each once per (device, boot, seq) and folds it into the 1-minute and 1-hour rollups
(SQLite and PostgreSQL alike); a hostile summary is refused with a reason; the alarm tracker sees its p95.
End to end: Mosquitto + `edgefleet serve` + `edgefleet sim --summary-every`, with a kill -9 of serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet import protocol
from edgefleet.protocol import SummaryRecord
from edgefleet.service import rollups
from edgefleet.service.alarms import AlarmTracker
from edgefleet.service.rollups import HOUR_MS, MINUTE_MS
from edgefleet.service.store import IngestBatch, SQLiteStore, Store, summary_sql

from .support import Publisher, wait_until

REPO = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000  # on an hour


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "store.db")
    else:
        from edgefleet.service.store.postgres import PostgresStore

        s = PostgresStore(request.getfixturevalue("pg_server").create_db())
    yield s
    s.close()


def summary(device: str, seq: int, ts: int, scores: list[float], *, boot: str = "0000000a", thr: float = 0.05,
            period: int = 60_000, vrms: list[float] | None = None) -> SummaryRecord:
    body = protocol.summary_of_scores(boot, seq, ts, period, 3, thr, scores, sum(s > thr for s in scores),
                                      vrms=vrms)
    return protocol.summary_record(device, protocol.decode("summary", protocol.encode("summary", body)))


def test_summaries_fill_the_rollups_once_beside_results(store: Store) -> None:
    """Two summaries in one minute and a result batch in the same minute: the rollup counts all windows once; a
    second write of the same summaries (a redelivery) is all duplicates and changes nothing."""
    a = summary("d1", 0, T0 + 20_000, [0.01 * (1 + i % 5) for i in range(40)], vrms=[1.0, 2.0])
    b = summary("d1", 1, T0 + 50_000, [0.02, 0.03, 0.09, 0.2] * 5, vrms=[3.0])
    now = T0 + 60_000
    out = summary_sql.write_summaries(store, [a, b], now)
    assert (out.stored, out.duplicates) == (2, 0)
    res = [protocol.ResultRecord("d1", "0000000b", i, T0 + 55_000 + i, 3, 0.5, 0.05, True, 400) for i in range(3)]
    store.write_batch(IngestBatch(now, 1, res))
    again = summary_sql.write_summaries(store, [a, b], now)
    assert (again.stored, again.duplicates) == (0, 2)
    for width in (MINUTE_MS, HOUR_MS):
        (row,) = store.rollup_rows("d1", width, 0, 2**62)
        assert row[3:6] == (63, a.anom + b.anom + 3, 63)  # n, anom, judged
        assert row[6] == pytest.approx(0.01) and row[8] == pytest.approx(0.5)  # s_min, s_max
        assert row[7] == pytest.approx(a.mean * 40 + b.mean * 20 + 1.5, rel=1e-6)
        assert row[14] == 60 and row[16] == pytest.approx(3.0)  # v_n, v_max: the summaries' windows
        assert row[15] == pytest.approx(1.5 * 40 + 3.0 * 20)
    (chart,) = rollups.chart_rows(store.rollup_rows("d1", MINUTE_MS, 0, 2**62), T0, MINUTE_MS)
    assert chart[2] == 63 and chart[-1] == pytest.approx(0.2, rel=rollups.P95_REL_ERROR)  # p95 of 63 windows
    assert [s.seq for s in summary_sql.summaries(store, "d1")] == [0, 1]
    dev = store.device("d1")  # the registry: the newest window's time, every window counted, once
    assert (dev.last_seen, dev.results, dev.last_score) == (T0 + 55_002, 63, 0.5)


def test_a_summary_node_is_stale_after_its_own_period_not_after_two_minutes(store: Store) -> None:
    """A node summarizing every 5 minutes is online between its summaries; stale once 2.5 periods pass."""
    from edgefleet.service.store import DeviceUpdate

    store.write_batch(IngestBatch(T0, 1, [], devices=[DeviceUpdate("slow", T0, status="online"),
                                                      DeviceUpdate("fast", T0, status="online")]))
    summary_sql.write_summaries(store, [summary("slow", 0, T0 + 300_000, [0.01] * 30, period=300_000)], T0 + 300_000)
    store.write_batch(IngestBatch(T0 + 300_000, 1, [protocol.ResultRecord("fast", "0000000b", 0, T0 + 300_000, 3,
                                                                          0.01, 0.05, False, 400)]))
    status = lambda now: {d.device: d.status for d in store.devices(now_ms=now)}  # noqa: E731
    assert status(T0 + 300_000 + 200_000) == {"slow": "online", "fast": "stale"}  # 200 s after each one's last
    assert status(T0 + 300_000 + 800_000)["slow"] == "stale"  # 2.5 periods of silence


def test_one_summary_keeps_its_own_p95_min_and_max() -> None:
    for n in (1, 2, 19, 20, 300):
        scores = [0.001 * (i + 1) for i in range(n)]
        s = summary("d", 0, T0, scores, thr=1.0)
        a = rollups.Agg(0)
        rollups.add_summary(a, s)
        assert a.n == n == sum(a.hist.values())
        assert rollups.quantile(a.hist, 0.95, a.s_min, a.s_max) == pytest.approx(s.p95, rel=rollups.P95_REL_ERROR)
        assert (a.s_min, a.s_max) == (s.min, s.max)


def test_old_summaries_are_refused_and_lost_ones_counted(store: Store) -> None:
    now = T0 + 40 * 86_400_000
    old = summary("d2", 0, T0, [0.01])
    kept, refused = summary_sql.split_too_old([old, summary("d2", 1, now - 1000, [0.01])], now, 30.0)
    assert [s.seq for s in kept] == [1] and refused[0].code == "too_old" and "d2/0000000a/0" in refused[0].reason
    # seqs 0, 1, 4 of one boot (2 and 3 lost), 0 of another: 2 missing
    got = [summary("d3", s, now - 10_000 + s, [0.01]) for s in (0, 1, 4)] + [summary("d3", 0, now, [0.01], boot="0000000c")]
    summary_sql.write_summaries(store, got, now)
    loss = summary_sql.summary_loss(store, "d3")
    assert (loss["received"], loss["missing"], loss["windows"]) == (4, 2, 4)
    assert summary_sql.prune(store, now + 31 * 86_400_000, 30.0) == 4
    assert summary_sql.summaries(store, "d3") == [] and store.rollup_rows("d3", HOUR_MS, 0, 2**62)  # rollups stay


def test_the_tracker_raises_on_the_p95_not_on_one_spike() -> None:
    """A period whose max spikes 10x over the threshold once is not anomalous (its p95 is low); three periods of
    five with most windows above it raise, with the p95 as the score."""
    tr = AlarmTracker()
    quiet = [0.01] * 99 + [0.5]  # one spike among 100 windows
    for i in range(5):
        assert tr.observe(summary_sql.as_result(summary("d4", i, T0 + i * 60_000, quiet))) is None
    bad = [0.2] * 100
    changes = [tr.observe(summary_sql.as_result(summary("d4", 5 + i, T0 + (5 + i) * 60_000, bad))) for i in range(3)]
    assert changes[:2] == [None, None] and changes[2].op == "raise" and changes[2].score == pytest.approx(0.2)


HOSTILE = [  # what a schema allows but the summary's own extremes contradict (or a schema refuses)
    ({"mean": 0.9}, "schema", "mean:"), ({"p95": 0.9}, "schema", "p95:"), ({"min": 0.5}, "schema", "min:"),
    ({"anom": 301}, "schema", "anom:"), ({"n": 30001}, "schema", "n:"), ({"max": 1e9}, "schema", "max:"),
    ({"period": 7_200_000}, "schema", "period:"), ({"vrms": 5.0, "vrms_max": 2.0}, "schema", "vrms:"),
    ({"n": 1, "anom": 0}, "schema", "n:"),
]


def test_ingest_stores_summaries_once_and_refuses_hostile_ones(ingest, mosquitto, unique) -> None:
    """Through a real Mosquitto and IngestService: summaries land in the table and the rollups, a second copy
    of each (what a redelivery looks like) is a counted duplicate, and every hostile one is a reject with
    its reason; nothing of them reaches the rollups."""
    svc = ingest()
    dev = unique("sum")
    pub = Publisher(mosquitto.host, mosquitto.port, unique("pub"))
    now = int(time.time() * 1000)
    good = [protocol.encode("summary", protocol.summary_of_scores("0000000a", i, now - 5000 + i, 300_000, 3, 0.05,
                                                                  [0.01 + 0.001 * k for k in range(300)], 0))
            for i in range(4)]
    for p in good + good[:2]:
        pub.publish(protocol.topic(dev, "summary"), p)
    base = json.loads(good[0])
    for bad, _, _ in HOSTILE:
        pub.publish(protocol.topic(dev, "summary"), json.dumps({**base, **bad}).encode())
    pub.wait_all()
    wait_until(lambda: svc.counters.received >= 6 + len(HOSTILE), 20, "every message ingested")
    assert (svc.counters.summaries, svc.counters.duplicates, svc.counters.rejected) == (4, 2, len(HOSTILE))
    rejects = sorted(svc.store.rejects(), key=lambda r: r.id)
    assert [(r.code, r.reason.split(":")[0] + ":") for r in rejects] == [(c, w) for _, c, w in HOSTILE]
    (row,) = svc.store.rollup_rows(dev, HOUR_MS, 0, 2**62)
    assert row[3] == 4 * 300 and row[8] == pytest.approx(0.309)
    assert svc.store.score_history(dev) == []  # summaries are not raw results
    pub.close()


@pytest.mark.slow
def test_a_sim_fleet_in_summary_mode_through_serve_with_a_kill9(mosquitto, tmp_path, unique) -> None:
    """`edgefleet sim --summary-every 2` (6 nodes, a window every 0.25 s) into `edgefleet serve`, killed with
    -9 and restarted mid-run: every summary stored once, seqs without holes, each rollup's window count is
    the stored summaries' (a redelivered summary counted twice would show), no raw results."""
    from .conftest import purge_session
    from .test_resilience import ServeProcess

    db = tmp_path / "sum.db"
    cid, group, prefix = unique("ef-ingest-sum"), unique("gs"), unique("sm") + "-"
    serve = ServeProcess(mosquitto.url, db, cid, group)
    sim = subprocess.Popen([sys.executable, "-m", "edgefleet", "sim", "--broker", mosquitto.url, "--nodes", "6",
                            "--faulty", "1", "--duration", "14", "--period", "0.25", "--summary-every", "2",
                            "--no-commission", "--prefix", prefix, "--report", str(tmp_path / "r.json")],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=(tmp_path / "sim.log").open("wb"))
    store = SQLiteStore(db)
    count = lambda: store._q("SELECT count(*) FROM summaries")[0][0] if store._q(  # noqa: E731
        "SELECT 1 FROM sqlite_master WHERE name = 'summaries'") else 0
    wait_until(lambda: count() >= 6, 40, "the first summaries stored")
    serve.kill9()
    time.sleep(2.5)  # the nodes go on: the broker queues their summaries for the session
    serve = ServeProcess(mosquitto.url, db, cid, group)
    assert sim.wait(90) == 0, (tmp_path / "sim.log").read_text()[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    wait_until(lambda: count() >= report["published"], 30, "every published summary stored")
    time.sleep(0.5)
    rows = store._q("SELECT device, boot, count(*), count(DISTINCT seq), min(seq), max(seq), sum(n) FROM summaries"
                    " GROUP BY device, boot")
    assert len({r[0] for r in rows}) == 6 and count() == report["published"]
    for dev, _boot, n, distinct, lo, hi, windows in rows:
        assert n == distinct == hi - lo + 1 and lo == 0, (dev, n, lo, hi)
        hour = sum(r[3] for r in store.rollup_rows(dev, HOUR_MS, 0, 2**62))
        minute = sum(r[3] for r in store.rollup_rows(dev, MINUTE_MS, 0, 2**62))
        assert hour == minute == windows and 7 <= windows / n <= 8  # 8 windows a period (the first may be short)
    assert store.count_results() == 0
    assert summary_sql.summary_loss(store)["missing"] == 0
    assert serve.terminate() == 0
    dups = sum(int(m.group(1)) for line in serve.lines if (m := re.search(r"(\d+) duplicates", line)))
    print(f"\n{count()} summaries from 6 nodes stored once; the restarted serve dropped {dups} redelivered copies")
    # the nodes' retained statuses would reach every later ingest on the session broker: cleared
    clear = Publisher(mosquitto.host, mosquitto.port, unique("clear"))
    for i in range(6):
        clear.publish(protocol.topic(f"{prefix}{i:04d}", "status"), b"", retain=True)
    clear.wait_all()
    clear.close()
    store.close()
    purge_session((mosquitto.host, mosquitto.port), cid)


@pytest.mark.parametrize("value", ["0.5", "nan"])
def test_sim_refuses_a_bad_summary_period_in_one_line(value: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", "mqtt://127.0.0.1:1",
                           "--summary-every", value], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--summary-every must be" in proc.stderr
