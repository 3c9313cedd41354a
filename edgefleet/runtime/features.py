"""Feature definition v1: log band power of one vibration window (docs/features.md).

Pure functions of arrays. Parameters are physical (seconds, Hz) so one model
works at every sampling rate whose Nyquist frequency covers its bands; the C
firmware mirrors this file in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgefleet.errors import FeatureError

FS_MIN_HZ = 4000.0
FS_MAX_HZ = 50000.0
NFFT_MAX = 4096


@dataclass(frozen=True)
class FeatureParams:
    """What the artifact's features section stores (apart from standardization)."""

    window_s: float
    edges_hz: tuple[float, ...]
    log_floor: float = 1e-10

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
        return len(self.edges_hz) - 1

    @classmethod
    def spaced(
        cls, n_bands: int, f_lo: float, f_hi: float, *, window_s: float = 0.08,
        spacing: str = "linear", log_floor: float = 1e-10,
    ) -> FeatureParams:
        """Bands between f_lo and f_hi, linear or logarithmic spacing (stored as float32 edges)."""
        if spacing == "linear":
            edges = np.linspace(f_lo, f_hi, n_bands + 1)
        elif spacing == "log":
            edges = np.geomspace(f_lo, f_hi, n_bands + 1)
        else:
            raise FeatureError(f"unknown band spacing {spacing!r} (use linear or log)")
        edges32 = tuple(float(e) for e in edges.astype(np.float32))
        return cls(window_s=float(np.float32(window_s)), edges_hz=edges32,
                   log_floor=float(np.float32(log_floor)))


@dataclass(frozen=True)
class FeaturePlan:
    """Sizes derived from the parameters at one sampling rate."""

    fs: float
    n_samples: int
    nfft: int
    k_lo: np.ndarray
    k_hi: np.ndarray


def round_half_away(x: float) -> int:
    """C `round`: halves go away from zero (Python's round() goes to even)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def plan(params: FeatureParams, fs: float) -> FeaturePlan:
    """Window size, FFT size and band bins at rate fs; a clear error when fs can't serve the model."""
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
    edges = np.asarray(params.edges_hz, dtype=np.float64)
    k = np.ceil(edges * nfft / fs).astype(np.int64)
    k = np.minimum(k, nfft // 2 + 1)
    k_lo, k_hi = k[:-1], k[1:]
    empty = np.flatnonzero(k_hi <= k_lo)
    if empty.size:
        i = int(empty[0])
        raise FeatureError(
            f"band {i} ({edges[i]:g}-{edges[i + 1]:g} Hz) holds no FFT bin at {fs:g} Hz "
            f"(bin spacing {fs / nfft:.3g} Hz)")
    return FeaturePlan(fs=float(fs), n_samples=n, nfft=nfft, k_lo=k_lo, k_hi=k_hi)


def log_band_power(windows: np.ndarray, fs: float, params: FeatureParams) -> np.ndarray:
    """Feature F = log10(band power + floor) for each window; float32 [n, n_bands].

    `windows` is [N] or [n, N] samples in g, N = plan(params, fs).n_samples.
    """
    p = plan(params, fs)
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != p.n_samples:
        raise FeatureError(
            f"expected windows of {p.n_samples} samples ({params.window_s:g} s at {fs:g} Hz), "
            f"got shape {np.shape(windows)}")
    if not np.isfinite(x).all():
        raise FeatureError("window contains NaN or infinite samples")
    n = p.n_samples
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    y = (x - x.mean(axis=1, keepdims=True)) * w
    spec = np.fft.rfft(y, n=p.nfft, axis=1)
    psd = 2.0 * (spec.real**2 + spec.imag**2) / (fs * np.sum(w * w))
    # bands are contiguous (shared edges): sum bins k_lo[i]..k_lo[i+1]-1, the last up to k_hi[-1]
    band = np.add.reduceat(psd[:, : p.k_hi[-1]], p.k_lo, axis=1) * (fs / p.nfft)
    return np.log10(band + params.log_floor).astype(np.float32)


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
