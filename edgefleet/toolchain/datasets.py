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

# The front end works in g. A recording says its unit in the key `unit` (default g, stated in
# docs/features.md): a file in m/s^2 read as g would give 9.81x the velocity and bands 2 decades high.
STANDARD_GRAVITY = 9.80665
UNITS_TO_G = {"g": 1.0, "m/s2": 1.0 / STANDARD_GRAVITY, "m/s^2": 1.0 / STANDARD_GRAVITY,
              "m/s**2": 1.0 / STANDARD_GRAVITY, "mm/s2": 1e-3 / STANDARD_GRAVITY, "mg": 1e-3}
# Largest signal read into memory (float32: 256 MB; 23 minutes at 48 kHz): a bigger file is refused
# from its header before a byte of it is read, instead of exhausting the machine.
MAX_SAMPLES = 1 << 26
MAX_FOLDER_SAMPLES = 1 << 28  # a folder's recordings together (1 GB as float32), summed from headers first


def to_g_factor(unit: str) -> float:
    """Multiplier from `unit` to g; a DataError lists the units there are."""
    key = str(unit).strip().lower().replace(" ", "").replace("²", "2")
    if key not in UNITS_TO_G:
        raise DataError(f"unknown unit {unit!r}; use one of {', '.join(sorted(UNITS_TO_G))}")
    return UNITS_TO_G[key]


def rate_hint(fs: float) -> str:
    """What to do about a rate the front end cannot take (empty when the rate is in range)."""
    from edgefleet.runtime.features import FS_MAX_HZ, FS_MIN_HZ

    if 0 < fs < 100 and FS_MIN_HZ <= fs * 1000 <= FS_MAX_HZ:
        return f"; fs is in Hz: store {fs * 1000:g}, not {fs:g} (kHz)"
    if fs < FS_MIN_HZ:
        return (f"; record this machine at {FS_MIN_HZ:g} Hz or more (a slower recording cannot be "
                "made faster: what it lacks above its Nyquist frequency was never measured)")
    if fs > FS_MAX_HZ:
        return (f"; resample it into {FS_MIN_HZ:g}-{FS_MAX_HZ:g} Hz first, e.g. "
                f"`edgefleet data import FILE --resample {_resample_target(fs):g}`")
    return ""


def _resample_target(fs: float) -> float:
    from edgefleet.runtime.features import FS_MAX_HZ

    d = 2
    while fs / d > FS_MAX_HZ:
        d += 1
    return round(fs / d, 3)


