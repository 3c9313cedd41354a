"""Feature definition v2 (docs/features.md): velocity in mm/s, running speed, LF bands, the
artifact's kind-2 section, and the clear refusals at its edges."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from scipy import signal

from edgefleet.errors import ArtifactError, FeatureError
from edgefleet.runtime import baseline as bl
from edgefleet.runtime.artifact import HEADER, LOW_FREQ, Artifact
from edgefleet.runtime.features import (
    EXTRA_VRMS,
    FeatureParams,
    LowFreqParams,
    analyze,
    log_band_power,
    low_freq,
    plan,
)
from edgefleet.runtime.lowfreq import G_MM_S2, band_edges, butterworth_lowpass_sos

V2 = FeatureParams.spaced(32, 100.0, 5000.0, lf=low_freq())
V1 = FeatureParams.spaced(32, 100.0, 5000.0)


def machine(fs: float, n: int, shaft_hz: float, vel_mm_s: dict[int, float], *, noise_g: float = 0.002,
            dc_g: float = 1.0, seed: int = 0) -> np.ndarray:
    """Harmonics of shaft_hz with the given velocity amplitudes (mm/s peak) plus noise and gravity."""
    t = np.arange(n) / fs
    rng = np.random.default_rng(seed)
    x = dc_g + noise_g * rng.standard_normal(n)
    for h, v in vel_mm_s.items():
        f = h * shaft_hz
        x += v * 2 * np.pi * f / G_MM_S2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return x


def expected_vrms(shaft_hz: float, vel_mm_s: dict[int, float]) -> float:
    return float(np.sqrt(sum(v * v / 2 for v in vel_mm_s.values())))


def scipy_velocity_rms(x: np.ndarray, fs: float) -> float:
    """Time-domain yardstick: band-pass 10-1000 Hz, integrate, trim the filter's edges."""
    sos = signal.butter(4, [10.0, 1000.0], btype="bandpass", fs=fs, output="sos")
    a = signal.sosfiltfilt(sos, x * G_MM_S2)
    v = np.cumsum(a) / fs
    v = signal.sosfiltfilt(signal.butter(2, 5.0, btype="highpass", fs=fs, output="sos"), v)
    trim = int(0.15 * fs)
    return float(np.sqrt(np.mean(v[trim:-trim] ** 2)))


@pytest.mark.parametrize("fs", [4000.0, 12000.0, 25600.0, 48000.0])
def test_velocity_matches_the_analytic_value_at_every_rate(fs):
    params = FeatureParams.spaced(16, 100.0, min(5000.0, 0.45 * fs), lf=low_freq())
    vel = {1: 2.5, 2: 1.2, 3: 0.6, 7: 0.3}  # mm/s peak at 1x..7x of a 24.7 Hz shaft (7x is above the split)
    n = plan(params, fs).n_samples
    a = analyze(machine(fs, n, 24.7, vel), fs, params)
    assert a.vrms_mm_s[0] == pytest.approx(expected_vrms(24.7, vel), rel=0.01)


def test_velocity_agrees_with_a_time_domain_reference_on_a_long_signal():
    fs = 12000.0
    n = plan(V2, fs).n_samples
    x = machine(fs, n, 29.5, {1: 3.0, 2: 1.0, 4: 0.5}, noise_g=0.02)
    ref = scipy_velocity_rms(x, fs)
    assert analyze(x, fs, V2).vrms_mm_s[0] == pytest.approx(ref, rel=0.02)


@pytest.mark.parametrize("shaft_hz", [8.0, 14.9, 24.7, 29.95, 49.2, 60.0])
def test_running_speed_is_found_even_when_2x_dominates(shaft_hz):
    fs = 12000.0
    n = plan(V2, fs).n_samples
    for vel in ({1: 2.0, 2: 0.6, 3: 0.3}, {1: 0.5, 2: 3.0, 3: 0.4}):  # unbalance-like, misalignment-like
        speed = analyze(machine(fs, n, shaft_hz, vel), fs, V2).speed_hz[0]
        assert abs(speed - shaft_hz) < plan(V2, fs).lf.fs_lf / V2.lf.length  # within one LF bin


