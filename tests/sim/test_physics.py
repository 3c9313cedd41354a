"""The simulator's vibration physics: defect kinematics, spectra, fault growth, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from device_sim.physics import (SKF_6205, Fault, defect_frequencies, envelope_spectrum, impact_rate,
                                make_machines, synthesize, with_faults)

FS = 12000.0


def one_machine(kind: Fault = Fault.NONE, *, seed: int = 3, onset: float = 0.0, ramp: float = 1e-6,
                peak: float = 1.0):
    m = make_machines(1, np.random.default_rng(seed), rpm=1797.0, load=0.0)
    if kind != Fault.NONE:
        m = with_faults(m, [0], kind, onset_s=onset, ramp_s=ramp, peak_g=peak)
    return m


def test_skf6205_defect_orders_match_the_cwru_published_multiples():
    # CWRU lists the 6205 drive-end bearing as multiples of shaft speed:
    # inner 5.4152, outer 3.5848, cage 0.39828, rolling element 4.7135 (= 2 x BSF)
    d = defect_frequencies(1.0, **SKF_6205)
    assert float(d.bpfi) == pytest.approx(5.4152, rel=2e-3)
    assert float(d.bpfo) == pytest.approx(3.5848, rel=2e-3)
    assert float(d.ftf) == pytest.approx(0.39828, rel=2e-3)
    assert 2 * float(d.bsf) == pytest.approx(4.7135, rel=2e-3)


def test_defect_frequencies_scale_with_speed_and_obey_kinematic_identities():
    fr = np.array([10.0, 25.0, 60.0])
    d = defect_frequencies(fr, n_balls=8, ball_d=12.0, pitch_d=50.0, contact_deg=15.0)
    np.testing.assert_allclose(d.bpfo + d.bpfi, 8 * fr)  # n balls pass both races per rev
    np.testing.assert_allclose(d.bpfo, 8 * d.ftf)  # outer race sees every ball once per cage rev
    assert np.all(np.diff(d.bpfo) > 0)


def test_contact_angle_lowers_inner_and_raises_outer_frequency():
    flat = defect_frequencies(30.0, n_balls=9, ball_d=8.0, pitch_d=39.0, contact_deg=0.0)
    tilted = defect_frequencies(30.0, n_balls=9, ball_d=8.0, pitch_d=39.0, contact_deg=40.0)
    assert tilted.bpfo > flat.bpfo and tilted.bpfi < flat.bpfi


def _envelope_peak(x, fs, lo=20.0, hi=400.0) -> float:
    f, s = envelope_spectrum(x, fs, (2000.0, 5000.0))
    sel = (f > lo) & (f < hi)
    return float(f[sel][np.argmax(s[sel])])


@pytest.mark.parametrize("kind, attr, mult", [(Fault.OUTER_RACE, "bpfo", 1.0),
                                              (Fault.INNER_RACE, "bpfi", 1.0),
                                              (Fault.BALL, "bsf", 2.0)])
def test_envelope_spectrum_peaks_at_the_defect_frequency(kind, attr, mult):
    m = one_machine(kind)
    x = synthesize(m, 0.0, int(4 * FS), FS, np.random.default_rng(0))[0]
    expected = mult * float(getattr(m.defects(0.0), attr)[0])
    assert _envelope_peak(x, FS) == pytest.approx(expected, abs=1.0)


def test_healthy_machine_has_no_defect_line_but_a_shaft_line():
    m = one_machine()
    x = synthesize(m, 0.0, int(4 * FS), FS, np.random.default_rng(0))[0].astype(np.float64)
    f = np.fft.rfftfreq(x.size, 1 / FS)
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    fr = float(m.shaft_hz(0.0)[0])
    sel = (f > 5) & (f < 1000)
    assert abs(f[sel][np.argmax(spec[sel])] - fr) < 0.5  # imbalance dominates the low band
    # and its envelope spectrum near BPFO is no stronger than its neighbourhood
    fe, se = envelope_spectrum(x, FS, (2000.0, 5000.0))
    bpfo = float(m.defects(0.0).bpfo[0])
    near = se[np.abs(fe - bpfo) < 1.0].max()
    around = np.median(se[(fe > 50) & (fe < 400)])
    assert near < 8 * around


def test_inner_race_impacts_are_modulated_at_shaft_speed():
    m = one_machine(Fault.INNER_RACE)
    x = synthesize(m, 0.0, int(4 * FS), FS, np.random.default_rng(1))[0]
    f, s = envelope_spectrum(x, FS, (2000.0, 5000.0))
    bpfi, fr = float(m.defects(0.0).bpfi[0]), float(m.shaft_hz(0.0)[0])
    floor = np.median(s[(f > 20) & (f < 400)])
    side = s[np.abs(f - (bpfi - fr)) < 0.6].max()
    assert side > 10 * floor  # sideband at BPFI - 1x


def test_rms_and_kurtosis_grow_as_the_fault_develops():
    m = one_machine(Fault.OUTER_RACE, onset=10.0, ramp=100.0, peak=1.5)
    rng = np.random.default_rng(0)
    rms = []
    for t in (0.0, 30.0, 60.0, 110.0):
        x = synthesize(m, t, int(FS), FS, rng)[0].astype(np.float64)
        rms.append(np.sqrt(np.mean((x - x.mean()) ** 2)))
    assert all(b > a for a, b in zip(rms, rms[1:])), rms
    assert rms[-1] > 3 * rms[0]
    np.testing.assert_allclose(m.severity([0.0, 10.0, 60.0, 200.0]), [0, 0, 0.5, 1.0])


def test_same_seed_same_signal_other_seed_other_signal():
    m = make_machines(50, np.random.default_rng(7))
    m = with_faults(m, [3, 9], Fault.INNER_RACE, onset_s=0.0, ramp_s=5.0, peak_g=1.0)
    t = np.linspace(0, 20, 50)
    a = synthesize(m, t, 1024, 25600.0, np.random.default_rng(42))
    b = synthesize(m, t, 1024, 25600.0, np.random.default_rng(42))
    c = synthesize(m, t, 1024, 25600.0, np.random.default_rng(43))
    assert a.dtype == np.float32 and a.shape == (50, 1024)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_healthy_rms_is_in_the_cwru_normal_range_at_every_sensor_rate():
    m = make_machines(200, np.random.default_rng(5))
    for fs in (12000.0, 12800.0, 25600.0):
        x = synthesize(m, 3.0, int(0.5 * fs), fs, np.random.default_rng(0)).astype(np.float64)
        rms = np.sqrt(np.mean((x - x.mean(axis=1, keepdims=True)) ** 2, axis=1))
        assert 0.02 < rms.min() and rms.max() < 0.25, (fs, rms.min(), rms.max())


def test_impact_rate_is_zero_for_healthy_and_follows_the_fault_kind():
    m = make_machines(3, np.random.default_rng(0), rpm=1800.0, load=0.0)
    m = with_faults(m, [1], Fault.OUTER_RACE, onset_s=0, ramp_s=1, peak_g=1)
    m = with_faults(m, [2], Fault.BALL, onset_s=0, ramp_s=1, peak_g=1)
    r = impact_rate(m, 0.0)
    d = m.defects(0.0)
    assert r[0] == 0 and r[1] == pytest.approx(d.bpfo[1]) and r[2] == pytest.approx(2 * d.bsf[2])
