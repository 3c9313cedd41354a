"""Recordings in other shapes (CSV/text tables, WAV, MATLAB .mat, .npy) made into edgefleet `.npz`.

Nothing is guessed that would change a result: the sampling rate comes from --fs, the file's own
header (WAV) or its time column, and they must agree; the channel is named when there is more than
one; the unit defaults to g and is written into the file (`unit`), and a column header that names
another unit (m/s^2) stops the import until the unit is said. Tables are read in chunks, so a big
file is cut into recordings of --split seconds without being held whole in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from edgefleet.errors import DataError
from edgefleet.runtime.features import FS_MAX_HZ, FS_MIN_HZ
from edgefleet.toolchain.datasets import (
    MAX_SAMPLES,
    check_not_constant,
    rate_hint,
    to_g_factor,
)

SECONDS_COLUMN = re.compile(r"^(t|time|time_?s|time_?\(s\)|seconds?)$|.*\s*[\[(]s[\])]$", re.I)  # 'Zeit [s]'
TIME_NAMES = re.compile(r".*\s*[\[(](s|ms|us|µs)[\])]$|^(t|time|times|timestamp|time_?s|time_?\(?s\)?|seconds?|sec|hour|hours|min|minutes?|"
                        r"microsec|us|usec|ms|time_?ms|time_?us|date|datetime|index|sample|samples)$", re.I)
UNIT_IN_NAME = {"g": re.compile(r"(^|[_\s(\[])g([)\]\s]|$)", re.I),
                "m/s2": re.compile(r"m/?s(\^?2|²|\*\*2)|ms-?2|ms\^?2", re.I),
                "mg": re.compile(r"(^|[_\s(\[])mg([)\]\s]|$)", re.I)}
MAT_BYTES_MAX = 1 << 30  # scipy reads a .mat whole: refuse one larger than this instead of swapping
CHUNK_ROWS = 1 << 18


@dataclass(frozen=True)
class ImportOptions:
    """What the user said about a file; None means "not said" (the file must then say it)."""

    fs: float | None = None
    unit: str | None = None  # None: g, the stated default (unless a column header names another)
    scale: float | None = None  # unit per count, for integer samples (WAV PCM, ADC dumps)
    channel: str | None = None  # column name or 0-based index; a .mat variable path; a WAV channel
    fs_key: str | None = None  # .mat: the variable holding the rate
    resample: float | None = None  # Hz to resample to (rates above the front end's 50 kHz)
    split_s: float | None = None  # cut into recordings of this many seconds


@dataclass
class Piece:
    """One recording to write: samples in g at rate fs, and where they came from."""

    signal: np.ndarray
    fs: float
    source: str
    channel: str
    unit: str


# ---------------------------------------------------------------- pure helpers

def resample_ratio(fs: float, target: float) -> tuple[int, int]:
    """up/down with fs*up/down == target to 1e-6; a DataError when no small ratio does."""
    r = Fraction(target / fs).limit_denominator(2000)
    if r <= 0 or abs(fs * r.numerator / r.denominator - target) > 1e-6 * target:
        raise DataError(f"cannot resample {fs:g} Hz to {target:g} Hz by a ratio of small integers; pick a "
                        f"rate that divides it, e.g. {fs / 2:g}")
    return r.numerator, r.denominator


def resample(x: np.ndarray, fs: float, target: float) -> np.ndarray:
    """Polyphase resampling with scipy's anti-alias filter (what lies above target/2 is removed)."""
    from scipy.signal import resample_poly

    up, down = resample_ratio(fs, target)
    return resample_poly(x.astype(np.float64), up, down).astype(np.float32)


def check_rate(fs: float, what: str) -> None:
    if not np.isfinite(fs) or not FS_MIN_HZ <= fs <= FS_MAX_HZ:
        raise DataError(f"{what}: sampling rate {fs:g} Hz is outside the supported "
                        f"{FS_MIN_HZ:g}-{FS_MAX_HZ:g} Hz{rate_hint(fs)}")


def unit_from_name(name: str) -> str | None:
    """The unit a column header names ('accel_ms2', 'acc (g)'), or None."""
    for unit in ("m/s2", "mg", "g"):
        if UNIT_IN_NAME[unit].search(name):
            return unit
    return None


