"""`edgefleet data import`: files shaped like other public bearing datasets (IMS tables, FEMTO
snapshots, MFPT and Paderborn .mat structs, WAV, CSV in g or m/s^2), synthesized here, become
.npz recordings with the right rate, channel and unit, or a one-line error saying what to pass."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from edgefleet.cli import main
from edgefleet.toolchain import import_readers, importers
from edgefleet.toolchain.datasets import load_folder, load_recording
from edgefleet.toolchain.replay import load_replay

REPO = Path(__file__).resolve().parents[2]
G = 9.80665


def tone(fs: float, seconds: float, hz: float = 3000.0, amp: float = 0.2, seed: int = 0) -> np.ndarray:
    t = np.arange(int(round(fs * seconds))) / fs
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return amp * np.sin(2 * np.pi * hz * t) + 0.1 * np.sin(2 * np.pi * 30 * t) + noise


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["data", "import", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if rc:
        assert rc == 2 and err.count("\n") == 1 and out == "", err  # one line, nothing else
    return rc, out, err


def write_csv(path: Path, header: str, x: np.ndarray, fs: float, decimals: int = 7) -> Path:
    t = np.arange(x.size) / fs
    with open(path, "w") as f:
        f.write(header + "\n")
        f.writelines(f"{ti:.{decimals}f},{xi:.6f}\n" for ti, xi in zip(t, x))
    return path


def test_a_csv_in_m_per_s2_must_say_so_and_then_equals_the_same_csv_in_g(tmp_path, capsys):
    x = tone(12800, 1.0)
    g = write_csv(tmp_path / "motor_g.csv", "time_s,accel_g", x, 12800)
    ms2 = write_csv(tmp_path / "motor_ms2.csv", "time_s,accel_ms2", x * G, 12800)
    rc, _, err = run(capsys, str(ms2), "--out", str(tmp_path / "out"))
    assert rc == 2 and "column 'accel_ms2' looks like m/s2" in err and "--unit m/s2" in err
    assert run(capsys, str(ms2), "--unit", "m/s2", "--out", str(tmp_path / "out"))[0] == 0
    rc, out, _ = run(capsys, str(g), "--out", str(tmp_path / "out"))
    assert rc == 0 and "at 12800 Hz" in out  # times printed to 7 decimals: the rate is still exact
    a, b = load_recording(tmp_path / "out/motor_g.npz"), load_recording(tmp_path / "out/motor_ms2.npz")
    assert a.fs == b.fs == 12800.0 and a.meta["unit"] == "g" and b.meta["source_unit"] == "m/s2"
    assert np.allclose(a.signal, b.signal, atol=2e-6)
    rc, _, err = run(capsys, str(g), "--fs", "12000", "--out", str(tmp_path / "other"))
    assert rc == 2 and "--fs 12000 Hz but the column 'time_s' says 12800 Hz" in err


def test_an_ims_like_table_needs_the_channel_and_the_rate_named(tmp_path, capsys):
    f = tmp_path / "2004.02.12.10.32.39"  # IMS: no suffix, tab separated, 4 bearings, no header
    cols = np.stack([tone(20480, 1.0, seed=i) for i in range(4)], 1)
    np.savetxt(f, cols, fmt="%.3f", delimiter="\t")
    rc, _, err = run(capsys, str(f), "--fs", "20480", "--out", str(tmp_path / "o"))
    assert rc == 2 and "4 columns could hold vibration (0: column 0, 1: column 1" in err and "--channel" in err
    rc, _, err = run(capsys, str(f), "--channel", "2", "--out", str(tmp_path / "o"))
    assert rc == 2 and "the sampling rate is not in the file (no time column); pass --fs HZ" in err
    assert run(capsys, str(f), "--channel", "2", "--fs", "20480", "--out", str(tmp_path / "o"))[0] == 0
    rec = load_recording(tmp_path / "o" / "2004.02.12.10.32.39-2.npz")
    assert rec.fs == 20480 and np.allclose(rec.signal, cols[:, 2], atol=6e-4)  # printed to 3 decimals


def test_femto_like_snapshots_join_into_one_recording_whose_windows_never_straddle_two(tmp_path, capsys):
    d = tmp_path / "Bearing1_1"
    d.mkdir()
    for i in range(3):  # hour, min, sec, microsecond, horizontal, vertical; 0.1 s at 25.6 kHz, no header
        us = np.arange(2560) * 39
        rows = np.column_stack([np.full(2560, 9), np.full(2560, 39), np.full(2560, 10 * i), us,
                                np.full(2560, float(i)) + tone(25600, 0.1, seed=i), tone(25600, 0.1, seed=9)])
        np.savetxt(d / f"acc_{i + 1:05d}.csv", rows, fmt="%.4f", delimiter=",")
    rc, out, err = run(capsys, str(d), "--fs", "25600", "--channel", "4", "--join", "--interval", "10",
                       "--machine", "b1", "--out", str(tmp_path / "o"))
    assert rc == 0, err
    z = np.load(tmp_path / "o" / "b1-joined.npz")
    assert int(z["segment"]) == 2560 and z["t_s"].tolist() == [0.0, 10.0, 20.0] and str(z["machine"]) == "b1"
    from edgefleet.runtime.features import FeatureParams

    rep = load_replay(tmp_path / "o" / "b1-joined.npz", FeatureParams(window_s=0.08, edges_hz=(200.0, 1000.0, 5000.0)))
    assert len(rep.windows) == 3 and np.allclose(np.diff(rep.t_s), 10.0)
    assert [round(float(np.median(w))) for w in rep.windows] == [0, 1, 2]  # one snapshot each


def mfpt(path: Path, fs: float, x: np.ndarray) -> Path:
    scipy.io.savemat(path, {"bearing": {"sr": fs, "gs": x[:, None], "load": 270.0, "rate": 25.0}})
    return path


def test_an_mfpt_like_mat_names_its_numbers_and_is_resampled_with_an_anti_alias_filter(tmp_path, capsys):
    fs = 97656.0
    x = tone(fs, 0.5) + 0.3 * np.sin(2 * np.pi * 30000 * np.arange(int(fs * 0.5)) / fs)  # 30 kHz: above 24.4
    f = mfpt(tmp_path / "baseline_1.mat", fs, x)
    rc, _, err = run(capsys, str(f), "--out", str(tmp_path / "o"))
    assert rc == 2 and "bearing.sr=97656, bearing.load=270, bearing.rate=25" in err and "--fs-key" in err
    rc, _, err = run(capsys, str(f), "--fs-key", "bearing.sr", "--out", str(tmp_path / "o"))
    assert rc == 2 and "97656 Hz is outside the supported 4000-50000 Hz" in err and "--resample 48828" in err
    rc, _, err = run(capsys, str(f), "--fs-key", "bearing.sr", "--fs", "48828", "--out", str(tmp_path / "o"))
    assert rc == 2 and "--fs 48828 but bearing.sr = 97656" in err
    assert run(capsys, str(f), "--fs-key", "bearing.sr", "--resample", "48828", "--out", str(tmp_path / "o"))[0] == 0
    rec = load_folder(tmp_path / "o")[0]
    assert rec.fs == 48828 and rec.signal.size == x.size // 2
    spec = np.abs(np.fft.rfft(rec.signal[4096:4096 + 16384] * np.hanning(16384)))
    hz = np.fft.rfftfreq(16384, 1 / 48828)
    assert abs(hz[np.argmax(spec)] - 3000) < 5  # the vibration kept ...
    alias = spec[np.abs(hz - (48828 - 30000)) < 20].max()  # ... 30 kHz did not fold onto 18.8 kHz
    assert alias < 0.01 * spec.max()


def test_a_paderborn_like_nested_struct_is_picked_by_its_path(tmp_path, capsys):
    dt = np.dtype([("Name", "O"), ("Raster", "O"), ("Data", "O")])
    y = np.zeros((1, 2), dtype=dt)
    y[0, 0] = ("force", "Mech_4kHz", np.ones((1, 4000)))
    y[0, 1] = ("vibration_1", "HostService", tone(64000, 0.5)[None, :])
    f = tmp_path / "N15_M07_F10_K001_1.mat"
    scipy.io.savemat(f, {"N15_M07_F10_K001_1": {"Info": "x", "Y": y}})
    rc, _, err = run(capsys, str(f), "--fs", "64000", "--out", str(tmp_path / "o"))
    assert rc == 2 and "N15_M07_F10_K001_1.Y.force [4000], N15_M07_F10_K001_1.Y.vibration_1 [32000]" in err
    rc, _, err = run(capsys, str(f), "--channel", "N15_M07_F10_K001_1.Y.vibration_1", "--fs", "64000",
                     "--resample", "32000", "--out", str(tmp_path / "o"))
    assert rc == 0, err
    assert load_folder(tmp_path / "o")[0].signal.size == 16000


def write_wav(path: Path, fs: int, pcm: np.ndarray, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels), w.setsampwidth(2), w.setframerate(fs)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def test_a_wav_takes_its_rate_from_the_header_and_needs_a_scale(tmp_path, capsys):
    pcm = np.round(tone(8000, 2.0) / (16 / 32768)).astype(np.int16)
    f = write_wav(tmp_path / "pump.wav", 8000, pcm)
    rc, _, err = run(capsys, str(f), "--out", str(tmp_path / "o"))
    assert rc == 2 and "a WAV file stores no unit; pass --scale S" in err and "full scale / 32768" in err
    rc, _, err = run(capsys, str(f), "--scale", "0.00048828125", "--fs", "8192", "--out", str(tmp_path / "o"))
    assert rc == 2 and "the WAV header says 8000 Hz" in err
    assert run(capsys, str(f), "--scale", "0.00048828125", "--out", str(tmp_path / "o"))[0] == 0
    rec = load_folder(tmp_path / "o")[0]
    assert rec.fs == 8000 and np.allclose(rec.signal, pcm * (16 / 32768))
    stereo = write_wav(tmp_path / "two.wav", 8000, np.stack([pcm, pcm // 2], 1).reshape(-1), channels=2)
    rc, _, err = run(capsys, str(stereo), "--scale", "1", "--out", str(tmp_path / "s"))
    assert rc == 2 and "2 channels" in err and "--channel" in err


def test_a_recording_too_slow_for_the_front_end_is_refused_at_import(tmp_path, capsys):
    f = write_csv(tmp_path / "slow.csv", "time_s,accel_g", tone(2000, 2.0, hz=300), 2000)
    rc, _, err = run(capsys, str(f), "--out", str(tmp_path / "o"))
    assert rc == 2 and "2000 Hz is outside the supported 4000-50000 Hz" in err and "4000 Hz or more" in err
    assert not list((tmp_path / "o").glob("*.npz"))


@pytest.mark.parametrize("content, message", [
    ("", "no data rows (the file is empty)"),
    ("time_s,accel_g\n", "no data rows"),
    ("accel_g\n0.5\n0.5\n0.5\n0.5\n", "accel_g is constant (0.5 in every sample)"),
    ("accel_g\n0.1\nnan\n0.2\n0.3\n", "NaN or infinite samples (the first at sample 1)"),
    ("accel_g\n0.1\nabc\n0.2\n", "not numbers"),
])
def test_broken_tables_are_refused_in_one_line(tmp_path, capsys, content, message):
    f = tmp_path / "x.csv"
    f.write_text(content)
    rc, _, err = run(capsys, str(f), "--fs", "8000", "--out", str(tmp_path / "o"))
    assert rc == 2 and message in err, err


def test_a_long_file_is_read_in_chunks_cut_by_split_and_never_held_whole(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(import_readers, "CHUNK_ROWS", 1000)
    monkeypatch.setattr(importers, "MAX_SAMPLES", 5000)
    f = write_csv(tmp_path / "long.csv", "time_s,accel_g", tone(8000, 2.0), 8000)  # 16,000 samples
    rc, _, err = run(capsys, str(f), "--out", str(tmp_path / "o"))
    assert rc == 2 and "more than 5,000 samples" in err and "--split SECONDS" in err
    chunks = []
    real = import_readers._table_chunks

    def spy(*a, **k):
        for c in real(*a, **k):
            chunks.append(c[0].size)
            yield c
    monkeypatch.setattr(import_readers, "_table_chunks", spy)
    rc, out, err = run(capsys, str(f), "--split", "0.5", "--out", str(tmp_path / "o"))
    assert rc == 0, err
    recs = sorted((tmp_path / "o").glob("*.npz"))
    assert [r.name for r in recs] == [f"long-{k:03d}.npz" for k in range(4)]
    assert all(load_recording(r).signal.size == 4000 for r in recs)
    assert sum(chunks) == 16000 and max(chunks) <= 1000  # read 1,000 rows at a time


def test_an_import_that_fails_part_way_writes_nothing_and_overwrites_nothing(tmp_path, capsys):
    good = write_csv(tmp_path / "a.csv", "time_s,accel_g", tone(8000, 1.0), 8000)
    bad = tmp_path / "b.csv"
    bad.write_text("time_s,accel_g\n0,0.1\n0.000125,inf\n0.00025,0.2\n")
    out = tmp_path / "o"
    rc, _, err = run(capsys, str(good), str(bad), "--out", str(out))
    assert rc == 2 and "b.csv: NaN or infinite samples" in err and not list(out.glob("*"))
    assert run(capsys, str(good), "--out", str(out))[0] == 0
    before = (out / "a.npz").read_bytes()
    rc, _, err = run(capsys, str(good), "--label", "outer_race", "--out", str(out))
    assert rc == 2 and "exists; remove it or pass another --out" in err and (out / "a.npz").read_bytes() == before


def test_an_imported_recording_replays_through_a_shipped_model(tmp_path, capsys):
    f = write_csv(tmp_path / "m.csv", "t,acc (m/s^2)", tone(12800, 3.0, amp=2.0), 12800)
    assert run(capsys, str(f), "--unit", "m/s^2", "--machine", "m", "--rpm", "1800", "--out", str(tmp_path / "o"))[0] == 0
    rc = main(["replay", str(REPO / "edgefleet/models/fleet-v2"), "--data", str(tmp_path / "o"), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0 and '"machine": "m"' in out and '"windows": 2' in out, err


def test_locale_and_time_units_of_a_logger_export(tmp_path, capsys):
    x = tone(8000, 1.0)
    eu = tmp_path / "eu.csv"  # semicolons, decimal commas, a unit in brackets
    eu.write_text("Zeit [s];Beschleunigung [m/s²]\n" + "".join(
        f"{i / 8000:.6f};{v * G:.5f}\n".replace(".", ",") for i, v in enumerate(x)))
    rc, _, err = run(capsys, str(eu), "--out", str(tmp_path / "o"))
    assert rc == 2 and "looks like m/s2" in err
    assert run(capsys, str(eu), "--unit", "m/s2", "--out", str(tmp_path / "o"))[0] == 0
    rec = load_recording(tmp_path / "o" / "eu.npz")
    assert rec.fs == 8000 and np.allclose(rec.signal, x, atol=1e-5)
    ms = write_csv(tmp_path / "ms.csv", "time,accel_g", x, 8000 / 1000)  # times in ms under a bare 'time'
    rc, _, err = run(capsys, str(ms), "--out", str(tmp_path / "p"))
    assert rc == 2 and "gives 8 Hz, read as seconds; if its times are in another unit (ms, us), pass --fs" in err
    assert run(capsys, str(ms), "--fs", "8000", "--out", str(tmp_path / "p"))[0] == 0  # agrees x1000
    vel = write_csv(tmp_path / "v.csv", "time_s,velocity [mm/s]", x, 8000)
    rc, _, err = run(capsys, str(vel), "--out", str(tmp_path / "q"))
    assert rc == 2 and "looks like velocity; the front end takes acceleration" in err


def test_a_24_bit_wav_is_read_and_a_file_that_is_no_wav_is_named(tmp_path, capsys):
    x = np.round(np.sin(np.arange(8000) * 0.3) * 2**22).astype(np.int32)
    with wave.open(str(tmp_path / "w24.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(3), w.setframerate(8000)
        w.writeframes(b"".join(int(v).to_bytes(4, "little", signed=True)[:3] for v in x))
    assert run(capsys, str(tmp_path / "w24.wav"), "--scale", str(2**-31), "--out", str(tmp_path / "o"))[0] == 0
    rec = load_recording(tmp_path / "o" / "w24.npz")
    assert np.allclose(rec.signal, x / 2**23, atol=1e-6)  # full scale = 1.0 in the stated unit
    (tmp_path / "log.wav").write_text("time,accel\n")
    rc, _, err = run(capsys, str(tmp_path / "log.wav"), "--scale", "1", "--out", str(tmp_path / "p"))
    assert rc == 2 and "log.wav: not a WAV file this reader takes" in err


@pytest.mark.parametrize("gap_row", [300, 1000])  # inside a chunk, and the first row of the next one
def test_a_gap_in_a_loggers_time_column_is_named_by_row_not_joined(tmp_path, capsys, monkeypatch, gap_row):
    monkeypatch.setattr(import_readers, "CHUNK_ROWS", 1000)
    x = tone(8000, 0.5)
    t = np.arange(x.size) / 8000
    t[gap_row:] += 0.5  # the logger lost half a second
    f = tmp_path / "gap.csv"
    f.write_text("time_s,accel_g\n" + "".join(f"{a:.7f},{b:.6f}\n" for a, b in zip(t, x)))
    rc, _, err = run(capsys, str(f), "--out", str(tmp_path / "o"))
    assert rc == 2 and f"at data row {gap_row + 1} " in err and "a gap or a restart" in err
    assert not list((tmp_path / "o").glob("*"))


def test_times_printed_too_coarsely_for_the_rate_need_fs_and_then_step_aside(tmp_path, capsys):
    x = tone(25600, 0.5)
    f = write_csv(tmp_path / "coarse.csv", "time_s,accel_g", x, 25600, decimals=4)  # 39 us steps printed to 0.1 ms
    rc, _, err = run(capsys, str(f), "--out", str(tmp_path / "o"))
    assert rc == 2 and "repeats values (printed with too few decimals for this rate?); pass --fs HZ" in err
    assert run(capsys, str(f), "--fs", "25600", "--out", str(tmp_path / "o"))[0] == 0
    assert load_recording(tmp_path / "o" / "coarse.npz").fs == 25600


def test_an_npz_from_another_tool_and_a_2d_array_take_a_named_channel(tmp_path, capsys):
    x = np.stack([tone(20000, 0.5, seed=i) for i in range(3)], 1)
    np.savez(tmp_path / "daq.npz", data=x, rate=np.float64(20000), rpm=np.float64(1500))
    rc, _, err = run(capsys, str(tmp_path / "daq.npz"), "--fs-key", "rate", "--out", str(tmp_path / "o"))
    assert rc == 2 and "data is [10000, 3]; name one channel with --channel data:INDEX" in err
    rc, _, err = run(capsys, str(tmp_path / "daq.npz"), "--channel", "data:1", "--fs-key", "rate",
                     "--out", str(tmp_path / "o"))
    assert rc == 0, err
    rec = load_folder(tmp_path / "o")[0]
    assert rec.fs == 20000 and np.allclose(rec.signal, x[:, 1], atol=1e-6)
    np.savez(tmp_path / "own.npz", signal=x[:, 0].astype(np.float32), fs=20000.0, label="normal")
    rc, _, err = run(capsys, str(tmp_path / "own.npz"), "--out", str(tmp_path / "p"))
    assert rc == 2 and "already an edgefleet recording" in err


def test_ims_one_second_snapshots_are_too_short_for_a_v2_window_and_it_is_said(tmp_path, capsys):
    d = tmp_path / "1st_test"
    d.mkdir()
    for name in ("2003.10.22.12.06.24", "2003.10.22.12.09.13", "2003.10.22.12.14.13"):
        np.savetxt(d / name, np.stack([tone(20480, 1.0, seed=i) for i in range(2)], 1), fmt="%.3f", delimiter="\t")
    rc, _, err = run(capsys, str(d), "--fs", "20480", "--channel", "0", "--join", "--interval", "600",
                     "--out", str(tmp_path / "o"))
    assert rc == 0, err
    rc = main(["model", "evaluate", str(REPO / "edgefleet/models/fleet-v2"), "--data", str(tmp_path / "o")])
    _, err = capsys.readouterr()
    assert rc == 2 and "capture(s) of 1.000 s" in err and "need at least one of a 1.062 s window" in err
    assert "serve only a model with a shorter window (v1, model train --window)" in err


def test_a_unit_or_channel_said_against_the_file_is_refused(tmp_path, capsys):
    x = tone(8000, 1.0)
    g = write_csv(tmp_path / "g.csv", "time_s,accel_g", x, 8000)
    rc, _, err = run(capsys, str(g), "--unit", "m/s2", "--out", str(tmp_path / "o"))
    assert rc == 2 and "column 'accel_g' looks like g but --unit is m/s2" in err
    wav = write_wav(tmp_path / "mono.wav", 8000, np.round(x * 1000).astype(np.int16))
    rc, _, err = run(capsys, str(wav), "--scale", "0.001", "--channel", "1", "--out", str(tmp_path / "o"))
    assert rc == 2 and "one channel only, no channel '1'" in err


def test_a_normal_label_in_another_case_is_refused_at_import(tmp_path, capsys):
    f = write_csv(tmp_path / "a.csv", "time_s,accel_g", tone(8000, 1.0), 8000)
    rc, _, err = run(capsys, str(f), "--label", "Normal", "--out", str(tmp_path / "o"))
    assert rc == 2 and "write 'normal'" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["accel_mm_s", "vel_mm_s", "velocity_mms", "vel_ips", "v_in_s", "mm_s", "mms",
                                  "ips", "in_s", "speed_m_s", "vel (mm/sec)", "vel_ms-1", "velocity [mm/s]"])
def test_a_velocity_column_without_a_slash_is_refused_not_read_as_g(tmp_path, capsys, name):
    f = write_csv(tmp_path / "v.csv", f"time_s,{name}", tone(8000, 1.0), 8000)
    rc, _, err = run(capsys, str(f), "--out", str(tmp_path / "o"))
    assert rc == 2 and f"column {name!r} looks like velocity; the front end takes acceleration" in err
    assert not (tmp_path / "o" / "v.npz").exists()


@pytest.mark.parametrize("name, unit", [("accel_g", "g"), ("acc_m_s2", "m/s2"), ("m/s^2", "m/s2"), ("m_s2", "m/s2"),
                                        ("accel_ms2", "m/s2"), ("acc [m/s²]", "m/s2"), ("accel_m_s_2", "m/s2"),
                                        ("acc_ms-2", "m/s2"), ("acc_mm_s2", "mm/s2"), ("accel (mm/s^2)", "mm/s2"),
                                        ("accel_mg", "mg"), ("ch1", None), ("chips", None), ("main_shaft", None)])
def test_acceleration_columns_stay_acceleration_in_their_unit(name, unit):
    assert importers.unit_from_name(name) == unit and not importers.VELOCITY_IN_NAME.search(name)


def test_an_acceleration_column_named_m_s2_needs_its_unit_and_then_reads_in_g(tmp_path, capsys):
    x = tone(8000, 1.0)
    f = write_csv(tmp_path / "a.csv", "time_s,acc_m_s2", x * G, 8000)
    rc, _, err = run(capsys, str(f), "--out", str(tmp_path / "o"))
    assert rc == 2 and "column 'acc_m_s2' looks like m/s2" in err and "--unit m/s2" in err
    assert run(capsys, str(f), "--unit", "m/s2", "--out", str(tmp_path / "o"))[0] == 0
    assert np.allclose(load_recording(tmp_path / "o" / "a.npz").signal, x, atol=2e-6)
    mm = write_csv(tmp_path / "mm.csv", "time_s,acc (mm/s^2)", x * G * 1000, 8000, decimals=7)
    rc, _, err = run(capsys, str(mm), "--unit", "m/s2", "--out", str(tmp_path / "p"))
    assert rc == 2 and "looks like mm/s2 but --unit is m/s2" in err  # not read 1000x too strong


@pytest.mark.parametrize("rpm", ["-5", "0", "1e9", "100001", "nan", "inf"])
def test_an_impossible_rpm_is_refused_at_import(tmp_path, capsys, rpm):
    f = write_csv(tmp_path / "a.csv", "time_s,accel_g", tone(8000, 1.0), 8000)
    rc, _, err = run(capsys, str(f), f"--rpm={rpm}", "--out", str(tmp_path / "o"))
    assert rc == 2 and "--rpm must be a running speed > 0 and <= 100000 rpm" in err
    assert not (tmp_path / "o").exists()
    assert run(capsys, str(f), "--rpm", "100000", "--out", str(tmp_path / "o"))[0] == 0
    assert load_recording(tmp_path / "o" / "a.npz").meta["rpm"] == 100000.0


@pytest.mark.parametrize("label, said", [("healthy", "pass --label normal"), ("OK", "pass --label normal"),
                                         ("baseline", "pass --label normal"), ("good", "pass --label normal"),
                                         ("bearing-fault", "neither 'normal' nor a known fault name")])
def test_a_label_that_is_no_known_name_is_written_with_a_warning(tmp_path, capsys, caplog, label, said):
    f = write_csv(tmp_path / "a.csv", "time_s,accel_g", tone(8000, 1.0), 8000)
    rc, _, _ = run(capsys, str(f), "--label", label, "--out", str(tmp_path / "o"))
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert rc == 0 and len(warned) == 1 and said in warned[0].getMessage() and "\n" not in warned[0].getMessage()
    assert load_recording(tmp_path / "o" / "a.npz").label == label  # the import goes on, as given


@pytest.mark.parametrize("label", ["normal", "outer_race", "inner_race", "ball", "unbalance", "bent_shaft"])
def test_normal_and_the_known_fault_names_are_taken_without_a_warning(tmp_path, capsys, caplog, label):
    f = write_csv(tmp_path / "a.csv", "time_s,accel_g", tone(8000, 1.0), 8000)
    assert run(capsys, str(f), "--label", label, "--out", str(tmp_path / "o"))[0] == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_an_all_nan_recording_is_refused_in_one_line_without_a_runtime_warning(tmp_path, capsys):
    import warnings

    np.savez(tmp_path / "nan.npz", signal=np.full(24000, np.nan, np.float32), fs=12000.0, label="normal")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would be an error here
        rc = main(["model", "evaluate", str(REPO / "edgefleet/models/fleet-default"), "--data", str(tmp_path)])
    _, err = capsys.readouterr()
    assert rc == 2 and err.count("\n") == 1 and "nan.npz: signal holds 24000 NaN or infinite samples" in err, err
    assert "Traceback" not in err and "RuntimeWarning" not in err
