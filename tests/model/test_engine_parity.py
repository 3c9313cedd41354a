"""The Python int8 engine against LiteRT, bit for bit, on >= 10,000 inputs per model."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import OpResolverType

from edgefleet.runtime.artifact import Artifact
from edgefleet.toolchain.datasets import windows_of
from edgefleet.runtime.engine import Int8Engine, available_backends
from edgefleet.toolchain.litert_ref import infer as litert
from edgefleet.toolchain.tflite_import import import_tflite

from edgefleet.toolchain.testmodels import PARITY_SHAPES as SHAPES
from edgefleet.toolchain.testmodels import parity_inputs

N_INPUTS = 10_000


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("mode, resolver", [("fp32", None), ("int", OpResolverType.BUILTIN_REF)])
def test_bit_exact_against_litert(tflite_models, name, mode, resolver, backend):
    tfl = tflite_models[name]
    art = Artifact.from_bytes(import_tflite(tfl, requant=mode).to_bytes())
    x = parity_inputs(N_INPUTS, art.n_inputs, seed=len(name))
    ours = Int8Engine(art, backend=backend).infer(x)
    ref = litert(tfl, x, resolver)
    assert ours.dtype == np.int8 and ours.shape == ref.shape
    mismatches = int((ours != ref).sum())
    assert mismatches == 0, f"{mismatches} of {ref.size} int8 outputs differ from LiteRT"


def test_per_channel_and_per_tensor_really_differ(tflite_models):
    pc = import_tflite(tflite_models["ae32_pc"])
    pt = import_tflite(tflite_models["ae32_pt"])
    assert all(layer.multiplier.size == layer.n_out for layer in pc.layers)
    assert all(layer.multiplier.size == 1 for layer in pt.layers)
    mlperf = import_tflite(tflite_models["mlperf_pt"])
    assert len(mlperf.layers) == 10 and mlperf.n_inputs == 640 and mlperf.macs == 264_192


def test_real_cwru_windows_bit_exact(trained, cwru_recordings):
    """Real bearing windows through the feature front end, then engine vs LiteRT default."""
    art = trained.artifact
    from edgefleet.runtime.engine import Detector

    det = Detector(art)
    rows = []
    for rec in cwru_recordings:
        rows.append(det.quantized_inputs(windows_of(rec, art.features.params, hop_fraction=0.2), rec.fs))
    x = np.concatenate(rows)
    assert len(x) >= N_INPUTS
    assert np.array_equal(Int8Engine(art).infer(x), litert(trained.tflite_int8, x))


@pytest.mark.parametrize("backend", available_backends())
def test_single_row_and_batch_agree(tflite_models, backend):
    """Rows 1 by 1, a batch, and a batch over several engine chunks give the same rows."""
    from edgefleet.runtime.engine import CHUNK_ROWS

    eng = Int8Engine(import_tflite(tflite_models["ae32_pc"]), backend=backend)
    x = parity_inputs(2 * CHUNK_ROWS + 77, 32, 3)
    batch = eng.infer(x)
    for i in range(50):
        np.testing.assert_array_equal(eng.infer(x[i]), batch[i])
    np.testing.assert_array_equal(eng.infer(x[CHUNK_ROWS - 5:CHUNK_ROWS + 5]), batch[CHUNK_ROWS - 5:CHUNK_ROWS + 5])


def test_wide_layers_take_the_exact_float64_path():
    """A layer whose dot products can pass 2^24 runs in float64 (BLAS backends) and the int64
    requantization (compiled kernels): every backend stays bit-exact against LiteRT."""
    from edgefleet.toolchain.testmodels import make_dense_tflite

    tfl = make_dense_tflite([2048, 4], per_channel=False, seed=5, relu_hidden=False)
    art = import_tflite(tfl)
    engines = [Int8Engine(art, backend=b) for b in available_backends()]
    assert engines[0]._layers[0].dtype == np.float64
    x = parity_inputs(2_000, 2048, 9)
    ref = litert(tfl, x)
    for eng in engines:
        np.testing.assert_array_equal(eng.infer(x), ref)


def test_backend_choice(monkeypatch):
    from edgefleet.runtime.engine import default_backend
    from edgefleet.errors import ArtifactError

    monkeypatch.setenv("EDGEFLEET_ENGINE", "numpy")
    assert default_backend() == "numpy"
    monkeypatch.setenv("EDGEFLEET_ENGINE", "cuda")
    with pytest.raises(ArtifactError, match="EDGEFLEET_ENGINE must be one of simd, blas, numpy"):
        default_backend()
    monkeypatch.delenv("EDGEFLEET_ENGINE")
    # numba comes with the README's setup; simd needs AVX2 as well
    assert default_backend() == available_backends()[0] and "blas" in available_backends()


def test_engine_rejects_wrong_dtype_and_shape(tflite_models):
    from edgefleet.errors import ArtifactError

    eng = Int8Engine(import_tflite(tflite_models["ae32_pc"]))
    with pytest.raises(ArtifactError, match="int8"):
        eng.infer(np.zeros((2, 32), np.float32))
    with pytest.raises(ArtifactError, match="shape"):
        eng.infer(np.zeros((2, 31), np.int8))


@pytest.mark.parametrize("mode, resolver", [("fp32", None), ("int", OpResolverType.BUILTIN_REF)])
def test_exact_ties_round_like_litert(mode, resolver):
    """Models whose scales make exact ties common: LiteRT's reference kernels round a tie away
    from zero (-1.5 -> -2); a plain `(acc*M + 2^(t-1)) >> t` gives -1. Every backend follows."""
    from edgefleet.runtime.quant import multiply_by_quantized_multiplier, quantize_multiplier
    from edgefleet.toolchain.testmodels import tie_cases

    m, s = quantize_multiplier(0.75 * 2.0 ** -10)
    assert multiply_by_quantized_multiplier(np.array([-2048, 2048, -1024, -3072]), m, s).tolist() == [-2, 2, -1, -2]
    for name, tfl, artifact, x, ties in tie_cases(mode, N_INPUTS):
        assert ties > 100, "the model should meet many exact ties"
        art = Artifact.from_bytes(artifact)
        ref = litert(tfl, x, resolver)
        for backend in available_backends():
            ours = Int8Engine(art, backend=backend).infer(x)
            assert (ours != ref).sum() == 0, f"{name}/{mode}/{backend}: {(ours != ref).sum()} values differ"