def rate_from_times(t: np.ndarray, what: str) -> float:
    """The rate a column of times in seconds implies: (n-1)/span, which printed times rounded to a few
    decimals do not bias (the median step does: 1/12800 s printed as 0.0000781 reads 12,804 Hz);
    a gap or a restart is named by row (check_times); snapped to a whole Hz within 0.01 %."""
    t = t.astype(np.float64)
    d = np.diff(t)
    if d.size < 2 or not np.all(np.isfinite(t)):
        raise DataError(f"{what}: the time column holds too few or non-finite times; pass --fs HZ")
    if np.any(d == 0) and np.all(d >= 0):
        raise DataError(f"{what}: the time column repeats values (printed with too few decimals for this rate?); "
                        "pass --fs HZ")
    check_times(t, None, float(np.median(d)), 0, what)
    fs = d.size / (t[-1] - t[0])
    return float(round(fs)) if abs(fs - round(fs)) <= 1e-4 * fs else fs


def coarse_times(t: np.ndarray) -> bool:
    """Times printed with fewer decimals than the sample step (repeated values, never going back)."""
    d = np.diff(t.astype(np.float64))
    return bool(np.any(d == 0) and np.all(d >= 0))


def _mono_channel(channel: str | None, what: str) -> int:
    """Channel 0 of a one-channel file; naming another one is a mistake worth saying."""
    if channel not in (None, "0"):
        raise DataError(f"{what}: one channel only, no channel {channel!r}; drop --channel")
    return 0


def pick_column(names: list[str], channel: str | None, what: str) -> int:
    """The column holding vibration: the one named, or the only one that is not a time column."""
    listing = ", ".join(f"{i}: {n}" for i, n in enumerate(names))
    if channel is not None:
        if channel in names:
            return names.index(channel)
        if channel.lstrip("-").isdigit() and 0 <= int(channel) < len(names):
            return int(channel)
        raise DataError(f"{what}: no column {channel!r}; columns are {listing}")
    signal_cols = [i for i, n in enumerate(names) if not TIME_NAMES.match(n.strip())]
    if len(signal_cols) == 1:
        return signal_cols[0]
    raise DataError(f"{what}: {len(signal_cols)} columns could hold vibration ({listing}); name one with "
                    "--channel NAME|INDEX (one recording per channel: run the import once per channel)")


# ---------------------------------------------------------------- readers (I/O)

def _sniff(path: Path) -> tuple[str | None, list[str], int, str]:
    """Delimiter (None: whitespace), column names, rows to skip (comments, blanks, header) and the
    decimal mark (',' in semicolon-separated files written with a European locale)."""
    with open(path, "r", errors="replace") as f:
        head = [line for _, line in zip(range(50), f)]
    first = next((i for i, ln in enumerate(head) if ln.strip() and not ln.lstrip().startswith(("#", "%"))), None)
    if first is None:
        raise DataError(f"{path.name}: no data rows (the file is empty)")
    data = [ln.strip() for ln in head[first:] if ln.strip()]
    sep = next((d for d in (";", "\t", ",") if d in data[-1]), None)  # ';' first: ',' may be its decimal mark
    cells = [c.strip().strip('"') for c in (data[0].split(sep) if sep else data[0].split())]
    try:
        [float(c.replace(",", ".") if sep == ";" else c) for c in cells]
        header = False
    except ValueError:
        header = True
    body = data[1] if header and len(data) > 1 else data[0]
    n_cols = len(body.split(sep) if sep else body.split())
    names = cells if header and len(cells) == n_cols else [f"column {i}" for i in range(n_cols)]
    decimal = "," if sep == ";" and "," in data[-1] else "."
    return sep, names, first + (1 if header else 0), decimal


