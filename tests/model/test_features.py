import numpy as np
import pytest

from edgefleet.errors import FeatureError
from edgefleet.runtime.features import FeatureParams, frame, log_band_power, plan, quantize

PARAMS = FeatureParams.spaced(32, 100.0, 1900.0)


def tone(freq, fs, seconds, amp=1.0):
    t = np.arange(int(round(seconds * fs))) / fs
    return amp * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize("fs", [4000, 8000, 12000, 25600, 48000, 50000])
def test_same_vibration_gives_same_features_at_any_rate(fs):
    ref = log_band_power(tone(1028.0, 12000, PARAMS.window_s), 12000, PARAMS)[0]
    got = log_band_power(tone(1028.0, fs, PARAMS.window_s), fs, PARAMS)[0]
    peak = int(np.argmax(ref))
    assert int(np.argmax(got)) == peak
    # band power of the tone agrees to 0.5 dB across rates (windowing and bin edges differ)
    assert abs(got[peak] - ref[peak]) < 0.05


def test_tone_power_lands_in_its_band_with_physical_units():
    fs = 12000
    f = log_band_power(tone(1028.0, fs, PARAMS.window_s, amp=2.0), fs, PARAMS)[0]
    band = np.searchsorted(PARAMS.edges_hz, 1028.0) - 1
    assert int(np.argmax(f)) == band
    # a sine of amplitude A has mean-square power A^2/2 = 2 g^2; Hann leakage spills a little
    total = np.log10((10.0 ** f.astype(np.float64)).sum())
    assert abs(total - np.log10(2.0)) < 0.05


def test_batches_match_single_windows():
    rng = np.random.default_rng(0)
    fs = 12000
    w = rng.normal(size=(5, plan(PARAMS, fs).n_samples))
    batch = log_band_power(w, fs, PARAMS)
    for i in range(5):
        np.testing.assert_array_equal(batch[i], log_band_power(w[i], fs, PARAMS)[0])


@pytest.mark.parametrize("fs, words", [
    (3000, "outside"), (60000, "outside"), (float("nan"), "outside"),
])
def test_unsupported_rates_are_refused(fs, words):
    with pytest.raises(FeatureError, match=words):
        plan(PARAMS, fs)


def test_rate_below_the_models_bands_names_nyquist():
    high = FeatureParams.spaced(32, 100.0, 5000.0)
    with pytest.raises(FeatureError, match="Nyquist"):
        plan(high, 8000)


def test_band_narrower_than_a_bin_is_refused():
    fine = FeatureParams(window_s=0.01, edges_hz=(100.0, 101.0, 2000.0))
    with pytest.raises(FeatureError, match="no FFT bin"):
        plan(fine, 12000)


def test_window_too_long_for_fft_limit():
    with pytest.raises(FeatureError, match="FFT size"):
        plan(FeatureParams(window_s=1.0, edges_hz=(100.0, 1000.0)), 12000)


def test_nan_and_wrong_length_windows_are_refused():
    n = plan(PARAMS, 12000).n_samples
    bad = np.zeros(n)
    bad[3] = np.nan
    with pytest.raises(FeatureError, match="NaN"):
        log_band_power(bad, 12000, PARAMS)
    with pytest.raises(FeatureError, match="samples"):
        log_band_power(np.zeros(n - 1), 12000, PARAMS)


def test_quantize_rounds_half_away_from_zero_like_c_roundf():
    z = np.array([0.5, -0.5, 1.5, -1.5, 2.4999, 1000.0, -1000.0], np.float32)
    np.testing.assert_array_equal(quantize(z, 1.0, 0), [1, -1, 2, -2, 2, 127, -128])
    np.testing.assert_array_equal(quantize(np.float32([0.0]), 0.5, -128), [-128])


def test_invalid_parameters():
    with pytest.raises(FeatureError):
        FeatureParams(window_s=0.08, edges_hz=(100.0, 100.0))
    with pytest.raises(FeatureError):
        FeatureParams(window_s=-1.0, edges_hz=(100.0, 200.0))


def test_frame_cuts_without_overlap_by_default():
    x = np.arange(10.0)
    np.testing.assert_array_equal(frame(x, 4), [[0, 1, 2, 3], [4, 5, 6, 7]])
    assert frame(x, 4, 2).shape == (4, 4)
    assert frame(x, 20).shape == (0, 20)
