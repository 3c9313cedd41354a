"""One time range for every page with a time axis: presets (relative to now) or an absolute from/to, as URL
query parameters, zoom and pan arithmetic, and how finely to bucket a range (no Streamlit; tested directly).

In the URL: `?range=6h` (a preset: the last 6 hours, moving with the clock) or `?from=2026-12-06T08:00:00Z&
to=2026-12-06T09:30:00Z` (absolute, UTC). A link opens the same range; the pages keep it in the session too,
so it stays when the operator moves between pages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from edgefleet.errors import EdgefleetError
from edgefleet.service.rollups import HOUR_MS, MINUTE_MS, NAMES, keep_ms

PRESETS: dict[str, int] = {"15m": 900_000, "1h": 3_600_000, "6h": 21_600_000, "24h": 86_400_000,
                           "7d": 604_800_000, "30d": 2_592_000_000}
PRESET_LABELS = {"15m": "15 min", "1h": "1 h", "6h": "6 h", "24h": "24 h", "7d": "7 d", "30d": "30 d"}
DEFAULT_PRESET = "1h"
MIN_SPAN_MS = 60_000  # zooming in stops at one minute
MAX_SPAN_MS = 400 * 86_400_000  # and an absolute range at 400 days
BUCKETS = 600  # a chart of a long range: at most this many points per machine and series
RAW_LIMIT = 5_000  # up to this many results in the range are charted one by one (an hour at 1/s); more are bucketed
RAW_SPAN_MS = 6 * 3_600_000  # ranges up to 6 h read raw results (every one, or bucketed by the database)
MINUTE_SPAN_MS = 8 * 86_400_000  # up to 8 days 1-minute rollups (at most 11,520 rows), beyond 1-hour rollups
RAW = 0  # the resolution of raw results
NICE_MS = (1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000,
           3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000)


@dataclass(frozen=True)
class TimeRange:
    """A preset (`preset` set: the newest `span` up to now) or an absolute range (`start_ms`..`end_ms`)."""

    preset: str | None = DEFAULT_PRESET
    start_ms: int | None = None
    end_ms: int | None = None

    def __post_init__(self) -> None:
        if self.preset is not None and self.preset not in PRESETS:
            raise EdgefleetError(f"unknown range {self.preset!r} (one of {', '.join(PRESETS)})")
        if self.preset is None:
            if self.start_ms is None or self.end_ms is None:
                raise EdgefleetError("an absolute range needs both from and to")
            if self.end_ms <= self.start_ms:
                raise EdgefleetError("the range's end must be after its start")
            if self.end_ms - self.start_ms > MAX_SPAN_MS:
                raise EdgefleetError("a range may span at most 400 days")

    @property
    def live(self) -> bool:
        return self.preset is not None

    def bounds(self, now_ms: int) -> tuple[int, int]:
        """(start, end) in ms. A preset ends at `now_ms` rounded up to its bucket width, so the pages that
        draw it in one refresh (and the caches keyed by it) agree on the same bounds."""
        if self.preset is None:
            return int(self.start_ms), int(self.end_ms)
        span = PRESETS[self.preset]
        step = bucket_ms(span)
        end = -(-int(now_ms) // step) * step
        return end - span, end

    def span_ms(self) -> int:
        return PRESETS[self.preset] if self.preset else int(self.end_ms) - int(self.start_ms)

    def label(self) -> str:
        if self.preset:
            return f"last {PRESET_LABELS[self.preset]}"
        return f"{fmt_utc(self.start_ms)} to {fmt_utc(self.end_ms)} UTC"

    def to_query(self) -> dict[str, str]:
        """The query parameters that reopen this range."""
        if self.preset:
            return {"range": self.preset}
        return {"from": iso_utc(self.start_ms), "to": iso_utc(self.end_ms)}


def iso_utc(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_utc(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


def parse_time(text: str) -> int:
    """An ISO date-time (UTC unless it names an offset; a date alone is its midnight) or epoch ms -> ms."""
    t = str(text).strip()
    if not t:
        raise EdgefleetError("empty time")
    if t.isdigit():
        return int(t)
    try:
        ts = pd.Timestamp(t)
    except (ValueError, TypeError):
        raise EdgefleetError(f"not a date-time: {t!r} (e.g. 2026-12-06T08:00:00Z or 2026-12-06 08:00)") from None
    if ts is pd.NaT:
        raise EdgefleetError(f"not a date-time: {t!r}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def from_query(params: Mapping[str, str]) -> TimeRange | None:
    """The range a URL names (`range=` or `from=`/`to=`), None when it names none; EdgefleetError when it
    names a bad one (the page says so and keeps the session's range)."""
    if params.get("from") or params.get("to"):
        if not (params.get("from") and params.get("to")):
            raise EdgefleetError("the URL names only one end of the range: give both from= and to=")
        return TimeRange(None, parse_time(params["from"]), parse_time(params["to"]))
    if params.get("range"):
        return TimeRange(str(params["range"]).strip().lower())
    return None


def zoom(r: TimeRange, factor: float, now_ms: int) -> TimeRange:
    """The range scaled about its middle (factor < 1 zooms in, > 1 out), as an absolute range; zooming out
    of a live range that would pass now stays anchored at now."""
    start, end = r.bounds(now_ms)
    mid = (start + end) / 2
    span = min(max(int((end - start) * factor), MIN_SPAN_MS), MAX_SPAN_MS)
    a, b = int(mid - span / 2), int(mid + span / 2)
    if r.live and b > now_ms:
        a, b = int(now_ms) - span, int(now_ms)
    return TimeRange(None, a, b)


def pan(r: TimeRange, fraction: float, now_ms: int) -> TimeRange:
    """The range moved by `fraction` of its span (negative: earlier), as an absolute range."""
    start, end = r.bounds(now_ms)
    d = int((end - start) * fraction)
    return TimeRange(None, start + d, end + d)


def selection(r: TimeRange, lo: float | str, hi: float | str) -> TimeRange:
    """The span selected on a chart (ms or ISO strings, as Vega reports them) as an absolute range, at
    least MIN_SPAN_MS wide."""
    a, b = sorted((_ms(lo), _ms(hi)))
    if b - a < MIN_SPAN_MS:
        mid = (a + b) // 2
        a, b = mid - MIN_SPAN_MS // 2, mid + MIN_SPAN_MS // 2
    return TimeRange(None, a, b)


def _ms(v: float | str) -> int:
    if isinstance(v, (int, float)) and math.isfinite(v):
        return int(v)
    return parse_time(str(v))


def bucket_ms(span_ms: int, buckets: int = BUCKETS) -> int:
    """A round bucket width (1 s, 2 s, 5 s, ... 1 d) that cuts `span_ms` into at most `buckets` buckets."""
    want = span_ms / max(1, buckets)
    for b in NICE_MS:
        if b >= want:
            return b
    return int(math.ceil(want / 86_400_000)) * 86_400_000


def resolution(start_ms: int, end_ms: int, now_ms: int, raw_days: float) -> int:
    """What a chart of [start_ms, end_ms] reads: RAW for ranges up to RAW_SPAN_MS, 1-minute rollups up to
    MINUTE_SPAN_MS, 1-hour rollups beyond; and the next coarser one when the range starts before the finer
    one's horizon (raw results are kept `raw_days`, rollups as rollups.keep_ms says)."""
    span = int(end_ms) - int(start_ms)
    if span <= RAW_SPAN_MS and start_ms >= now_ms - int(raw_days * 86_400_000):
        return RAW
    if span <= MINUTE_SPAN_MS and start_ms >= now_ms - keep_ms(MINUTE_MS, raw_days):
        return MINUTE_MS
    return HOUR_MS


def resolution_label(res_ms: int, bucket_ms_: int | None = None) -> str:
    """What a chart says it shows: 'raw results', or e.g. '1-minute rollups, 5 min buckets'."""
    name = "raw results" if res_ms == RAW else NAMES[res_ms]
    if bucket_ms_ is None or (res_ms != RAW and bucket_ms_ == res_ms):
        return name
    return f"{name}, {width_label(bucket_ms_)} buckets"


def width_label(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms / 1000:g} s"
