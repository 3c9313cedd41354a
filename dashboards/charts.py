"""Altair chart builders: DataFrame in, Vega-Lite chart out (no Streamlit, no store)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from dashboards.loaders.commissioning import WINDOW_COLOURS, WINDOW_KINDS
from dashboards.loaders.device import TrendLine
from dashboards.loaders.fleet import STATE_COLOURS, STATES
from dashboards.loaders.models import OTA_PENDING, OTA_STATES
from dashboards.loaders.readings import ZONE_STATE_COLOURS, ZONE_STATES

STATE_SCALE = alt.Scale(domain=list(STATES), range=[STATE_COLOURS[s] for s in STATES])
ZONE_SCALE = alt.Scale(domain=list(ZONE_STATES), range=[ZONE_STATE_COLOURS[z] for z in ZONE_STATES])
THRESHOLD_COLOUR = "#d62728"
TREND_COLOUR = "#1f77b4"


def fleet_grid(df: pd.DataFrame, by: str = "state") -> alt.Chart:
    """One tile per machine, a row per site / line, coloured by state (or with `by="zone"` by ISO 20816 zone,
    for a frame that went through `readings.fleet_zones`); click a tile to open it. The tooltip carries the
    commissioning state (`commissioning` when the frame went through `with_commissioning`)."""
    rows = sorted(df["row"].unique())
    pick = alt.selection_point(fields=["device"], name="pick", on="click", clear=False)
    colour = alt.Color("state:N", scale=STATE_SCALE, legend=alt.Legend(orient="top", title=None))
    zone_tips = []
    if by == "zone":
        colour = alt.Color("zone:N", scale=ZONE_SCALE, legend=alt.Legend(orient="top", title="ISO 20816 zone"))
        zone_tips = [alt.Tooltip("vrms:Q", format=".2f", title="velocity RMS (mm/s)"),
                     alt.Tooltip("zone:N", title="zone"), alt.Tooltip("iso_class:N", title="ISO class")]
    used = ["device", "name", "stage", "site", "line", "state", "status", "severity", "score_ratio", "eta_s", "model",
            "fw", "commissioning", "comm", "comm_detail", "row", "col", *(["vrms", "zone", "iso_class"] if by == "zone"
                                                                         else [])]
    df = df[[c for c in used if c in df.columns]]  # what the tiles and tooltips show: a 2,000-machine grid's
    # spec is built and sent with these columns only (about a third less time than with the whole fleet frame)
    return (
        alt.Chart(df)
        .mark_rect(stroke="white", strokeWidth=3, cornerRadius=4)
        .encode(
            x=alt.X("col:O", axis=None),
            y=alt.Y("row:N", sort=rows, title=None, axis=alt.Axis(labelFontSize=13, labelLimit=220)),
            color=colour,
            tooltip=["device", *[alt.Tooltip(f"{c}:N", title=c) for c in ("name", "stage") if c in df.columns],
                     "site", "line", "state", *zone_tips, "status", "severity",
                     alt.Tooltip("score_ratio:Q", format=".2f", title="score / threshold"),
                     alt.Tooltip("eta_s:Q", format=",.0f", title="ETA to threshold (s)"), "model", "fw",
                     alt.Tooltip("commissioning:N" if "commissioning" in df.columns else "comm:N",
                                 title="commissioning"), alt.Tooltip("comm_detail:N", title="baseline")],
        )
        .add_params(pick)
        .properties(height=34 * len(rows) + 80)  # Streamlit fits legend and axes inside the height
    )


def model_bars(models: pd.DataFrame) -> alt.LayerChart:
    """Devices per model version, labelled with the count."""
    base = alt.Chart(models).encode(y=alt.Y("model:N", title=None, sort="-x", axis=alt.Axis(labelFontSize=13)),
                                    x=alt.X("devices:Q", title="devices"), tooltip=["model", "devices"])
    bars = base.mark_bar(color=TREND_COLOUR, height=22)
    labels = base.mark_text(align="left", dx=4, fontSize=13).encode(text="devices:Q")
    return alt.layer(bars, labels).properties(height=40 * len(models) + 70)


def _window_colour(pts: pd.DataFrame, legend: bool) -> alt.Color:
    """Windows coloured by how they were judged: normal, anomalous (red), commissioning, uncommissioned."""
    kinds = [k for k in WINDOW_KINDS if k in set(pts["window"])] or ["normal"]
    return alt.Color("window:N", scale=alt.Scale(domain=kinds, range=[WINDOW_COLOURS[k] for k in kinds]),
                     legend=alt.Legend(orient="top", title=None) if legend else None)


def _extent(x_domain: tuple[int, int]) -> alt.Chart:
    """An invisible layer spanning `x_domain` (ms): two charts given the same one line up in time."""
    ends = pd.DataFrame({"time": pd.to_datetime(list(x_domain), unit="ms", utc=True)})
    return alt.Chart(ends).mark_point(opacity=0).encode(x="time:T")


def _thresholds(segments: pd.DataFrame, field: str, y_scale: alt.Scale, title: str) -> alt.Chart:
    """One dashed red segment per run of judged windows at the threshold they were held to."""
    return alt.Chart(segments).mark_rule(color=THRESHOLD_COLOUR, strokeDash=[4, 3], strokeWidth=2).encode(
        x="start:T", x2="end:T", y=alt.Y(f"{field}:Q", scale=y_scale),
        tooltip=[alt.Tooltip(f"{field}:Q", format=".4g", title=title), alt.Tooltip("cls:Q", title="class")])


def score_timeline(scores: pd.DataFrame, thresholds: pd.DataFrame, trend: TrendLine | None, log_y: bool = False,
                   x_domain: tuple[int, int] | None = None) -> alt.LayerChart:
    """Scores over time, each window coloured by its verdict (anomalous red; commissioning and uncommissioned
    windows, which have none, in their own colours), each judged window's threshold (`threshold_segments`:
    per class, none for windows without a verdict), and the fitted trend with its forecast."""
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=True)
    pts = scores if not log_y else scores[scores["score"] > 0]
    base = alt.Chart(pts).encode(x=alt.X("time:T", title=None), y=alt.Y("score:Q", scale=y_scale, title="score",
                                                          axis=alt.Axis(minExtent=48)))
    layers = [
        base.mark_line(color="#888", strokeWidth=1).encode(detail="run:N"),
        base.mark_circle(size=18, opacity=1).encode(
            color=_window_colour(pts, legend=True),
            tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "seq", alt.Tooltip("score:Q", format=".4g"),
                     "window", alt.Tooltip("cls:Q", title="class"), alt.Tooltip("thr:Q", format=".4g"), "model"]),
    ]
    if trend is not None:
        layers.append(alt.Chart(trend.points).mark_line(strokeWidth=2.5, color=TREND_COLOUR).encode(
            x="time:T", y=alt.Y("score:Q", scale=y_scale),
            strokeDash=alt.StrokeDash("part:N", scale=alt.Scale(domain=["fit", "forecast"], range=[[1, 0], [6, 4]]),
                                      legend=alt.Legend(orient="top", title="trend"))))
    if not thresholds.empty:
        layers.append(_thresholds(thresholds, "thr", y_scale, "threshold"))
    if x_domain is not None:
        layers.append(_extent(x_domain))
    return alt.layer(*layers).properties(height=320)


def hi_timeline(scores: pd.DataFrame, thresholds: pd.DataFrame, log_y: bool = False,
                x_domain: tuple[int, int] | None = None) -> alt.LayerChart:
    """The health indicator (distance from the class's normal, unclipped) of the windows that carry one,
    coloured as in the score chart, with each judged window's HI threshold."""
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=True)
    pts = scores[scores["hi"].notna() & ((scores["hi"] > 0) if log_y else True)]
    base = alt.Chart(pts).encode(x=alt.X("time:T", title=None), y=alt.Y("hi:Q", scale=y_scale, title="health indicator",
                                                          axis=alt.Axis(minExtent=48)))
    layers = [
        base.mark_line(color="#888", strokeWidth=1).encode(detail="run:N"),
        base.mark_circle(size=14, opacity=1).encode(
            color=_window_colour(pts, legend=False),
            tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "seq", alt.Tooltip("hi:Q", format=".4g"), "window",
                     alt.Tooltip("cls:Q", title="class"), alt.Tooltip("hi_thr:Q", format=".4g", title="HI threshold")]),
    ]
    if not thresholds.empty:
        layers.append(_thresholds(thresholds, "hi_thr", y_scale, "HI threshold"))
    if x_domain is not None:
        layers.append(_extent(x_domain))
    return alt.layer(*layers).properties(height=170)