def _table_chunks(path: Path, sep: str | None, skip: int, col: int, time_col: int | None, decimal: str = "."
                  ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    import pandas as pd

    usecols = [col] + ([time_col] if time_col is not None else [])
    try:
        reader = pd.read_csv(path, sep=sep if sep else r"\s+", header=None, skiprows=skip, usecols=usecols,
                             chunksize=CHUNK_ROWS, engine="c", dtype=np.float64, skip_blank_lines=True,
                             decimal=decimal)
        for chunk in reader:
            yield chunk[col].to_numpy(), None if time_col is None else chunk[time_col].to_numpy()
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: no data rows (only a header)") from None
    except ValueError as exc:  # a cell that is not a number
        raise DataError(f"{path.name}: a row that is not numbers in the columns read ({exc})") from None


def read_table(path: Path, opts: ImportOptions) -> Iterator[Piece]:
    """CSV / TSV / whitespace tables (IMS-like, FEMTO-like, a logger's export), in chunks."""
    sep, names, skip, decimal = _sniff(path)
    col = pick_column(names, opts.channel, path.name)
    unit = _table_unit(names[col], opts, path.name)
    time_col = next((i for i, n in enumerate(names) if i != col and SECONDS_COLUMN.match(n.strip())), None)
    fs, step = opts.fs, None
    chunks = _table_chunks(path, sep, skip, col, time_col, decimal)
    first = next(chunks, None)
    if first is None or first[0].size == 0:
        raise DataError(f"{path.name}: no data rows")
    if opts.fs is not None and time_col is not None and first[1] is not None and coarse_times(first[1]):
        time_col = None  # printed too coarsely to say anything; --fs says the rate
    if time_col is not None and first[1] is not None and first[1].size > 2:
        fs_t = rate_from_times(first[1], path.name)
        agree = [k for k in (1.0, 1e3, 1e6, 1e9) if abs(fs_t * k - fs) <= 0.01 * fs] if fs is not None else [1.0]
        if not agree:
            raise DataError(f"{path.name}: --fs {fs:g} Hz but the column {names[time_col]!r} says {fs_t:.6g} Hz; "
                            "drop --fs or fix it")
        if fs is None and not 100 <= fs_t <= 1e6:  # no vibration logger samples that slowly or fast
            raise DataError(f"{path.name}: the column {names[time_col]!r} gives {fs_t:.6g} Hz, read as seconds; "
                            "if its times are in another unit (ms, us), pass --fs HZ")
        step = 1.0 / fs_t  # in the column's own unit
        fs = fs if fs is not None else fs_t
    if fs is None:
        raise DataError(f"{path.name}: the sampling rate is not in the file (no time column); pass --fs HZ")

    def samples() -> Iterator[np.ndarray]:
        row, last = 0, None
        for x, t in _chain(first, chunks):
            if step is not None and time_col is not None and t is not None:  # every chunk: a logger's dropout must not be joined silently
                check_times(t, last, step, row, path.name)
                last = float(t[-1])
            row += x.size
            yield x
    yield from _pieces(samples(), fs, opts, f"{path.name}", names[col], unit)


def _chain(first, rest):
    yield first
    yield from rest


def check_times(t: np.ndarray, last: float | None, step: float, row: int, what: str) -> None:
    """Each step of a time column between half and one and a half of the rate's (rounding of printed
    times stays inside; a lost sample or more, or a jump back, does not): named by data row."""
    tt = t.astype(np.float64) if last is None else np.concatenate([[last], t.astype(np.float64)])
    d = np.diff(tt)
    bad = np.flatnonzero((d > 1.5 * step) | (d < 0.5 * step))
    if bad.size:
        i = int(bad[0])
        at = row + i + (0 if last is None else -1) + 1
        raise DataError(f"{what}: the time column steps from {tt[i]:.9g} to {tt[i + 1]:.9g} at data row {at + 1} "
                        f"(a step of {d[i]:.3g}, expected {step:.3g}): a gap or a restart; cut the file there and "
                        "import the parts as separate recordings")


VELOCITY_IN_NAME = re.compile(r"(mm|in|m)/s(?![\^²2*])|ips\b", re.I)


def _table_unit(name: str, opts: ImportOptions, what: str) -> str:
    if opts.unit is None and VELOCITY_IN_NAME.search(name):
        raise DataError(f"{what}: column {name!r} looks like velocity; the front end takes acceleration "
                        "(it integrates to mm/s itself): export acceleration, or pass --unit if it is one")
    said = unit_from_name(name)
    if opts.unit is not None and said is not None and to_g_factor(said) != to_g_factor(opts.unit):
        raise DataError(f"{what}: column {name!r} looks like {said} but --unit is {opts.unit}; check which is right "
                        "(a wrong unit scales every velocity)")
    if opts.unit is None and said not in (None, "g"):
        raise DataError(f"{what}: column {name!r} looks like {said}, but no --unit was given (the default is g); "
                        f"pass --unit {said} (or --unit g if it is in g)")
    return opts.unit or "g"


def read_wav(path: Path, opts: ImportOptions) -> Iterator[Piece]:
    """A WAV file: rate from its header; samples memory-mapped; a WAV has no unit, so --scale is needed."""
    import scipy.io.wavfile as wavfile

    try:
        fs_h, data = wavfile.read(path, mmap=True)
    except ValueError:  # 24-bit PCM cannot be memory-mapped: read it whole when it is not huge
        if path.stat().st_size > MAT_BYTES_MAX:
            raise DataError(f"{path.name}: a 24-bit WAV over {MAT_BYTES_MAX / 2**30:g} GB; convert it to 16/32-bit "
                            "or float, which are read in chunks") from None
        try:
            fs_h, data = wavfile.read(path)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path.name}: not a WAV file this reader takes ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path.name}: not a readable WAV file ({exc})") from None
    if opts.fs is not None and abs(opts.fs - fs_h) > 1e-6 * fs_h:
        raise DataError(f"{path.name}: --fs {opts.fs:g} Hz but the WAV header says {fs_h} Hz; drop --fs "
                        "(a WAV states its rate)")
    if opts.scale is None:
        full = {"i": f"full scale / {2 ** (8 * data.dtype.itemsize - 1)}", "u": "full scale / 128",
                "f": "the unit of 1.0"}[data.dtype.kind]
        raise DataError(f"{path.name}: a WAV file stores no unit; pass --scale S --unit g|m/s2 (S = {full}, "
                        f"this file holds {data.dtype} samples)")
    names = [str(i) for i in range(1 if data.ndim == 1 else data.shape[1])]
    ch = _mono_channel(opts.channel, path.name) if data.ndim == 1 else \
        pick_column(names, opts.channel, f"{path.name} ({len(names)} channels)")
    col = data if data.ndim == 1 else data[:, ch]

    def samples() -> Iterator[np.ndarray]:
        for i in range(0, col.shape[0], CHUNK_ROWS):
            x = np.asarray(col[i:i + CHUNK_ROWS])
            yield (x.astype(np.float64) - 128.0) if x.dtype.kind == "u" else x.astype(np.float64)
    yield from _pieces(samples(), float(fs_h), opts, path.name, f"channel {ch}", opts.unit or "g")


