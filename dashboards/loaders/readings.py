"""Readings and why (feature definition v2) for the Device and Fleet pages: velocity RMS against the ISO 20816
zones of the machine's class, the "why" of anomalous windows in words (bands by Hz and by running-speed
order), the fault hint in words, and the spectrum of the newest debug capture with its order and bearing
defect marks. No Streamlit: tested against a real store."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edgefleet.protocol import why_items
from edgefleet.service import iso20816
from edgefleet.service.store import Alarm, Device, Store

HINT_WORDS = {
    "unbalance": "unbalance (or bent shaft)",
    "misalignment": "misalignment (or bent shaft)",
    "looseness": "mechanical looseness",
    "bearing_outer_race": "bearing outer-race defect",
    "bearing_inner_race": "bearing inner-race defect",
    "bearing_ball": "bearing rolling-element defect",
    "bearing": "bearing defect (impacts; no geometry to say which part)",
    "unknown": "no clear pattern",
}
FEATURE_WORDS = {"vrms": "velocity RMS", "kurtosis": "kurtosis (impacts)", "crest": "crest factor (impacts)"}
ORDERS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)  # running-speed orders a band is named by
DEFECTS = {"bpfo": "BPFO", "bpfi": "BPFI", "bsf": "BSF"}
SPECTRUM_POINTS = 1500  # the spectrum chart's points (a peak-preserving reduction of the FFT bins)


# ---------- ISO 20816 classes and zones ----------

def machine_class(classes: dict[str, dict[str, str]], dev: Device) -> tuple[str, str]:
    """(class, source: 'device' | 'site' | 'default') of one device, from `Store.machine_classes()`."""
    return iso20816.class_for(dev.device, dev.site, classes.get("device", {}), classes.get("site", {}))


def class_words(cls: str, source: str) -> str:
    where = {"device": "set for this machine", "site": "its site's class",
             "default": "the default: no class set for this machine or its site"}[source]
    return f"ISO 20816 class {cls}: {iso20816.CLASS_WORDS[cls]}; {where}"


def vrms_frame(store: Store, device: str, cls: str, since_ms: int | None = None, limit: int = 5000) -> pd.DataFrame:
    """A device's velocity readings (oldest first): time, ts, vrms (mm/s), rpm, zone for class `cls`."""
    rows = store.vrms_history(device, since_ms=since_ms, limit=limit)
    df = pd.DataFrame(rows, columns=["ts", "vrms", "rpm"])
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    df["zone"] = [iso20816.zone(v, cls) for v in df["vrms"]]
    return df


def vrms_of(scores: pd.DataFrame, cls: str) -> pd.DataFrame:
    """The velocity readings of a score frame (`device.score_frame`: the same windows the page shows, no second
    query), as `vrms_frame` gives them."""
    cols = ["ts", "vrms", "rpm", "time"]
    df = scores.loc[scores["vrms"].notna(), cols] if "vrms" in scores.columns else pd.DataFrame(columns=cols)
    df = df.reset_index(drop=True)
    df["zone"] = [iso20816.zone(v, cls) for v in df["vrms"]]
    return df


def zone_bands(cls: str, top: float | None = None) -> pd.DataFrame:
    """The zones of `cls` as horizontal bands (zone, lo, hi mm/s, colour, words) for shading a chart; zone D up
    to `top` (at least 1.5 x the C/D boundary)."""
    df = pd.DataFrame(iso20816.bands(cls, top), columns=["zone", "lo", "hi"])
    df["colour"] = df["zone"].map(iso20816.ZONE_COLOURS)
    df["meaning"] = df["zone"].map(iso20816.ZONE_WORDS)
    return df


def zone_words(vrms: float | None, cls: str) -> str:
    """'4.2 mm/s: zone C (not for long-term operation: plan a repair)' or that there is no reading."""
    if vrms is None or (isinstance(vrms, float) and math.isnan(vrms)):
        return "no velocity reading (older node, or feature definition v1)"
    z = iso20816.zone(vrms, cls)
    return f"{vrms:.2f} mm/s: zone {z} ({iso20816.ZONE_WORDS[z]})"