SEVERITY_SCALE = alt.Scale(domain=["warning", "major", "critical"], range=["#ffbb33", "#ff7f0e", "#b30000"])


def _utc_domain(x_domain: tuple[int, int] | None) -> alt.Scale | None:
    if x_domain is None:
        return None
    return alt.Scale(type="utc", domain=[pd.Timestamp(x_domain[0], unit="ms", tz="UTC").isoformat(),
                                         pd.Timestamp(x_domain[1], unit="ms", tz="UTC").isoformat()])


def alarms_raised(df: pd.DataFrame, x_domain: tuple[int, int] | None = None, zoom: bool = False) -> alt.Chart:
    """Each alarm as a dot at its raise time, one row per severity, sized by its peak over threshold; with
    `x_domain` the axis is the time range (alarms raised before it, still active, are clipped), with `zoom`
    a span dragged across it narrows the range."""
    x = alt.X("raised:T", title=None, axis=alt.Axis(tickMinStep=1000))
    if x_domain is not None:
        fmt = "%H:%M" if x_domain[1] - x_domain[0] <= 86_400_000 else "%m-%d %H:%M"
        x = alt.X("raised:T", title=None, axis=alt.Axis(tickMinStep=1000, format=fmt), scale=_utc_domain(x_domain))
    chart = (
        alt.Chart(df).mark_circle(opacity=0.85, clip=True)
        .encode(x=x,
                y=alt.Y("severity:N", sort=["critical", "major", "warning"], title=None),
                color=alt.Color("severity:N", scale=SEVERITY_SCALE, legend=None),
                size=alt.Size("peak_ratio:Q", scale=alt.Scale(range=[60, 400]), legend=None),
                tooltip=["id", "device", "severity", "state", alt.Tooltip("raised:T", format="%Y-%m-%d %H:%M:%S"),
                         alt.Tooltip("peak_ratio:Q", format=".2f", title="peak / thr")])
        .properties(height=130)
    )
    return chart.add_params(zoom_brush()) if zoom else chart


