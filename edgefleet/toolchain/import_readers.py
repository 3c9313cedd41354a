"""Readers of other tools' files for `edgefleet data import`: text tables, WAV, MATLAB v5 .mat,
.npy and another tool's .npz, each handing its samples to `importers.pieces` in chunks (tables
through pandas, WAV and .npy memory-mapped; a .mat is read whole by scipy, so a huge one is refused).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from edgefleet.errors import DataError
from edgefleet.toolchain.datasets import MAX_SAMPLES
from edgefleet.toolchain.importers import (
    SECONDS_COLUMN,
    ImportOptions,
    Piece,
    check_times,
    coarse_times,
    mat_entries,
    mono_channel,
    pick_column,
    pieces,
    rate_from_times,
    table_unit,
)

MAT_BYTES_MAX = 1 << 30  # scipy reads a .mat whole: refuse one larger than this instead of swapping
CHUNK_ROWS = 1 << 18


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
    unit = table_unit(names[col], opts, path.name)
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
    yield from pieces(samples(), fs, opts, f"{path.name}", names[col], unit)


def _chain(first, rest):
    yield first
    yield from rest


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
    ch = mono_channel(opts.channel, path.name) if data.ndim == 1 else \
        pick_column(names, opts.channel, f"{path.name} ({len(names)} channels)")
    col = data if data.ndim == 1 else data[:, ch]

    def samples() -> Iterator[np.ndarray]:
        for i in range(0, col.shape[0], CHUNK_ROWS):
            x = np.asarray(col[i:i + CHUNK_ROWS])
            yield (x.astype(np.float64) - 128.0) if x.dtype.kind == "u" else x.astype(np.float64)
    yield from pieces(samples(), float(fs_h), opts, path.name, f"channel {ch}", opts.unit or "g")


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
    ch = mono_channel(opts.channel, path.name) if data.ndim == 1 else \
        pick_column(names, opts.channel, f"{path.name} ({len(names)} channels)")
    col = data if data.ndim == 1 else data[:, ch]
    if col.dtype.kind in "iu" and opts.scale is None:
        raise DataError(f"{path.name}: integer counts ({col.dtype}); pass --scale (unit per count)")
    yield from pieces((np.asarray(col[i:i + CHUNK_ROWS], np.float64) for i in range(0, col.shape[0], CHUNK_ROWS)),
                       opts.fs, opts, path.name, f"channel {ch}", opts.unit or "g")


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
    yield from pieces((x[i:i + CHUNK_ROWS].astype(np.float64) for i in range(0, x.size, CHUNK_ROWS)),
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