def read_npy(path: Path, opts: ImportOptions) -> Iterator[Piece]:
    """A bare .npy array [n] or [n, channels] (memory-mapped); it has no rate, so --fs is needed."""
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path.name}: not a numeric .npy array ({exc})") from None
    if opts.fs is None:
        raise DataError(f"{path.name}: a .npy array has no sampling rate; pass --fs HZ")
    if data.ndim not in (1, 2) or data.dtype.kind not in "fiu":
        raise DataError(f"{path.name}: need real numbers [n] or [n, channels], got {data.dtype} {data.shape}")
    names = [str(i) for i in range(1 if data.ndim == 1 else data.shape[1])]
    ch = _mono_channel(opts.channel, path.name) if data.ndim == 1 else \
        pick_column(names, opts.channel, f"{path.name} ({len(names)} channels)")
    col = data if data.ndim == 1 else data[:, ch]
    if col.dtype.kind in "iu" and opts.scale is None:
        raise DataError(f"{path.name}: integer counts ({col.dtype}); pass --scale (unit per count)")
    yield from _pieces((np.asarray(col[i:i + CHUNK_ROWS], np.float64) for i in range(0, col.shape[0], CHUNK_ROWS)),
                       opts.fs, opts, path.name, f"channel {ch}", opts.unit or "g")


