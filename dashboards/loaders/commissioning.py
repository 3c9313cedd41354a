"""Commissioning (docs/baseline.md) for the Device and Fleet pages: a node's `comm` object in words, its
operating classes and how the shown windows spread over them, which windows got a verdict, the fleet's
commissioning counts, and the devices a commission command goes to.

A node learns its own machine's normal per operating class (a speed band) before it judges windows.
Its status `comm` object (`Device.comm`) says whether it is commissioning (with progress per speed) or
commissioned (with its classes); older firmware sends none. Each result says how it was judged:
`state` "" (judged by class `cls` against `thr` and `hi_thr`), "commissioning" or "uncommissioned"
(speed in no learned class): neither of the last two has a verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import pandas as pd

from edgefleet.service.commissioning import target_devices  # noqa: F401  (the one rule, re-exported for the pages)
from edgefleet.service.store import Store

# A machine's commissioning on the fleet page, in display order. "needs a class": commissioned, but some
# of its newest RECENT_WINDOWS windows ran at a speed in no learned class (no verdict for them).
COMM_STATES = ("commissioned", "needs a class", "commissioning", "unknown")
COMM_LABELS = {"commissioned": "Commissioned", "needs a class": "Needs a class", "commissioning": "Commissioning",
               "unknown": "Older nodes"}
RECENT_WINDOWS = 120  # newest windows per machine looked at for "needs a class" (the alarm service's trend span)

# How a window was judged, and its colour on the device page's charts.
WINDOW_KINDS = ("normal", "anomalous", "commissioning", "uncommissioned")
WINDOW_COLOURS = {"normal": "#555555", "anomalous": "#d62728", "commissioning": "#9467bd",
                  "uncommissioned": "#bdbdbd"}


# ---------- words ----------

def fmt_rpm(rpm: float) -> str:
    """1796.0 -> '1,796'; 1425.5 -> '1,426'."""
    return f"{rpm:,.0f}"


def speed_band(rpm: Sequence[float]) -> str:
    """A class's [lo, hi] in rev/min as words; [0, 0] is the any-speed class of a node without a speed input."""
    lo, hi = float(rpm[0]), float(rpm[1])
    if lo == 0 and hi == 0:
        return "any speed"
    return f"{fmt_rpm(lo)}–{fmt_rpm(hi)} rpm"


def fmt_learned(ms: int | None) -> str:
    if not ms:
        return "an unknown date"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def comm_words(comm: dict | None) -> str:
    """The commissioning state in plain words (the Device page's headline, the fleet's detail column)."""
    if not comm:
        return ("Commissioning not reported: older firmware, judged against its model's own threshold "
                "(no operating classes).")
    if comm.get("state") == "commissioning":
        target = int(comm.get("target") or 0)
        progress = list(comm.get("progress") or [])
        if not progress:
            return f"Learning this machine's normal: started, no progress reported yet ({target} windows per speed)."
        if len(progress) == 1 and float(progress[0]["rpm"]) == 0:
            return f"Learning this machine's normal: {int(progress[0]['n'])}/{target} windows (any speed)."
        done = [p for p in progress if int(p["n"]) >= target]
        learning = [p for p in progress if int(p["n"]) < target]
        text = f"Learning this machine's normal: {len(done)} of {_plural(len(progress), 'speed')}"
        if learning:
            text += ", " + ", ".join(f"{int(p['n'])}/{target} windows at {fmt_rpm(float(p['rpm']))} rpm"
                                     for p in learning)
        else:
            text += " learned, finishing"
        return text + "."
    classes = list(comm.get("classes") or [])
    windows = sum(int(c.get("n", 0)) for c in classes)
    if len(classes) == 1 and speed_band(classes[0]["rpm"]) == "any speed":
        what = "one class, any speed (no speed input)"
    else:
        what = _plural(len(classes), "speed")
    return f"Commissioned on {fmt_learned(comm.get('learned'))}: {what}, {windows:,} windows learned."


def comm_short(comm: dict | None) -> str:
    """A compact summary for tables and the event history."""
    if not comm:
        return "-"
    if comm.get("state") == "commissioning":
        target = int(comm.get("target") or 0)
        parts = [f"{int(p['n'])}/{target}" + (f" at {fmt_rpm(float(p['rpm']))} rpm" if float(p["rpm"]) else "")
                 for p in comm.get("progress") or []]
        return "commissioning" + (f" ({', '.join(parts)})" if parts else "")
    classes = comm.get("classes") or []
    return f"commissioned ({', '.join(speed_band(c['rpm']) for c in classes)})"


