"""History at every scale: per-device rollups of results into 1-minute and 1-hour buckets (pure).

A rollup row keeps what a chart of a long range needs and what can be merged by addition, min and max, so
ingest can upsert a batch's new results into the rows they fall in and a loader can merge rows into wider
chart buckets: count, anomalous count, judged count, score min / sum / max, a score histogram (for the p95),
highest threshold, HI and HI threshold, newest model, velocity (vrms, mm/s) count / sum / max and running-speed
count / sum.

The p95 comes from a fixed-bin histogram of log10(score), BINS_PER_DECADE bins per decade from 1e-6 to 1e6
(scores outside fall in the end bins). A bin stands for its geometric middle, clamped to the bucket's min and
max, so the reported p95 is within P95_REL_ERROR (3.7 %) of the nearest-rank p95 of the bucket's scores. The
histogram is sparse JSON text ({"bin": count}): a minute of one node holds a handful of bins. Fixed bins,
not a sketch, so that merging is exact addition, and the backfill in SQL (`store/rollup_sql.py`) computes the
same bin as `score_bin`: floor(log10(score) * 32), the C library's log10 in Python, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from edgefleet.protocol import ResultRecord, SummaryRecord

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
WIDTHS = (MINUTE_MS, HOUR_MS)
TABLES = {MINUTE_MS: "rollup_1m", HOUR_MS: "rollup_1h"}
NAMES = {MINUTE_MS: "1-minute rollups", HOUR_MS: "1-hour rollups"}
KEEP_DAYS = {MINUTE_MS: 90.0, HOUR_MS: 3650.0}  # at least; minute rollups never go before the raw results

BINS_PER_DECADE = 32
LO_BIN, HI_BIN = -6 * BINS_PER_DECADE, 6 * BINS_PER_DECADE - 1  # 1e-6 .. 1e6
SCORE_FLOOR = 1e-6
P95_REL_ERROR = 10 ** (1 / (2 * BINS_PER_DECADE)) - 1  # half a bin, in ratio: 0.0366

# the stored row, in this order (store/rollup_sql.py's tables)
COLUMNS = ("device", "bucket", "ts_max", "n", "anom", "judged", "s_min", "s_sum", "s_max", "hist", "thr_max",
           "hi_max", "hi_thr_max", "model", "v_n", "v_sum", "v_max", "r_n", "r_sum")


def score_bin(score: float) -> int:
    """The histogram bin of a score: floor(log10(score) * BINS_PER_DECADE), clamped to the covered range."""
    b = math.floor(math.log10(max(float(score), SCORE_FLOOR)) * BINS_PER_DECADE)
    return min(max(b, LO_BIN), HI_BIN)


def bin_value(b: int) -> float:
    """The score a bin stands for: its geometric middle."""
    return 10 ** ((b + 0.5) / BINS_PER_DECADE)


def hist_text(hist: dict[int, int]) -> str:
    """Compact JSON in the bins' insertion order (written by hand and unsorted: json.dumps, then sorting, were
    the largest parts of what rollups cost ingest)."""
    return "{" + ",".join([f'"{k}":{v}' for k, v in hist.items()]) + "}"


def hist_parse(text: str | None) -> dict[int, int]:
    return {int(k): int(v) for k, v in json.loads(text).items()} if text else {}


def quantile(hist: dict[int, int], q: float, lo: float, hi: float) -> float | None:
    """The nearest-rank `q` quantile the histogram gives (its bin's middle, within [lo, hi])."""
    n = sum(hist.values())
    if n <= 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return min(max(bin_value(b), lo), hi)
    return hi


@dataclass(slots=True)
class Agg:
    """One bucket of one device, being built."""

    ts_max: int
    n: int = 0
    anom: int = 0
    judged: int = 0
    s_min: float = math.inf
    s_sum: float = 0.0
    s_max: float = -math.inf
    hist: dict[int, int] = field(default_factory=dict)
    thr_max: float = -math.inf
    hi_max: float | None = None
    hi_thr_max: float | None = None
    model: int = 0
    v_n: int = 0
    v_sum: float = 0.0
    v_max: float | None = None
    r_n: int = 0
    r_sum: float = 0.0

    @classmethod
    def from_row(cls, row: Sequence) -> Agg:
        """A stored row (COLUMNS) to add to."""
        return cls(int(row[2]), int(row[3]), int(row[4]), int(row[5]), float(row[6]), float(row[7]), float(row[8]),
                   hist_parse(row[9]), float(row[10]), row[11], row[12], int(row[13]), int(row[14]), float(row[15]),
                   row[16], int(row[17]), float(row[18]))

    def row(self, device: str, bucket: int) -> tuple:
        """As stored (COLUMNS)."""
        return (device, bucket, self.ts_max, self.n, self.anom, self.judged, self.s_min, self.s_sum, self.s_max,
                hist_text(self.hist), self.thr_max, self.hi_max, self.hi_thr_max, self.model, self.v_n, self.v_sum,
                self.v_max, self.r_n, self.r_sum)

    def add(self, r: ResultRecord, b: int | None = None) -> None:
        """Count one result (`b`: its score_bin, when the caller has it). Written out with comparisons, not
        min()/max() calls: ingest runs this twice per result."""
        s = float(r.score)
        if r.ts > self.ts_max:
            self.ts_max = r.ts
        self.n += 1
        if r.anom:
            self.anom += 1
        if not r.state:
            self.judged += 1
        if s < self.s_min:
            self.s_min = s
        if s > self.s_max:
            self.s_max = s
        self.s_sum += s
        b = score_bin(s) if b is None else b
        h = self.hist
        h[b] = h.get(b, 0) + 1
        if r.thr > self.thr_max:
            self.thr_max = float(r.thr)
        if r.hi is not None and (self.hi_max is None or r.hi > self.hi_max):
            self.hi_max = float(r.hi)
        if r.hi_thr is not None and (self.hi_thr_max is None or r.hi_thr > self.hi_thr_max):
            self.hi_thr_max = float(r.hi_thr)
        if r.model > self.model:
            self.model = int(r.model)
        v = r.vrms
        if v is not None:
            self.v_n += 1
            self.v_sum += v
            if self.v_max is None or v > self.v_max:
                self.v_max = float(v)
        if r.rpm is not None:
            self.r_n += 1
            self.r_sum += r.rpm

    def merge(self, o: Agg) -> None:
        """Add another bucket's counts (a batch's partial row): what `add` would do with each of its results."""
        if o.ts_max > self.ts_max:
            self.ts_max = o.ts_max
        self.n += o.n
        self.anom += o.anom
        self.judged += o.judged
        if o.s_min < self.s_min:
            self.s_min = o.s_min
        if o.s_max > self.s_max:
            self.s_max = o.s_max
        self.s_sum += o.s_sum
        h = self.hist
        for b, c in o.hist.items():
            h[b] = h.get(b, 0) + c
        if o.thr_max > self.thr_max:
            self.thr_max = o.thr_max
        if o.hi_max is not None and (self.hi_max is None or o.hi_max > self.hi_max):
            self.hi_max = o.hi_max
        if o.hi_thr_max is not None and (self.hi_thr_max is None or o.hi_thr_max > self.hi_thr_max):
            self.hi_thr_max = o.hi_thr_max
        if o.model > self.model:
            self.model = o.model
        if o.v_n:
            self.v_n += o.v_n
            self.v_sum += o.v_sum
            if o.v_max is not None and (self.v_max is None or o.v_max > self.v_max):
                self.v_max = o.v_max
        if o.r_n:
            self.r_n += o.r_n
            self.r_sum += o.r_sum


def summary_hist(s: SummaryRecord) -> dict[int, int]:
    """A histogram standing for a node summary's n scores (docs/protocol.md, "summary"): one at the min, one at
    the max, n - ceil(0.95 n) at the p95 and the rest at the mean (clamped to [min, p95]). Its nearest-rank p95
    is the node's own, and it keeps the min and max; merged with other rows, the p95 is that of these stand-ins."""
    n = s.n
    if n == 1:
        return {score_bin(s.max): 1}
    rank = max(2, math.ceil(0.95 * n))
    h: dict[int, int] = {}
    for x, c in ((s.min, 1), (min(max(s.mean, s.min), s.p95), rank - 2), (s.p95, n - rank), (s.max, 1)):
        if c > 0:
            b = score_bin(x)
            h[b] = h.get(b, 0) + c
    return h


def add_summary(a: Agg, s: SummaryRecord) -> None:
    """Fold one node summary into a bucket: its n windows all judged, their score sum as n * mean, min, max and
    the stand-in histogram (summary_hist); velocity as n readings of its mean. No running speed."""
    if s.ts > a.ts_max:
        a.ts_max = s.ts
    a.n += s.n
    a.anom += s.anom
    a.judged += s.n
    a.s_min = min(a.s_min, s.min)
    a.s_max = max(a.s_max, s.max)
    a.s_sum += s.mean * s.n
    for b, c in summary_hist(s).items():
        a.hist[b] = a.hist.get(b, 0) + c
    a.thr_max = max(a.thr_max, s.thr)
    a.model = max(a.model, s.model)
    if s.vrms is not None:
        a.v_n += s.n
        a.v_sum += s.vrms * s.n
        a.v_max = s.vrms_max if a.v_max is None else max(a.v_max, s.vrms_max)


def _load_missing(open_rows: dict[tuple[int, str, int], Agg], touched: list[tuple[int, str, int]],
                  load: Callable[[int, list[tuple[str, int]]], dict[tuple[str, int], Agg]]) -> None:
    """Put in `open_rows` the touched rows it does not keep: the stored row from `load`, else a new one."""
    for w in WIDTHS:
        missing = [(k[1], k[2]) for k in touched if k[0] == w and k not in open_rows]
        if missing:
            got = load(w, missing)
            for d, b in missing:
                open_rows[(w, d, b)] = got.get((d, b)) or Agg(0)


def add_all_summaries(open_rows: dict[tuple[int, str, int], Agg], summaries: Iterable[SummaryRecord],
                      load: Callable[[int, list[tuple[str, int]]], dict[tuple[str, int], Agg]]) -> list[tuple[int, tuple]]:
    """As add_all, for node summaries: each goes whole into the minute and the hour of its end (`ts`); a period
    is at most an hour, so an hour's chart never misses more than one summary's overlap."""
    items = list(summaries)
    keyed = [(s, [(w, s.device, s.ts // w * w) for w in WIDTHS]) for s in items]
    touched = sorted({k for _, ks in keyed for k in ks})
    _load_missing(open_rows, touched, load)
    for s, ks in keyed:
        for k in ks:
            add_summary(open_rows[k], s)
    return [(k[0], open_rows[k].row(k[1], k[2])) for k in touched]


def partials(results: Iterable[ResultRecord]) -> dict[tuple[str, int], Agg]:
    """A batch's results per (device, minute), one `add` each: what add_all merges into both widths (a
    device's results of one message share their minute, so a batch has far fewer of these than results)."""
    per: dict[tuple[str, int], Agg] = {}
    for r in results:
        ts = r.ts
        k = (r.device, ts - ts % MINUTE_MS)
        a = per.get(k)
        if a is None:
            a = per[k] = Agg(ts)
        a.add(r)
    return per


def bucket_of(ts: int, width_ms: int) -> int:
    return ts // width_ms * width_ms


def aggregate(results: Iterable[ResultRecord], width_ms: int) -> list[tuple]:
    """The rollup rows (COLUMNS) of `results` in buckets of `width_ms`, in key order (device, bucket): what
    a batch adds to the stored rows. Only results the store took as new may come here."""
    per: dict[tuple[str, int], Agg] = {}
    for r in results:
        k = (r.device, bucket_of(r.ts, width_ms))
        a = per.get(k)
        if a is None:
            a = per[k] = Agg(r.ts)
        a.add(r)
    return [a.row(d, b) for (d, b), a in sorted(per.items())]


def add_all(open_rows: dict[tuple[int, str, int], Agg], results: Iterable[ResultRecord],
            load: Callable[[int, list[tuple[str, int]]], dict[tuple[str, int], Agg]]) -> list[tuple[int, tuple]]:
    """Add results to the rows they fall in, in both widths, where `open_rows` keeps rows by (width, device,
    bucket) and `load(width, keys)` gives the stored rows it does not keep (a key missing: a new row). Returns
    (width, row) of every row touched, in key order: what replaces the stored rows. The results are added
    once, to their (device, minute) partial (`partials`), which is merged into the minute and the hour: one
    `add` per result, one `merge` per row touched; no histogram parsed for rows already kept."""
    parts = partials(results)
    keyed = [(a, [(w, d, m - m % w) for w in WIDTHS]) for (d, m), a in parts.items()]
    touched = sorted({k for _, ks in keyed for k in ks})
    _load_missing(open_rows, touched, load)
    for a, ks in keyed:
        for k in ks:
            open_rows[k].merge(a)
    return [(k[0], open_rows[k].row(k[1], k[2])) for k in touched]


# what a loader returns per chart bucket: result_buckets' shape, then the score's min, mean and p95
CHART_COLS = ("bucket", "ts", "n", "n_anom", "score", "thr", "hi", "hi_thr", "vrms", "vrms_max", "rpm", "judged",
              "cls", "model", "nostate", "score_min", "score_mean", "score_p95")


def chart_rows(rows: Sequence[Sequence], start_ms: int, width_ms: int) -> list[tuple]:
    """Stored rollup rows (COLUMNS, one device, in bucket order) merged into chart buckets of `width_ms`
    (a multiple of the rollup width) aligned at `start_ms`: the CHART_COLS rows; the p95 over the merged
    histograms (so a wider bucket's p95 is as exact as a narrow one's)."""
    out: list[tuple] = []
    group: list[Sequence] = []
    key = None
    for r in rows:
        k = (int(r[1]) - start_ms) // width_ms
        if group and k != key:
            out.append(_chart_row(group, start_ms + key * width_ms))
            group = []
        key = k
        group.append(r)
    if group:
        out.append(_chart_row(group, start_ms + key * width_ms))
    return out


def _chart_row(g: Sequence[Sequence], bucket: int) -> tuple:
    n = sum(int(r[3]) for r in g)
    s_min, s_max = min(float(r[6]) for r in g), max(float(r[8]) for r in g)
    v_n, r_n = sum(int(r[14]) for r in g), sum(int(r[17]) for r in g)
    v_max = [float(r[16]) for r in g if r[16] is not None]
    his = [float(r[11]) for r in g if r[11] is not None]
    hits = [float(r[12]) for r in g if r[12] is not None]
    judged = sum(int(r[5]) for r in g)
    return (bucket, max(int(r[2]) for r in g), n, sum(int(r[4]) for r in g), s_max, max(float(r[10]) for r in g),
            max(his) if his else None, max(hits) if hits else None,
            sum(float(r[15]) for r in g) / v_n if v_n else None, max(v_max) if v_max else None,
            sum(float(r[18]) for r in g) / r_n if r_n else None, judged, None, max(int(r[13]) for r in g),
            "" if judged == n else "commissioning", s_min, sum(float(r[7]) for r in g) / n if n else None,
            _merged_p95([r[9] for r in g], s_min, s_max))


_HIST_PUNCT = str.maketrans({"{": None, "}": None, '"': None, ":": ","})


def _merged_p95(texts: Sequence[str | None], lo: float, hi: float) -> float | None:
    """`quantile(0.95)` of the sum of histogram texts, summed in numpy: a year's chart merges 8,760 of them,
    and parsing and adding them in Python was most of the Device page's 365-day read."""
    import numpy as np  # readers only (the dashboard has it); ingest never charts

    body = ",".join([t.translate(_HIST_PUNCT) for t in texts if t and len(t) > 2])
    if not body:
        return None
    pairs = np.array(body.split(","), dtype=np.int64).reshape(-1, 2)
    dense = np.bincount(pairs[:, 0] - LO_BIN, weights=pairs[:, 1], minlength=HI_BIN - LO_BIN + 1)
    n = int(dense.sum())
    if n <= 0:
        return None
    b = int(np.searchsorted(np.cumsum(dense), max(1, math.ceil(0.95 * n)))) + LO_BIN
    return min(max(bin_value(b), lo), hi)


def keep_ms(width_ms: int, raw_days: float) -> int:
    """How long rollups of `width_ms` are kept: KEEP_DAYS, and minute rollups at least as long as raw results."""
    days = KEEP_DAYS[width_ms]
    if width_ms == MINUTE_MS:
        days = max(days, raw_days)
    return int(days * 86_400_000)


__all__ = ["BINS_PER_DECADE", "CHART_COLS", "COLUMNS", "HOUR_MS", "KEEP_DAYS", "MINUTE_MS", "NAMES", "P95_REL_ERROR",
           "TABLES", "WIDTHS", "Agg", "add_all", "add_all_summaries", "add_summary", "aggregate", "bin_value", "bucket_of", "chart_rows", "hist_parse",
           "hist_text", "keep_ms", "partials", "quantile", "score_bin", "summary_hist"]
