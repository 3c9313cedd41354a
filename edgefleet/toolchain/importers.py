"""Recordings in other shapes made into edgefleet `.npz`: the pure part (no file access).

Nothing is guessed that would change a result: the sampling rate comes from --fs, the file's own
header (WAV), a named number (.mat) or its time column, and they must agree; the channel is named
when there is more than one; the unit defaults to g and is written into the file (`unit`), and a
column header that names another unit (m/s^2) stops the import until the unit is said. The readers
(`toolchain/import_readers.py`) feed `pieces` chunk by chunk, so memory stays bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
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
# A unit in a column header, as loggers write it: "m/s^2", "m/s²", "m_s2", "ms-2", "m.s-2", "mm/s2",
# "mm_s" or "mms" (velocity), "in/s", "in_s", "ips". Without a slash a unit is a word of its own: not
# preceded by a letter ("chips" holds no "ips"), not followed by a letter or digit; "mm" is never
# read as "m". Missing a unit is the costly mistake (a wrong unit scales every figure, and a header
# that names one stops the import until --unit is said), so "ms2" counts anywhere.
_SQUARED = r"\s*(?:\^\s*2|²|\*\*\s*2|_?2|\^?-2|⁻²)(?![0-9])"  # "^2", "²", "**2", "2", "_2", "-2", "⁻²"
_NOT_SQUARED = r"(?!\s*(?:\^|²|\*\*|_?2|-2|⁻²))(?![a-z0-9])"


def _unit(num: str, sep_optional: bool = True) -> str:
    """`num` per second: with a slash anywhere ("accm/s2"), else a word of its own ("acc_m_s2", "mms")."""
    sep = "[_ .·]?" if sep_optional else "[_ .·]"
    return rf"(?:(?<!m){num}\s*/\s*s(?:ec)?|(?<![a-z]){num}{sep}\s*s(?:ec)?)"


UNIT_IN_NAME = {"g": re.compile(r"(^|[_\s(\[])g([)\]\s]|$)", re.I),
                "mm/s2": re.compile(_unit("mm") + _SQUARED, re.I),
                "m/s2": re.compile(_unit("(?<!m)m") + _SQUARED + r"|(?<!m)ms\s*(?:\^?-?2|²)(?![0-9])", re.I),
                "mg": re.compile(r"(^|[_\s(\[])mg([)\]\s]|$)", re.I)}
# Velocity: mm/s, in/s or m/s, not squared ("mm_s", "mms", "in_s", "ips", "m/s", "mm s-1"); a bare "ms"
# is not one of them (milliseconds, or m/s without its slash: too ambiguous to refuse on).
VELOCITY_IN_NAME = re.compile(rf"(?:{_unit('mm')}|{_unit('in', False)}|{_unit('(?<!m)m', False)}|"
                              rf"(?<![a-z])(?:ips|m{{1,2}}\s*s\^?-1)){_NOT_SQUARED}", re.I)


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
    for unit in ("mm/s2", "m/s2", "mg", "g"):
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


def mono_channel(channel: str | None, what: str) -> int:
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


def table_unit(name: str, opts: ImportOptions, what: str) -> str:
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


# ---------------------------------------------------------------- pieces

def pieces(chunks: Iterator[np.ndarray], fs: float, opts: ImportOptions, source: str, channel: str,
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
