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


# ---------------------------------------------------------------- feature definition v2
# docs/features.md, "Precision contract between Python and C (v2)"
V2_HF_TOL = 1e-3  # HF bands and shape (kurtosis, crest), log10 units
V2_LF_TOL = 2e-3  # LF bands
V2_VRMS_REL = 5e-3
V2_Q_MATCH = 0.995


def _v2_node(fw, art_bytes, signal, fs, tmp_path, *extra, sanitized=False):
    path = tmp_path / "v2.efm"
    path.write_bytes(art_bytes)
    raw = tmp_path / "samples.f32"
    np.asarray(signal, "<f4").tofile(raw)
    f, r, q, y = (tmp_path / n for n in ("F.f32", "R.f32", "q.i8", "y.i8"))
    proc = run([fw.tool("ef_node", sanitized=sanitized), path, raw, repr(float(fs)), "--quiet", "--features", f,
                "--readings", r, "--quantized", q, "--outputs", y, *extra])
    summary = json.loads(proc.stdout.decode().splitlines()[-1])
    return (summary, np.fromfile(f, "<f4"), np.fromfile(r, "<f4").reshape(-1, 4), np.fromfile(q, np.int8),
            np.fromfile(y, np.int8))


class V2Parity:
    """Worst differences C vs Python over many windows, against the v2 contract."""

    def __init__(self):
        self.worst = {"hf": 0.0, "lf": 0.0, "vrms_rel": 0.0, "kurtosis": 0.0, "crest": 0.0, "vrms_feature": 0.0,
                      "speed_bins": 0.0}
        self.same = self.total = self.windows = 0

    def add(self, fw, params, signal, fs, tmp_path, what: str, *, sanitized=False):
        from edgefleet.runtime.features import analyze
        from v2_helpers import standardizing

        p = plan(params, fs)
        windows = frame(signal, p.n_samples)
        assert len(windows) >= 2, what
        a = analyze(np.asarray(windows, np.float64), fs, params)
        art = standardizing(params, a.features)  # q spans the int8 range: a real test of rounding
        summary, f_c, r_c, q_c, y_c = _v2_node(fw, art.to_bytes(), signal, fs, tmp_path, sanitized=sanitized)
        assert summary["windows"] == len(windows) and summary["n_samples"] == p.n_samples, (what, summary)
        f_c = f_c.reshape(a.features.shape)
        nb, nl = params.n_bands, params.lf.n_bands
        d = np.abs(f_c.astype(np.float64) - a.features)
        names = params.lf.extra_names
        w = self.worst
        w["hf"] = max(w["hf"], float(d[:, :nb].max()))
        w["lf"] = max(w["lf"], float(d[:, nb:nb + nl].max()))
        for i, name in enumerate(names):
            key = "vrms_feature" if name == "vrms" else name
            w[key] = max(w[key], float(d[:, nb + nl + i].max()))
        w["vrms_rel"] = max(w["vrms_rel"], float(np.max(np.abs(r_c[:, 0] / a.vrms_mm_s - 1.0))))
        w["speed_bins"] = max(w["speed_bins"], float(np.max(np.abs(r_c[:, 1] - a.speed_hz)) / (p.lf.fs_lf / params.lf.length)))
        assert np.allclose(r_c[:, 2], a.kurtosis, rtol=1e-4) and np.allclose(r_c[:, 3], a.crest, rtol=1e-4), what
        from edgefleet.runtime.engine import Int8Engine
        from edgefleet.runtime.features import quantize, standardize

        q_py = quantize(standardize(a.features, art.features.mean, art.features.inv_std), art.input_scale,
                        art.input_zero_point)
        q_c = q_c.reshape(q_py.shape)
        assert int(np.abs(q_c.astype(int) - q_py).max()) <= 1, what
        self.same += int((q_c == q_py).sum())
        self.total += q_py.size
        self.windows += len(windows)
        # given the same int8 inputs the outputs are the engine's, bit for bit
        assert np.array_equal(y_c.reshape(q_py.shape), Int8Engine(art).infer(q_c)), what

    def check(self):
        w = self.worst
        assert w["hf"] <= V2_HF_TOL and w["kurtosis"] <= V2_HF_TOL and w["crest"] <= V2_HF_TOL, w
        assert w["lf"] <= V2_LF_TOL, w
        assert w["vrms_rel"] <= V2_VRMS_REL and w["speed_bins"] <= 1.0, w
        assert self.same / self.total >= V2_Q_MATCH, (self.same, self.total)
        print(f"v2 parity over {self.windows} windows: " + ", ".join(f"{k} {v:.2e}" for k, v in w.items())
              + f"; q identical {self.same}/{self.total} = {self.same / self.total:.5f}")