def test_unbalance_moves_the_band_that_holds_1x_and_not_the_bearing_bands():
    fs = 12000.0
    n = plan(V2, fs).n_samples
    healthy = log_band_power(machine(fs, n, 24.7, {1: 1.0, 2: 0.3}), fs, V2)[0]
    unbalanced = log_band_power(machine(fs, n, 24.7, {1: 4.0, 2: 0.3}), fs, V2)[0]
    diff = unbalanced - healthy
    lf = diff[V2.n_bands:V2.n_bands + V2.lf.n_bands]
    edges = V2.lf.edges_hz
    band_1x = next(i for i in range(V2.lf.n_bands) if edges[i] <= 24.7 < edges[i + 1])
    assert lf[band_1x] == pytest.approx(np.log10(16.0), abs=0.1)  # power x16
    assert np.abs(diff[:V2.n_bands]).max() < 0.05
    assert diff[-3] > 0.3  # log10 vrms


def test_v1_features_are_unchanged_by_v2():
    fs = 12000.0
    x = np.random.default_rng(3).standard_normal(plan(V1, fs).n_samples)
    n = x.size
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    p = plan(V1, fs)
    spec = np.fft.rfft((x - x.mean()) * w, n=p.nfft)
    psd = 2 * np.abs(spec) ** 2 / (fs * np.sum(w * w))
    bands = np.array([psd[lo:hi].sum() for lo, hi in zip(p.k_lo, p.k_hi)]) * fs / p.nfft
    assert np.allclose(log_band_power(x, fs, V1)[0], np.log10(bands + V1.log_floor), atol=1e-6)
    assert V1.version == 1 and V1.n_features == 32 and V2.version == 2 and V2.n_features == 51
    a = analyze(x, fs, V1)
    assert np.isnan(a.vrms_mm_s).all() and np.isnan(a.speed_hz).all()


def test_the_filter_is_an_8th_order_butterworth():
    for fs in (4000.0, 12000.0, 48000.0):
        ours = butterworth_lowpass_sos(160.0, fs)
        ref = signal.butter(8, 160.0, fs=fs, output="sos")
        _, h1 = signal.sosfreqz(ours, 4096, fs=fs)
        _, h2 = signal.sosfreqz(ref, 4096, fs=fs)
        assert np.abs(np.abs(h1) - np.abs(h2)).max() < 1e-3
        assert ours.dtype == np.float64 and np.array_equal(ours, ours.astype(np.float32))


def test_frontend_crc_keeps_v1_and_changes_with_every_v2_parameter():
    v1_crc = zlib.crc32(np.asarray([V1.window_s, V1.log_floor, *V1.edges_hz], "<f4").tobytes())
    assert bl.frontend_crc(V1) == v1_crc
    other = FeatureParams.spaced(32, 100.0, 5000.0, lf=low_freq(extras=EXTRA_VRMS))
    assert len({bl.frontend_crc(V1), bl.frontend_crc(V2), bl.frontend_crc(other)}) == 3


def test_names_say_what_each_input_is():
    names = V2.feature_names()
    assert len(names) == V2.n_features
    assert names[0] == "100-253 Hz" and names[32].startswith("5.0-") and names[-3:] == ["vrms", "kurtosis", "crest"]


# --- bad input: a clear error at the edge, never a silent wrong feature ---

@pytest.mark.parametrize("fs, match", [
    (3000.0, "outside the supported"),
    (60000.0, "outside the supported"),
    (float("nan"), "outside the supported"),
])
def test_rates_outside_the_range_are_refused(fs, match):
    with pytest.raises(FeatureError, match=match):
        plan(V2, fs)


def test_a_window_of_v1_length_is_refused_by_a_v2_front_end():
    fs = 12000.0
    short = np.zeros(plan(V1, fs).n_samples)
    with pytest.raises(FeatureError, match=r"expected windows of 12512 samples .*v2"):
        analyze(short, fs, V2)