def rate_line(df: pd.DataFrame, fields: dict[str, str], title: str) -> alt.Chart:
    """Several numeric columns over time as labelled lines (`fields`: column -> label)."""
    long = df.melt(id_vars=["time"], value_vars=list(fields), var_name="series", value_name="value")
    long["series"] = long["series"].map(fields)
    return (
        alt.Chart(long).mark_line(point=alt.OverlayMarkDef(size=12))
        .encode(x=alt.X("time:T", title=None), y=alt.Y("value:Q", title=title),
                color=alt.Color("series:N", legend=alt.Legend(orient="top", title=None)),
                tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "series", alt.Tooltip("value:Q", format=",.1f")])
        .properties(height=220)
    )


def rejects_by_reason(df: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(df).mark_bar()
        .encode(x=alt.X("time:T", title=None), y=alt.Y("count:Q", stack=True, title="rejected messages"),
                color=alt.Color("code:N", legend=alt.Legend(orient="top", title="reason")),
                tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "code", "count"])
        .properties(height=220)
    )


# A device's state in an OTA campaign (`campaign.DEVICE_STATES` plus the dashboard's `pending`):
# greens done, blues on the way, grey not offered yet, reds and orange failed.
OTA_STATE_COLOURS = {"confirmed": "#2ca02c", "trial": "#98df8a", "shadow": "#bcbddc", "verifying": "#1f77b4",
                     "downloading": "#6baed6", "accepted": "#9ecae1", "offered": "#c6dbef", OTA_PENDING: "#e0e0e0",
                     "rejected": "#d62728", "failed": "#b30000", "reverted": "#ff7f0e", "timeout": "#7f7f7f"}


def campaign_states(long: pd.DataFrame, campaigns: list[str]) -> alt.Chart:
    """Devices per OTA state, one stacked bar per campaign (`campaign_counts_long` rows), in progress order."""
    order = [s for s in OTA_STATES if s in set(long["state"])]
    colour = alt.Color("state:N", sort=order, legend=alt.Legend(orient="top", title=None),
                       scale=alt.Scale(domain=order, range=[OTA_STATE_COLOURS[s] for s in order]))
    return (
        alt.Chart(long.assign(rank=long["state"].map(order.index))).mark_bar(height=24)
        .encode(y=alt.Y("campaign:N", title=None, sort=campaigns),
                x=alt.X("count:Q", stack=True, title="devices"), color=colour, order=alt.Order("rank:Q"),
                tooltip=["campaign:N", "state:N", "count:Q"])
        .properties(height=90 + 34 * len(campaigns))  # legend and axis fit inside
    )


