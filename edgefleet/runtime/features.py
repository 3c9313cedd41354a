"""Feature definitions v1 and v2 of one vibration window (docs/features.md).

v1 is log band power of one short window (bearing bands). v2 adds a low-frequency
part (running-speed harmonics at ~1 Hz resolution, from a decimated stream), the
overall velocity RMS in mm/s (ISO 20816), kurtosis and crest factor, over a window of
about one second whose high-frequency bands are averaged over half-overlapping
segments. Pure functions of arrays. Parameters are physical (seconds, Hz) so one
model works at every sampling rate that can serve it; the C firmware mirrors this
file in float32.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from edgefleet.errors import FeatureError
from edgefleet.runtime import lowfreq

FS_MIN_HZ = 4000.0
FS_MAX_HZ = 50000.0
NFFT_MAX = 4096


EXTRA_VRMS = 1  # log10 of velocity RMS in mm/s, 10-1,000 Hz
EXTRA_KURTOSIS = 2  # log10 of the kurtosis of acceleration
EXTRA_CREST = 4  # log10 of the crest factor (peak / RMS) of acceleration
EXTRA_NAMES = {EXTRA_VRMS: "vrms", EXTRA_KURTOSIS: "kurtosis", EXTRA_CREST: "crest"}
VRMS_FLOOR_MM_S = 0.01  # added before log10: below any machine's reading, above float noise
LF_LEN_MAX = 1024  # decimated samples a node keeps (4 KB of float32)


@dataclass(frozen=True)
class LowFreqParams:
    """The v2 low-frequency stream and what is computed from it (docs/features.md, v2)."""

    edges_hz: tuple[float, ...]  # LF band edges, model inputs after the HF bands
    rate_hz: float = 512.0  # nominal decimated rate; the factor is round(fs / rate_hz)
    length: int = 512  # decimated samples analysed = the LF FFT size (power of two)
    settle: int = 32  # decimated samples dropped while the filter settles
    cut_hz: float = 160.0  # the anti-alias low-pass corner
    vel_lo_hz: float = 10.0  # ISO 20816 velocity band...
    vel_split_hz: float = 100.0  # ...from the LF spectrum below this, the HF spectrum above
    vel_hi_hz: float = 1000.0
    speed_min_hz: float = 5.0  # running-speed search range (300-4,500 rpm)
    speed_max_hz: float = 75.0
    extras: int = EXTRA_VRMS | EXTRA_KURTOSIS | EXTRA_CREST

    def __post_init__(self) -> None:
        e = self.edges_hz
        if len(e) < 2 or any(not math.isfinite(v) for v in e) or any(b <= a for a, b in zip(e, e[1:])):
            raise FeatureError(f"low-frequency band edges must be >= 2 finite ascending values "
                               f"(got {len(e)} edges, {e[0]:g} to {e[-1]:g} Hz)" if e else
                               "low-frequency band edges are missing")
        if self.length not in (128, 256, 512, 1024):
            raise FeatureError(f"low-frequency length must be 128, 256, 512 or 1024, got {self.length}")
        if not 0 <= self.settle <= 256:
            raise FeatureError(f"low-frequency settle must be 0-256 samples, got {self.settle}")
        if not (0 < self.cut_hz < self.rate_hz / 2):
            raise FeatureError(f"LF low-pass corner {self.cut_hz:g} Hz must be below half the LF rate "
                               f"({self.rate_hz / 2:g} Hz)")
        if e[0] <= 0 or e[-1] > self.cut_hz:
            raise FeatureError(f"low-frequency bands {e[0]:g}-{e[-1]:g} Hz must lie in (0, {self.cut_hz:g}] Hz "
                               "(below the anti-alias corner)")
        if not (0 < self.vel_lo_hz < self.vel_split_hz <= 0.75 * self.cut_hz and self.vel_split_hz < self.vel_hi_hz):
            raise FeatureError("velocity band must satisfy 0 < lo < split <= 0.75 * LF corner and split < hi")
        if not (0 < self.speed_min_hz < self.speed_max_hz):
            raise FeatureError("running-speed range must satisfy 0 < min < max")
        if self.extras & ~(EXTRA_VRMS | EXTRA_KURTOSIS | EXTRA_CREST):
            raise FeatureError(f"unknown extra feature bits {self.extras:#x}")

    @property
    def n_bands(self) -> int:
        return len(self.edges_hz) - 1

    @property
    def extra_names(self) -> list[str]:
        return [name for bit, name in EXTRA_NAMES.items() if self.extras & bit]


@dataclass(frozen=True)
class FeatureParams:
    """What the artifact's features section stores (apart from standardization).

    `lf` None is feature definition v1; with `lf` it is v2 and `window_s` is the length of the
    high-frequency segments averaged over the (longer) v2 window.
    """

    window_s: float
    edges_hz: tuple[float, ...]
    log_floor: float = 1e-10
    lf: LowFreqParams | None = None

    def __post_init__(self) -> None:
        edges = self.edges_hz
        if len(edges) < 2:
            raise FeatureError("a feature definition needs at least one band (two edges)")
        if any(not math.isfinite(e) or e < 0 for e in edges):
            raise FeatureError(f"band edges must be finite and >= 0 Hz, got {edges}")
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise FeatureError("band edges must be strictly ascending")
        if not (self.window_s > 0 and math.isfinite(self.window_s)):
            raise FeatureError(f"window_s must be > 0 s, got {self.window_s}")
        if not self.log_floor > 0:
            raise FeatureError("log_floor must be > 0")

    @property
    def n_bands(self) -> int:
        """High-frequency bands (all the model inputs in v1)."""
        return len(self.edges_hz) - 1

    @property
    def version(self) -> int:
        return 1 if self.lf is None else 2

    @property
    def n_features(self) -> int:
        """Model inputs: HF bands, then (v2) LF bands, then the extras in bit order."""
        if self.lf is None:
            return self.n_bands
        return self.n_bands + self.lf.n_bands + len(self.lf.extra_names)

    def feature_names(self) -> list[str]:
        """A name per model input, by frequency range: what an operator reads as "why"."""
        e = self.edges_hz
        names = [f"{e[i]:.0f}-{e[i + 1]:.0f} Hz" for i in range(self.n_bands)]
        if self.lf is not None:
            le = self.lf.edges_hz
            names += [f"{le[i]:.1f}-{le[i + 1]:.1f} Hz" for i in range(self.lf.n_bands)]
            names += self.lf.extra_names
        return names

    @classmethod
    def spaced(
        cls, n_bands: int, f_lo: float, f_hi: float, *, window_s: float = 0.08,
        spacing: str = "linear", log_floor: float = 1e-10, lf: LowFreqParams | None = None,
    ) -> FeatureParams:
        """Bands between f_lo and f_hi, linear or logarithmic spacing (stored as float32 edges)."""
        return cls(window_s=float(np.float32(window_s)), edges_hz=_edges32(n_bands, f_lo, f_hi, spacing),
                   log_floor=float(np.float32(log_floor)), lf=lf)


def _edges32(n_bands: int, f_lo: float, f_hi: float, spacing: str) -> tuple[float, ...]:
    if spacing == "linear":
        edges = np.linspace(f_lo, f_hi, n_bands + 1)
    elif spacing == "log":
        edges = np.geomspace(f_lo, f_hi, n_bands + 1)
    else:
        raise FeatureError(f"unknown band spacing {spacing!r} (use linear or log)")
    return tuple(float(e) for e in edges.astype(np.float32))


def low_freq(n_bands: int = 16, f_lo: float = 5.0, f_hi: float = 150.0, *,
             extras: int = EXTRA_VRMS | EXTRA_KURTOSIS | EXTRA_CREST) -> LowFreqParams:
    """The default v2 low-frequency part: log-spaced bands from f_lo to f_hi Hz (float32 edges)."""
    return LowFreqParams(edges_hz=_edges32(n_bands, f_lo, f_hi, "log"), extras=extras)


@dataclass(frozen=True)
class LowFreqPlan:
    """v2 sizes at one sampling rate: decimation, LF bins, velocity weights, speed search."""

    factor: int  # D: keep one low-passed sample in D
    fs_lf: float  # fs / D
    sos: np.ndarray  # [4, 6] float32-valued biquads
    k_lo: np.ndarray  # LF band bins, as v1's rule at (fs_lf, length)
    k_hi: np.ndarray
    vel_lf: np.ndarray  # (mm/s)^2 per g^2 weight of each LF bin (lowfreq.velocity_weights)
    vel_hf: np.ndarray  # the same over the HF bins, on [vel_split, vel_hi)
    speed_k: tuple[int, int, int]  # speed search: first and last candidate bin, first bin above the LF bands


@dataclass(frozen=True)
class FeaturePlan:
    """Sizes derived from the parameters at one sampling rate.

    `n_samples` is the whole window; in v2 the HF part is averaged over segments of
    `seg_samples` at a hop of half a segment.
    """

    fs: float
    n_samples: int
    nfft: int
    k_lo: np.ndarray
    k_hi: np.ndarray
    seg_samples: int = 0
    hop: int = 0
    n_segments: int = 1
    lf: LowFreqPlan | None = None


def round_half_away(x: float) -> int:
    """C `round`: halves go away from zero (Python's round() goes to even)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def _band_bins(edges_hz, n_fft: int, fs: float, what: str) -> tuple[np.ndarray, np.ndarray]:
    edges = np.asarray(edges_hz, dtype=np.float64)
    k = np.ceil(edges * n_fft / fs).astype(np.int64)
    k = np.minimum(k, n_fft // 2 + 1)
    k_lo, k_hi = k[:-1], k[1:]
    empty = np.flatnonzero(k_hi <= k_lo)
    if empty.size:
        i = int(empty[0])
        raise FeatureError(
            f"{what} band {i} ({edges[i]:g}-{edges[i + 1]:g} Hz) holds no FFT bin at {fs:g} Hz "
            f"(bin spacing {fs / n_fft:.3g} Hz)")
    return k_lo, k_hi


@functools.lru_cache(maxsize=64)
def plan(params: FeatureParams, fs: float) -> FeaturePlan:
    """Window size, FFT size and band bins at rate fs; a clear error when fs can't serve the model.

    Cached per (parameters, rate): v2's velocity weights take a few milliseconds to derive, and a
    simulated fleet asks for the same plan every tick. The arrays are shared: read them only."""
    if not math.isfinite(fs) or fs < FS_MIN_HZ or fs > FS_MAX_HZ:
        raise FeatureError(
            f"sampling rate {fs:g} Hz is outside the supported {FS_MIN_HZ:g}-{FS_MAX_HZ:g} Hz")
    top = params.edges_hz[-1]
    if top > fs / 2:
        raise FeatureError(
            f"the model's bands reach {top:g} Hz but a {fs:g} Hz sensor only sees up to "
            f"{fs / 2:g} Hz (Nyquist); use a sensor rate >= {2 * top:g} Hz or a model with lower bands")
    n = round_half_away(params.window_s * fs)
    nfft = 1 << max(0, (n - 1).bit_length())
    if nfft > NFFT_MAX:
        raise FeatureError(
            f"a {params.window_s:g} s window at {fs:g} Hz is {n} samples: FFT size {nfft} exceeds "
            f"{NFFT_MAX}")
    k_lo, k_hi = _band_bins(params.edges_hz, nfft, fs, "high-frequency")
    if params.lf is None:
        return FeaturePlan(fs=float(fs), n_samples=n, nfft=nfft, k_lo=k_lo, k_hi=k_hi, seg_samples=n,
                           hop=n, n_segments=1)
    lf = _plan_low_freq(params.lf, fs, nfft, n)
    total = (params.lf.length + params.lf.settle) * lf.factor
    if total < n:
        raise FeatureError(f"the low-frequency window ({total} samples) is shorter than one "
                           f"high-frequency segment ({n} samples)")
    hop = max(1, n // 2)
    return FeaturePlan(fs=float(fs), n_samples=total, nfft=nfft, k_lo=k_lo, k_hi=k_hi, seg_samples=n,
                       hop=hop, n_segments=1 + (total - n) // hop, lf=lf)


def _plan_low_freq(p: LowFreqParams, fs: float, nfft: int, n_seg: int) -> LowFreqPlan:
    factor = max(1, round_half_away(fs / p.rate_hz))
    fs_lf = fs / factor
    if p.cut_hz >= 0.4 * fs_lf:
        raise FeatureError(f"at {fs:g} Hz the low-frequency stream runs at {fs_lf:.1f} Hz, too slow for "
                           f"its {p.cut_hz:g} Hz anti-alias corner (needs > {p.cut_hz / 0.4:g} Hz)")
    if p.vel_split_hz > p.edges_hz[-1] - 2.5 * fs / n_seg:
        raise FeatureError(f"velocity split {p.vel_split_hz:g} Hz must lie at least 2.5 HF resolutions "
                           f"({2.5 * fs / n_seg:.1f} Hz) below the top LF edge {p.edges_hz[-1]:g} Hz")
    if p.vel_hi_hz > fs / 2:
        raise FeatureError(f"velocity is measured up to {p.vel_hi_hz:g} Hz but a {fs:g} Hz sensor sees "
                           f"only up to {fs / 2:g} Hz")
    k_lo, k_hi = _band_bins(p.edges_hz, p.length, fs_lf, "low-frequency")
    bin_lf = fs_lf / p.length
    k_min = math.ceil(p.speed_min_hz / bin_lf)
    k_max = math.floor(p.speed_max_hz / bin_lf)
    k_top = int(k_hi[-1])
    if k_min < 2 or k_max < k_min or 2 * k_min + 1 >= k_top:
        raise FeatureError(f"running-speed range {p.speed_min_hz:g}-{p.speed_max_hz:g} Hz cannot be resolved "
                           f"with {bin_lf:.2f} Hz bins below {p.edges_hz[-1]:g} Hz")
    sos = lowfreq.butterworth_lowpass_sos(p.cut_hz, fs)
    vel_lf, vel_hf = lowfreq.velocity_weights(
        fs=fs, n=n_seg, nfft=nfft, fs_lf=fs_lf, length=p.length, sos=sos, lo_hz=p.vel_lo_hz,
        split_hz=p.vel_split_hz, lf_top_hz=p.edges_hz[-1], hi_hz=p.vel_hi_hz)
    return LowFreqPlan(factor=factor, fs_lf=fs_lf, sos=sos, k_lo=k_lo, k_hi=k_hi, vel_lf=vel_lf, vel_hf=vel_hf,
                       speed_k=(k_min, k_max, k_top))


@dataclass(frozen=True)
class Analysis:
    """Everything the front end computes for windows [n]: model features and the readings an
    operator sees. v1 leaves the v2-only readings NaN."""

    features: np.ndarray  # float32 [n, n_features]
    vrms_mm_s: np.ndarray  # float64 [n], velocity RMS 10-1,000 Hz
    speed_hz: np.ndarray  # float64 [n], running speed estimated from the spectrum
    kurtosis: np.ndarray
    crest: np.ndarray


def _as_windows(windows: np.ndarray, p: FeaturePlan, params: FeatureParams) -> np.ndarray:
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != p.n_samples:
        raise FeatureError(
            f"expected windows of {p.n_samples} samples ({p.n_samples / p.fs:.4g} s at {p.fs:g} Hz, "
            f"feature definition v{params.version}), got shape {np.shape(windows)}")
    if not np.isfinite(x).all():
        raise FeatureError("window contains NaN or infinite samples")
    return x


def _log_bands(psd: np.ndarray, k_lo: np.ndarray, k_hi: np.ndarray, bin_hz: float, floor: float) -> np.ndarray:
    # bands are contiguous (shared edges): sum bins k_lo[i]..k_lo[i+1]-1, the last up to k_hi[-1]
    band = np.add.reduceat(psd[:, : k_hi[-1]], k_lo, axis=1) * bin_hz
    return np.log10(band + floor)


def log_band_power(windows: np.ndarray, fs: float, params: FeatureParams) -> np.ndarray:
    """The model features, float32 [n, n_features], of v1 or v2 windows.

    `windows` is [N] or [n, N] samples in g, N = plan(params, fs).n_samples.
    """
    return analyze(windows, fs, params).features


def analyze(windows: np.ndarray, fs: float, params: FeatureParams, *, chunk: int = 64) -> Analysis:
    """Features and readings (velocity, speed, kurtosis, crest) of each window."""
    p = plan(params, fs)
    x = _as_windows(windows, p, params)
    if params.lf is None:
        psd = lowfreq.one_sided_psd(x, fs, p.nfft)
        f = _log_bands(psd, p.k_lo, p.k_hi, fs / p.nfft, params.log_floor).astype(np.float32)
        nan = np.full(len(x), np.nan)
        return Analysis(f, nan, nan.copy(), nan.copy(), nan.copy())
    parts = [_analyze_v2(x[i:i + chunk], p, params) for i in range(0, max(len(x), 1), chunk)]
    return Analysis(*(np.concatenate([getattr(a, k) for a in parts])
                      for k in ("features", "vrms_mm_s", "speed_hz", "kurtosis", "crest")))


def _analyze_v2(x: np.ndarray, p: FeaturePlan, params: FeatureParams) -> Analysis:
    lfp, lf = params.lf, p.lf
    assert lfp is not None and lf is not None
    n_win = len(x)
    # high-frequency part: half-overlapping segments, PSD averaged (Welch)
    segs = np.lib.stride_tricks.as_strided(
        x, shape=(n_win, p.n_segments, p.seg_samples),
        strides=(x.strides[0], x.strides[1] * p.hop, x.strides[1]), writeable=False)
    psd_hf = lowfreq.one_sided_psd(segs, p.fs, p.nfft).mean(axis=1)
    d = segs - segs.mean(axis=2, keepdims=True)
    m2 = np.mean(d * d, axis=2)
    m4 = np.mean((d * d) ** 2, axis=2)
    peak = np.abs(d).max(axis=2)
    live = m2 > 0
    kurt = np.where(live, m4 / np.where(live, m2 * m2, 1.0), 0.0).mean(axis=1)
    crest = np.where(live, peak / np.sqrt(np.where(live, m2, 1.0)), 0.0).mean(axis=1)
    # low-frequency part: the decimated stream's spectrum. The window less its reference level (the
    # mean of its first segment) goes through the low-pass: a DC offset (1 g on a vertical axis) would
    # otherwise dominate the float32 round-off of a node's IIR, whose poles sit close to z = 1
    u = lowfreq.decimate_stream(x - segs[:, 0].mean(axis=1, keepdims=True), lf.sos, lf.factor, lfp.settle)
    psd_lf = lowfreq.one_sided_psd(u, lf.fs_lf, lfp.length)
    bin_lf, bin_hf = lf.fs_lf / lfp.length, p.fs / p.nfft
    vrms = np.sqrt(np.maximum(psd_lf @ lf.vel_lf * bin_lf + psd_hf @ lf.vel_hf * bin_hf, 0.0))
    speed = lowfreq.estimate_speed_hz(psd_lf, bin_lf, *lf.speed_k, floor=params.log_floor)
    cols = [_log_bands(psd_hf, p.k_lo, p.k_hi, bin_hf, params.log_floor),
            _log_bands(psd_lf, lf.k_lo, lf.k_hi, bin_lf, params.log_floor)]
    for bit, value, floor in ((EXTRA_VRMS, vrms, VRMS_FLOOR_MM_S), (EXTRA_KURTOSIS, kurt, params.log_floor),
                              (EXTRA_CREST, crest, params.log_floor)):
        if lfp.extras & bit:
            cols.append(np.log10(value + floor)[:, None])
    return Analysis(np.concatenate(cols, axis=1).astype(np.float32), vrms, speed, kurt, crest)


def standardize(features: np.ndarray, mean: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    """z = (F - mean) * inv_std in float32, as the firmware computes it."""
    f = np.asarray(features, dtype=np.float32)
    return (f - np.asarray(mean, np.float32)) * np.asarray(inv_std, np.float32)


def quantize(z: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 model input: clamp(roundf(z / scale) + zp); division in float32 like the C side."""
    v = (np.asarray(z, dtype=np.float32) / np.float32(scale)).astype(np.float64)
    r = np.trunc(v + np.copysign(0.5, v))
    return np.clip(r + zero_point, -128, 127).astype(np.int8)


def frame(signal: np.ndarray, n_samples: int, hop: int | None = None) -> np.ndarray:
    """Cut a recording into windows [n, n_samples] (no copy), hop defaults to no overlap."""
    hop = hop or n_samples
    sig = np.ascontiguousarray(signal)
    if sig.ndim != 1:
        raise FeatureError(f"a recording must be 1-D, got shape {sig.shape}")
    count = 1 + (sig.size - n_samples) // hop if sig.size >= n_samples else 0
    if count <= 0:
        return np.empty((0, n_samples), dtype=sig.dtype)
    return np.lib.stride_tricks.as_strided(
        sig, shape=(count, n_samples), strides=(sig.strides[0] * hop, sig.strides[0]),
        writeable=False)
