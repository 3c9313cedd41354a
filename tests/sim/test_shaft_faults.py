"""Shaft faults (unbalance, misalignment, looseness, bent shaft) and velocity levels in ISO 20816 zones.

Every velocity here is measured with the scipy reference (`velocity_rms_reference`, 10-1,000 Hz),
and every line from the acceleration spectrum, not from the simulator's own parameters.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal.windows import flattop

from device_sim.dataset import _record, faulty_windows, machine_recordings
from device_sim.physics import (
    FAULT_LABELS,
    SHAFT_FAULTS,
    SHAFT_ORDERS,
    Fault,
    at_speed,
    fault_from_label,
    make_machines,
    shaft_fault_velocity,
    vary_machines,
    with_faults,
)
from device_sim.plant import make_plant
from device_sim.run_to_failure import make_run
from edgefleet.errors import EdgefleetError
from edgefleet.toolchain.velocity_reference import G, velocity_rms_reference

FS = 12800.0
SECONDS = 4.0


def record(m, row=0, t0=3.0, seconds=SECONDS, fs=FS, seed=0):
    return _record(m, row, seconds, fs, np.random.default_rng(seed), t0=t0).astype(np.float64)


def line_velocity(x, fs, f_hz) -> float:
    """Velocity amplitude (mm/s) of the acceleration line nearest f_hz (flat-top window: no scalloping)."""
    w = flattop(x.size, sym=False)
    spec = np.abs(np.fft.rfft((x - x.mean()) * w)) * 2 / w.sum()
    f = np.fft.rfftfreq(x.size, 1 / fs)
    near = np.abs(f - f_hz) < 1.0
    return float(spec[near].max()) * G * 1000.0 / (2 * np.pi * f_hz)


def line_prominence(x, fs, f_hz) -> float:
    """Acceleration line at f_hz over the median spectrum around it (a line stands out >> 1)."""
    w = np.hanning(x.size)
    spec = np.abs(np.fft.rfft((x - x.mean()) * w))
    f = np.fft.rfftfreq(x.size, 1 / fs)
    peak = spec[np.abs(f - f_hz) < 0.6].max()
    around = spec[(np.abs(f - f_hz) > 2.0) & (np.abs(f - f_hz) < 8.0)]
    return float(peak / np.median(around))


def machines(n=12, seed=21):
    return make_machines(n, np.random.default_rng(seed), bearing=None)


def faulty(m, kind, peak_mm_s=7.1, onset=-1.0, ramp=1e-6):
    return with_faults(m, np.arange(len(m)), kind, onset_s=onset, ramp_s=ramp, peak_mm_s=peak_mm_s)


def test_fault_enum_keeps_the_bearing_values_and_labels_every_kind():
    assert [int(k) for k in (Fault.NONE, Fault.OUTER_RACE, Fault.INNER_RACE, Fault.BALL)] == [0, 1, 2, 3]
    assert [int(k) for k in SHAFT_FAULTS] == [4, 5, 6, 7]
    assert [FAULT_LABELS[k] for k in SHAFT_FAULTS] == ["unbalance", "misalignment", "looseness", "bent_shaft"]
    assert all(fault_from_label(label) == k for k, label in FAULT_LABELS.items())
    assert fault_from_label("Bent-Shaft") == Fault.BENT_SHAFT
    with pytest.raises(ValueError, match="unknown fault"):
        fault_from_label("rub")
    for k in SHAFT_FAULTS:  # each table is 1 mm/s RMS in total
        assert np.sum(np.abs(SHAFT_ORDERS[k]) ** 2) == pytest.approx(1.0)


def test_the_sim_command_knows_every_fault_name():
    from edgefleet.commands.sim import FAULT_NAMES, _parse_injection, parse_fault_kinds

    assert set(FAULT_NAMES) == set(FAULT_LABELS.values()) - {"normal"}
    assert parse_fault_kinds("bearing") == ("outer_race", "inner_race", "ball")
    assert parse_fault_kinds("unbalance,looseness,unbalance") == ("unbalance", "looseness")
    assert len(parse_fault_kinds("all")) == 7
    assert _parse_injection("sim-0007:20") == ("sim-0007", 20.0, "outer_race")
    assert _parse_injection("sim-0007:20:bent-shaft") == ("sim-0007", 20.0, "bent_shaft")
    for bad in ("rub", "bearing,rub"):
        with pytest.raises(EdgefleetError, match="unknown fault 'rub'"):
            parse_fault_kinds(bad)
    with pytest.raises(EdgefleetError, match="unknown fault 'rub'"):
        _parse_injection("sim-0007:20:rub")


def test_bearing_faults_need_g_and_shaft_faults_are_sized_in_mm_s():
    m = machines(3)
    with pytest.raises(ValueError, match="peak_g"):
        with_faults(m, [0], Fault.OUTER_RACE, onset_s=0, ramp_s=1)
    mixed = with_faults(m, [0, 1], np.array([Fault.OUTER_RACE, Fault.UNBALANCE]), onset_s=0, ramp_s=1,
                        peak_g=1.5, peak_mm_s=6.0)
    assert list(mixed.fault_g) == [1.5, 0.0, 0.0] and list(mixed.fault_mm_s) == [0.0, 6.0, 0.0]
    default = with_faults(m, [2], Fault.LOOSENESS, onset_s=0, ramp_s=1, peak_g=2.0)  # peak_g ignored
    assert default.fault_mm_s[2] == pytest.approx(7.1) and default.fault_g[2] == 0.0


# --- ISO 20816 levels ---------------------------------------------------------------------------

@pytest.mark.parametrize("fs", [12000.0, 25600.0])
def test_healthy_machines_are_in_iso_zones_a_b_and_differ(fs):
    m = machines(40, seed=5)
    v = np.array([velocity_rms_reference(record(m, i, fs=fs, seconds=3.0, seed=i), fs) for i in range(len(m))])
    assert v.min() >= 0.45 and v.max() <= 2.5, (v.min(), v.max())  # stated: 0.5-2.4 mm/s
    assert v.max() / v.min() > 2.5  # individually different, A and B both represented
    assert np.mean(v < 1.4) > 0.2 and np.mean(v > 1.4) > 0.2


def test_healthy_velocity_is_the_machines_own_whatever_the_sensor_path_and_lower_at_lower_speed():
    m = machines(10, seed=8)
    rated = np.array([velocity_rms_reference(record(m, i, seed=i), FS) for i in range(len(m))])
    mv = vary_machines(m, np.random.default_rng(2))  # mounting gain 0.5-2 on structure-borne vibration
    varied = np.array([velocity_rms_reference(record(mv, i, seed=i), FS) for i in range(len(m))])
    np.testing.assert_allclose(varied, rated, rtol=0.1)
    slow = at_speed(m, 0.6, m.load)
    v_slow = np.array([velocity_rms_reference(record(slow, i, seed=i), FS) for i in range(len(m))])
    assert np.all(v_slow < rated) and v_slow.max() < 1.4  # residual unbalance force ~ speed^2: zone A


@pytest.mark.parametrize("kind", SHAFT_FAULTS, ids=lambda k: FAULT_LABELS[k])
def test_full_severity_shaft_faults_reach_zones_c_d(kind):
    m = machines(8, seed=13)
    low = faulty(m, kind, peak_mm_s=5.0)  # the low end of the default sizes (5-9 mm/s)
    high = faulty(m, kind, peak_mm_s=9.0)
    v_low = np.array([velocity_rms_reference(record(low, i, seconds=3.0, seed=i), FS) for i in range(len(m))])
    v_high = np.array([velocity_rms_reference(record(high, i, seconds=3.0, seed=i), FS) for i in range(len(m))])
    assert v_low.min() > 4.5, v_low  # zone C and above (ISO 20816-3 group 2, rigid)
    assert v_high.max() < 11.5, v_high  # about the C/D boundary of large machines on flexible mounts
    assert np.all(v_low >= 5.0 - 0.05)  # the fault adds its stated velocity (or more, in phase at 1x)


# --- signatures -----------------------------------------------------------------------------------

def orders_of(x, fr, orders) -> np.ndarray:
    return np.array([line_velocity(x, FS, o * fr) for o in orders])


def test_unbalance_raises_1x_alone_and_grows_with_speed_squared():
    m = machines(6, seed=3)
    bad = faulty(m, Fault.UNBALANCE, peak_mm_s=6.0)
    for i in range(len(m)):
        fr = float(m.shaft_hz(3.0)[i])
        h = orders_of(record(m, i, seed=i), fr, (1, 2, 3))
        b = orders_of(record(bad, i, seed=i), fr, (1, 2, 3))
        assert b[0] - h[0] == pytest.approx(6.0 * np.sqrt(2), rel=0.05)  # in phase with the residual 1x
        np.testing.assert_allclose(b[1:], h[1:], rtol=0.05, atol=0.02)
    # the same machines at 60 % speed: the 1x velocity (residual and fault, both m e w^2) x 0.36
    slow = at_speed(bad, 0.6, bad.load)
    for i in range(len(m)):
        fr, fr_slow = float(bad.shaft_hz(3.0)[i]), float(slow.shaft_hz(3.0)[i])
        ratio = line_velocity(record(slow, i, seed=i), FS, fr_slow) / line_velocity(record(bad, i, seed=i), FS, fr)
        assert ratio == pytest.approx((fr_slow / fr) ** 2, rel=0.04)
    np.testing.assert_allclose(shaft_fault_velocity(slow, 3.0) / shaft_fault_velocity(bad, 3.0),
                               (slow.shaft_hz(3.0) / bad.shaft_hz(3.0)) ** 2)


def test_misalignment_puts_2x_above_1x_with_a_3x():
    m = machines(8, seed=4)
    bad = faulty(m, Fault.MISALIGNMENT)
    for i in range(len(m)):
        fr = float(m.shaft_hz(3.0)[i])
        h = orders_of(record(m, i, seed=i), fr, (1, 2, 3))
        b = orders_of(record(bad, i, seed=i), fr, (1, 2, 3))
        assert b[1] > b[0]  # the reading itself: 2x dominant
        gain = b - h
        assert gain[1] > 1.5 * gain[0] > 0 and gain[2] > 0.5  # and what the fault added
        assert line_prominence(record(bad, i, seed=i), FS, 0.5 * fr) < 3  # no sub-harmonic


def test_misalignment_harmonics_are_phase_locked_to_the_shaft():
    """Two windows a whole number of turns apart hold the same 2x phase (relative to 1x)."""
    m = machines(1, seed=6).with_(wander=np.zeros(1), structural_g=np.zeros(1), noise_g=np.zeros(1))
    bad = faulty(m, Fault.MISALIGNMENT)
    fr = float(bad.shaft_hz(0.0)[0])
    n = int(FS)
    phases = []
    for t0 in (2.0, 2.0 + 37 / fr):
        x = record(bad, 0, t0=t0, seconds=1.0)[:n]
        spec = np.fft.rfft(x * np.hanning(n))
        f = np.fft.rfftfreq(n, 1 / FS)
        k1, k2 = np.argmin(np.abs(f - fr)), np.argmin(np.abs(f - 2 * fr))
        phases.append(np.angle(spec[k2]) - 2 * np.angle(spec[k1]))
    assert np.angle(np.exp(1j * (phases[1] - phases[0]))) == pytest.approx(0.0, abs=0.05)


def test_looseness_shows_sub_harmonics_and_many_harmonics():
    m = machines(6, seed=9)
    bad = faulty(m, Fault.LOOSENESS)
    for i in range(len(m)):
        fr = float(m.shaft_hz(3.0)[i])
        x, x0 = record(bad, i, seed=i), record(m, i, seed=i)
        for o in (0.5, 1.5, 2.5):  # half orders: there in the fault, absent when healthy
            assert line_prominence(x, FS, o * fr) > 20, (i, o)
            assert line_prominence(x0, FS, o * fr) < 5, (i, o)
        standing = [h for h in range(1, 11) if line_prominence(x, FS, h * fr) > 20]
        assert len(standing) >= 8, standing
        # truncation (impacting): an acceleration waveform far from a sum of a few sines
        assert np.sum([line_velocity(x, FS, h * fr) > 0.2 for h in range(2, 11)]) >= 5


def test_bent_shaft_raises_1x_and_2x_without_sub_harmonics():
    m = machines(8, seed=10)
    bad = faulty(m, Fault.BENT_SHAFT)
    for i in range(len(m)):
        fr = float(m.shaft_hz(3.0)[i])
        h = orders_of(record(m, i, seed=i), fr, (1, 2, 3))
        b = orders_of(record(bad, i, seed=i), fr, (1, 2, 3))
        gain = b - h
        assert gain[0] > gain[1] > 0.4 * gain[0]  # 1x first, 2x strong too
        assert abs(gain[2]) < 0.1 * gain[0]  # nothing at 3x
        assert line_prominence(record(bad, i, seed=i), FS, 0.5 * fr) < 3


# --- growth -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", SHAFT_FAULTS, ids=lambda k: FAULT_LABELS[k])
def test_severity_ramps_monotonically(kind):
    m = faulty(machines(4, seed=12), kind, peak_mm_s=7.0, onset=10.0, ramp=100.0)
    times = (0.0, 20.0, 40.0, 60.0, 80.0, 110.0)
    for i in range(len(m)):
        v = [velocity_rms_reference(record(m, i, t0=t, seconds=3.0, seed=i), FS) for t in times]
        assert all(b > a for a, b in zip(v, v[1:])), (i, v)
        assert v[-1] > 4.5 and v[0] < 2.5
    np.testing.assert_allclose(shaft_fault_velocity(m, 60.0) / shaft_fault_velocity(m, 110.0), 0.5, rtol=0.02)


# --- where the simulator builds faults -------------------------------------------------------------

def test_written_dataset_labels_shaft_faults_for_the_model_toolchain(tmp_path):
    from device_sim.dataset import write_dataset
    from edgefleet.toolchain.datasets import load_folder

    write_dataset(tmp_path, n_normal=1, n_faulty=4, seconds=1.0, fs=FS, seed=5, kinds=SHAFT_FAULTS)
    recs = {r.label: r for r in load_folder(tmp_path)}
    assert set(recs) == {"normal", "unbalance", "misalignment", "looseness", "bent_shaft"}
    assert str(recs["looseness"].meta["fault_size_in"]).endswith("mm/s")


def test_plant_dataset_and_run_to_failure_take_shaft_faults():
    p = make_plant(30, n_faulty=4, seed=2, kinds=SHAFT_FAULTS)
    kinds = sorted(p.describe(n.row)["fault"] for n in p.nodes if n.device_id in p.faulty)
    assert kinds == ["bent_shaft", "looseness", "misalignment", "unbalance"]
    d = p.describe(p.nodes[[n.device_id for n in p.nodes].index(p.faulty[0])].row)
    assert 5.0 <= d["fault_peak_mm_s"] <= 9.0 and "fault_peak_g" not in d
    # the default stays bearing faults, and the same seed gives the same plant as before
    assert make_plant(30, n_faulty=4, seed=2).faulty == p.faulty
    assert {make_plant(30, n_faulty=4, seed=2).describe(r)["fault"] for r in p.machines.fault.nonzero()[0]} \
        <= {"outer_race", "inner_race", "ball"}

    recs = faulty_windows(4, 3.0, FS, seed=3, kinds=SHAFT_FAULTS)
    assert [r.label for r in recs] == ["unbalance", "misalignment", "looseness", "bent_shaft"]
    for r in recs:
        assert r.fault_size_in.endswith("mm/s") and velocity_rms_reference(r.signal, r.fs) > 4.5
    light = machine_recordings(1, seed=4, speeds=1, normal_s=3.0, fault_s=3.0, kinds=(Fault.UNBALANCE,))
    assert [r.label for r in light] == ["normal", "unbalance"] and light[1].fault_size_in.endswith("mm/s")

    run = make_run(0, np.random.default_rng(1), snapshot=2048, every_s=3 * 3600.0,
                   onset_days=(0.5, 0.6), fault_days=(0.5, 0.6), kinds=(Fault.MISALIGNMENT,))
    assert run.fault == "misalignment" and np.all(np.diff(run.severity) >= 0) and run.severity[-1] > 0.3
    rms = np.sqrt(np.mean(run.snaps.astype(np.float64) ** 2, axis=1))
    assert rms[-1] > 1.5 * rms[run.severity == 0].max()
