"""Results over a time range, bounded, at the resolution the range calls for (`timerange.resolution`): up to
6 hours raw results (every one when the range holds few, else per-bucket aggregates the database computes,
`Store.result_buckets`); up to 8 days the store's 1-minute rollups, beyond its 1-hour rollups, merged into
chart buckets (`rollups.chart_rows`: max score and HI, mean velocity, the score's p95). So 30 days of a
machine are 720 rollup rows, not 2.6 M results. Every frame says what it shows (`attrs["resolution_ms"]`,
`Series.label`). Also the compare view's frame (2-6 machines)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from dashboards.loaders.device import results_frame
from dashboards.loaders.timerange import (
    BUCKETS,
    RAW,
    RAW_LIMIT,
    bucket_ms,
    resolution,
    resolution_label,
)
from edgefleet.protocol import ResultRecord
from edgefleet.service.rollups import CHART_COLS, chart_rows
from edgefleet.service.store import Store

NEWEST = 200  # raw results kept beside a bucketed frame: the newest window's facts, the recent table
MAX_COMPARE = 6
BUCKET_COLS = ["bucket", "ts", "n", "n_anom", "score", "thr", "hi", "hi_thr", "vrms", "vrms_max", "rpm", "judged",
               "cls", "model", "nostate"]


@dataclass(frozen=True)
class Series:
    """A device's results in a range: `frame` as `results_frame` shapes it (one row per result, or with
    `bucketed` one per bucket of `bucket_ms`: the bucket's max score / HI / thresholds, mean vrms and rpm,
    anomalous when any window was, `n` results), `total` results in the range, and `newest`: the newest
    raw results (all of them when not bucketed)."""

    frame: pd.DataFrame
    newest: pd.DataFrame
    bucketed: bool
    bucket_ms: int
    total: int
    resolution_ms: int = RAW  # what was read: RAW (0), rollups.MINUTE_MS or rollups.HOUR_MS

    @property
    def label(self) -> str:
        """What the chart shows, for its caption: 'raw results' or e.g. '1-hour rollups, 2 h buckets'."""
        return resolution_label(self.resolution_ms, self.bucket_ms if self.bucketed else None)


SETTLE_MS = 60_000  # a bucket that ended this long ago is kept by BucketCache and not read again


class BucketCache:
    """Per device and bucket width, the aggregates of the buckets that ended more than SETTLE_MS ago: a page
    that refreshes a long range every few seconds then reads only its newest buckets from the database, not
    the range's millions of rows again. Buckets are aligned to multiples of their width since the epoch, so
    every range and refresh shares them. (A result that arrives later than SETTLE_MS after its bucket
    ended, by store-and-forward, is not in a kept bucket until the dashboard restarts.)"""

    def __init__(self, max_entries: int = 512) -> None:
        self._entries: dict[tuple[str, int], tuple[int, int, dict[int, tuple]]] = {}  # lo, hi (complete [lo, hi))
        self._max = max_entries
        self._lock = threading.Lock()

    def rows(self, store: Store, device: str, start_ms: int, end_ms: int, b: int, now_ms: int) -> list[tuple]:
        k0, k1 = start_ms // b, end_ms // b
        with self._lock:
            lo, hi, kept = self._entries.get((device, b), (k0, k0, {}))
        if k0 < lo or hi <= k0:  # nothing kept for the start of this range: read it all
            lo, hi, kept, read_from = k0, k0, {}, k0
        else:
            read_from = hi
        fresh = {int(r[0]) // b: r for r in (store.result_buckets(device, read_from * b, end_ms, b)
                                              if read_from <= k1 else [])}
        done = min((now_ms - SETTLE_MS) // b, k1 + 1)  # buckets below this have ended and settled
        if done > read_from:
            kept = {**kept, **{k: r for k, r in fresh.items() if k < done}}
            with self._lock:
                if len(self._entries) >= self._max:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[(device, b)] = (lo, max(hi, done), kept)
        merged = {**{k: r for k, r in kept.items() if k0 <= k <= k1}, **fresh}
        return [merged[k] for k in sorted(merged)]


def bucket_rows(store: Store, device: str, start_ms: int, end_ms: int, buckets: int = BUCKETS,
                cache: BucketCache | None = None, now_ms: int | None = None) -> pd.DataFrame:
    """Per-bucket aggregates as a frame (BUCKET_COLS, and from rollups also score_min, score_mean,
    score_p95), buckets as wide as `bucket_ms` gives (at least the rollup's width), aligned to multiples of
    their width. Raw ranges go through `cache` (only the buckets it does not keep are read); rollup ranges
    read the store's rollup rows (a few thousand at most). attrs: bucket_ms, resolution_ms."""
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    res = resolution(start_ms, end_ms, now, store.retention_days())
    b = max(bucket_ms(end_ms - start_ms, buckets), res)
    start = start_ms // b * b
    if res != RAW:
        df = pd.DataFrame(chart_rows(store.rollup_rows(device, res, start, end_ms), start, b), columns=CHART_COLS)
    else:
        if cache is not None:
            rows = cache.rows(store, device, start, end_ms, b, now)
        else:
            rows = store.result_buckets(device, start, end_ms, b)
        df = pd.DataFrame(rows, columns=BUCKET_COLS)
    df.attrs["bucket_ms"] = b
    df.attrs["resolution_ms"] = res
    return df


def buckets_as_results(device: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Bucket rows as a `results_frame` (one pseudo-result per bucket at its newest result's time), so the
    Device page's charts draw them as they draw results; `n` = results in the bucket."""
    recs = []
    for r in rows.itertuples(index=False):
        judged = int(r.judged or 0) > 0
        recs.append(ResultRecord(
            device, "", 0, int(r.ts), int(r.model), float(r.score), float(r.thr), bool(judged and r.n_anom), 0,
            state="" if judged else (r.nostate or "commissioning"), hi=_num(r.hi),
            cls=None if r.cls is None or pd.isna(r.cls) else int(r.cls), hi_thr=_num(r.hi_thr), vrms=_num(r.vrms),
            rpm=_num(r.rpm)))
    df = results_frame(recs)
    df["n"] = rows["n"].to_numpy(dtype="int64") if len(rows) else pd.Series(dtype="int64")
    for c in ("score_min", "score_mean", "score_p95"):  # from rollups: the bucket's score distribution
        if c in rows:
            df[c] = rows[c].to_numpy(dtype="float64") if len(rows) else pd.Series(dtype="float64")
    return df


def _num(v) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def device_series(store: Store, device: str, start_ms: int, end_ms: int, *, buckets: int = BUCKETS,
                  raw_limit: int = RAW_LIMIT, cache: BucketCache | None = None, now_ms: int | None = None) -> Series:
    """A device's results in [start_ms, end_ms]: on a raw range every one when there are at most `raw_limit`,
    else one row per bucket (at most `buckets`, from raw results or rollups as `timerange.resolution` picks),
    plus the newest NEWEST raw results. Two bounded queries at most."""
    rows = bucket_rows(store, device, start_ms, end_ms, buckets, cache, now_ms)
    total = int(rows["n"].sum()) if len(rows) else 0
    b, res = int(rows.attrs["bucket_ms"]), int(rows.attrs["resolution_ms"])
    if res == RAW and total <= raw_limit:
        raw = results_frame(store.score_history(device, since_ms=start_ms, until_ms=end_ms, limit=raw_limit))
        return Series(raw, raw, False, b, total, RAW)
    newest = results_frame(store.score_history(device, since_ms=start_ms, until_ms=end_ms, limit=NEWEST))
    return Series(buckets_as_results(device, rows), newest, True, b, total, res)


def compare_frame(store: Store, devices: Sequence[str], start_ms: int, end_ms: int,
                  buckets: int = 300, cache: BucketCache | None = None) -> pd.DataFrame:
    """2-6 machines on one time axis: per device and bucket the max HI (and its threshold), the max score
    over its threshold (for nodes without an HI), mean and max velocity (mm/s). Long format for the charts."""
    frames = []
    for d in list(devices)[:MAX_COMPARE]:
        rows = bucket_rows(store, d, start_ms, end_ms, buckets, cache)
        if rows.empty:
            continue
        frames.append(pd.DataFrame({
            "device": d, "ts": rows["ts"].astype("int64"), "n": rows["n"], "hi": rows["hi"],
            "hi_thr": rows["hi_thr"], "ratio": rows["score"] / rows["thr"], "vrms": rows["vrms"],
            "vrms_max": rows["vrms_max"], "anomalous": rows["n_anom"].fillna(0).astype("int64")}))
    cols = ["device", "ts", "n", "hi", "hi_thr", "ratio", "vrms", "vrms_max", "anomalous", "time"]
    if not frames:
        return pd.DataFrame(columns=cols)
    df = pd.concat(frames, ignore_index=True)
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    out = df[cols]
    out.attrs["resolution"] = resolution_label(int(rows.attrs["resolution_ms"]), int(rows.attrs["bucket_ms"]))
    return out


def compare_summary(df: pd.DataFrame, devices: Sequence[str]) -> pd.DataFrame:
    """Per machine in the compare view: results in the range, newest and highest HI, mean and max velocity."""
    out = []
    for d in devices:
        g = df[df["device"] == d]
        hi = g["hi"].dropna()
        v = g["vrms"].dropna()
        out.append({"device": d, "results": int(g["n"].sum()) if len(g) else 0,
                    "anomalous": int(g["anomalous"].sum()) if len(g) else 0,
                    "hi_newest": float(hi.iloc[-1]) if len(hi) else None, "hi_max": float(hi.max()) if len(hi) else None,
                    "hi_thr": float(g["hi_thr"].dropna().iloc[-1]) if g["hi_thr"].notna().any() else None,
                    "vrms_mean": float((g["vrms"] * g["n"]).sum() / g.loc[g["vrms"].notna(), "n"].sum())
                    if len(v) else None,
                    "vrms_max": float(g["vrms_max"].max()) if g["vrms_max"].notna().any() else None})
    return pd.DataFrame(out, columns=["device", "results", "anomalous", "hi_newest", "hi_max", "hi_thr", "vrms_mean",
                                      "vrms_max"])


def parse_devices(text: str | None, known: Sequence[str]) -> list[str]:
    """`?devices=a,b,c` -> the known ones, in order, at most MAX_COMPARE."""
    names = [t.strip() for t in (text or "").split(",") if t.strip()]
    seen = [n for i, n in enumerate(names) if n in known and n not in names[:i]]
    return seen[:MAX_COMPARE]
