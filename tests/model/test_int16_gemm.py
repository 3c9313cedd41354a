"""The int16 multiply-add GEMM under the engine's default backend: exact on every shape and
extreme value, on both vector widths (AVX-512BW and AVX2)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from edgefleet import int16_gemm

pytestmark = pytest.mark.skipif(not int16_gemm.AVAILABLE, reason="needs numba and AVX2 or AVX-512BW")


def _gemm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    n, k = x.shape
    m = w.shape[0]
    kp, mp, rows = int16_gemm.pad_to(k, 2), int16_gemm.pad_to(m, int16_gemm.LANES), int16_gemm.pad_to(n, 4)
    xp = np.zeros((rows, kp), np.int16)
    xp[:n, :k] = x
    out = np.full(rows * mp, -7, np.int32)  # garbage: every read cell must be written
    int16_gemm.gemm(xp.reshape(-1), kp, int16_gemm.pair_weights(w, kp, mp), mp, out)
    return out.reshape(rows, mp)[:n, :m]


@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (5, 7, 3), (4, 32, 16), (13, 33, 17), (64, 640, 128), (9, 128, 640)])
def test_matches_int64_matmul(n, k, m):
    rng = np.random.default_rng(n * 1000 + k * 10 + m)
    x = rng.integers(-255, 256, (n, k)).astype(np.int16)  # activations minus a zero point
    w = rng.integers(-128, 128, (m, k)).astype(np.int8)
    np.testing.assert_array_equal(_gemm(x, w), x.astype(np.int64) @ w.T.astype(np.int64))


def test_extremes_do_not_saturate():
    """pmaddwd adds two products in 32 bits: (-255 * -128) * 2 per pair, 640 pairs, must be exact."""
    k = 1280
    x = np.full((4, k), -255, np.int16)
    w = np.full((16, k), -128, np.int8)
    assert (_gemm(x, w) == 255 * 128 * k).all()
    x[1] = 255
    assert (_gemm(x, w)[1] == -255 * 128 * k).all()


def test_avx2_width_in_a_subprocess(tflite_models, tmp_path):
    """The 8-lane (AVX2) kernel, forced on this machine, gives LiteRT's bits too."""
    from edgefleet.litert_ref import infer
    from edgefleet.testmodels import parity_inputs
    from edgefleet.tflite_import import import_tflite

    code = ("import sys, numpy as np\n"
            "from edgefleet import int16_gemm\n"
            "from edgefleet.engine import Int8Engine\n"
            "from edgefleet.tflite_import import import_tflite\n"
            "assert int16_gemm.LANES == 8, int16_gemm.LANES\n"
            "eng = Int8Engine(import_tflite(open(sys.argv[1], 'rb').read()), backend='int16')\n"
            "np.save(sys.argv[3], eng.infer(np.load(sys.argv[2])))\n")
    env = {**os.environ, "EDGEFLEET_INT16_LANES": "8"}
    for name in ("ae32_pc", "narrow_relu6", "mlperf_pt"):
        tfl = tflite_models[name]
        (tmp_path / "m.tflite").write_bytes(tfl)
        x = parity_inputs(3_001, import_tflite(tfl).n_inputs, seed=11)
        np.save(tmp_path / "x.npy", x)
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.tflite"), str(tmp_path / "x.npy"),
                        str(tmp_path / "y.npy")], check=True, env=env, timeout=300)
        np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), infer(tfl, x), err_msg=name)