def test_v2_features_match_python_on_cwru(fw, recordings, cwru_dir, tmp_path):
    """Every CWRU recording (12 kHz) and the 48 kHz normal one: HF, shape, LF, vrms, speed and the
    quantized inputs within the v2 contract."""
    from v2_helpers import v2_params

    params = v2_params()
    par = V2Parity()
    for rec in recordings:
        par.add(fw, params, rec.signal, rec.fs, tmp_path, rec.name)
    z = np.load(cwru_dir / "normal_0hp_97.npz")
    par.add(fw, params, z["signal_48k"].astype(np.float32), float(z["fs_48k"]), tmp_path, "normal 48 kHz")
    par.check()


@pytest.mark.parametrize("fs", [12000.0, 48000.0, 25600.0, 4000.0])
def test_v2_features_match_python_on_synthetic_signals(fw, fs, tmp_path):
    """1x/2x/3x running-speed sines, broadband noise, a 1 g DC offset, bearing ringing; speeds across
    the search range; at 4 kHz the HF bands stop below Nyquist."""
    from v2_helpers import synthetic, v2_params

    params = v2_params() if fs >= 12000 else v2_params(f_hi=1900.0)
    par = V2Parity()
    seconds = 3.2 * plan(params, fs).n_samples / fs
    cases = [dict(speed_hz=24.7), dict(speed_hz=24.7, dc=1.0), dict(speed_hz=7.3, dc=1.0, noise=0.005),
             dict(speed_hz=58.0, amps=(0.2, 0.02, 0.05), noise=0.05, seed=3),
             dict(speed_hz=12.1, amps=(0.0, 0.0, 0.0), noise=0.03, seed=4),  # noise only
             dict(speed_hz=29.9, dc=-1.0, bearing=0.5, seed=5)]
    for i, kw in enumerate(cases):
        if fs < 6000 and kw.get("bearing"):
            kw["bearing"] = 0.0  # 3 kHz ringing is above a 4 kHz sensor's Nyquist
        par.add(fw, params, synthetic(fs, seconds, **kw), fs, tmp_path, f"{fs} {kw}", sanitized=(i == 0))
    par.check()


def test_v2_sampling_rate_rules_match_python(fw, tmp_path):
    """The v2 plan refuses exactly what the Python plan refuses (exit 2, unsupported-rate)."""
    from edgefleet.errors import FeatureError
    from edgefleet.runtime.features import FeatureParams, LowFreqParams, low_freq
    from v2_helpers import v2_artifact, v2_params

    lf_edges = v2_params().lf.edges_hz
    cases = [  # (params, fs)
        (v2_params(), 12000.0), (v2_params(), 48000.0), (v2_params(), 50000.0), (v2_params(), 51200.0),
        (v2_params(), 3999.0),
        (v2_params(f_hi=1900.0), 4000.0),
        (v2_params(f_hi=1900.0), 3000.0),
        # vel_hi 1000 Hz above the Nyquist of a 1.9 kHz... (fs must be >= 4 kHz: use a higher vel_hi)
        (FeatureParams.spaced(32, 100.0, 1900.0, lf=LowFreqParams(edges_hz=lf_edges, vel_hi_hz=2500.0)), 4000.0),
        (FeatureParams.spaced(32, 100.0, 1900.0, lf=LowFreqParams(edges_hz=lf_edges, vel_hi_hz=2500.0)), 6000.0),
        # the LF stream too slow for its corner: rate 400 Hz, corner 160 Hz (needs > 400 Hz)
        (FeatureParams.spaced(32, 100.0, 5000.0, lf=LowFreqParams(edges_hz=lf_edges, rate_hz=400.0)), 12000.0),
        (FeatureParams.spaced(32, 100.0, 5000.0, lf=LowFreqParams(edges_hz=lf_edges, rate_hz=410.0)), 12000.0),
        # the speed search cannot start at 1 Hz with ~1 Hz bins (k_min < 2)
        (FeatureParams.spaced(32, 100.0, 5000.0, lf=LowFreqParams(edges_hz=lf_edges, speed_min_hz=1.0)), 12000.0),
        (FeatureParams.spaced(32, 100.0, 5000.0, lf=LowFreqParams(edges_hz=lf_edges, speed_min_hz=2.5)), 12000.0),
        # a window (L + S) * D shorter than one HF segment
        (FeatureParams.spaced(32, 100.0, 5000.0, window_s=0.3,
                              lf=LowFreqParams(edges_hz=lf_edges, length=128, settle=0)), 12000.0),
        (FeatureParams.spaced(32, 100.0, 5000.0, window_s=0.3,
                              lf=LowFreqParams(edges_hz=lf_edges, length=256, settle=0)), 12000.0),
        # the velocity split (100 Hz) closer than 2.5 HF resolutions (31 Hz) to the top LF edge
        (FeatureParams.spaced(32, 100.0, 5000.0, lf=low_freq(f_hi=110.0)), 12000.0),
        (FeatureParams.spaced(32, 100.0, 5000.0, lf=low_freq(f_hi=132.0)), 12000.0),
        # LF bands with no bin at 4 Hz bins (L = 128): 16 bands from 5 Hz
        (FeatureParams.spaced(32, 100.0, 5000.0, lf=LowFreqParams(edges_hz=lf_edges, length=128)), 12000.0),
    ]
    np.zeros(60000, np.float32).tofile(tmp_path / "z.f32")
    accepted = refused = 0
    for params, fs in cases:
        try:
            plan(params, fs)
            py_ok = True
        except FeatureError:
            py_ok = False
        (tmp_path / "m.efm").write_bytes(v2_artifact(params).to_bytes())
        proc = run([fw.tool("ef_node"), tmp_path / "m.efm", tmp_path / "z.f32", repr(fs), "--quiet"], check=False)
        assert (proc.returncode == 0) == py_ok, (params.lf, fs, proc.stderr[-300:])
        if not py_ok:
            assert proc.returncode == 2 and b"unsupported-rate" in proc.stderr
        accepted += py_ok
        refused += not py_ok
    assert accepted >= 5 and refused >= 6


