"""The scipy velocity reference (mm/s RMS, 10-1,000 Hz) against signals whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.toolchain.velocity_reference import (
    G,
    min_seconds,
    settle_seconds,
    velocity_rms_reference,
)


def accel_of_velocity(v_mm_s, f_hz, t, phase=0.0):
    """Acceleration in g of a velocity line v sin(2 pi f t + phase) (v: amplitude, mm/s)."""
    return v_mm_s / 1000.0 * 2 * np.pi * f_hz * np.cos(2 * np.pi * f_hz * t + phase) / G


@pytest.mark.parametrize("fs", [12000.0, 12800.0, 25600.0])
@pytest.mark.parametrize("phase", [0.0, 1.1])
def test_a_25_hz_line_of_known_velocity_reads_its_rms_within_half_a_percent(fs, phase):
    t = np.arange(int(5 * fs)) / fs
    v = 7.1 * np.sqrt(2)  # amplitude of a 7.1 mm/s RMS line
    got = velocity_rms_reference(accel_of_velocity(v, 25.0, t, phase), fs)
    assert got == pytest.approx(v / np.sqrt(2), rel=0.005)


@pytest.mark.parametrize("f_hz", [12.5, 15.0, 50.0, 100.0, 300.0, 780.0])
def test_lines_inside_the_band_read_exactly(f_hz):
    fs = 12000.0
    t = np.arange(int(8 * fs)) / fs  # a part cycle over the kept stretch T moves a line's RMS by <= 1/(4 pi f T)
    assert velocity_rms_reference(accel_of_velocity(2.0, f_hz, t), fs) == pytest.approx(2.0 / np.sqrt(2), rel=0.002)


def test_many_lines_match_the_exact_velocity_over_the_same_stretch():
    fs = 25600.0
    rng = np.random.default_rng(4)
    n = int(5 * fs)
    t = np.arange(n) / fs
    f = rng.uniform(13.0, 780.0, 60)
    v = rng.uniform(0.1, 2.0, 60)
    p = rng.uniform(0, 2 * np.pi, 60)
    x = sum(accel_of_velocity(vi, fi, t, pi) for vi, fi, pi in zip(v, f, p))
    x += 5.0 * np.sin(2 * np.pi * 3000.0 * t)  # a strong resonance outside the band
    vel = sum(vi * np.sin(2 * np.pi * fi * t + pi) for vi, fi, pi in zip(v, f, p))
    s = int(round(settle_seconds(fs) * fs))
    exact = np.sqrt(np.mean(vel[s:n - s] ** 2))  # the RMS over the stretch the reference keeps
    assert velocity_rms_reference(x, fs) == pytest.approx(exact, rel=0.001)


def test_offset_and_out_of_band_content_are_ignored():
    fs = 12800.0
    t = np.arange(int(4 * fs)) / fs
    line = accel_of_velocity(3.0, 30.0, t)
    junk = 0.4 + 0.02 * np.sin(2 * np.pi * 2.0 * t) + 0.5 * np.sin(2 * np.pi * 3000.0 * t)
    assert velocity_rms_reference(line + junk, fs) == pytest.approx(3.0 / np.sqrt(2), rel=0.003)


def test_the_band_edges_are_half_power_points_of_a_steep_filter():
    fs = 12000.0
    t = np.arange(int(6 * fs)) / fs
    rms = 1.0 / np.sqrt(2)
    assert velocity_rms_reference(accel_of_velocity(1.0, 10.0, t), fs) == pytest.approx(0.5 * rms, rel=0.01)
    assert velocity_rms_reference(accel_of_velocity(1.0, 1000.0, t), fs) == pytest.approx(0.5 * rms, rel=0.01)
    assert velocity_rms_reference(accel_of_velocity(1.0, 5.0, t), fs) < 1e-3 * rms
    assert velocity_rms_reference(accel_of_velocity(1.0, 2000.0, t), fs) < 1e-4 * rms
    t = np.arange(int(14 * fs)) / fs  # settling scales with 1/lo
    wide = velocity_rms_reference(accel_of_velocity(1.0, 5.0, t), fs, lo=2.0)
    assert wide == pytest.approx(rms, rel=0.005)  # another band: 2-1,000 Hz (ISO 20816 below 600 rpm)


def test_short_records_bad_bands_and_bad_samples_are_refused():
    fs = 12000.0
    assert 2.5 < min_seconds(fs) < 3.0
    with pytest.raises(ValueError, match="too short"):
        velocity_rms_reference(np.zeros(int(2.5 * fs)), fs)
    with pytest.raises(ValueError, match="fs/2"):
        velocity_rms_reference(np.zeros(int(5 * fs)), 1500.0)
    with pytest.raises(ValueError, match="1-D"):
        velocity_rms_reference(np.zeros((2, int(5 * fs))), fs)
    x = np.zeros(int(5 * fs))
    x[7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        velocity_rms_reference(x, fs)
    assert velocity_rms_reference(np.zeros(int(3 * fs)), fs) == 0.0


def test_cwru_recordings_read_within_one_percent_of_an_ideal_band_over_the_same_stretch(cwru_dir):
    """The other way to the same number: a brick-wall 10-1,000 Hz band and V = A / (j 2 pi f) over
    the whole record (exact in the middle), RMS over the stretch the reference keeps."""
    paths = sorted(cwru_dir.glob("*.npz"))
    assert len(paths) >= 10
    for p in paths:
        with np.load(p) as z:
            x, fs = z["signal"].astype(np.float64), float(z["fs"])
        a = (x - x.mean()) * G
        f = np.fft.rfftfreq(a.size, 1 / fs)
        spec = np.fft.rfft(a)
        band = (f >= 10.0) & (f <= 1000.0)
        vel = np.zeros_like(spec)
        vel[band] = spec[band] / (2j * np.pi * f[band])
        v = np.fft.irfft(vel, a.size)
        s = int(round(settle_seconds(fs) * fs))
        middle = v[s:a.size - s] - v[s:a.size - s].mean()
        ideal = float(np.sqrt(np.mean(middle ** 2))) * 1000.0
        assert velocity_rms_reference(x, fs) == pytest.approx(ideal, rel=0.01), p.name