def fleet_zones(df: pd.DataFrame, latest: dict[str, tuple[int, float]],
                classes: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The fleet frame with `vrms` (median of the newest readings), `iso_class` and `zone` ('A'-'D', or
    'no reading') per machine: what the grid colours by when it colours by ISO zone."""
    out = df.copy()
    by_dev, by_site = classes.get("device", {}), classes.get("site", {})
    out["iso_class"] = [iso20816.class_for(d, None if s == "(no site)" else s, by_dev, by_site)[0]
                        for d, s in zip(out["device"], out["site"])]
    vrms = [latest[d][1] if d in latest else None for d in out["device"]]
    out["zone"] = [iso20816.zone(v, c) if v is not None else NO_READING for v, c in zip(vrms, out["iso_class"])]
    out["vrms"] = vrms
    return out


NO_READING = "no reading"
ZONE_STATES = (*iso20816.ZONES, NO_READING)
ZONE_STATE_COLOURS = {**iso20816.ZONE_COLOURS, NO_READING: "#c7c7c7"}


# ---------- why and hint in words ----------

def _order_label(lo: float, hi: float, rpm: float | None) -> str:
    """'1x', '2x, 3x' (orders of the running speed inside the band) or '' when none or no speed."""
    if rpm is None or not rpm > 0:
        return ""
    f1 = rpm / 60.0
    inside = [o for o in ORDERS if lo <= o * f1 < hi]
    if not inside:
        return ""
    return ", ".join(f"{o:g}x" for o in inside[:3])


def _defect_label(lo: float, hi: float, rpm: float | None, bearing: dict | None) -> str:
    """The bearing defect frequencies (and their 2nd, 3rd harmonics) inside the band, e.g. 'BPFO', '2xBPFI'."""
    if rpm is None or not rpm > 0 or not bearing:
        return ""
    found = []
    for name, order in bearing_orders(bearing).items():
        for k in (1, 2, 3):
            if lo <= k * order * rpm / 60.0 < hi:
                found.append(DEFECTS[name] if k == 1 else f"{k}x{DEFECTS[name]}")
    return ", ".join(found[:3])


def why_words(why: str | list | None, rpm: float | None = None, bearing: dict | None = None) -> list[str]:
    """Each `why` item in words, largest first: '22.1-27.4 Hz (1x): 62%', 'velocity RMS: 21%'; with the running
    speed the band names the orders inside it, with a bearing geometry its defect frequencies."""
    out = []
    for w in why_items(why):
        share = f"{100 * w['share']:.0f}%"
        if "name" in w:
            out.append(f"{FEATURE_WORDS.get(w['name'], w['name'])}: {share}")
            continue
        lo, hi = float(w["lo"]), float(w["hi"])
        band = f"{lo / 1000:.2f}-{hi / 1000:.2f} kHz" if lo >= 1000 else f"{lo:.1f}-{hi:.1f} Hz"
        names = ", ".join(x for x in (_order_label(lo, hi, rpm), _defect_label(lo, hi, rpm, bearing)) if x)
        out.append(f"{band}{f' ({names})' if names else ''}: {share}")
    return out


def hint_words(hint: str | None) -> str:
    return HINT_WORDS.get(hint, hint) if hint else ""


def alarm_why(alarm: Alarm | None, rpm: float | None = None, bearing: dict | None = None) -> str:
    """The active alarm's why and hint in one sentence, '' when the node did not say (older firmware)."""
    if alarm is None or not (alarm.why or alarm.hint):
        return ""
    parts = []
    if alarm.hint:
        parts.append(f"Likely **{hint_words(alarm.hint)}**.")
    words = why_words(alarm.why, rpm, bearing)
    if words:
        parts.append("What rose most above this machine's normal: " + "; ".join(words) + ".")
    return " ".join(parts)


def why_markers(scores: pd.DataFrame, bearing: dict | None = None) -> pd.DataFrame:
    """The anomalous windows that explain themselves, for chart marks and tooltips: time, vrms, hint in words, why
    in words (one line)."""
    cols = ["time", "ts", "vrms", "score", "hint", "why"]
    if scores.empty or "why" not in scores.columns:
        return pd.DataFrame(columns=cols)
    has = scores[scores["anom"].astype(bool) & (scores["why"].notna() | scores["hint"].notna())]
    rows = [(r.time, r.ts, None if pd.isna(r.vrms) else float(r.vrms), float(r.score), hint_words(r.hint),
             "; ".join(why_words(r.why, None if pd.isna(r.rpm) else float(r.rpm), bearing)))
            for r in has.itertuples(index=False)]
    return pd.DataFrame(rows, columns=cols)


# ---------- spectrum of the newest debug capture ----------

@dataclass(frozen=True)
class Capture:
    ts: int
    fs: float
    samples: np.ndarray  # g
    score: float | None
    anom: bool | None


def last_capture(store: Store, device: str, look_back: int = 20) -> Capture | None:
    """The newest `debug` message of a device that holds a raw window (samples and fs), or None."""
    for e in store.events(device, kind="debug", limit=look_back):
        b = e.body
        if b.get("samples") and b.get("fs"):
            return Capture(e.ts, float(b["fs"]), np.asarray(b["samples"], np.float64), b.get("score"), b.get("anom"))
    return None


def spectrum_frame(samples: np.ndarray, fs: float, points: int = SPECTRUM_POINTS) -> pd.DataFrame:
    """Amplitude spectrum of a window (mean removed, Hann, single-sided peak amplitude in g) as `hz`, `g`:
    reduced to about `points` rows keeping each group's peak, so narrow lines survive."""
    x = np.asarray(samples, np.float64)
    x = x - x.mean()
    n = len(x)
    w = np.hanning(n)
    amp = 2.0 * np.abs(np.fft.rfft(x * w)) / w.sum()
    hz = np.fft.rfftfreq(n, 1.0 / fs)
    step = max(1, len(amp) // points)
    if step > 1:
        m = len(amp) // step * step
        idx = amp[:m].reshape(-1, step).argmax(axis=1) + np.arange(0, m, step)
        hz, amp = hz[idx], amp[idx]
    return pd.DataFrame({"hz": hz, "g": amp})


def bearing_orders(bearing: dict) -> dict[str, float]:
    """BPFO, BPFI, BSF as orders of the shaft speed (runtime.diagnosis.BearingGeometry)."""
    from edgefleet.runtime.diagnosis import BearingGeometry

    g = BearingGeometry(int(bearing["n_balls"]), float(bearing["ball_d_mm"]), float(bearing["pitch_d_mm"]),
                        float(bearing.get("contact_deg", 0.0)))
    return {k: v for k, v in g.orders().items() if k in DEFECTS}


def order_marks(rpm: float | None, bearing: dict | None, fmax: float) -> pd.DataFrame:
    """Vertical marks for the spectrum: 1x, 2x, 3x of the running speed and, with a bearing geometry, BPFO, BPFI
    and BSF (kind 'order' or 'bearing'); none without a speed."""
    rows = []
    if rpm is not None and rpm > 0:
        f1 = rpm / 60.0
        rows += [(f"{k}x", k * f1, "order") for k in (1, 2, 3) if k * f1 <= fmax]
        if bearing:
            rows += [(DEFECTS[name], o * f1, "bearing") for name, o in bearing_orders(bearing).items() if o * f1 <= fmax]
    return pd.DataFrame(rows, columns=["mark", "hz", "kind"])


def rpm_near(scores: pd.DataFrame, ts: int) -> float | None:
    """The running speed the node reported nearest time `ts` (results carry it; a debug message and an alarm do not)."""
    if scores.empty or "rpm" not in scores.columns:
        return None
    known = scores[scores["rpm"].notna()]
    if known.empty:
        return None
    i = (known["ts"] - ts).abs().idxmin()
    return float(known.loc[i, "rpm"])
