"""The trend forecast over days to weeks (issue 18 item 4): alarms.long_forecast on 1-hour rollups beside the
short-term one on the newest windows, each saying which horizon it used. Synthesized rollup series: a slow rise
over 10 days is forecast, a flat one is not, and the short-term fit sees neither."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgefleet import protocol
from edgefleet.protocol import ResultRecord
from edgefleet.service import rollups
from edgefleet.service.alarms import long_forecast, short_forecast, span_words
from edgefleet.service.forecasts import device_forecasts
from edgefleet.service.rollups import HOUR_MS
from edgefleet.service.store import DeviceUpdate, IngestBatch, SQLiteStore, summary_sql

REPO = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000
DAY = 86_400_000
THR = 0.05


def machine(days: float, rise_per_day: float, per_hour: int = 30, seed: int = 3, device: str = "m1"
            ) -> list[ResultRecord]:
    """Windows of a machine whose median score/threshold starts at 0.2 and grows by exp(rise_per_day) a day,
    with lognormal noise (sigma 0.35) around it, `per_hour` windows an hour."""
    rng = np.random.default_rng(seed)
    out, seq = [], 0
    for h in range(int(days * 24)):
        level = 0.2 * math.exp(rise_per_day * h / 24)
        for k in range(per_hour):
            ts = T0 + h * HOUR_MS + k * (HOUR_MS // per_hour)
            score = THR * level * float(rng.lognormal(0, 0.35))
            out.append(ResultRecord(device, "0000000a", seq, ts, 3, score, THR, score > THR, 400))
            seq += 1
    return out


def hour_rows(recs: list[ResultRecord]) -> list[tuple]:
    return rollups.aggregate(recs, HOUR_MS)


def test_a_slow_rise_over_ten_days_is_forecast_from_the_hourly_rollups() -> None:
    recs = machine(10, math.log(3) / 10)  # 0.2 -> 0.6 of the threshold in 10 days: crossing 1 ~4.6 days later
    now = recs[-1].ts
    f = long_forecast(hour_rows(recs), now)
    assert f.state == "rising" and f.source == "rollup_1h" and f.points == 240
    assert f.horizon == "from the last 10 days of hourly rollups (240 points)"
    assert f.eta_s / 86_400 == pytest.approx(math.log(1 / 0.6) / (math.log(3) / 10), rel=0.25)
    assert f.level_ratio == pytest.approx(0.6, rel=0.15) and f.slope_per_day == pytest.approx(0.11, rel=0.2)
    # the same machine's last 120 windows (4 hours at 30 an hour here; 2 minutes at 1 a second): no forecast
    short = short_forecast(recs[-120:], now)
    assert short.state == "flat" and short.eta_s is None and short.horizon.startswith("from the last 4 hours of windows")


def test_a_flat_series_is_not_forecast() -> None:
    recs = machine(14, 0.0, seed=4)
    f = long_forecast(hour_rows(recs), recs[-1].ts)
    assert f.state == "flat" and f.eta_s is None and f.horizon.startswith("from the last 14 days of hourly rollups")
    assert f.level_ratio == pytest.approx(0.2, rel=0.15)


def test_the_long_horizon_is_two_weeks_and_needs_two_days() -> None:
    recs = machine(20, math.log(3) / 20)
    f = long_forecast(hour_rows(recs), recs[-1].ts)
    assert f.points == 14 * 24 and "14 days" in f.horizon  # older hours left out
    short = long_forecast(hour_rows(machine(1.5, 0.2)), T0 + 2 * DAY)
    assert short.state == "too_few" and short.eta_s is None and short.points == 36


def test_a_machine_already_above_its_threshold_says_so() -> None:
    recs = machine(5, math.log(8) / 5)  # ends at 1.6x
    assert long_forecast(hour_rows(recs), recs[-1].ts).state == "above"


def test_span_words() -> None:
    assert [span_words(s) for s in (30, 119, 120, 7200, 86_400, 14 * 86_400)] == \
        ["30 seconds", "119 seconds", "2 minutes", "2 hours", "24 hours", "14 days"]


def test_a_summary_only_node_gets_both_forecasts_from_the_store(tmp_path: Path) -> None:
    """Summaries (one per 10 minutes, 10 days, rising) in the store: the long forecast reads the rollups they
    filled, the short one their newest summaries; `edgefleet stats --device` prints both with their horizons."""
    store = SQLiteStore(tmp_path / "s.db")
    rng = np.random.default_rng(9)
    slope = math.log(3) / 10
    sums = []
    t0 = (int(time.time() * 1000) - 10 * DAY) // HOUR_MS * HOUR_MS  # `stats` forecasts to the wall clock's now
    for i in range(10 * 24 * 6):
        level = 0.2 * math.exp(slope * i / 144)
        scores = [THR * level * float(x) for x in rng.lognormal(0, 0.35, 60)]
        body = protocol.summary_of_scores("0000000b", i, t0 + (i + 1) * 600_000, 600_000, 3, THR, scores,
                                          sum(s > THR for s in scores))
        sums.append(protocol.summary_record("s1", body))
    for k in range(0, len(sums), 200):
        summary_sql.write_summaries(store, sums[k:k + 200], sums[k].ts)
    store.write_batch(IngestBatch(t0, 1, devices=[DeviceUpdate("s1", t0, status="online", boot="0000000b")]))
    now = sums[-1].ts
    short, long = device_forecasts(store, "s1", now)
    assert long.state == "rising" and long.source == "rollup_1h" and "days of hourly rollups" in long.horizon
    assert short.source == "summaries" and short.horizon.startswith("from the last 20 hours of summaries (120 points)")
    store.close()
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "stats", "--db", str(tmp_path / "s.db"), "--json",
                           "--device", "s1"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)["device"]
    assert [f["source"] for f in got["forecasts"]] == ["summaries", "rollup_1h"]
    assert got["forecasts"][1]["state"] == "rising" and "10 days of hourly rollups" in got["forecasts"][1]["horizon"]
    assert got["summaries"] == {"received": len(sums), "missing": 0, "dropped_on_node": 0, "windows": 60 * len(sums)}
