"""Device detail: one machine's score and HI timeline with each window's verdict and class thresholds, the
alarm service's trend fit as chart points, status, history."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

import pandas as pd

from dashboards.loaders.commissioning import comm_short, speed_band, window_kind
from dashboards.loaders.common import fmt_age, fmt_eta
from edgefleet.protocol import ResultRecord
from edgefleet.service.alarms import AlarmPolicy, fit_log_trend, ratio_of, time_to_threshold
from edgefleet.service.store import Device, Store


def results_frame(results: Sequence[ResultRecord]) -> pd.DataFrame:
    """Result records as a frame with a `time` column for the charts and `window`: how the window was
    judged ('normal', 'anomalous', or without a verdict 'commissioning', 'uncommissioned'), and `run`, which
    counts the runs of judged and of unjudged windows (the charts' lines break between runs)."""
    cols = list(ResultRecord._fields)
    df = pd.DataFrame([tuple(r) for r in results], columns=cols)
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    df["window"] = [window_kind(st, a) for st, a in zip(df["state"], df["anom"])]
    judged = df["state"] == ""
    df["run"] = (judged != judged.shift()).cumsum()  # runs of judged / unjudged windows: lines break between
    return df


def threshold_segments(scores: pd.DataFrame, column: str = "thr") -> pd.DataFrame:
    """The threshold each judged window was held to (`thr`, or `hi_thr` for the HI), as horizontal segments
    for the chart: one per run of judged windows with the same class and threshold, from its first window
    to the next window (or its last). Windows without a verdict (commissioning, uncommissioned) and
    windows without that threshold get none, so thresholds can differ per class and stop where no
    window was judged."""
    out: list[tuple] = []
    times = scores["time"].tolist()
    run: tuple[tuple, int] | None = None  # ((cls, value), first index)
    for i, (state, value, cls) in enumerate(zip(scores["state"], scores[column], scores["cls"])):
        ok = not state and value is not None and not pd.isna(value)
        key = (None if cls is None or pd.isna(cls) else int(cls), float(value)) if ok else None
        if run is not None and key != run[0]:
            out.append((times[run[1]], times[i], run[0][1], run[0][0]))
            run = None
        if key is not None and run is None:
            run = (key, i)
    if run is not None:
        out.append((times[run[1]], times[-1], run[0][1], run[0][0]))
    return pd.DataFrame(out, columns=["start", "end", column, "cls"])


def score_frame(store: Store, device: str, since_ms: int | None = None, limit: int = 5000) -> pd.DataFrame:
    """A device's score timeline (oldest first), newest `limit` points since `since_ms`."""
    return results_frame(store.score_history(device, since_ms=since_ms, limit=limit))


_OPTIONAL = {f for f in ResultRecord._fields if ResultRecord._field_defaults.get(f, 0) is None}  # NaN -> None


@dataclass(frozen=True)
class TrendLine:
    """The fitted health trend over the newest windows and its forecast to the threshold."""

    points: pd.DataFrame  # time, score, part ("fit" | "forecast"): the fitted ratio times the drawn threshold
    slope_per_h: float  # d log(ratio) / dt
    eta_s: float | None  # seconds from the newest window to the threshold; 0 if above; None if not rising


def ratio_points(scores: pd.DataFrame, policy: AlarmPolicy = AlarmPolicy()
                 ) -> tuple[list[int], list[float], list[object]]:
    """The points the alarm service fits, from the judged windows of a score frame: each window's ratio to
    its limits (`ratio_of`: score/thr, or the larger of that and hi/hi_thr), or, once there are at least
    `trend_min_points` of them, the rollups (median ratio of every `rollup_every` windows of one operating
    class, stamped with the last one's time); with each point its class, since the fit gives every class
    its own level. The service rolls up from its start; here the rollups start at the frame's first
    judged window."""
    judged = scores[scores["state"] == ""]
    recs = [ResultRecord(*(None if isinstance(v, float) and math.isnan(v) and k in _OPTIONAL else v
                           for k, v in zip(ResultRecord._fields, row)))
            for row in judged[list(ResultRecord._fields)].itertuples(index=False, name=None)]
    ts, ratios, groups = [r.ts for r in recs], [ratio_of(r) for r in recs], [r.cls for r in recs]
    buckets: dict[object, list[float]] = {}
    rolled = []
    for t, ratio, g in zip(ts, ratios, groups):
        b = buckets.setdefault(g, [])
        b.append(ratio)
        if len(b) >= policy.rollup_every:
            rolled.append((t, median(b), g))
            b.clear()
    rolled = rolled[-policy.rollup_points:]
    if len(rolled) >= policy.trend_min_points:
        return [t for t, _, _ in rolled], [r for _, r, _ in rolled], [g for _, _, g in rolled]
    n = policy.trend_points
    return ts[-n:], ratios[-n:], groups[-n:]



def trend_line(scores: pd.DataFrame, thr: float | None, policy: AlarmPolicy = AlarmPolicy(),
               max_forecast_s: float | None = None) -> TrendLine | None:
    """The alarm service's health trend as chart points: the same least-squares line through log(ratio)
    (`ratio_points`: judged windows only; ratio 1 = at the threshold) and its time to ratio 1, drawn in
    score units against `thr` (the newest judged window's threshold: exact for a machine with one
    threshold, relative to the current class for one with several).

    The forecast runs to the threshold crossing, capped at `max_forecast_s` (default: the span
    of the fitted windows) so a far-off estimate does not squash the chart; None with too few points.
    """
    if thr is None or not thr > 0:
        return None
    ts, ratios, groups = ratio_points(scores, policy)
    if len(ts) < policy.trend_min_points:
        return None
    trend = fit_log_trend(ts, ratios, groups)
    if trend is None:
        return None
    eta = time_to_threshold(trend, 1.0)
    t0 = int(ts[0])
    span_s = (trend.t_ref_ms - t0) / 1000.0
    cap = span_s if max_forecast_s is None else max_forecast_s
    rows = [(t0 + (trend.t_ref_ms - t0) * i // 20, "fit") for i in range(21)]  # exp() of a line: a curve
    if eta is not None and eta > 0 and trend.slope_per_s > 0:
        end = trend.t_ref_ms + int(min(eta, cap) * 1000)
        rows += [(trend.t_ref_ms + (end - trend.t_ref_ms) * i // 20, "forecast") for i in range(21)]
    pts = pd.DataFrame(rows, columns=["ts", "part"])
    pts["score"] = [thr * math.exp(trend.level + trend.slope_per_s * (t - trend.t_ref_ms) / 1000.0)
                    for t in pts["ts"]]
    pts["time"] = pd.to_datetime(pts["ts"], unit="ms", utc=True)
    return TrendLine(pts, trend.slope_per_s * 3600.0, eta)


def trend_threshold(scores: pd.DataFrame) -> float | None:
    """The threshold the alarm service forecasts against: that of the newest judged window."""
    judged = scores[scores["state"] == ""]
    return None if judged.empty else float(judged["thr"].iloc[-1])


def device_status(d: Device, now_ms: int, scores: pd.DataFrame | None = None) -> dict[str, str]:
    """Human-readable status facts of one device for the detail page. With its score frame, the
    threshold and `class` are those of the newest window (thresholds differ per operating class;
    'none' when that window got no verdict: commissioning, or a speed in no learned class)."""
    thr, cls = (f"{d.thr:.4g}" if d.thr is not None else "-"), "-"
    if scores is not None and not scores.empty:
        newest = scores.iloc[-1]
        if newest["state"]:  # no verdict, so no threshold either
            thr, cls = "none", f"none ({newest['state']})"
        else:
            thr = f"{newest['thr']:.4g}"
            if not pd.isna(newest["cls"]):
                k = int(newest["cls"])
                classes = (d.comm or {}).get("classes") or []
                cls = f"{k} ({speed_band(classes[k]['rpm'])})" if k < len(classes) else str(k)
    return {
        "status": d.status, "health": d.health, "alarm": d.alarm_severity or "none",
        "model": f"v{d.model}" if d.model is not None else "-", "firmware": d.fw or "-", "slot": d.slot or "-",
        "threshold": thr, "class": cls, "commissioning": comm_short(d.comm) if d.comm else "not reported (older node)",
        "last score": f"{d.last_score:.4g}" if d.last_score is not None else "-",
        "last seen": fmt_age((now_ms - d.last_seen) / 1000.0) if d.last_seen else "never",
        "early warning": fmt_eta(d.eta_s, short=True),
        "site / line": f"{d.site or '-'} / {d.line or '-'}", "results": f"{d.results:,}",
    }


def events_frame(store: Store, device: str, limit: int = 50) -> pd.DataFrame:
    """Status, OTA and debug history of one device, newest first."""
    evs = store.events(device, limit=limit)
    df = pd.DataFrame([(e.ts, e.kind, e.body) for e in evs], columns=["ts", "kind", "body"])
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    df["body"] = df["body"].map(lambda b: ", ".join(f"{k}={comm_short(v) if k == 'comm' else v}"
                                                    for k, v in b.items() if k not in ("v",)))
    return df[["time", "kind", "body"]]
