"""A machine's own normal, learned on the node: the commissioning baseline (docs/baseline.md).

One fleet model serves machines it has never seen because each node standardizes its features
by the statistics of its own machine, per operating class (a speed band), instead of the
artifact's training-set statistics. Commissioning is no training: per class, the median and a
scaled median absolute deviation (MAD) of each log-band-power feature over the class's
commissioning windows, and a score threshold from those same windows.

Everything that enters the stored record is integer arithmetic on features in Q10 fixed point
(log10 units x 1024), so Python and the C firmware produce the same record bytes from the same
feature vectors; the thresholds come from sorted float32 scores with a fixed order of float64
operations (no transcendental functions), again the same on both sides.

Pure functions and one bounded accumulator (`Commissioner`); no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgefleet.errors import EdgefleetError
from edgefleet.runtime.features import FeatureParams

MAGIC = b"EFBL"
VERSION = 1
HEADER = struct.Struct("<4sHHHHHHIQI")  # 32 bytes
CLASS_HEAD = struct.Struct("<ffIff")  # 20 bytes, then center[n] and spread[n] as int16
Q = 1024  # features are stored as round(F * Q): Q10, log10 units
SPREAD_FLOOR_Q = 20  # 0.02 log10 units (~5 % in band power): no band is ever trusted more than this
MAD_TO_SIGMA_Q10 = 1518  # 1.4826 (a normal's sigma per MAD) in Q10
MAX_CLASSES = 8
RPM_TOLERANCE = 0.05  # a class is a speed band of +-5 % around the speed that opened it
DEFAULT_WINDOWS = 64  # windows per class that end commissioning (docs/baseline.md: measured)
MIN_WINDOWS = 16  # fewest windows a class may be finished with (by command)
SCORE_K = 6.0  # class threshold: median + K * 1.4826 * MAD of the class's commissioning scores
SCORE_MARGIN = 1.25  # ... and at least this times the largest commissioning score
HI_K = 6.0  # the same rule for the health indicator
HI_FLOOR = 1.5  # ... and never under 1.5 spreads: 6 sigma of the one-sided RMS of 32 independent bands
FLAG_RPM_KEYED = 1
DRIFT_K2 = 100  # drift: (centre_new - centre_old)^2 * m > 100 * spread^2, i.e. |d| > 10 spreads / sqrt(m):
# four standard errors of the difference of two half-medians (1.2533 * spread * 2 / sqrt(m) each)
MAX_RESTARTS = 8  # a class that never settles is finished anyway, after this many restarts, and flagged
SPEED_Q_MAX = 10_000_000  # 100,000 rpm in hundredths: the settle test's sums stay in int64 below it
LINE_Q_MAX = float(1 << 23)  # the line's value is clamped to this (Q10): residuals stay exact in float32
LINE_FLOOR = float(1 << 24)  # added before the floor, as the C node truncates a positive number
MAX_WAITS = 4  # a class whose halves ran at different speeds waits this many times for its older speeds to return
STEADY_SPEED = 0.01  # a window whose speed moved more than 1 % since the last is not learned from (a ramp)


class BaselineError(EdgefleetError):
    """A baseline record that is corrupt, of another version or for another front end."""


@dataclass(frozen=True)
class ClassBaseline:
    """One operating class: its speed band, how many windows taught it, and what normal is."""

    rpm_lo: float  # 0, 0: any speed (a node without a speed input)
    rpm_hi: float
    windows: int
    threshold: float  # score threshold from the class's own commissioning scores
    hi_threshold: float  # health-indicator threshold, the same way
    center: np.ndarray  # int16 [n] Q10: per-feature median
    spread: np.ndarray  # int16 [n] Q10: 1.4826 * MAD, floored at SPREAD_FLOOR_Q

    @property
    def any_speed(self) -> bool:
        return self.rpm_lo == 0.0 and self.rpm_hi == 0.0

    def contains(self, rpm: float) -> bool:
        return self.rpm_lo <= rpm <= self.rpm_hi


@dataclass(frozen=True)
class Baseline:
    """Every class of one machine, for one feature front end (`frontend_crc`)."""

    frontend_crc: int
    learned_ms: int
    classes: tuple[ClassBaseline, ...]
    n_features: int

    @property
    def rpm_keyed(self) -> bool:
        return any(not c.any_speed for c in self.classes)

    def class_for_estimate(self, rpm: float | None) -> int | None:
        """`class_for` of a speed the node estimated from its own spectrum (features v2), which can
        be off by an octave where the 1x line is weak or half orders are strong (looseness): when
        no class holds the estimate, twice and half of it are tried (docs/baseline.md)."""
        k = self.class_for(rpm)
        if k is not None or rpm is None or not math.isfinite(rpm) or rpm <= 0 or not self.rpm_keyed:
            return k
        for alt in (2.0 * rpm, 0.5 * rpm):
            k = self.class_for(alt)
            if k is not None:
                return k
        return None

    def class_for(self, rpm: float | None) -> int | None:
        """The class a window belongs to; None: uncommissioned (no class covers its speed)."""
        known = rpm is not None and math.isfinite(rpm) and rpm > 0
        best, best_d = None, math.inf
        for i, c in enumerate(self.classes):
            if c.any_speed:
                if best is None and not known:
                    best = i
                continue
            if known and c.contains(float(rpm)):  # type: ignore[arg-type]
                d = abs(float(rpm) - 0.5 * (c.rpm_lo + c.rpm_hi))  # type: ignore[arg-type]
                if d < best_d:
                    best, best_d = i, d
        if best is None and not self.rpm_keyed:
            return 0 if self.classes else None
        return best

    def to_bytes(self) -> bytes:
        n = self.n_features
        flags = FLAG_RPM_KEYED if self.rpm_keyed else 0
        total = sum(c.windows for c in self.classes)
        out = bytearray(HEADER.pack(MAGIC, VERSION, HEADER.size, n, len(self.classes), flags, 0,
                                    self.frontend_crc & 0xFFFFFFFF, self.learned_ms, total))
        for c in self.classes:
            out += CLASS_HEAD.pack(c.rpm_lo, c.rpm_hi, c.windows, c.threshold, c.hi_threshold)
            out += np.asarray(c.center, "<i2").tobytes() + np.asarray(c.spread, "<i2").tobytes()
        out += struct.pack("<I", zlib.crc32(bytes(out)))
        return bytes(out)

    @classmethod
    def from_bytes(cls, raw: bytes, *, frontend_crc: int | None = None, n_features: int | None = None
                   ) -> Baseline:
        """Parse and check a record; BaselineError names what is wrong (the node re-commissions)."""
        if len(raw) < HEADER.size + 4:
            raise BaselineError(f"baseline record of {len(raw)} bytes is shorter than its header")
        magic, version, hsize, n, n_cls, _flags, _res, crc_fe, learned, _total = HEADER.unpack_from(raw)
        if magic != MAGIC:
            raise BaselineError("not a baseline record (bad magic)")
        if version != VERSION or hsize != HEADER.size:
            raise BaselineError(f"baseline record version {version} (this node reads {VERSION})")
        size = HEADER.size + n_cls * (CLASS_HEAD.size + 4 * n) + 4
        if len(raw) != size:
            raise BaselineError(f"baseline record is {len(raw)} bytes, its header says {size}")
        if zlib.crc32(raw[:-4]) != struct.unpack_from("<I", raw, size - 4)[0]:
            raise BaselineError("baseline record CRC mismatch (corrupt)")
        if not 1 <= n_cls <= MAX_CLASSES:
            raise BaselineError(f"baseline record holds {n_cls} classes (1..{MAX_CLASSES})")
        if frontend_crc is not None and crc_fe != frontend_crc & 0xFFFFFFFF:
            raise BaselineError("baseline was learned with another feature front end")
        if n_features is not None and n != n_features:
            raise BaselineError(f"baseline has {n} features, the model takes {n_features}")
        classes, off = [], HEADER.size
        for _ in range(n_cls):
            lo, hi, w, thr, hthr = CLASS_HEAD.unpack_from(raw, off)
            off += CLASS_HEAD.size
            center = np.frombuffer(raw, "<i2", n, off).astype(np.int16)
            spread = np.frombuffer(raw, "<i2", n, off + 2 * n).astype(np.int16)
            off += 4 * n
            if not (thr > 0 and hthr > 0 and math.isfinite(thr) and math.isfinite(hthr)):
                raise BaselineError("baseline class with a non-positive threshold")
            if (spread < SPREAD_FLOOR_Q).any():
                raise BaselineError("baseline class with a spread under the floor")
            classes.append(ClassBaseline(lo, hi, w, thr, hthr, center, spread))
        return cls(crc_fe, learned, tuple(classes), n)

    def digest(self) -> str:
        """Short content hash reported in status, so the service sees a baseline change."""
        return hashlib.sha256(self.to_bytes()).hexdigest()[:16]

    def summary(self) -> dict:
        """What status messages and the store carry about this baseline."""
        return {"hash": self.digest(), "learned": self.learned_ms, "classes": [
            {"rpm": [round(c.rpm_lo, 1), round(c.rpm_hi, 1)], "n": c.windows,
             "thr": float(np.float32(c.threshold)), "hi_thr": float(np.float32(c.hi_threshold))}
            for c in self.classes]}


# ---------------------------------------------------------------- pure pieces

def frontend_crc(params: FeatureParams) -> int:
    """CRC-32 of the front end's parameters as float32 LE: a baseline is valid only for them.

    v2 appends its low-frequency parameters (docs/baseline.md); a v1 front end keeps its CRC."""
    vals = [params.window_s, params.log_floor, *params.edges_hz]
    lf = params.lf
    if lf is not None:
        vals += [lf.rate_hz, float(lf.length), float(lf.settle), lf.cut_hz, lf.vel_lo_hz, lf.vel_split_hz,
                 lf.vel_hi_hz, lf.speed_min_hz, lf.speed_max_hz, float(lf.extras), *lf.edges_hz]
    return zlib.crc32(np.asarray(vals, "<f4").tobytes())


def to_q10(features: np.ndarray) -> np.ndarray:
    """Log-band-power features -> int16 Q10, rounding half away from zero (C: lroundf)."""
    f = np.asarray(features, np.float32)
    if not np.isfinite(f).all():
        raise BaselineError("non-finite feature value (NaN or infinity)")
    x = np.float64(f) * Q  # exact: f is float32, Q a power of two
    r = np.sign(x) * np.floor(np.abs(x) + 0.5)
    return np.clip(r, -32768, 32767).astype(np.int16)


def median_q(values: np.ndarray) -> int:
    """Median of integers; for an even count the floor of the mean of the middle two."""
    s = np.sort(np.asarray(values, np.int64))
    m = s.size
    if m == 0:
        raise BaselineError("median of no values")
    return int(s[m // 2]) if m % 2 else int((s[m // 2 - 1] + s[m // 2]) >> 1)


def robust_stats(rows_q: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per feature: median and 1.4826 * MAD (Q10, floored). Returns (center, spread, floored)."""
    rows_q = np.asarray(rows_q, np.int64)
    n = rows_q.shape[1]
    center = np.empty(n, np.int16)
    spread = np.empty(n, np.int16)
    floored = 0
    for j in range(n):
        c = median_q(rows_q[:, j])
        mad = median_q(np.abs(rows_q[:, j] - c))
        s = (mad * MAD_TO_SIGMA_Q10 + 512) >> 10
        if s < SPREAD_FLOOR_Q:
            s, floored = SPREAD_FLOOR_Q, floored + 1
        center[j], spread[j] = c, min(s, 32767)
    return center, spread, floored