def shadow_scores(long: pd.DataFrame, new_model: int) -> alt.LayerChart:
    """Both models' log-score histograms on the same shadow windows, each with its threshold (dashed)."""
    colour = alt.Color("model:N", legend=alt.Legend(orient="top", title=None),
                       scale=alt.Scale(domain=["old (active)", f"new (v{new_model})"], range=["#6baed6", "#ff7f0e"]))
    base = alt.Chart(long)
    bars = base.mark_bar(opacity=0.55).encode(
        x=alt.X("log10_score:Q", bin=alt.Bin(maxbins=40), title="log10 score"),
        y=alt.Y("count():Q", stack=None, title="windows"), color=colour)
    thresholds = base.mark_rule(strokeDash=[4, 3]).encode(x=alt.X("median(log10_thr):Q"), color=colour)
    return alt.layer(bars, thresholds).properties(height=220)


def loss_over_time(df: pd.DataFrame, by: str) -> alt.Chart:
    """Missing results over time, summed per site or per device (samples of the loss accounting)."""
    data = df.groupby(["time", by], as_index=False)["missing"].sum()
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("time:T", title=None), y=alt.Y("missing:Q", title="missing results"),
        color=alt.Color(f"{by}:N", title=by), tooltip=[f"{by}:N", "missing:Q", alt.Tooltip("time:T", format="%H:%M")],
    ).properties(height=220)


WHY_COLOUR = "#6a3d9a"  # the anomalous windows that explain themselves (purple diamonds)
ORDER_COLOURS = {"order": "#1f77b4", "bearing": "#d62728"}


def vrms_timeline(vrms: pd.DataFrame, bands: pd.DataFrame, markers: pd.DataFrame,
                  x_domain: tuple[int, int] | None = None) -> alt.LayerChart:
    """Velocity RMS (mm/s) over time on the ISO 20816 zone bands of the machine's class (A to D shaded green to
    red), the anomalous windows that say why as diamonds whose tooltip gives the hint and the contributing bands."""
    top = float(bands["hi"].max())
    y = alt.Y("vrms:Q", title="velocity RMS (mm/s)", scale=alt.Scale(domain=[0, top], nice=False, clamp=True),
              axis=alt.Axis(minExtent=48))
    shade = alt.Chart(bands).mark_rect(opacity=0.22).encode(
        y=alt.Y("lo:Q", scale=alt.Scale(domain=[0, top], nice=False), title="velocity RMS (mm/s)"), y2="hi:Q",
        color=alt.Color("zone:N", scale=alt.Scale(domain=list(bands["zone"]), range=list(bands["colour"])),
                        legend=alt.Legend(orient="top", title="ISO 20816 zone")),
        tooltip=[alt.Tooltip("zone:N"), alt.Tooltip("lo:Q", format=".2f", title="from (mm/s)"),
                 alt.Tooltip("hi:Q", format=".2f", title="to (mm/s)"), alt.Tooltip("meaning:N")])
    layers = [shade]
    if not vrms.empty:
        base = alt.Chart(vrms).encode(x=alt.X("time:T", title=None), y=y)
        layers += [base.mark_line(color="#333", strokeWidth=1.2),
                   base.mark_circle(size=14, color="#333").encode(
                       tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), alt.Tooltip("vrms:Q", format=".2f"),
                                alt.Tooltip("rpm:Q", format=",.0f"), "zone"])]
    if not markers.empty:
        pts = markers.dropna(subset=["vrms"])
        if not pts.empty:
            layers.append(alt.Chart(pts).mark_point(shape="diamond", size=90, filled=True, color=WHY_COLOUR).encode(
                x="time:T", y=alt.Y("vrms:Q", scale=alt.Scale(domain=[0, top], nice=False, clamp=True)),
                tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), alt.Tooltip("vrms:Q", format=".2f"),
                         alt.Tooltip("hint:N", title="hint"), alt.Tooltip("why:N", title="why")]))
    if x_domain is not None:
        layers.append(_extent(x_domain))
    return alt.layer(*layers).properties(height=240)