def mat_entries(obj, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
    """Every numeric array in a loaded .mat, by path (struct fields with '.', Paderborn-style
    struct arrays with a `Name` field by that name, other elements by index)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not k.startswith("__"):
                yield from mat_entries(v, f"{prefix}{k}")
        return
    a = np.asarray(obj)
    if a.dtype.names:
        for i, el in enumerate(a.reshape(-1)):
            name = el["Name"] if "Name" in a.dtype.names else None
            label = str(np.asarray(name).reshape(-1)[0]) if name is not None and np.asarray(name).size else str(i)
            base = f"{prefix}.{label}" if a.size > 1 else prefix
            for f in a.dtype.names:
                if f != "Name":
                    yield from mat_entries(el[f], f"{base}.{f}" if not (a.size > 1 and f == "Data") else base)
        return
    if a.dtype == object:
        for i, el in enumerate(a.reshape(-1)):
            yield from mat_entries(el, prefix if a.size == 1 else f"{prefix}[{i}]")
        return
    if a.dtype.kind in "fiu":
        yield prefix, a


def read_mat(path: Path, opts: ImportOptions) -> Iterator[Piece]:
    """A MATLAB v5 .mat (CWRU, MFPT, Paderborn): --channel names the variable path; the rate is
    --fs or --fs-key (a scalar in the file), never guessed from a name like `rate` (MFPT's `rate`
    is the shaft speed, `sr` the sampling rate)."""
    import scipy.io

    if path.stat().st_size > MAT_BYTES_MAX:
        raise DataError(f"{path.name}: {path.stat().st_size / 2**30:.1f} GB; a .mat is read whole, so files over "
                        f"{MAT_BYTES_MAX / 2**30:g} GB are refused: export the channel as CSV or WAV")
    try:
        m = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=True)
    except NotImplementedError:
        raise DataError(f"{path.name}: a MATLAB v7.3 (HDF5) file; save it with save(..., '-v7') or export the "
                        "channel as CSV") from None
    except Exception as exc:
        raise DataError(f"{path.name}: not a readable .mat file ({exc})") from None
    yield from _from_entries(path, dict(mat_entries(m)), opts)


def read_foreign_npz(path: Path, opts: ImportOptions) -> Iterator[Piece]:
    """An .npz from another tool (keys other than signal/fs): picked like a .mat's arrays."""
    from edgefleet.toolchain.datasets import _member_shape, open_npz

    with open_npz(path) as z:
        if {"signal", "fs"} <= set(z.files):
            raise DataError(f"{path.name}: already an edgefleet recording (signal, fs): pass it to --data as it is")
        entries = {}
        for k in z.files:
            shape, dtype = _member_shape(z, k)
            if dtype.kind in "fiu":
                if int(np.prod(shape)) > MAX_SAMPLES:
                    raise DataError(f"{path.name}: {k} holds {int(np.prod(shape)):,} samples, more than the "
                                    f"{MAX_SAMPLES:,} read at once; save it as .npy (read in chunks) and import that")
                entries[k] = np.asarray(z[k])
    yield from _from_entries(path, entries, opts)


def _from_entries(path: Path, entries: dict[str, np.ndarray], opts: ImportOptions) -> Iterator[Piece]:
    """The vibration array (--channel, or the only one of 1,000+ samples) and the rate (--fs or
    --fs-key, never a guess from a name) among a file's named arrays."""
    arrays = {k: v for k, v in entries.items() if v.size >= 1000}
    scalars = {k: float(v.reshape(-1)[0]) for k, v in entries.items() if v.size == 1}
    listing = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()) or "none"
    column = None
    if opts.channel is not None:
        key, _, col = opts.channel.rpartition(":") if ":" in opts.channel else (opts.channel, "", "")
        if key not in arrays or (col and not col.isdigit()):
            raise DataError(f"{path.name}: no array {opts.channel!r}; arrays of 1,000+ samples: {listing} "
                            "(a column of a 2-D one: --channel NAME:INDEX)")
        column = int(col) if col else None
    elif len(arrays) == 1:
        key = next(iter(arrays))
    else:
        raise DataError(f"{path.name}: {len(arrays)} arrays could be the vibration ({listing}); name one with "
                        "--channel PATH")
    fs = opts.fs
    if opts.fs_key is not None:
        if opts.fs_key not in scalars:
            raise DataError(f"{path.name}: no number {opts.fs_key!r}; numbers in the file: "
                            + (", ".join(f"{k}={v:g}" for k, v in scalars.items()) or "none"))
        fs_k = scalars[opts.fs_key]
        if fs is not None and abs(fs - fs_k) > 1e-6 * fs:
            raise DataError(f"{path.name}: --fs {fs:g} but {opts.fs_key} = {fs_k:g}; give one of them")
        fs = fs_k
    if fs is None:
        raise DataError(f"{path.name}: the sampling rate is not named; pass --fs HZ or --fs-key PATH (numbers in "
                        "the file: " + (", ".join(f"{k}={v:g}" for k, v in scalars.items()) or "none") + ")")
    x = arrays[key]
    if column is not None:
        if x.ndim != 2 or column >= min(x.shape):
            raise DataError(f"{path.name}: {key} is {list(x.shape)}: no channel {column} in it")
        x = x[:, column] if x.shape[0] >= x.shape[1] else x[column]  # channels are the short axis
    if x.ndim != 1 and min(x.shape) != 1:
        raise DataError(f"{path.name}: {key} is {list(x.shape)}; name one channel with --channel {key}:INDEX")
    if x.dtype.kind in "iu" and opts.scale is None:
        raise DataError(f"{path.name}: {key} holds integer counts ({x.dtype}); pass --scale (unit per count)")
    x = x.reshape(-1)
    yield from _pieces((x[i:i + CHUNK_ROWS].astype(np.float64) for i in range(0, x.size, CHUNK_ROWS)),
                       fs, opts, path.name, key, opts.unit or "g")


