"""C features (float32, CMSIS-DSP FFT) against the Python reference (docs/features.md tolerance),
and the whole C node loop against the Python Detector on real CWRU recordings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgefleet.runtime.artifact import Artifact
from edgefleet.toolchain.datasets import load_folder
from edgefleet.runtime.engine import Detector, Int8Engine
from edgefleet.runtime.features import frame, log_band_power, plan
from fw_helpers import run

F_TOL = 1e-3  # log10 units, docs/features.md
Q_MATCH = 0.999


def node(fw, artifact_path, signal, fs, tmp_path, *extra, sanitized=True):
    raw = tmp_path / "samples.f32"
    np.asarray(signal, "<f4").tofile(raw)
    f, q, y = tmp_path / "F.f32", tmp_path / "q.i8", tmp_path / "y.i8"
    proc = run([fw.tool("ef_node", sanitized=sanitized), artifact_path, raw, repr(float(fs)),
                "--features", f, "--quantized", q, "--outputs", y, *extra])
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    return lines, np.fromfile(f, "<f4"), np.fromfile(q, np.int8), np.fromfile(y, np.int8)


@pytest.fixture(scope="module")
def recordings(cwru_dir):
    return load_folder(cwru_dir)


def test_features_and_quantized_inputs_match_python_on_all_cwru(fw, shipped_model, recordings, tmp_path):
    path = shipped_model / "model.efm"
    art = Artifact.from_bytes(path.read_bytes())
    det = Detector(art)
    params = art.features.params
    total = same = 0
    worst = 0.0
    for rec in recordings:
        n = plan(params, rec.fs).n_samples
        windows = frame(rec.signal, n)
        lines, f_c, q_c, y_c = node(fw, path, rec.signal, rec.fs, tmp_path, "--quiet",
                                    sanitized=False)
        f_py = log_band_power(windows, rec.fs, params)
        f_c = f_c.reshape(f_py.shape)
        worst = max(worst, float(np.abs(f_c - f_py).max()))
        q_py = det.quantized_inputs(windows, rec.fs)
        q_c = q_c.reshape(q_py.shape)
        assert int(np.abs(q_c.astype(int) - q_py).max()) <= 1, rec.name
        total += q_py.size
        same += int((q_c == q_py).sum())
        # given the same int8 inputs, the outputs are bit-exact (engine parity) and scores agree
        y_py = Int8Engine(art).infer(q_c)
        assert np.array_equal(y_c.reshape(y_py.shape), y_py)
        assert lines[-1]["windows"] == len(windows)
    assert worst <= F_TOL, f"worst feature difference {worst:.2e} exceeds {F_TOL}"
    assert same / total >= Q_MATCH, f"only {same}/{total} quantized inputs identical"
    print(f"features: worst |F_c - F_py| = {worst:.2e}; q identical on {same}/{total} = {same / total:.5f}")


def test_node_scores_and_decisions_match_python_detector(fw, shipped_model, recordings, tmp_path):
    path = shipped_model / "model.efm"
    art = Artifact.from_bytes(path.read_bytes())
    det = Detector(art)
    rec = next(r for r in recordings if not r.is_normal)
    normal = next(r for r in recordings if r.is_normal)
    for r in (rec, normal):
        n = plan(art.features.params, r.fs).n_samples
        sig = r.signal[: 40 * n]
        lines, _, q_c, _ = node(fw, path, sig, r.fs, tmp_path, "--hop", str(n // 2))
        windows = frame(sig, n, n // 2)
        scores, anom = det.score_windows(windows, r.fs)
        per_window = lines[:-1]
        assert len(per_window) == len(windows)
        c_scores = np.array([w["score"] for w in per_window], np.float32)
        c_anom = np.array([w["anom"] for w in per_window])
        # windows whose int8 inputs agree (all but ~1e-5 of elements) must score the same
        same = (q_c.reshape(len(windows), -1) == det.quantized_inputs(windows, r.fs)).all(axis=1)
        assert same.mean() >= 0.95
        np.testing.assert_allclose(c_scores[same], scores[same], rtol=1e-5, atol=1e-7)
        assert np.array_equal(c_anom[same], anom[same])
    assert any(w["anom"] for w in node(fw, path, rec.signal[: 20 * n], rec.fs, tmp_path)[0][:-1])


def test_sampling_rate_rules_match_python(fw, shipped_model, tmp_path):
    """Rates the Python plan refuses, the C node refuses too (exit 2 with the reason)."""
    from edgefleet.errors import FeatureError

    path = shipped_model / "model.efm"
    params = Artifact.from_bytes(path.read_bytes()).features.params
    np.zeros(8192, np.float32).tofile(tmp_path / "z.f32")
    for fs in (3999.0, 4000.0, 9999.0, 10000.0, 12000.0, 25600.0, 50000.0, 51200.0, 60000.0):
        try:
            plan(params, fs)
            py_ok = True
        except FeatureError:
            py_ok = False
        proc = run([fw.tool("ef_node"), path, tmp_path / "z.f32", repr(fs), "--quiet"], check=False)
        assert (proc.returncode == 0) == py_ok, (fs, proc.stderr)
        if not py_ok:
            assert proc.returncode == 2 and b"unsupported-rate" in proc.stderr


def test_plan_rules_match_python_on_edge_parameters(fw, shipped_model, tmp_path):
    """Window sizes that round across the 4096 limit, bands touching Nyquist, bins too coarse:
    the C plan accepts exactly what the Python plan accepts, and then computes the same features."""
    import dataclasses

    from edgefleet.runtime.artifact import FeatureSection
    from edgefleet.errors import FeatureError
    from edgefleet.runtime.features import FeatureParams

    base = Artifact.from_bytes((shipped_model / "model.efm").read_bytes())
    cases = [  # (window_s, f_lo, f_hi, fs)
        (0.5, 100.0, 4000.0, 8192.8),   # N = round(4096.4) = 4096: accepted
        (0.5, 100.0, 4000.0, 8193.0),   # N = 4097 -> nfft 8192: refused
        (0.08, 100.0, 6000.0, 12000.0),  # top edge exactly at Nyquist: accepted
        (0.08, 100.0, 6000.5, 12000.0),  # just above Nyquist: refused
        (0.01, 100.0, 400.0, 12000.0),  # 32 bands over 300 Hz with 93.75 Hz bins: empty bands
        (0.25, 10.0, 20000.0, 48000.0),  # N = 12000: refused
        (0.08, 10.0, 20000.0, 48000.0),  # N = 3840 -> nfft 4096
        (0.05, 50.0, 25000.0, 50000.0),  # the top rate, bands up to Nyquist
        (0.5, 50.0, 2000.0, 4000.0),     # the bottom rate
    ]
    rng = np.random.default_rng(0)
    sig = rng.normal(0, 0.5, 40000).astype(np.float32)
    accepted = 0
    for window_s, lo, hi, fs in cases:
        params = FeatureParams.spaced(32, lo, hi, window_s=window_s)
        art = dataclasses.replace(base, _raw=None, features=FeatureSection(
            params=params, mean=base.features.mean, inv_std=base.features.inv_std))
        path = tmp_path / "m.efm"
        path.write_bytes(art.to_bytes())
        try:
            p = plan(params, fs)
            accepted += 1
            py_ok = True  # (32 bands need nfft >= 64, above CMSIS-DSP's smallest real FFT of 32)
        except FeatureError:
            py_ok = False
        (tmp_path / "s.f32").write_bytes(sig.tobytes())
        proc = run([fw.tool("ef_node"), path, tmp_path / "s.f32", repr(fs), "--quiet",
                    "--features", tmp_path / "F.f32"], check=False)
        assert (proc.returncode == 0) == py_ok, (window_s, lo, hi, fs, proc.stderr[-300:])
        if py_ok:
            windows = frame(sig, p.n_samples)
            f_c = np.fromfile(tmp_path / "F.f32", "<f4").reshape(len(windows), 32)
            assert np.abs(f_c - log_band_power(windows, fs, params)).max() <= F_TOL
    assert 0 < accepted < len(cases)