def standardize(features: np.ndarray, center: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """z = (F - center/Q) / (spread/Q), float32 throughout (the C node does the same ops)."""
    c = np.asarray(center, np.float32) / np.float32(Q)
    s = np.asarray(spread, np.float32) / np.float32(Q)
    return ((np.asarray(features, np.float32) - c) / s).astype(np.float32)


def health_index(z: np.ndarray) -> np.ndarray:
    """The unclipped excess over the class's normal: RMS of the positive standardized departures.

    It rises with damage however large, where the int8 model input saturates (docs/baseline.md).
    One-sided because the faults it tracks add vibration energy; a machine running quieter than
    at commissioning (after run-in, on a cool day) is not failing, and the model's score still
    sees a change of shape. sqrtf(sum(max(z, 0)^2) / n), float32, in feature order (as the C node)."""
    z32 = np.maximum(np.asarray(z, np.float32), np.float32(0.0))
    acc = np.zeros(z32.shape[:-1], np.float32)
    for j in range(z32.shape[-1]):
        acc = acc + z32[..., j] * z32[..., j]
    return np.sqrt(acc / np.float32(z32.shape[-1])).astype(np.float32)


def threshold_from(values: np.ndarray, k: float, margin: float, floor: float = 1e-12) -> float:
    """max(median + k * 1.4826 * MAD, margin * max, floor) of float32 values, in float64, as float32."""
    s = np.sort(np.asarray(values, np.float32)).astype(np.float64)
    m = s.size
    med = s[m // 2] if m % 2 else (s[m // 2 - 1] + s[m // 2]) / 2.0
    d = np.sort(np.abs(s - med))
    mad = d[m // 2] if m % 2 else (d[m // 2 - 1] + d[m // 2]) / 2.0
    thr = max(med + k * 1.4826 * mad, margin * s[-1])
    return float(np.float32(max(thr, floor)))


# ---------------------------------------------------------------- commissioning

ScoreFn = Callable[[np.ndarray], np.ndarray]  # standardized features [m, n] float32 -> scores [m] float32


def speed_q(rpms: np.ndarray) -> np.ndarray:
    """Speeds as the C node stores them with its rows (float32) in integer hundredths of an rpm, the
    unit of the settle test's line: rpm * 100 + 0.5 in float32 (the M4's own FPU), truncated, within
    0..SPEED_Q_MAX (a NaN: 0)."""
    y = np.asarray(rpms, np.float32) * np.float32(100.0) + np.float32(0.5)
    y = np.where(y >= 0, np.minimum(y, np.float32(SPEED_Q_MAX)), np.float32(0.0))
    return np.floor(y).astype(np.int64)


def speed_slopes(rows_q: np.ndarray, r: np.ndarray) -> np.ndarray | None:
    """Per feature, the slope (Q10 per 0.01 rpm) of a straight line through the newer half's rows
    against their speeds r (speed_q), 0 where it is not over four standard errors; None when the
    newer half holds one speed, too few rows, or speeds more than 10,000 rpm apart (the int64 sums'
    range; a class is a +-5 % band). The sums are exact integers (int64 on the node) and what
    follows a fixed order of float64 operations, so the C node gets the same bits
    (ef_baseline_settled)."""
    m = rows_q.shape[0]
    h = m - m // 2
    if m // 2 <= 2:
        return None
    d = r[m // 2:] - r[m // 2]  # against the newer half's first speed: small numbers
    if np.abs(d).max() > SPEED_Q_MAX // 10:
        return None
    sxx = h * int((d * d).sum()) - int(d.sum()) ** 2
    if sxx <= 0:
        return None
    out = np.zeros(rows_q.shape[1])
    for j in range(rows_q.shape[1]):
        y = rows_q[m // 2:, j]
        sxy = h * int((d * y).sum()) - int(d.sum()) * int(y.sum())
        syy = h * int((y * y).sum()) - int(y.sum()) ** 2
        # |slope| > 4 se, se^2 = (syy*sxx - sxy^2) / ((h - 2) sxx^2): (h + 14) sxy^2 > 16 syy sxx
        if float(h + 14) * (float(sxy) * float(sxy)) > 16.0 * (float(syy) * float(sxx)):
            out[j] = float(sxy) / float(sxx)
    return out


def line_q(d: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """The line's value per row and feature, rounded half up: floor(d * slope + 0.5), the product
    clamped to +-2^23 Q10 first (far beyond any log band power; the C node keeps residuals exact in
    float32), the floor taken as C truncates: of x + 0.5 + 2^24, less 2^24 (the same float64 steps)."""
    x = np.clip(d.astype(np.float64)[:, None] * slope[None, :], -LINE_Q_MAX, LINE_Q_MAX)
    return (np.floor(x + 0.5 + LINE_FLOOR) - LINE_FLOOR).astype(np.int64)


def stationary(rows_q: np.ndarray, rpms: np.ndarray | None = None) -> bool:
    """Did the class's features settle? The median of the newer half of its rows against the older
    half, per feature, within four standard errors of their difference (all integer, as on the
    node). Run-in, warm-up or a fault that starts while commissioning moves the newer half away.

    With the rows' speeds (`rpms`), the part of each half's median that the speed explains is taken
    out first: a class is a +-5 % speed band, and a machine that visits it in stints (a schedule, a
    slow speed wander) runs each stint at other speeds inside it, which moves a line across a band
    edge. That difference is the class's normal, not a trend; dropping the older stint left a class
    that never saw part of its own speeds (docs/baseline.md, "When commissioning ends"). The speed's
    effect is a straight line per feature fitted on the newer half only (the older half is the one
    under suspicion: a run-in there cannot be fitted away), and used only where its slope is over
    four standard errors (a feature that does not follow the speed is compared as before)."""
    rows_q = np.asarray(rows_q, np.int64)
    m = rows_q.shape[0]
    old, new = rows_q[: m // 2], rows_q[m // 2:]
    c_old, s_old, _ = robust_stats(old)  # each half's own spread: a drift inflates the whole's
    c_new, s_new, _ = robust_stats(new)
    r = None if rpms is None else speed_q(rpms)
    slope = None if r is None else speed_slopes(rows_q, r)
    if slope is not None and slope.any():
        resid = rows_q - line_q(r - r[m // 2], slope)
        c_old, c_new = robust_stats(resid[: m // 2])[0], robust_stats(resid[m // 2:])[0]
    for j in range(rows_q.shape[1]):
        d, s = int(c_new[j]) - int(c_old[j]), max(int(s_old[j]), int(s_new[j]))
        if d * d * m > DRIFT_K2 * s * s:
            return False
    return True


def speeds_apart(rpms: np.ndarray) -> bool:
    """Did the two halves of a class's rows run at different speeds? Fewer than a quarter of all its
    rows lie inside the other half's speed range ([min, max] of its speed_q; integer counts, as on the
    node). Then the settle test cannot tell a run-in from what the speed does to a line near a band
    edge, and dropping the older half would leave a class that never saw those speeds and judges
    them anomalous (the demo's sim-0026, docs/baseline.md): the class waits instead."""
    r = speed_q(rpms)
    m = r.shape[0]
    old, new = r[: m // 2], r[m // 2:]
    k = int(((new >= old.min()) & (new <= old.max())).sum()) + int(((old >= new.min()) & (old <= new.max())).sum())
    return 4 * k < m


STEADY_SPEED_ESTIMATED = 0.05  # the same rule on speeds estimated from the spectrum: they jitter 2-3 % (slow machines)


def steady_speed(rpm: float | None, last_rpm: float | None, tolerance: float = STEADY_SPEED) -> bool:
    """False while the speed moves more than 1 % from one window to the next (a ramp, a start):
    the node does not learn from such a window. Unknown speeds count as steady. A speed the v2
    front end estimated (no speed input) jitters up to ~2 % at slow speeds (measured, weak 1x), so
    it is held to `STEADY_SPEED_ESTIMATED` (a class's own width) instead; an octave slip still fails."""
    if not rpm or not last_rpm or not (math.isfinite(rpm) and math.isfinite(last_rpm)):
        return True
    return abs(rpm - last_rpm) <= tolerance * last_rpm


@dataclass
class _ClassAcc:
    rpm_center: float  # 0: any speed
    rows: list[np.ndarray] = field(default_factory=list)
    rpms: list[float] = field(default_factory=list)  # each row's speed (0: none), for the settle test
    seen: int = 0
    restarts: int = 0  # times the class was found still moving and its older half dropped
    waits: int = 0  # times its newer half was dropped instead: halves at other speeds, undecidable


@dataclass
class Commissioner:
    """Learns a baseline from a stream of windows' features (and speeds), one class per speed band.

    Bounded: keeps at most `target` windows per class and `MAX_CLASSES` classes (the C node keeps
    the same rows in a flash scratch area). `add` returns a named outcome for every window."""

    n_features: int
    target: int = DEFAULT_WINDOWS
    only_rpm: float | None = None  # re-learn or add one class only (the class around this speed)
    classes: list[_ClassAcc] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def add(self, features: np.ndarray, rpm: float | None) -> str:
        """'learning' | 'class_full' (enough for this class) | 'not_stationary' (the class was full but
        still moving: its older half is dropped and learning goes on) | 'speeds_apart' (full, not
        settled, but its halves ran at different speeds, so a trend cannot be told from the speed's
        effect, and one half is not steady on its own: its newer half is dropped, to wait for the
        older speeds to return; at most MAX_WAITS times, then as 'not_stationary') | 'nonfinite' |
        'class_limit' | 'other_class'. Halves at different speeds that are each steady on their own
        (the settle test on each half) are two steady stints: the class is learned from both. The
        node checks `steady_speed` before (a ramp is not learned from)."""
        try:
            q = to_q10(features)
        except BaselineError:
            return self._skip("nonfinite")
        known = rpm is not None and math.isfinite(rpm) and rpm > 0
        if self.only_rpm is not None and (not known or abs(rpm - self.only_rpm) > RPM_TOLERANCE * self.only_rpm):
            return self._skip("other_class")
        acc = self._class_of(float(rpm) if known else 0.0)  # type: ignore[arg-type]
        if acc is None:
            return self._skip("class_limit")
        acc.seen += 1
        if len(acc.rows) >= self.target:
            return "class_full"
        acc.rows.append(q)
        acc.rpms.append(float(rpm) if known else 0.0)  # type: ignore[arg-type]
        if len(acc.rows) < self.target or acc.restarts >= MAX_RESTARTS:
            return "learning"
        rows, rp, h = np.stack(acc.rows), np.array(acc.rpms), self.target // 2
        if stationary(rows, rp if known else None):
            return "learning"
        if known and speeds_apart(rp):
            if stationary(rows[:h], rp[:h]) and stationary(rows[h:], rp[h:]):
                return "learning"  # two steady stints at other speeds: the class keeps both
            if acc.waits < MAX_WAITS:
                acc.waits += 1
                del acc.rows[h:]
                del acc.rpms[h:]
                return self._skip("speeds_apart")
        acc.restarts += 1
        del acc.rows[:h]
        del acc.rpms[:h]
        return self._skip("not_stationary")

    def _class_of(self, rpm: float) -> _ClassAcc | None:
        for c in self.classes:
            if (c.rpm_center == 0.0) == (rpm == 0.0) and (
                    rpm == 0.0 or abs(rpm - c.rpm_center) <= RPM_TOLERANCE * c.rpm_center):
                return c
        if len(self.classes) >= MAX_CLASSES:
            return None
        self.classes.append(_ClassAcc(rpm))
        return self.classes[-1]

    def _skip(self, why: str) -> str:
        self.skipped[why] = self.skipped.get(why, 0) + 1
        return why

    def done(self) -> bool:
        """Every class seen so far has its target windows."""
        return bool(self.classes) and all(len(c.rows) >= self.target for c in self.classes)

    def counts(self) -> list[tuple[float, int]]:
        return [(c.rpm_center, len(c.rows)) for c in self.classes]

    def unsettled(self) -> list[float]:
        """Speeds of classes finished without settling (MAX_RESTARTS reached): worth a look."""
        return [c.rpm_center for c in self.classes if c.restarts >= MAX_RESTARTS]

    def finish(self, score: ScoreFn, *, frontend: int, learned_ms: int,
               min_windows: int = MIN_WINDOWS) -> Baseline:
        """The baseline of every class with at least `min_windows` windows; BaselineError if none."""
        out = []
        for c in sorted(self.classes, key=lambda c: c.rpm_center):
            if len(c.rows) < min_windows:
                continue
            out.append(learn_class(np.stack(c.rows), c.rpm_center, score))
        if not out:
            have = ", ".join(f"{n} at {r:.0f} rpm" if r else f"{n} (no speed)" for r, n in self.counts())
            raise BaselineError(f"too few windows to commission (need {min_windows} per class; have {have or 'none'})")
        return Baseline(frontend, learned_ms, tuple(out), self.n_features)


def learn_class(rows_q: np.ndarray, rpm_center: float, score: ScoreFn) -> ClassBaseline:
    """One class from its commissioning rows (int16 Q10 [m, n])."""
    center, spread, _ = robust_stats(rows_q)
    z = standardize(rows_q.astype(np.float32) / np.float32(Q), center, spread)
    thr = threshold_from(score(z), SCORE_K, SCORE_MARGIN)
    hthr = threshold_from(health_index(z), HI_K, SCORE_MARGIN, HI_FLOOR)
    lo, hi = ((0.0, 0.0) if rpm_center == 0.0 else
              (float(np.float32(rpm_center * (1 - RPM_TOLERANCE))), float(np.float32(rpm_center * (1 + RPM_TOLERANCE)))))
    return ClassBaseline(lo, hi, int(rows_q.shape[0]), thr, hthr, center, spread)


DRIFT_TAU_S = 3 * 86400.0  # after commissioning the centre follows healthy windows with this time constant
DRIFT_CAP = 1.0  # ... but never further than this many spreads from where commissioning put it
DRIFT_HEALTHY = 0.5  # ... and only on windows under half their class limits


def drift(cls: ClassBaseline, origin: np.ndarray, healthy_q: np.ndarray, dt_s: float) -> ClassBaseline:
    """Benign slow drift (temperature, run-in) moves a class's centre, at a bounded rate and within a
    bounded distance of its commissioned centre, from windows judged healthy only. A fault cannot be
    learned away: windows past half their limit do not count, and the centre can move at most
    DRIFT_CAP spreads, so a growing fault still crosses the threshold (docs/baseline.md, "Drift")."""
    if len(healthy_q) == 0 or dt_s <= 0:
        return cls
    target = np.array([median_q(healthy_q[:, j]) for j in range(healthy_q.shape[1])], np.int64)
    centre = cls.center.astype(np.int64)
    step = np.rint((target - centre) * min(1.0, dt_s / DRIFT_TAU_S)).astype(np.int64)
    cap = (DRIFT_CAP * cls.spread.astype(np.int64)).astype(np.int64)
    new = np.clip(centre + step, origin.astype(np.int64) - cap, origin.astype(np.int64) + cap).astype(np.int16)
    if np.array_equal(new, cls.center):
        return cls
    return ClassBaseline(cls.rpm_lo, cls.rpm_hi, cls.windows, cls.threshold, cls.hi_threshold, new, cls.spread)


@dataclass(frozen=True)
class Scored:
    """A node's verdicts on windows under a baseline; class -1 = uncommissioned (no verdict)."""

    cls: np.ndarray  # int [m]
    score: np.ndarray  # float32 [m], NaN where uncommissioned
    hi: np.ndarray  # float32 [m], NaN where uncommissioned
    anom: np.ndarray  # bool [m]: score over its class threshold, or HI over its class HI threshold
    ratio: np.ndarray  # float32 [m]: the larger of score/threshold and hi/hi_threshold (severity)


def score_windows(baseline: Baseline, features: np.ndarray, rpms: np.ndarray | None, score: ScoreFn, *,
                  estimated: bool = False) -> Scored:
    """Each window standardized by its own class's baseline, scored by the model, and judged
    against its class's thresholds; windows outside every class are left unjudged. `estimated`:
    the speeds come from the spectrum, not a speed input (octave slips are resolved by class)."""
    f = np.asarray(features, np.float32)
    m = f.shape[0]
    r = np.zeros(m) if rpms is None else np.asarray(rpms, np.float64)
    lookup = baseline.class_for_estimate if estimated else baseline.class_for
    classes = (lookup(float(x)) for x in r)  # class_for treats rpm <= 0 / NaN as unknown
    cls = np.array([-1 if c is None else c for c in classes], np.int64)
    out_s = np.full(m, np.nan, np.float32)
    out_h = np.full(m, np.nan, np.float32)
    anom = np.zeros(m, bool)
    ratio = np.full(m, np.nan, np.float32)
    for k, c in enumerate(baseline.classes):
        sel = cls == k
        if not sel.any():
            continue
        z = standardize(f[sel], c.center, c.spread)
        s, h = score(z), health_index(z)
        out_s[sel], out_h[sel] = s, h
        anom[sel] = (s > np.float32(c.threshold)) | (h > np.float32(c.hi_threshold))
        ratio[sel] = np.maximum(s / np.float32(c.threshold), h / np.float32(c.hi_threshold))
    return Scored(cls, out_s, out_h, anom, ratio)


__all__ = ["Baseline", "BaselineError", "ClassBaseline", "Commissioner", "DEFAULT_WINDOWS", "MAX_CLASSES",
           "MIN_WINDOWS", "Scored", "frontend_crc", "score_windows", "health_index", "learn_class", "robust_stats", "standardize",
           "threshold_from", "to_q10"]
