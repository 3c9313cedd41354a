"""The low-frequency stream of feature definition v2 (docs/features.md, "v2").

Running-speed lines (1x, 2x, 3x, sub-harmonics) sit at 5-150 Hz, below the
bearing bands, and need ~1 Hz resolution: about one second of signal. A node
cannot keep a second of full-rate samples, so it low-passes each sample as it
arrives (an 8th-order Butterworth, four biquads) and keeps every D-th output:
512 floats instead of 12,000-50,000. Pure functions; the C core mirrors them in
float32 with the same float32 coefficients.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

BUTTER_ORDER = 8  # four biquads: ~57 dB at the fold of the top LF band (docs/features.md)
G_MM_S2 = 9806.65  # 1 g in mm/s^2: velocity in mm/s from acceleration in g


def butterworth_lowpass_sos(cut_hz: float, fs: float) -> np.ndarray:
    """Biquad sections [4, 6] of an 8th-order Butterworth low-pass by the bilinear transform.

    Computed in float64 and rounded to float32, as the firmware stores them; the rows are
    (b0, b1, b2, 1, a1, a2), each section with unit gain at DC. The formula (prewarped
    K = tan(pi*fc/fs), pole pair k damping alpha_k = 2 sin((2k-1) pi / 16)) is written
    out so the C core computes the same numbers; the test compares it with scipy's design.
    """
    k = math.tan(math.pi * cut_hz / fs)
    rows = []
    for i in range(1, BUTTER_ORDER // 2 + 1):
        alpha = 2.0 * math.sin((2 * i - 1) * math.pi / (2 * BUTTER_ORDER))
        norm = 1.0 / (1.0 + alpha * k + k * k)
        b0 = k * k * norm
        rows.append((b0, 2.0 * b0, b0, 1.0, 2.0 * (k * k - 1.0) * norm, (1.0 - alpha * k + k * k) * norm))
    return np.asarray(rows, np.float64).astype(np.float32).astype(np.float64)


def decimate_stream(x: np.ndarray, sos: np.ndarray, factor: int, settle: int) -> np.ndarray:
    """Low-pass each window from zero state, keep every `factor`-th output, drop the first `settle`.

    `x` is the window less its reference level (features.py: the mean of its first HF segment).

    Output j is the filter output at input index (j+1)*factor - 1: the last sample of each group,
    the one a streaming node has just received when it stores a decimated value.
    """
    y = signal.sosfilt(sos, np.asarray(x, np.float64), axis=-1)
    return y[..., factor - 1::factor][..., settle:]


def periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def one_sided_psd(x: np.ndarray, fs: float, nfft: int) -> np.ndarray:
    """Mean removed, periodic Hann, one-sided PSD in g^2/Hz [..., nfft/2+1] (factor 2 on every bin)."""
    n = x.shape[-1]
    w = periodic_hann(n)
    y = (x - x.mean(axis=-1, keepdims=True)) * w
    spec = np.fft.rfft(y, n=nfft, axis=-1)
    return 2.0 * (spec.real**2 + spec.imag**2) / (fs * np.sum(w * w))


EDGE_ORDER = 32  # band edges: 1 / (1 + (f_edge / f)^32) in amplitude, a steep Butterworth shape


def band_edges(f_hz: np.ndarray, lo_hz: float, hi_hz: float) -> np.ndarray:
    """Power response of the velocity band: an instrument's band-pass has sloped edges, not walls
    (ISO 2954); this is the shape of an order-16 Butterworth run forwards and backwards, the same
    as the scipy yardstick (toolchain/velocity_reference.py), -6 dB at lo and hi, 3 % at 1.14 lo."""
    f = np.asarray(f_hz, np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        amp = 1.0 / (1.0 + (lo_hz / f) ** EDGE_ORDER) / (1.0 + (f / hi_hz) ** EDGE_ORDER)
    return np.where(f > 0, amp * amp, 0.0)


def velocity_weight(f_hz: np.ndarray, resolution_hz: float) -> np.ndarray:
    """(mm/s)^2 per g^2 at frequency f: integration in the frequency domain, |V| = |A| / (2 pi f),
    less the bias of summing a convex 1/f^2 over a Hann lobe (second moment 1/6 bin^2, measured
    with sines): factor (1 - 0.5 (resolution / f)^2). f must be > 0."""
    f = np.asarray(f_hz, np.float64)
    return (G_MM_S2 / (2.0 * np.pi * f)) ** 2 * (1.0 - 0.5 * (resolution_hz / f) ** 2)


def hann_power_kernel(offset_hz: np.ndarray, n: int, nfft: int, fs: float) -> np.ndarray:
    """Share of a line's power that a one-sided Hann PSD bin holds at `offset_hz` from the line:
    |W(offset)|^2 / (nfft * sum(w^2)), W the DTFT of the periodic Hann of length n (it sums to 1
    over the bins). Closed form: W = D(t)/2 - D(t - 2pi/n)/4 - D(t + 2pi/n)/4, D the Dirichlet
    kernel sum_{m<n} exp(-j t m)."""
    t = 2.0 * np.pi * np.asarray(offset_hz, np.float64) / fs

    def dirichlet(u: np.ndarray) -> np.ndarray:
        half = np.sin(u / 2.0)
        small = np.abs(half) < 1e-12
        ratio = np.where(small, float(n), np.sin(n * u / 2.0) / np.where(small, 1.0, half))
        return ratio * np.exp(-0.5j * u * (n - 1))

    step = 2.0 * np.pi / n
    w = 0.5 * dirichlet(t) - 0.25 * dirichlet(t - step) - 0.25 * dirichlet(t + step)
    s2 = 0.375 * n  # sum of the periodic Hann's squares
    return (w.real ** 2 + w.imag ** 2) / (nfft * s2)


def lowpass_power(sos: np.ndarray, f_hz: np.ndarray, fs: float) -> np.ndarray:
    """|H(f)|^2 of the biquad cascade at frequencies f (Hz), at rate fs."""
    z1 = np.exp(-2j * np.pi * np.asarray(f_hz, np.float64) / fs)
    h = np.ones_like(z1)
    for b0, b1, b2, _, a1, a2 in sos:
        h *= (b0 + b1 * z1 + b2 * z1 * z1) / (1.0 + a1 * z1 + a2 * z1 * z1)
    return h.real ** 2 + h.imag ** 2


def velocity_weights(*, fs: float, n: int, nfft: int, fs_lf: float, length: int, sos: np.ndarray,
                     lo_hz: float, split_hz: float, lf_top_hz: float, hi_hz: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin weights (LF bins, HF bins) so that vrms^2 = sum P_lf w_lf df_lf + sum P_hf w_hf df_hf.

    The LF spectrum (~1 Hz bins) is authoritative below `lf_top_hz`: each LF bin counts its line
    with the anti-alias filter undone. The HF spectrum (bins of fs/n ~12.5 Hz) counts from
    `split_hz` to `hi_hz`, which also counts the Hann lobes of lines below `lf_top_hz` that reach
    above `split_hz`; each LF bin therefore subtracts what the HF sum counted of it (its Hann
    footprint on the HF bins). So no line is counted twice or lost at the split, wherever it
    falls (a 2x-mains line at 100 Hz is the common case).
    """
    f_hf = np.arange(nfft // 2 + 1) * (fs / nfft)
    w_hf = np.zeros_like(f_hf)
    on = f_hf >= split_hz
    w_hf[on] = velocity_weight(f_hf[on], fs / n) * band_edges(f_hf[on], lo_hz, hi_hz)
    f_lf = np.arange(length // 2 + 1) * (fs_lf / length)
    w_lf = np.zeros_like(f_lf)
    use = (f_lf > 0) & (f_lf < lf_top_hz)
    f = f_lf[use]
    own = velocity_weight(f, fs_lf / length) * band_edges(f, lo_hz, hi_hz)
    reach = on & (f_hf < lf_top_hz + 4.0 * fs / n)  # HF bins a lobe from below lf_top can reach
    counted = hann_power_kernel(f_hf[reach][None, :] - f[:, None], n, nfft, fs) @ w_hf[reach]
    w_lf[use] = (own - counted) / lowpass_power(sos, f, fs)
    return w_lf, w_hf


SPEED_HARMONICS = 5  # 1x..5x: a machine's shaft lines form a comb; one strong line is not a comb
SPEED_TERM_CAP = 4.0  # log10 units (40 dB) a single harmonic may add: mains or a resonance can't carry it
SPEED_TERM_FLOOR = 0.5  # what a missing harmonic costs at most (log10 units)
SPEED_PEAK_MIN = 1.0  # a fundamental stands 10 dB above the noise


def estimate_speed_hz(psd: np.ndarray, bin_hz: float, k_min: int, k_max: int, k_top: int,
                      floor: float) -> np.ndarray:
    """Running speed from the LF spectrum by a harmonic sum of prominences.

    With l = log10(P + floor) and `base` the median of l over bins k_min..k_top-1 (the noise
    level), each candidate bin k in [k_min, k_max] that is a local peak (l[k] >= l[k-1], l[k+1])
    at least 1 (10 dB) above base scores the sum over h = 1..5 with h*k + 1 < k_top of clip(max(l[hk-1..hk+1]) - base, -0.5, 4):
    lines of a comb add up, a missing harmonic costs a little, a single strong line (2x mains, a
    resonance) adds at most 4. The first k with the largest sum wins (k_min when no candidate is a
    peak); a parabola through log power around the 1x peak refines it.
    """
    p = np.log10(np.asarray(psd, np.float64) + floor)
    n_win = p.shape[0]
    base = np.median(p[:, k_min:k_top], axis=1)
    best = np.full(n_win, -np.inf)
    best_k = np.full(n_win, k_min, np.int64)
    for k in range(k_min, k_max + 1):
        hs = [h for h in range(1, SPEED_HARMONICS + 1) if h * k + 1 < k_top]
        if not hs:
            break
        # higher harmonics within a bin, as h * k drifts from h * f0 by up to h/2 bins; each term
        # between -0.5 (a missing harmonic: a dip of the noise costs little) and the cap
        terms = [np.clip(p[:, h * k - 1:h * k + 2].max(axis=1) - base, -SPEED_TERM_FLOOR, SPEED_TERM_CAP)
                 for h in hs]
        score = np.sum(terms, axis=0)
        # the 1x must be a peak of its own, 10 dB above the noise: a bin on the skirt of a strong
        # line, or a ripple of the noise below a real comb's fundamental, is no fundamental
        peak = (p[:, k] >= p[:, k - 1]) & (p[:, k] >= p[:, k + 1]) & (p[:, k] - base >= SPEED_PEAK_MIN)
        better = peak & (score > best)
        best[better] = score[better]
        best_k[better] = k
    rows = np.arange(n_win)
    # the 1x peak itself: the largest of k-1..k+1, then a parabola through its neighbours
    around = np.stack([p[rows, best_k - 1], p[rows, best_k], p[rows, best_k + 1]], axis=1)
    peak = best_k - 1 + around.argmax(axis=1)
    left, mid, right = p[rows, peak - 1], p[rows, peak], p[rows, peak + 1]
    den = left - 2.0 * mid + right
    delta = np.where(den < 0, 0.5 * (left - right) / np.where(den < 0, den, -1.0), 0.0)
    return (peak + np.clip(delta, -0.5, 0.5)) * bin_hz