def test_a_low_frequency_part_the_rate_cannot_resolve_is_refused():
    with pytest.raises(FeatureError, match="below the anti-alias corner"):
        LowFreqParams(edges_hz=(5.0, 10.0, 150.0), rate_hz=256.0, cut_hz=100.0)
    fine = LowFreqParams(edges_hz=(5.1, 5.4, 150.0))
    with pytest.raises(FeatureError, match="holds no FFT bin"):
        plan(FeatureParams.spaced(8, 100.0, 1000.0, lf=fine), 12000.0)


def test_v2_artifact_round_trips_and_scores(trained_v2):
    art = trained_v2.artifact
    blob = art.to_bytes()
    back = Artifact.from_bytes(blob)
    assert back.to_bytes() == blob and back.features.params == art.features.params
    assert back.features.params.version == 2 and back.n_inputs == 51


def _lf_offset(blob: bytes) -> int:
    feat_off = HEADER.unpack_from(blob, 0)[15]
    nb = struct.unpack_from("<H", blob, feat_off + 2)[0]
    return feat_off + 12 + 4 * (nb + 1)


@pytest.mark.parametrize("field, value, match", [
    (0, 500, "low-frequency length"),  # length not a power of two
    (3, 0x10, "unknown extra feature bits"),
    (5, float("nan"), "NaN or infinity"),  # cut_hz
    (5, 600.0, "corner"),  # cut above half the LF rate
    (2, 40, "edges must be >= 2 finite ascending"),  # n_lf too large: edges run into the standardization
])
def test_corrupt_low_frequency_sections_are_refused(trained_v2, field, value, match):
    blob = bytearray(trained_v2.artifact.to_bytes())
    off = _lf_offset(bytes(blob))
    vals = list(LOW_FREQ.unpack_from(blob, off))
    vals[field] = value
    LOW_FREQ.pack_into(blob, off, *vals)
    struct.pack_into("<I", blob, 12, zlib.crc32(bytes(blob[16:])))
    with pytest.raises(ArtifactError, match=match):
        Artifact.from_bytes(bytes(blob))


@pytest.mark.parametrize("fs", [4000.0, 12000.0, 48000.0])
def test_a_line_anywhere_in_the_band_counts_once_even_at_the_split(fs):
    """The LF spectrum is authoritative below 150 Hz, the HF one above; a line near the 100 Hz
    split (2x mains) would be counted twice or lost by a plain split (+10 % / -16 % measured)."""
    params = FeatureParams.spaced(16, 200.0, min(5000.0, 0.45 * fs), lf=low_freq())
    n = plan(params, fs).n_samples
    t = np.arange(n) / fs
    for f in (12.5, 25.3, 88.0, 95.5, 100.0, 104.0, 120.0, 148.0, 152.0, 230.0, 890.0):
        a = np.sqrt(2) * 2 * np.pi * f / G_MM_S2  # 1 mm/s RMS
        expected = float(np.sqrt(band_edges(np.array([f]), 10.0, 1000.0))[0])  # the sloped band edges
        for phase in (0.0, 1.3):
            v = analyze(a * np.sin(2 * np.pi * f * t + phase), fs, params).vrms_mm_s[0]
            assert v == pytest.approx(expected, rel=0.005), f"{f} Hz"


def test_the_band_edges_have_the_slope_of_the_yardstick():
    """Half amplitude at 10 and 1,000 Hz, within 1.5 % from 1.14 x 10 Hz, gone at 1.2 kHz."""
    f = np.array([10.0, 11.4, 25.0, 500.0, 1000.0, 1200.0])
    e = np.sqrt(band_edges(f, 10.0, 1000.0))  # amplitude
    assert e[0] == pytest.approx(0.5, abs=1e-9) and e[4] == pytest.approx(0.5, abs=1e-9)
    assert 0.98 < e[1] < 0.99 and e[2] == pytest.approx(1.0, abs=1e-6) and e[3] == pytest.approx(1.0, abs=1e-6)
    assert e[5] < 0.01