def _member_shape(z: np.lib.npyio.NpzFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an array in the .npz from its header alone (nothing is read into memory)."""
    name = f"{key}.npy" if f"{key}.npy" in z.zip.namelist() else key
    with z.zip.open(name) as f:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(f)
    return shape, dtype


def read_signal(name: str, z: np.lib.npyio.NpzFile, key: str = "signal", *, refuse_constant: bool = True) -> np.ndarray:
    """The samples under `key` as float32 in g: checked for kind and size before they are read,
    scaled by `scale` (unit per count: raw ADC counts need it) and converted from `unit`
    (default g). A constant signal (a dead or unplugged sensor) is refused unless the caller names
    dead-sensor windows itself (replay): training on it would learn a dead sensor as normal."""
    shape, dtype = _member_shape(z, key)
    n = int(np.prod(shape)) if shape else 1
    if n > MAX_SAMPLES:
        raise DataError(f"{name}: {key} holds {n:,} samples, more than the {MAX_SAMPLES:,} read at once; "
                        "cut it into shorter recordings (`edgefleet data import FILE --split SECONDS`)")
    if dtype.kind not in "fiu":
        raise DataError(f"{name}: {key} must hold real numbers (float or integer counts), got dtype {dtype}")
    if dtype.kind in "iu" and "scale" not in z.files:
        raise DataError(f"{name}: {key} holds integer counts ({dtype}) and no `scale`; add the key `scale` "
                        "(unit per count, e.g. 16/32768 for a +-16 g 16-bit sensor) and `unit`")
    factor = 1.0
    if "scale" in z.files:
        try:
            factor = float(z["scale"])
        except (TypeError, ValueError):
            raise DataError(f"{name}: scale {z['scale']!r} is not a number (unit per count)") from None
        if not np.isfinite(factor) or factor <= 0:
            raise DataError(f"{name}: scale must be a finite number > 0 (unit per count), got {factor:g}")
    if "unit" in z.files:
        factor *= to_g_factor(str(z["unit"]))
    sig = np.asarray(z[key])
    sig = sig.astype(np.float32) if factor == 1.0 else (sig.astype(np.float64) * factor).astype(np.float32)
    if refuse_constant:
        check_not_constant(name, sig, key)
    if "unit" not in z.files:
        warn_if_gravity(name, sig)
    return sig


def warn_if_gravity(name: str, sig: np.ndarray) -> None:
    """A mean near 9.81 is 1 g of gravity in m/s^2 (a DC-coupled vertical axis): read as g, such a
    file gives 9.81x the velocity. Said once as a warning; the stated default stays g."""
    head = sig[: 1 << 20]
    finite = head[np.isfinite(head)]  # none (an all-NaN file): no mean, and no "Mean of empty slice" warning
    mean = float(finite.mean()) if finite.size else 0.0
    if abs(abs(mean) - STANDARD_GRAVITY) < 0.5:
        log.warning("%s: mean %.2f looks like gravity in m/s^2, but the file has no `unit` and is read as g "
                    "(default); if it is in m/s^2, add unit='m/s2' (or import it with --unit m/s2)", name, mean)


def check_not_constant(name: str, sig: np.ndarray, key: str = "signal") -> None:
    """A DataError for a signal with one value in every (finite) sample."""
    finite = sig[np.isfinite(sig)]
    if finite.size > 1 and finite.min() == finite.max():
        raise DataError(f"{name}: {key} is constant ({finite[0]:g} in every sample): no vibration in it "
                        "(a dead, unplugged or saturated sensor?); drop the file")


def read_fs(name: str, z: np.lib.npyio.NpzFile) -> float:
    """The sampling rate in Hz: one positive finite number; a DataError says what to do otherwise."""
    try:
        fs = float(np.asarray(z["fs"]).reshape(-1)[0]) if np.asarray(z["fs"]).size == 1 else float("nan")
    except (TypeError, ValueError):
        raise DataError(f"{name}: fs {z['fs']!r} is not a number (the sampling rate in Hz, e.g. 12800)") from None
    if not np.isfinite(fs) or fs <= 0:
        raise DataError(f"{name}: invalid sampling rate fs={z['fs']!r} (one number in Hz, e.g. 12800)")
    hint = rate_hint(fs)
    if hint.startswith("; fs is in Hz"):
        raise DataError(f"{name}: sampling rate {fs:g} Hz is outside the supported range{hint}")
    return fs


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
                        "(a .npz is a zip of NumPy arrays, as numpy.savez writes; this file is not one); "
                        "convert CSV, WAV, .mat or .npy files with `edgefleet data import`")
    return np.load(path, allow_pickle=False)


def load_recording(path: str | Path) -> Recording:
    """One `.npz` recording; a DataError names the file and the problem."""
    p = Path(path)
    try:
        with open_npz(p) as z:
            keys = set(z.files)
            missing = {"signal", "fs", "label"} - keys
            if missing:
                lack = " and ".join(k for k in ("signal", "fs", "label") if k in missing)
                raise DataError(f"{p.name} has no {lack}: a recording must hold signal (the samples), fs (the "
                                "sampling rate in Hz) and label ('normal' or the fault's name); an .npz with other "
                                "names: `edgefleet data import FILE --channel KEY --fs-key KEY`")
            signal = read_signal(p.name, z, refuse_constant=False)
            fs = read_fs(p.name, z)
            label = str(z["label"])
            meta = {k: z[k].item() for k in keys
                    if k not in ("signal", "signal_48k") and _member_shape(z, k)[0] == ()}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{p.name}: not a readable .npz recording ({exc})") from exc
    if signal.ndim != 1:
        raise DataError(f"{p.name}: signal must be 1-D (one channel), got shape {signal.shape}; save one "
                        "channel per recording (`edgefleet data import FILE --channel N`)")
    if not np.isfinite(signal).all():
        bad = int((~np.isfinite(signal)).sum())
        raise DataError(f"{p.name}: signal holds {bad} NaN or infinite samples; clean or drop the file")
    if "rpm" in meta:
        try:
            rpm = float(meta["rpm"])
        except (TypeError, ValueError):
            raise DataError(f"{p.name}: rpm {meta['rpm']!r} is not a number") from None
        if not (rpm == 0 or RPM_MIN <= rpm <= RPM_MAX):  # 0: speed unknown
            raise DataError(f"{p.name}: rpm {rpm:g} is implausible (expected {RPM_MIN:g}-{RPM_MAX:g}, "
                            "or 0 / no rpm key when the speed is unknown)")
    if meta.get("dataset") != PULLED:  # a node's captures are checked once joined (merge_captures)
        check_not_constant(p.name, signal)
    return Recording(name=p.stem, signal=signal, fs=fs, label=label, meta=meta)


def _signal_size(path: Path) -> int:
    """Samples in a recording's `signal`, from its header (0 when unreadable: load_recording says why)."""
    try:
        with open_npz(path) as z:
            shape, _ = _member_shape(z, "signal") if "signal" in z.files else ((), None)
    except Exception:
        return 0
    return int(np.prod(shape)) if shape else 0


def load_folder(folder: str | Path) -> list[Recording]:
    d = Path(folder)
    if not d.is_dir():
        what = "is a file, not a folder of .npz recordings" if d.is_file() else "does not exist"
        raise DataError(f"data folder {d} {what}")
    files = sorted(d.glob("*.npz"))
    if not files:
        raise DataError(no_npz_message(d))
    total = sum(_signal_size(f) for f in files)
    if total > MAX_FOLDER_SAMPLES:
        raise DataError(f"{d}: {len(files)} recordings hold {total:,} samples ({total * 4 / 2**30:.1f} GB as float32), "
                        f"more than the {MAX_FOLDER_SAMPLES:,} loaded at once; train on a folder with fewer or "
                        "shorter recordings")
    out = merge_captures([load_recording(f) for f in files])
    for r in out:
        if r.meta.get("dataset") == PULLED:  # a node's captures, checked once joined
            check_not_constant(f"{r.name} ({r.meta['captures']} captures)", r.signal)
    return out


def no_npz_message(d: Path) -> str:
    """Why a folder gave no recordings, and how to make some from what it holds."""
    others = sorted(f.name for f in d.iterdir() if f.is_file())
    if not others:
        return f"no .npz recordings in {d} (the folder is empty)"
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    return (f"no .npz recordings in {d} (it holds {shown}); convert them with "
            f"`edgefleet data import FILES --fs HZ --unit g|m/s2 --out {d}` (docs/features.md, Recordings)")


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
        raise DataError(f"{rec.name}: {exc}{rate_hint(rec.fs)}") from exc
    n_seg = int(rec.meta.get("segment", 0) or 0)
    if n_seg and rec.signal.size % n_seg == 0:  # merged captures: whole captures, windows within each
        caps = rec.signal.reshape(-1, n_seg)[int(rec.signal.size // n_seg * start):int(rec.signal.size // n_seg * stop)]
        if n_seg < p.n_samples or not len(caps):
            raise DataError(
                f"{rec.name}: {len(caps)} capture(s) of {n_seg / rec.fs:.3f} s in the selected span, need at least "
                f"one of a {p.n_samples / rec.fs:.4g} s window (feature definition v{params.version}); "
                + ("pull more (edgefleet data pull --target ... --seconds N) or with the model the window is for"
                   if rec.meta.get("dataset") == PULLED else
                   "snapshots this short serve only a model with a shorter window (v1, model train --window)"))
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