# ---------- one device ----------

def window_kind(state: str, anom: bool) -> str:
    """'normal' or 'anomalous' for a judged window, else its state ('commissioning', 'uncommissioned')."""
    if state:
        return state
    return "anomalous" if anom else "normal"


def window_counts(scores: pd.DataFrame) -> dict[str, int]:
    """Windows per kind (WINDOW_KINDS) plus 'judged' and 'windows' in a score frame."""
    kinds = scores["window"].value_counts() if len(scores) else pd.Series(dtype="int64")
    out = {k: int(kinds.get(k, 0)) for k in WINDOW_KINDS}
    out["judged"] = out["normal"] + out["anomalous"]
    out["windows"] = len(scores)
    return out


def class_frame(comm: dict | None, scores: pd.DataFrame) -> pd.DataFrame:
    """A commissioned node's classes: speed band, windows learned, thresholds, when learned, and how many
    of the shown windows each class judged (with their share); a last row 'no class' for the windows at a
    speed in no class. Empty for a node that is not commissioned."""
    cols = ["class", "speed", "learned_windows", "thr", "hi_thr", "learned", "windows", "share"]
    if not comm or comm.get("state") != "commissioned":
        return pd.DataFrame(columns=cols)
    judged = scores[scores["state"] == ""] if len(scores) else scores
    per_cls = judged["cls"].dropna().astype(int).value_counts() if len(judged) else pd.Series(dtype="int64")
    total = max(1, len(scores))
    learned = pd.to_datetime(comm.get("learned") or None, unit="ms", utc=True)
    rows = [{"class": str(i), "speed": speed_band(c["rpm"]), "learned_windows": int(c["n"]), "thr": float(c["thr"]),
             "hi_thr": float(c["hi_thr"]), "learned": learned, "windows": int(per_cls.get(i, 0)),
             "share": int(per_cls.get(i, 0)) / total}
            for i, c in enumerate(comm.get("classes") or [])]
    off = int((scores["state"] == "uncommissioned").sum()) if len(scores) else 0
    if off:
        rows.append({"class": "no class", "speed": "other speeds", "learned_windows": None, "thr": None,
                     "hi_thr": None, "learned": pd.NaT, "windows": off, "share": off / total})
    return pd.DataFrame(rows, columns=cols)


def progress_frame(comm: dict | None) -> pd.DataFrame:
    """A commissioning node's classes so far: speed, windows learned, target, fraction done."""
    cols = ["speed", "windows", "target", "progress"]
    if not comm or comm.get("state") != "commissioning":
        return pd.DataFrame(columns=cols)
    target = int(comm.get("target") or 0)
    rows = [{"speed": f"{fmt_rpm(float(p['rpm']))} rpm" if float(p["rpm"]) else "any speed",
             "windows": int(p["n"]), "target": target,
             "progress": min(1.0, int(p["n"]) / target) if target else 0.0} for p in comm.get("progress") or []]
    return pd.DataFrame(rows, columns=cols)


def needs_class(comm: dict | None, scores: pd.DataFrame, n: int = RECENT_WINDOWS) -> bool:
    """A commissioned node some of whose newest `n` windows ran at a speed in no learned class
    (the fleet page's "needs a class", on the windows of a score frame)."""
    if not comm or comm.get("state") != "commissioned" or scores.empty:
        return False
    return bool((scores["state"].tail(n) == "uncommissioned").any())


def chart_legend(scores: pd.DataFrame, trend: bool, hi: bool) -> str:
    """The device charts' caption: what the marks mean, naming only the kinds of window shown."""
    kinds = set(scores["window"])
    parts = [f"{len(scores):,} windows", "dashed red: the threshold each judged window was held to"
             + (" (per operating class)" if scores["cls"].notna().any() else "")]
    if kinds & {"commissioning", "uncommissioned"}:
        parts.append(" and ".join(w for w, k in (("purple: commissioning", "commissioning"),
                                                 ("light grey: uncommissioned (speed in no learned class)",
                                                  "uncommissioned")) if k in kinds)
                     + " windows: no verdict, no threshold")
    if trend:
        parts.append("blue: health trend, the alarm service's fit of each judged window's ratio to its thresholds, "
                     "drawn against the newest one's threshold; dashed: forecast to it")
    if hi:
        parts.append("below: the health indicator (HI) and its threshold")
    return " · ".join(parts) + "."