READERS = {".csv": read_table, ".txt": read_table, ".tsv": read_table, ".dat": read_table, ".wav": read_wav,
           ".mat": read_mat, ".npy": read_npy}


def reader_for(path: Path):
    """By suffix; a file without a known suffix (IMS names files by date) is read as a text table."""
    suffix = path.suffix.lower()
    if suffix in READERS:
        return READERS[suffix]
    if suffix == ".npz":
        return read_foreign_npz
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"\x00" in head:
        raise DataError(f"{path.name}: a binary file of unknown kind; supported: CSV/TSV/text tables, .wav, "
                        ".mat (v5), .npy")
    return read_table


# ---------------------------------------------------------------- pieces

def _pieces(chunks: Iterator[np.ndarray], fs: float, opts: ImportOptions, source: str, channel: str,
            unit: str) -> Iterator[Piece]:
    """Samples in g, checked (finite, not constant), resampled if asked, cut every --split seconds;
    at most MAX_SAMPLES held at once."""
    factor = to_g_factor(unit) * (opts.scale if opts.scale is not None else 1.0)
    out_fs = opts.resample or fs
    if opts.resample is None:
        check_rate(fs, source)
    else:
        check_rate(opts.resample, f"{source} (--resample)")
        resample_ratio(fs, opts.resample)
    per = int(round(opts.split_s * fs)) if opts.split_s else MAX_SAMPLES
    buf: list[np.ndarray] = []
    held, start, seen = 0, 0, 0

    def emit(parts: list[np.ndarray]) -> Piece:
        x = np.concatenate(parts)
        check_not_constant(source, x, channel)
        return Piece(resample(x, fs, opts.resample) if opts.resample else x, float(out_fs), source, channel, unit)

    for c in chunks:
        c = (np.asarray(c, np.float64) * factor).astype(np.float32)  # in g, float32: half the memory held
        bad = ~np.isfinite(c)
        if bad.any():
            raise DataError(f"{source}: NaN or infinite samples (the first at sample {seen + int(np.argmax(bad))}); "
                            "clean the file or cut that part out")
        seen += c.size
        while c.size:
            if held == per:  # only without --split: the file is longer than one recording may be
                raise DataError(f"{source}: more than {MAX_SAMPLES:,} samples ({MAX_SAMPLES / fs / 60:.0f} min); "
                                "cut it into recordings with --split SECONDS")
            take = min(c.size, per - held)
            buf.append(c[:take])
            held += take
            c = c[take:]
            if held == per and opts.split_s:
                yield emit(buf)
                start += held
                buf, held = [], 0
    if held:
        yield emit(buf)  # the tail (a short one: the loader says when it is under a window)
    elif not start:
        raise DataError(f"{source}: no samples")
