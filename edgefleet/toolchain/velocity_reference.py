"""Overall vibration velocity, mm/s RMS in a band (ISO 20816: 10-1,000 Hz), computed with scipy.

The yardstick that a node's velocity RMS (frequency-domain integration of one window's spectrum,
features v2) is checked against, within 1 %. It is meant to be a different computation from the
node's, so an error in either shows: a time-domain band-pass (Butterworth, zero phase) on the
acceleration, then integration, then the RMS of the settled middle of the record. A pure function
of an array; nothing here does I/O.

How, and why each step is as it is:

1. Acceleration in g to m/s^2 (x 9.80665, standard gravity), float64, mean removed.
2. Band-pass `lo`-`hi` with `scipy.signal.butter(ORDER, (lo, hi), "bandpass", output="sos")`
   run forwards and backwards (`sosfiltfilt`): zero phase, and an amplitude response per edge of
   1 / (1 + (f_edge / f)^(2 ORDER)) (f below `hi`; mirrored at `hi`), which is the square of the
   Butterworth's. ORDER = 16 makes the band nearly the ideal ("brick wall") band the node sums:
   a line is passed within 0.1 % from 1.25 `lo` to 0.8 `hi` (12.5-800 Hz) and within 1.5 % from
   1.14 `lo` (the slowest simulated machines' 1x, 11.4 Hz); lines closer to the edges than that
   are attenuated (-50 % exactly at `lo` and at `hi`): where a line sits on an edge, a brick wall
   and any real filter disagree, and so would this reference and a node.
3. Integrate to velocity in the frequency domain, V(f) = A(f) / (j 2 pi f), which is exact at
   every frequency (a trapezoid rule would read 2.3 % low at 1 kHz sampled at 12 kHz). The DFT
   treats the record as periodic, so the band-passed acceleration is first tapered to zero inside
   the edge zones that step 4 drops anyway (a Tukey taper): the wrap-around then has no jump.
   What the periodic integral leaves in the middle is the true velocity plus a constant and a
   straight line (the record's net velocity change); both are removed by a linear detrend of the
   middle, which removes a negligible share of anything at 10 Hz and above over a second or more.
4. Handle the edges. A record starts and stops abruptly, and an abrupt start of anything, even
   a 3 kHz resonance far outside the band, excites the filter's slow poles near `lo`, whose
   transient integration then magnifies (a 2 kHz line read 3 % of its velocity as 10 Hz
   transient). So the acceleration is first faded in and out over 2.5 periods of `lo` (a cosine
   taper, 0.25 s at 10 Hz): a smooth onset has no energy near `lo`. Then the faded stretch and
   the filter's own start-up (forwards at the start, backwards at the end, until its impulse
   response has decayed to 1e-4 of its peak) are dropped at each end (`settle_seconds`: 1.10-1.14 s
   for 10-1,000 Hz at 4-48 kHz; it scales with 1/`lo`); the RMS is taken over the rest, flat.
   A record must therefore be longer than two settling times plus 0.5 s (`min_seconds`, 2.7-2.8 s
   for 10-1,000 Hz); shorter ones are refused rather than read wrong.

Accuracy, measured: against the exact velocity of 200 random lines (13-780 Hz) over the same
stretch, within 0.1 % for 3 s records and 0.001 % for 5-10 s (12 and 25.6 kHz); a 2 kHz line
reads < 1e-4 of its velocity, and 5 g at 3 kHz does not move a 25 Hz line's reading. The RMS
of a line over a finite stretch T differs from amplitude/sqrt(2) by up to 1 / (4 pi f T) (a part
cycle): 0.1 % for 25 Hz over 3 s; that is the signal's, not the method's.

On the 19 CWRU recordings (12 kHz, 3.6-10.2 s), against an ideal brick-wall 10-1,000 Hz band
(frequency-domain integration of the whole record, RMS over the same stretch): 0.05-0.62 % lower,
from the filter's skirt at 1 kHz (CWRU has velocity near 1 kHz). The stretch matters more than
the method on recordings like these: over the whole record, or Hann-weighted, the same CWRU
signals read up to 7 % apart, because their bursts are not stationary.

A node's window is shorter than this; compare a node's windows with the reference over the
recording they came from, on the stretch the reference keeps (`settle_seconds(fs)` from each
end): the mean of those windows' squared velocity against the reference squared, not window by
window.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

G = 9.80665  # m/s^2 per g (standard gravity)
ORDER = 16  # Butterworth order per band edge (the forward-backward pass doubles it)
SETTLE = 1e-4  # the filter transient is trimmed once its impulse response is this far below its peak
FADE_PERIODS = 2.5  # the record is faded in and out over this many periods of `lo`
MIN_MIDDLE_S = 0.5  # seconds that must remain after trimming


@lru_cache(maxsize=32)
def _design(fs: float, lo: float, hi: float) -> tuple[np.ndarray, int, int]:
    """The band-pass SOS, the fade length and the samples trimmed at each end (fade + settling)."""
    from scipy.signal import butter, sosfilt

    sos = butter(ORDER, (lo, hi), btype="bandpass", fs=fs, output="sos")
    n = int(np.ceil(40.0 * fs / lo))  # far beyond the slowest pole's decay
    h = np.abs(sosfilt(sos, np.r_[1.0, np.zeros(n - 1)]))
    settle = int(np.flatnonzero(h > SETTLE * h.max())[-1]) + 1
    fade = int(np.ceil(FADE_PERIODS * fs / lo))
    return sos, fade, fade + settle


def settle_seconds(fs: float, lo: float = 10.0, hi: float = 1000.0) -> float:
    """Seconds trimmed at each end of a record (the fade and the band-pass's settling time)."""
    _check_band(fs, lo, hi)
    return _design(float(fs), float(lo), float(hi))[2] / float(fs)


def min_seconds(fs: float, lo: float = 10.0, hi: float = 1000.0) -> float:
    """The shortest record `velocity_rms_reference` accepts, in seconds."""
    return 2.0 * settle_seconds(fs, lo, hi) + MIN_MIDDLE_S


def _check_band(fs: float, lo: float, hi: float) -> None:
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"sampling rate must be a positive number of Hz, got {fs}")
    if not 0 < lo < hi < fs / 2:
        raise ValueError(f"band {lo}-{hi} Hz must satisfy 0 < lo < hi < fs/2 = {fs / 2:g} Hz")


