"""Labelled vibration recordings in the `shared/data` `.npz` format, cut into windows.

I/O lives here; everything it returns is plain arrays for the pure feature code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefleet.errors import DataError, FeatureError
from edgefleet.runtime.features import FeatureParams, frame, plan

log = logging.getLogger(__name__)
NORMAL = "normal"


@dataclass(frozen=True)
class Recording:
    name: str
    signal: np.ndarray  # float32 [samples], in g
    fs: float
    label: str
    meta: dict

    @property
    def is_normal(self) -> bool:
        return self.label == NORMAL


ZIP_MAGIC = b"PK\x03\x04"


RPM_MIN, RPM_MAX = 30.0, 100_000.0  # a recording's claimed running speed, as the protocol bounds it


def open_npz(path: Path) -> np.lib.npyio.NpzFile:
    """np.load for a `.npz`, once the file is known to be one: numpy's own error for any other
    file speaks of pickled data and `allow_pickle`, which is the wrong advice for a recording."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(ZIP_MAGIC))
    except OSError as exc:
        raise DataError(f"{path.name}: not a readable .npz recording ({exc.strerror})") from exc
    if head != ZIP_MAGIC:
        raise DataError(f"{path.name}: not a readable .npz recording "
                        "(a .npz is a zip of NumPy arrays, as numpy.savez writes; this file is not one)")
    return np.load(path, allow_pickle=False)


def load_recording(path: str | Path) -> Recording:
    """One `.npz` recording; a DataError names the file and the problem."""
    p = Path(path)
    try:
        with open_npz(p) as z:
            keys = set(z.files)
            missing = {"signal", "fs", "label"} - keys
            if missing:
                raise DataError(f"{p.name}: missing keys {sorted(missing)} (need signal, fs, label)")
            signal = np.asarray(z["signal"], dtype=np.float32)
            fs = float(z["fs"])
            label = str(z["label"])
            meta = {k: z[k].item() for k in keys
                    if k not in ("signal", "signal_48k") and z[k].ndim == 0}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{p.name}: not a readable .npz recording ({exc})") from exc
    if signal.ndim != 1:
        raise DataError(f"{p.name}: signal must be 1-D, got shape {signal.shape}")
    if not np.isfinite(signal).all():
        bad = int((~np.isfinite(signal)).sum())
        raise DataError(f"{p.name}: signal holds {bad} NaN or infinite samples; clean or drop the file")
    if not np.isfinite(fs) or fs <= 0:
        raise DataError(f"{p.name}: invalid sampling rate {fs}")
    if "rpm" in meta:
        try:
            rpm = float(meta["rpm"])
        except (TypeError, ValueError):
            raise DataError(f"{p.name}: rpm {meta['rpm']!r} is not a number") from None
        if not (rpm == 0 or RPM_MIN <= rpm <= RPM_MAX):  # 0: speed unknown
            raise DataError(f"{p.name}: rpm {rpm:g} is implausible (expected {RPM_MIN:g}-{RPM_MAX:g}, "
                            "or 0 / no rpm key when the speed is unknown)")
    return Recording(name=p.stem, signal=signal, fs=fs, label=label, meta=meta)


def load_folder(folder: str | Path) -> list[Recording]:
    d = Path(folder)
    if not d.is_dir():
        what = "is a file, not a folder of .npz recordings" if d.is_file() else "does not exist"
        raise DataError(f"data folder {d} {what}")
    files = sorted(d.glob("*.npz"))
    if not files:
        raise DataError(f"no .npz recordings in {d}")
    return merge_captures([load_recording(f) for f in files])


PULLED = "edgefleet data pull"  # the `dataset` key of captures written by `edgefleet data pull --format npz`


def merge_captures(recordings: list[Recording]) -> list[Recording]:
    """Captures a node sent one window at a time (`edgefleet data pull`) become one recording per
    machine, rate, label, length and speed class (+-5 %), in time order, with `segment` = the
    capture length: a single capture is too short to split in time into training and held-out
    parts, and windows must never straddle two captures taken seconds apart. Other recordings pass
    through unchanged."""
    from edgefleet.runtime.baseline import RPM_TOLERANCE

    out, groups = [], {}
    for r in recordings:
        if r.meta.get("dataset") != PULLED:
            out.append(r)
            continue
        rpm = float(r.meta.get("rpm", 0) or 0)
        key = (str(r.meta.get("machine", r.name)), r.fs, r.label, r.signal.size)
        classes = groups.setdefault(key, [])
        cls = next((c for c in classes if (c["rpm"] == 0) == (rpm == 0)
                    and (rpm == 0 or abs(rpm - c["rpm"]) <= RPM_TOLERANCE * c["rpm"])), None)
        if cls is None:
            cls = {"rpm": rpm, "members": []}
            classes.append(cls)
        cls["members"].append(r)
    for (machine, fs, label, n), classes in groups.items():
        for k, cls in enumerate(classes):
            members = sorted(cls["members"], key=lambda r: int(r.meta.get("ts_ms", 0)))
            rpms = [float(r.meta.get("rpm", 0) or 0) for r in members]
            meta = {"machine": machine, "rpm": float(np.median(rpms)), "segment": n, "captures": len(members),
                    "dataset": PULLED}
            out.append(Recording(name=f"{machine}-captures-{k}", signal=np.concatenate([r.signal for r in members]),
                                 fs=fs, label=label, meta=meta))
    return out


def windows_of(rec: Recording, params: FeatureParams, *, hop_fraction: float = 1.0,
               start: float = 0.0, stop: float = 1.0) -> np.ndarray:
    """Windows [n, N] from the time span [start, stop) (fractions of the recording)."""
    try:
        p = plan(params, rec.fs)
    except FeatureError as exc:
        raise DataError(f"{rec.name}: {exc}") from exc
    n_seg = int(rec.meta.get("segment", 0) or 0)
    if n_seg and rec.signal.size % n_seg == 0:  # merged captures: whole captures, windows within each
        caps = rec.signal.reshape(-1, n_seg)[int(rec.signal.size // n_seg * start):int(rec.signal.size // n_seg * stop)]
        if n_seg < p.n_samples or not len(caps):
            raise DataError(
                f"{rec.name}: {len(caps)} capture(s) of {n_seg / rec.fs:.3f} s in the selected span, need at least "
                f"one of a {p.n_samples / rec.fs:.4g} s window (feature definition v{params.version}); pull more "
                f"(edgefleet data pull --target ... --seconds N) or with the model the window is for")
        hop = max(1, int(round(p.n_samples * hop_fraction)))
        return np.concatenate([frame(c, p.n_samples, hop) for c in caps])
    lo, hi = int(rec.signal.size * start), int(rec.signal.size * stop)
    seg = rec.signal[lo:hi]
    if seg.size < p.n_samples:
        raise DataError(
            f"{rec.name}: {seg.size} samples ({seg.size / rec.fs:.3f} s) in the selected span, fewer "
            f"than one {p.n_samples / rec.fs:.4g} s window ({p.n_samples} samples, feature definition "
            f"v{params.version})")
    hop = max(1, int(round(p.n_samples * hop_fraction)))
    return frame(seg, p.n_samples, hop)