# ---------- the fleet ----------

def recent_window_states(store: Store, devices: Iterable[str], n: int = RECENT_WINDOWS) -> pd.DataFrame:
    """Per device, of its newest `n` windows: how many, how many commissioning, how many uncommissioned. One
    statement for the fleet where the store has it (SQLite, PostgreSQL: `recent_window_counts`); a query per
    device otherwise."""
    devices = list(devices)
    fleet_counts = getattr(store, "recent_window_counts", None)
    if fleet_counts is not None:
        counts = fleet_counts(n, devices)
        rows = [(d, *counts.get(d, (0, 0, 0))) for d in devices]
    else:
        rows = []
        for d in devices:
            recs = store.recent_results(d, n)
            rows.append((d, len(recs), sum(r.state == "commissioning" for r in recs),
                         sum(r.state == "uncommissioned" for r in recs)))
    return pd.DataFrame(rows, columns=["device", "recent", "recent_commissioning", "recent_uncommissioned"])


def with_commissioning(fleet: pd.DataFrame, recent: pd.DataFrame) -> pd.DataFrame:
    """The fleet frame with `commissioning` (one of COMM_STATES: a commissioned machine whose newest windows
    include uncommissioned ones needs a class) and `recent_uncommissioned`."""
    out = fleet.merge(recent[["device", "recent", "recent_uncommissioned"]], on="device", how="left")
    out["recent_uncommissioned"] = out["recent_uncommissioned"].fillna(0).astype(int)
    needs = (out["comm"] == "commissioned") & (out["recent_uncommissioned"] > 0)
    out["commissioning"] = out["comm"].where(~needs, "needs a class")
    return out


def comm_counts(df: pd.DataFrame) -> dict[str, int]:
    """Machines per COMM_STATES value (a frame from `with_commissioning`)."""
    return {s: int((df["commissioning"] == s).sum()) for s in COMM_STATES}


def commissioning_table(df: pd.DataFrame) -> pd.DataFrame:
    """Machines an engineer should look at for commissioning: still commissioning, or needing a class."""
    out = df[df["commissioning"].isin(("commissioning", "needs a class"))].copy()
    out["detail"] = [
        (f"{int(r.recent_uncommissioned)} of its last {int(r.recent)} windows at a speed in no learned class"
         if r.commissioning == "needs a class" else r.comm_detail)
        for r in out.itertuples()]
    out = out.sort_values(["commissioning", "device"], ascending=[False, True])
    return out[["device", "site", "line", "commissioning", "detail"]].reset_index(drop=True)


# ---------- commands ----------

def command_words(body: dict) -> str:
    """What a commission command body asks, in words."""
    if body.get("op") == "commission_end":
        return "end commissioning (keep every class with at least 16 windows)"
    what = (f"learn the class around {fmt_rpm(float(body['rpm']))} rpm (other classes kept)" if "rpm" in body
            else "commission every speed from scratch")
    return what + (f", {body['windows']} windows per class" if "windows" in body else "")


def queued_message(body: dict, devices: Sequence[str]) -> str:
    shown = ", ".join(devices[:5]) + (", ..." if len(devices) > 5 else "")
    return (f"Queued for {_plural(len(devices), 'device')} ({shown}): {command_words(body)}. "
            "`edgefleet serve` sends it; each node reports its progress in its status.")


def commands_frame(entries: Sequence[dict]) -> pd.DataFrame:
    """Commands queued for a device (`OtaRegistry.commands`), newest first: when, what, sent or waiting."""
    rows = [{"queued": pd.to_datetime(e["created_ms"], unit="ms", utc=True), "command": command_words(e["body"])
             if str(e["body"].get("op", "")).startswith("commission") else str(e["body"].get("op", "?")),
             "by": e.get("note") or "", "sent": (pd.to_datetime(e["sent_ms"], unit="ms", utc=True)
                                                 if e.get("sent_ms") else pd.NaT)}
            for e in entries]
    return pd.DataFrame(rows, columns=["queued", "command", "by", "sent"])

