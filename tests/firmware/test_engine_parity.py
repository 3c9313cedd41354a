"""The C int8 engine (sanitized host build) against LiteRT, bit for bit, >= 10,000 inputs per model."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import OpResolverType

from edgefleet.runtime.artifact import Artifact
from edgefleet.runtime.engine import Detector, Int8Engine
from edgefleet.toolchain.litert_ref import infer as litert
from edgefleet.toolchain.testmodels import PARITY_SHAPES, parity_inputs
from edgefleet.toolchain.tflite_import import import_tflite

from fw_helpers import c_infer, run

N_INPUTS = 10_000


@pytest.mark.parametrize("name", list(PARITY_SHAPES))
@pytest.mark.parametrize("mode, resolver", [("fp32", None), ("int", OpResolverType.BUILTIN_REF)])
def test_c_engine_bit_exact_with_litert(fw, tflite_models, tmp_path, name, mode, resolver):
    tfl = tflite_models[name]
    artifact = import_tflite(tfl, requant=mode).to_bytes()
    n_in = Artifact.from_bytes(artifact).n_inputs
    x = parity_inputs(N_INPUTS, n_in, seed=len(name) + 17)
    ref = litert(tfl, x, resolver)
    ours = c_infer(fw, artifact, x, tmp_path)
    assert ours.shape == ref.shape
    bad = int((ours != ref).sum())
    assert bad == 0, f"{bad} of {ref.size} int8 outputs differ from LiteRT ({name}, {mode})"


def test_shapes_cover_per_channel_per_tensor_and_deep_model(tflite_models):
    pt = import_tflite(tflite_models["mlperf_pt"])
    pc = import_tflite(tflite_models["mlperf_pc"])
    assert len(pt.layers) == 10 and pt.n_inputs == 640 and pt.n_outputs == 640
    assert all(layer.multiplier.size == 1 for layer in pt.layers)
    assert all(layer.multiplier.size == layer.n_out for layer in pc.layers)


def test_requant_modes_differ_somewhere_so_both_paths_are_exercised(fw, tflite_models, tmp_path):
    """fp32 and integer requantization round differently on rare values: the C side must follow each."""
    tfl = tflite_models["mlperf_pc"]
    a_fp, a_int = (import_tflite(tfl, requant=m).to_bytes() for m in ("fp32", "int"))
    x = parity_inputs(N_INPUTS, 640, seed=99)
    y_fp = c_infer(fw, a_fp, x, tmp_path, sanitized=False)
    y_int = c_infer(fw, a_int, x, tmp_path, sanitized=False)
    assert np.array_equal(y_fp, litert(tfl, x))
    assert np.array_equal(y_int, litert(tfl, x, OpResolverType.BUILTIN_REF))


def test_real_cwru_windows_through_shipped_model(fw, shipped_model, cwru_dir, tmp_path):
    """Real bearing windows (Python features, hop 20%) -> C engine == LiteRT == Python engine."""
    from edgefleet.toolchain.datasets import load_folder, windows_of

    artifact = (shipped_model / "model.efm").read_bytes()
    tfl = (shipped_model / "model_int8.tflite").read_bytes()
    art = Artifact.from_bytes(artifact)
    det = Detector(art)
    rows = [det.quantized_inputs(windows_of(rec, art.features.params, hop_fraction=0.2), rec.fs)
            for rec in load_folder(cwru_dir)]
    x = np.concatenate(rows)
    assert len(x) >= N_INPUTS
    ours = c_infer(fw, artifact, x, tmp_path)
    assert np.array_equal(ours, litert(tfl, x))
    assert np.array_equal(ours, Int8Engine(art).infer(x))


def test_ef_infer_reports_rejection_and_bad_row_size(fw, shipped_model, tmp_path):
    artifact = bytearray((shipped_model / "model.efm").read_bytes())
    info = run([fw.tool("ef_infer"), "--info", shipped_model / "model.efm"])
    assert b'"status":"ok"' in info.stdout and b'"arena_bytes":48' in info.stdout
    artifact[200] ^= 0x40
    (tmp_path / "bad.efm").write_bytes(bytes(artifact))
    proc = run([fw.tool("ef_infer"), "--info", tmp_path / "bad.efm"], check=False)
    assert proc.returncode == 2 and b"bad-crc" in proc.stdout
    (tmp_path / "in.bin").write_bytes(b"\0" * 33)
    proc = run([fw.tool("ef_infer"), shipped_model / "model.efm", tmp_path / "in.bin", tmp_path / "o"],
               check=False)
    assert proc.returncode == 1 and b"whole number" in proc.stderr


@pytest.mark.parametrize("mode, resolver", [("fp32", None), ("int", OpResolverType.BUILTIN_REF)])
def test_c_engine_rounds_exact_ties_like_litert(fw, tmp_path, mode, resolver):
    """Exact ties (common in these models) round away from zero in LiteRT's reference kernels."""
    from edgefleet.toolchain.testmodels import tie_cases

    for name, tfl, artifact, x, ties in tie_cases(mode, N_INPUTS):
        assert ties > 100
        ours, ref = c_infer(fw, artifact, x, tmp_path), litert(tfl, x, resolver)
        assert int((ours != ref).sum()) == 0, f"{name}/{mode}: {(ours != ref).sum()} values differ"