def velocity_rms_reference(x_g: np.ndarray, fs: float, lo: float = 10.0, hi: float = 1000.0) -> float:
    """Overall velocity RMS in mm/s of the acceleration record `x_g` (g, 1-D) in the band lo-hi Hz.

    See the module docstring for the method. Raises ValueError for a record that is not 1-D,
    holds non-finite samples, or is shorter than `min_seconds(fs, lo, hi)`, and for a band that
    does not fit below fs/2.
    """
    from scipy.signal import detrend, sosfiltfilt
    from scipy.signal.windows import tukey

    fs, lo, hi = float(fs), float(lo), float(hi)
    _check_band(fs, lo, hi)
    x = np.asarray(x_g, np.float64)
    if x.ndim != 1:
        raise ValueError(f"one record at a time: expected a 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the record holds NaN or infinite samples")
    sos, fade, settle = _design(fs, lo, hi)
    n = x.size
    if n - 2 * settle < MIN_MIDDLE_S * fs:
        raise ValueError(f"record of {n / fs:.3g} s is too short: the {lo:g}-{hi:g} Hz reference needs "
                         f"at least {min_seconds(fs, lo, hi):.3g} s ({settle / fs:.3g} s of fade and "
                         f"filter settling are dropped at each end)")
    a = (x - x.mean()) * G
    a *= tukey(n, 2.0 * fade / n)  # a smooth onset and end: nothing near lo from the edges
    y = sosfiltfilt(sos, a)
    y *= tukey(n, 2.0 * settle / n)  # no jump where the DFT wraps; inside the trimmed zones only
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec = np.fft.rfft(y)
    spec[1:] /= 2j * np.pi * f[1:]
    spec[0] = 0.0
    if n % 2 == 0:
        spec[-1] = 0.0  # the Nyquist bin has no phase to integrate
    v = np.fft.irfft(spec, n)[settle:n - settle]
    v = detrend(v, type="linear")
    return float(np.sqrt(np.mean(v * v)) * 1000.0)


__all__ = ["G", "ORDER", "min_seconds", "settle_seconds", "velocity_rms_reference"]
