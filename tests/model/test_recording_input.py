"""Recordings an engineer brings (not CWRU): the .npz contract's unit, scale and rate, and a clear
one-line error (exit 2) for every file the front end cannot use, through train/evaluate/replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgefleet.cli import main
from edgefleet.errors import DataError
from edgefleet.runtime.artifact import load_artifact
from edgefleet.runtime.features import analyze, plan
from edgefleet.toolchain import datasets
from edgefleet.toolchain.datasets import load_folder, load_recording, read_signal
from edgefleet.toolchain.replay import load_replay

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "edgefleet" / "models" / "fleet-v2"
FS = 12800.0


def vibration(fs: float = FS, seconds: float = 3.2, seed: int = 0) -> np.ndarray:
    """A machine in g: 1x and 2x of a 30 Hz shaft, a 3 kHz resonance, noise."""
    t = np.arange(int(fs * seconds)) / fs
    rng = np.random.default_rng(seed)
    x = 0.15 * np.sin(2 * np.pi * 30 * t) + 0.06 * np.sin(2 * np.pi * 60 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)
    return (x + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def save(path: Path, **keys) -> Path:
    keys.setdefault("fs", FS)
    keys.setdefault("label", "normal")
    np.savez(path, **keys)
    return path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


V2 = load_artifact(MODEL / "model.efm").features.params


def vrms(signal: np.ndarray, fs: float = FS) -> float:
    n = plan(V2, fs).n_samples
    return float(analyze(signal[None, :n], fs, V2).vrms_mm_s[0])


def test_unit_key_converts_m_per_s2_to_g_so_velocity_is_not_981x_off(tmp_path):
    x = vibration()
    g = load_recording(save(tmp_path / "g.npz", signal=x))
    default = load_recording(save(tmp_path / "plain.npz", signal=x))
    ms2 = load_recording(save(tmp_path / "ms2.npz", signal=x * 9.80665, unit="m/s^2"))
    wrong = load_recording(save(tmp_path / "wrong.npz", signal=x * 9.80665))  # m/s^2 with no unit: read as g
    assert np.allclose(ms2.signal, g.signal, rtol=1e-5, atol=1e-7)
    assert np.array_equal(default.signal, g.signal)  # the stated default is g
    v_g, v_ms2, v_wrong = vrms(g.signal), vrms(ms2.signal), vrms(wrong.signal)
    assert v_g > 1.0 and abs(v_ms2 - v_g) / v_g < 1e-3
    assert abs(v_wrong / v_g - 9.80665) < 0.01  # why the unit must be said


def test_integer_counts_need_a_scale_and_are_scaled(tmp_path):
    x = vibration()
    counts = np.round(x / (16 / 32768)).astype(np.int16)
    with pytest.raises(DataError, match=r"integer counts \(int16\) and no `scale`"):
        load_recording(save(tmp_path / "raw.npz", signal=counts))
    rec = load_recording(save(tmp_path / "scaled.npz", signal=counts, scale=16 / 32768, unit="g"))
    assert np.allclose(rec.signal, x, atol=16 / 32768)
    with pytest.raises(DataError, match="scale must be a finite number > 0"):
        load_recording(save(tmp_path / "neg.npz", signal=counts, scale=-1.0))


@pytest.mark.parametrize("keys, message", [
    ({"signal": np.zeros(40000, np.float32)}, r"signal is constant \(0 in every sample\)"),
    ({"signal": np.full(40000, 1.0, np.float32)}, r"signal is constant \(1 in every sample\)"),
    ({"signal": vibration().astype(np.complex64)}, "must hold real numbers"),
    ({"signal": vibration(), "unit": "furlongs"}, r"unknown unit 'furlongs'; use one of"),
    ({"signal": vibration(), "fs": 12.8}, r"fs is in Hz: store 12800, not 12.8 \(kHz\)"),
    ({"signal": vibration(), "fs": np.array([FS, FS])}, "one number in Hz"),
    ({"signal": vibration(), "fs": "12.8k"}, "is not a number"),
    ({"signal": np.stack([vibration(), vibration()], 1)}, r"1-D \(one channel\).*--channel"),
])
def test_unusable_recordings_are_refused_with_what_to_do(tmp_path, keys, message):
    f = save(tmp_path / "bad.npz", **keys)
    with pytest.raises(DataError, match=message):
        load_recording(f)


def test_a_signal_too_big_is_refused_from_its_header_before_it_is_read(tmp_path, monkeypatch):
    f = save(tmp_path / "long.npz", signal=vibration())
    monkeypatch.setattr(datasets, "MAX_SAMPLES", 1000)
    read = []
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__",
                        lambda self, k: read.append(k) or (_ for _ in ()).throw(AssertionError("read")))
    with np.load(f) as z, pytest.raises(DataError, match=r"40,960 samples, more than the 1,000 read at once.*--split"):
        read_signal("long.npz", z)
    assert read == []


def test_replay_refuses_too_short_and_slow_recordings_in_one_line(tmp_path, capsys):
    one = save(tmp_path / "one.npz", signal=np.ones(1, np.float32))
    rc, out, err = cli(capsys, "replay", str(MODEL), "--data", str(one))  # nothing to judge, and why
    assert rc == 0 and f"input: shorter_than_one_{plan(V2, FS).n_samples}_sample_window 1" in out, err
    slow = save(tmp_path / "slow.npz", signal=vibration(2000.0, 10.0), fs=2000.0)
    rc, out, err = cli(capsys, "replay", str(MODEL), "--data", str(slow))
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "2000 Hz" in err and "record this machine at 4000 Hz or more" in err
    hi = save(tmp_path / "mfpt.npz", signal=vibration(97656.0, 0.5), fs=97656.0)
    rc, _, err = cli(capsys, "replay", str(MODEL), "--data", str(hi))
    assert rc == 2 and "--resample 48828" in err and "Traceback" not in err


def test_replay_applies_the_unit_to_snapshots_too(tmp_path):
    x = vibration(seconds=2.5)
    snaps = np.stack([x[:14000], x[-14000:]])
    a = load_replay(save(tmp_path / "g.npz", snaps=snaps, t_s=np.array([0.0, 10.0])), V2)
    b = load_replay(save(tmp_path / "ms2.npz", snaps=snaps * 9.80665, t_s=np.array([0.0, 10.0]), unit="m/s2"),
                    V2)
    assert np.allclose(a.windows, b.windows, rtol=1e-5, atol=1e-7)


def test_a_folder_of_foreign_files_names_them_and_the_import_command(tmp_path, capsys):
    for name in ("2004.02.12.10.32.39", "2004.02.12.10.42.39", "acc_00001.csv", "b.wav"):
        (tmp_path / name).write_text("0.1\t0.2\n")
    with pytest.raises(DataError, match=r"it holds 2004\.02\.12\.10\.32\.39, .* and 1 more\); convert them with "
                                        r"`edgefleet data import"):
        load_folder(tmp_path)
    rc, _, err = cli(capsys, "model", "evaluate", str(MODEL), "--data", str(tmp_path))
    assert rc == 2 and "edgefleet data import" in err


def test_evaluate_without_fault_or_without_normal_recordings_says_why_there_is_no_auc(tmp_path, capsys):
    normal, fault = tmp_path / "normal", tmp_path / "fault"
    normal.mkdir(), fault.mkdir()
    save(normal / "n.npz", signal=vibration(seconds=2.2))
    save(fault / "f.npz", signal=vibration(seconds=2.2, seed=1) * 3, label="outer_race")
    rc, out, err = cli(capsys, "model", "evaluate", str(MODEL), "--data", str(normal))
    assert rc == 0, err
    assert "no AUC: no fault recordings" in out
    rc, out, err = cli(capsys, "model", "evaluate", str(MODEL), "--data", str(fault))
    assert rc == 0, err
    assert "no AUC: no normal recording (label 'normal'; labels found: outer_race)" in out
    rc, out, err = cli(capsys, "model", "evaluate", str(MODEL), "--data", str(fault), "--json")
    ev = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert rc == 0 and ev["auc_int8"] is None and ev["per_file"][0]["auc_int8"] is None


def test_gravity_in_m_per_s2_without_a_unit_is_read_as_g_but_warned_about(tmp_path, caplog):
    x = vibration() * 9.80665 + 9.80665  # a DC-coupled vertical axis in m/s^2
    with caplog.at_level("WARNING", logger="edgefleet.toolchain.datasets"):
        load_recording(save(tmp_path / "vert.npz", signal=x))
    assert "mean 9.81 looks like gravity in m/s^2" in caplog.text and "unit='m/s2'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="edgefleet.toolchain.datasets"):
        rec = load_recording(save(tmp_path / "said.npz", signal=x, unit="m/s2"))
    assert caplog.text == "" and abs(float(rec.signal.mean()) - 1.0) < 1e-3  # 1 g of gravity


def test_replay_reports_the_velocity_an_operator_reads_in_the_recordings_unit(tmp_path, capsys):
    x = vibration(seconds=3.5)
    save(tmp_path / "a_g.npz", signal=x)
    save(tmp_path / "b_ms2.npz", signal=x * 9.80665, unit="m/s2")
    save(tmp_path / "c_unsaid.npz", signal=x * 9.80665)  # m/s^2 without its unit: read as g
    rc, out, err = cli(capsys, "replay", str(MODEL), "--data", str(tmp_path), "--json")
    assert rc == 0, err
    v = {r["recording"]: r["vrms_mm_s"]["median"] for r in json.loads(out)["recordings"]}
    assert v["a_g"] > 1 and abs(v["b_ms2"] / v["a_g"] - 1) < 1e-3 and abs(v["c_unsaid"] / v["a_g"] - 9.80665) < 0.01
    rc, out, _ = cli(capsys, "replay", str(MODEL), "--data", str(tmp_path / "a_g.npz"))
    assert f"velocity RMS 10-1,000 Hz: median {v['a_g']:.3g} mm/s" in out


def test_replay_of_a_folder_runs_the_good_recordings_and_names_the_refused_one(tmp_path, capsys):
    save(tmp_path / "good.npz", signal=vibration())
    save(tmp_path / "khz.npz", signal=vibration(), fs=12.8)
    rc, out, err = cli(capsys, "replay", str(MODEL), "--data", str(tmp_path))
    assert rc == 2 and "khz: refused: khz.npz: sampling rate 12.8 Hz" in out and "good: 3 windows" in out
    assert err.strip() == "edgefleet: error: 1 of 2 recordings refused (above)"
    rc, out, _ = cli(capsys, "replay", str(MODEL), "--data", str(tmp_path), "--json")
    doc = json.loads(out)
    assert rc == 2 and [r["recording"] for r in doc["recordings"]] == ["good"] and doc["refused"][0]["recording"] == "khz"


def test_train_names_the_fmax_a_slow_recording_can_feed_before_training(tmp_path, capsys):
    save(tmp_path / "pump_8k.npz", signal=vibration(8000.0, 3.0), fs=8000.0)
    rc, _, err = cli(capsys, "model", "train", "--data", str(tmp_path), "--version", "1", "--out", str(tmp_path / "m"))
    assert rc == 2 and "pump_8k: recorded at 8000 Hz, it sees up to 4000 Hz (Nyquist), but the bands reach --fmax 5000 Hz: " \
                      "pass --fmax 3600" in err
    assert not (tmp_path / "m").exists()


def test_a_folder_too_big_to_load_is_refused_from_the_headers(tmp_path, monkeypatch):
    for i in range(3):
        save(tmp_path / f"r{i}.npz", signal=vibration(seed=i))
    monkeypatch.setattr(datasets, "MAX_FOLDER_SAMPLES", 100_000)
    loaded = []
    monkeypatch.setattr(datasets, "load_recording", lambda f: loaded.append(f))
    with pytest.raises(DataError, match=r"3 recordings hold 122,880 samples .* more than the 100,000 loaded at once"):
        load_folder(tmp_path)
    assert loaded == []


def test_replay_velocity_leaves_out_dead_sensor_windows(tmp_path, capsys):
    x = vibration(seconds=3.5)
    x[: x.size // 2] = 0.0  # the sensor was unplugged for the first half
    save(tmp_path / "half.npz", signal=x)
    save(tmp_path / "dead.npz", signal=np.zeros(x.size, np.float32))
    rc, out, err = cli(capsys, "replay", str(MODEL), "--data", str(tmp_path), "--json")
    reps = {r["recording"]: r for r in json.loads(out)["recordings"]}
    assert rc == 0, err
    assert reps["dead"]["vrms_mm_s"] is None and reps["dead"]["states"]["sensor_dead"] == 3
    assert reps["half"]["vrms_mm_s"]["median"] > 1  # only the live windows