def test_v2_streaming_in_pieces_equals_whole_windows(fw, tmp_path):
    """The node's zero-copy input in pieces of any size gives the same features as whole windows
    (the host node feeds whole windows; --hop shifts windows so every piece boundary moves)."""
    from edgefleet.runtime.features import analyze
    from v2_helpers import synthetic, v2_artifact, v2_params

    params = v2_params()
    fs = 12000.0
    p = plan(params, fs)
    sig = synthetic(fs, 2.5 * p.n_samples / fs, dc=0.5)
    hop = 4321
    _, f_c, r_c, _, _ = _v2_node(fw, v2_artifact(params).to_bytes(), sig, fs, tmp_path, "--hop", str(hop),
                                 sanitized=True)
    windows = frame(sig, p.n_samples, hop)
    a = analyze(np.asarray(windows, np.float64), fs, params)
    assert np.abs(f_c.reshape(a.features.shape) - a.features).max() <= V2_LF_TOL
    assert np.allclose(r_c[:, 1], a.speed_hz, atol=p.lf.fs_lf / params.lf.length)


def test_v2_frontend_crc_and_inputs_match_python(fw, shipped_model, tmp_path):
    """The baseline's front-end CRC (ef_baseline_frontend_crc) equals Python's frontend_crc for v1 and
    v2 front ends (a baseline learnt under one is refused under another), and the reader counts the
    v2 inputs as Python does (HF + LF bands + one per extras bit)."""
    from edgefleet.runtime import baseline as bl
    from edgefleet.runtime.features import EXTRA_CREST, EXTRA_VRMS
    from v2_helpers import v2_artifact, v2_params

    arts = {"v1": Artifact.from_bytes((shipped_model / "model.efm").read_bytes()),
            "v2": v2_artifact(v2_params()),
            "v2 vrms+crest, 8 HF bands": v2_artifact(v2_params(n_bands=8, extras=EXTRA_VRMS | EXTRA_CREST)),
            "v2 other corner": v2_artifact(v2_params(f_hi=4000.0))}
    crcs = set()
    for name, art in arts.items():
        path = tmp_path / "m.efm"
        path.write_bytes(art.to_bytes())
        info = json.loads(run([fw.tool("ef_infer"), "--info", path]).stdout)
        params = art.features.params
        assert info["feature_kind"] == params.version and info["n_features"] == params.n_features, name
        assert info["frontend_crc"] == bl.frontend_crc(params) & 0xFFFFFFFF, name
        crcs.add(info["frontend_crc"])
    assert len(crcs) == len(arts)


def test_in_place_real_fft_is_cmsis_bit_for_bit(fw, tmp_path):
    """ef_rfft_inplace (the v2 front end's FFT, no output buffer) gives arm_rfft_fast_f32's output bit
    for bit at every length from 32 to 4096 (sanitized build of the check against the host library)."""
    import shutil

    from fw_helpers import FIRMWARE, REPO

    out = tmp_path / "ef_rfft_check"
    cc = shutil.which("cc") or "gcc"
    cmsis = FIRMWARE / "third_party" / "cmsisdsp-1.10.3"
    run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-ffp-contract=off", "-D__GNUC_PYTHON__",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-I{FIRMWARE / 'core/include'}",
         f"-I{cmsis / 'Include'}", f"-I{cmsis / 'PrivateInclude'}", REPO / "tests/firmware/c/ef_rfft_check.c",
         fw.san / "lib.a", "-lm", "-o", out])
    lines = run([out]).stdout.decode().split("\n")
    rows = [tuple(map(int, line.split())) for line in lines if line.strip()]
    assert [r[0] for r in rows] == [32 << i for i in range(8)]
    assert all(r[2] == 0 for r in rows), rows