def spectrum(spec: pd.DataFrame, marks: pd.DataFrame, log_x: bool = True) -> alt.LayerChart:
    """Amplitude spectrum of a debug capture (g) with vertical marks at 1x/2x/3x and the bearing defect
    frequencies, labelled."""
    spec = spec[spec["hz"] > 0] if log_x else spec
    xs = alt.Scale(type="log") if log_x else alt.Scale()
    line = alt.Chart(spec).mark_line(color="#444", strokeWidth=1).encode(
        x=alt.X("hz:Q", scale=xs, title="frequency (Hz)"), y=alt.Y("g:Q", title="amplitude (g)"),
        tooltip=[alt.Tooltip("hz:Q", format=",.1f"), alt.Tooltip("g:Q", format=".4g")])
    layers = [line]
    if not marks.empty:
        colour = alt.Color("kind:N", scale=alt.Scale(domain=list(ORDER_COLOURS), range=list(ORDER_COLOURS.values())),
                           legend=None)
        rule = alt.Chart(marks).mark_rule(strokeDash=[4, 3], strokeWidth=1.5).encode(
            x=alt.X("hz:Q", scale=xs), color=colour,
            tooltip=["mark:N", alt.Tooltip("hz:Q", format=",.1f", title="Hz")])
        label = alt.Chart(marks).mark_text(align="left", dx=3, dy=-4, baseline="top", fontSize=11).encode(
            x=alt.X("hz:Q", scale=xs), y=alt.value(2), text="mark:N", color=colour)
        layers += [rule, label]
    return alt.layer(*layers).properties(height=240)


# ---------- time ranges: zoom by selecting a span, and the compare view ----------

ZOOM = "zoom"  # the interval selection's name: `event.selection["zoom"]["time"]` is the span picked on the chart


def zoom_brush() -> alt.Parameter:
    """Drag across a time chart to select a span; the page narrows the shared time range to it."""
    return alt.selection_interval(name=ZOOM, encodings=["x"], clear="dblclick")


def with_zoom(chart: alt.LayerChart) -> alt.LayerChart:
    """A layered time chart whose first layer carries the zoom brush (Streamlit reports the span it selects)."""
    first, *rest = chart.layer
    return alt.layer(first.add_params(zoom_brush()), *rest).properties(height=chart.height)


def compare_lines(df: pd.DataFrame, field: str, title: str, x_domain: tuple[int, int], *,
                  thresholds: pd.DataFrame | None = None, zoom: bool = False, height: int = 240) -> alt.LayerChart:
    """2-6 machines on one time axis, a line and points per machine (colour by device); `thresholds`
    (device, value) draws each machine's limit as a dashed rule in its colour."""
    devices = list(dict.fromkeys(df["device"]))
    colour = alt.Color("device:N", scale=alt.Scale(domain=devices), legend=alt.Legend(orient="top", title=None))
    pts = df[df[field].notna()]
    fmt = "%H:%M" if x_domain[1] - x_domain[0] <= 86_400_000 else "%b %d %H:%M"  # UTC, 24 h: as the range says
    base = alt.Chart(pts).encode(x=alt.X("time:T", title=None, axis=alt.Axis(format=fmt, labelOverlap=True),
                                         scale=alt.Scale(type="utc", domain=[
        pd.Timestamp(x_domain[0], unit="ms", tz="UTC").isoformat(),
        pd.Timestamp(x_domain[1], unit="ms", tz="UTC").isoformat()])),
        y=alt.Y(f"{field}:Q", title=title, axis=alt.Axis(minExtent=48)), color=colour)
    line = base.mark_line(strokeWidth=1.5, point=alt.OverlayMarkDef(size=14)).encode(
        tooltip=["device", alt.Tooltip("time:T", format="%Y-%m-%d %H:%M:%S"), alt.Tooltip(f"{field}:Q", format=".3g"),
                 alt.Tooltip("n:Q", title="results in bucket")])
    if zoom:
        line = line.add_params(zoom_brush())
    layers = [line]
    if thresholds is not None and not thresholds.empty:
        layers.append(alt.Chart(thresholds).mark_rule(strokeDash=[4, 3], strokeWidth=1.5).encode(
            y="value:Q", color=colour, tooltip=["device", alt.Tooltip("value:Q", format=".3g", title="threshold")]))
    return alt.layer(*layers).properties(height=height)
