"""`edgefleet data pull`: results of a device, a site or the fleet over a time range as CSV and Parquet, debug
captures as .npz recordings the training reads, one-line errors; on SQLite and a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgefleet.protocol import ResultRecord
from edgefleet.service import export
from edgefleet.service.store import DeviceUpdate, Event, IngestBatch, open_store
from edgefleet.toolchain.datasets import load_folder

REPO = Path(__file__).resolve().parents[2]
H = 3_600_000


def pull(db, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "data", "pull", "--db", str(db), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    if check and proc.returncode:
        raise AssertionError(proc.stderr)
    return proc


def populate(db) -> int:
    """Three devices on two sites, 3 hours at one result per 2 s (the middle one of them a day earlier), and
    two debug captures of pump-a with samples."""
    store = open_store(db)
    now = int(time.time() * 1000)
    t0 = now - 3 * H
    devs = [DeviceUpdate("pump-a", t0, site="north"), DeviceUpdate("pump-b", t0, site="north"),
            DeviceUpdate("fan-c", t0, site="south")]
    recs = []
    for d, shift in (("pump-a", 0), ("pump-b", -24 * H), ("fan-c", 0)):
        recs += [ResultRecord(d, "b0000001", i, t0 + shift + i * 2000, 2, 0.5 + i % 7 / 10, 2.0, i % 50 == 0, 9,
                              hi=0.3, cls=0, hi_thr=1.5, vrms=1.25, rpm=1480.0) for i in range(5400)]
    sig = np.sin(np.arange(4096) * 2 * np.pi * 24.7 / 12000.0)
    events = [Event("pump-a", now - H + k * 1000, "debug", {"v": 1, "seq": k, "fs": 12000.0, "model": 2,
                                                              "samples": [float(x) for x in sig * (k + 1)]})
              for k in range(2)]
    for k in range(0, len(recs), 4000):
        store.write_batch(IngestBatch(now, 1, recs[k:k + 4000], devices=devs if k == 0 else [],
                                      events=events if k == 0 else []))
    store.close()
    return now


def check_pulls(db, tmp_path: Path) -> None:
    out = tmp_path / "north.csv"
    proc = pull(db, "--site", "north", "--since", "4h", "--out", out)
    assert "wrote 5,400 results (2 devices" in proc.stdout, proc.stdout  # pump-b reported a day earlier
    df = pd.read_csv(out)
    assert set(df["device"]) == {"pump-a"} and len(df) == 5400 and df["ts"].is_monotonic_increasing
    assert df["vrms"].eq(1.25).all() and df["time"].iloc[0].endswith("Z")
    pq = tmp_path / "all.parquet"
    assert "wrote 16,200 results (3 devices" in pull(db, "--out", pq).stdout
    p = pd.read_parquet(pq)
    assert len(p) == 16_200 and p.groupby("device").size().to_dict() == {"fan-c": 5400, "pump-a": 5400, "pump-b": 5400}
    assert str(p["time"].dtype) == "datetime64[ms, UTC]" and p["anom"].sum() == 3 * 108
    one = tmp_path / "b.csv"
    pull(db, "--device", "pump-b", "--since", "28h", "--until", "26h", "--out", one)
    b = pd.read_csv(one)
    assert 1795 <= len(b) <= 1810 and set(b["device"]) == {"pump-b"}  # its first hour (27 h ago)
    rec = tmp_path / "recordings"
    assert "wrote 2 recordings" in pull(db, "--device", "pump-a", "--format", "npz", "--out", rec).stdout
    recs = load_folder(rec)  # what `edgefleet model train --data` reads
    (joined,) = recs  # its two one-window captures, joined in time order (windows never straddle them)
    assert joined.label == "normal" and joined.meta["machine"] == "pump-a" and joined.meta["captures"] == 2
    assert joined.fs == 12000.0 and joined.meta["segment"] == 4096 and len(joined.signal) == 8192
    assert joined.meta["rpm"] == 1480.0
    for args, says in ((["--device", "nope"], "unknown device nope"), (["--site", "east"], "no device at site 'east'"),
                       (["--since", "2020-01-01", "--until", "2020-01-02"], "no results from 3 devices between"),
                       (["--since", "1h", "--until", "2h"], "must be before --until"),
                       (["--since", "last tuesday"], "not a time: 'last tuesday'"),
                       (["--device", "fan-c", "--format", "npz"], "no debug captures with samples from fan-c")):
        proc = pull(db, *args, "--out", tmp_path / "x.csv" if "npz" not in args else tmp_path / "caps", check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, (args, proc.stderr)
    proc = pull(db, "--out", tmp_path / "no" / "such" / "x.csv", check=False)
    assert proc.returncode == 2 and "folder" in proc.stderr and "does not exist" in proc.stderr
    assert not (tmp_path / "x.csv").exists()


def test_pull_from_sqlite(tmp_path) -> None:
    db = tmp_path / "fleet.db"
    populate(db)
    check_pulls(db, tmp_path)
    proc = pull(tmp_path / "typo.db", "--out", tmp_path / "x.csv", check=False)
    assert proc.returncode == 2 and "no store at" in proc.stderr and not (tmp_path / "typo.db").exists()


def test_pull_from_postgresql(tmp_path, pg_server) -> None:
    url = pg_server.create_db()
    populate(url)
    check_pulls(url, tmp_path)


def test_slices_are_bounded_and_cover_the_range(tmp_path, monkeypatch) -> None:
    db = tmp_path / "fleet.db"
    populate(db)
    monkeypatch.setattr(export, "SLICE_ROWS", 1000)
    store = open_store(db)
    sel = export.select(store, "db", devices=["pump-a"], until_ms=int(time.time() * 1000))
    slices = export.plan(store, sel)
    assert all(n <= 1800 for *_, n in slices) and sum(n for *_, n in slices) == 5400  # hourly counts: 1,800
    got = [r.seq for batch in export.rows(store, slices) for r in batch]
    assert got == list(range(5400))
    store.close()


@pytest.mark.parametrize("text", ["15m", "2h", "7d", "2026-12-06T08:00:00Z", "2026-12-06 08:00", "1796572800000"])
def test_times(text) -> None:
    now = export.parse_when("2026-12-06T12:00:00Z", 0)
    got = export.parse_when(text, now)
    assert got < now or text.isdigit()
