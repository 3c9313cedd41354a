"""The integer GEMM under the engine's default backend: exact on every shape and extreme
value, with every kernel this CPU can run (VNNI bytes, AVX-512BW and AVX2 int16 pairs)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from edgefleet import simd_gemm

pytestmark = pytest.mark.skipif(not simd_gemm.AVAILABLE, reason="needs numba and AVX2")


def _gemm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x: int8 values [n, k] -> the kernel's int32 products with w [m, k]."""
    n, k = x.shape
    m = w.shape[0]
    kp, mp = simd_gemm.pad_to(k, simd_gemm.GROUP), simd_gemm.pad_to(m, simd_gemm.LANES)
    rows = simd_gemm.pad_to(n, simd_gemm.ROWS)
    xp = np.zeros((rows, kp), simd_gemm.ACT_DTYPE)
    xp[:n, :k] = x.astype(np.int16) + simd_gemm.ACT_OFFSET
    out = np.full(rows * mp, -7, np.int32)  # garbage: every cell read back must be written
    simd_gemm.gemm(xp.reshape(-1), kp, simd_gemm.group_weights(w, kp, mp), mp, out)
    return out.reshape(rows, mp)[:n, :m]


def _reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (x.astype(np.int64) + simd_gemm.ACT_OFFSET) @ w.T.astype(np.int64)


@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (5, 7, 3), (4, 32, 16), (13, 33, 17), (64, 640, 128), (9, 128, 640)])
def test_matches_int64_matmul(n, k, m):
    rng = np.random.default_rng(n * 1000 + k * 10 + m)
    x = rng.integers(-128, 128, (n, k)).astype(np.int8)
    w = rng.integers(-128, 128, (m, k)).astype(np.int8)
    np.testing.assert_array_equal(_gemm(x, w), _reference(x, w))


def test_extremes_do_not_saturate():
    """A product group adds 2 or 4 products in 32 bits with no 16-bit step: the largest
    magnitudes, over 1,280 inputs, come out exact."""
    k = 1280
    w = np.full((16, k), -128, np.int8)
    for value in (-128, 127):
        x = np.full((4, k), value, np.int8)
        np.testing.assert_array_equal(_gemm(x, w), _reference(x, w))


def test_every_kernel_in_a_subprocess(tflite_models, tmp_path):
    """Each kernel this CPU can run, forced in a fresh process, gives LiteRT's bits."""
    from llvmlite import binding

    from edgefleet.litert_ref import infer
    from edgefleet.testmodels import parity_inputs
    from edgefleet.tflite_import import import_tflite

    cpu = binding.get_host_cpu_features().flatten()
    runnable = [k for k, f in (("vnni", "+avx512vnni"), ("avx512", "+avx512bw"), ("avx2", "+avx2")) if f in cpu]
    assert simd_gemm.KERNEL == runnable[0]
    code = ("import sys, numpy as np\n"
            "from edgefleet import simd_gemm\n"
            "from edgefleet.engine import Int8Engine\n"
            "from edgefleet.tflite_import import import_tflite\n"
            "assert simd_gemm.KERNEL == sys.argv[4], simd_gemm.KERNEL\n"
            "eng = Int8Engine(import_tflite(open(sys.argv[1], 'rb').read()), backend='simd')\n"
            "np.save(sys.argv[3], eng.infer(np.load(sys.argv[2])))\n")
    for kernel in runnable:
        env = {**os.environ, "EDGEFLEET_SIMD_KERNEL": kernel}
        for name in ("ae32_pc", "narrow_relu6", "mlperf_pt"):
            tfl = tflite_models[name]
            (tmp_path / "m.tflite").write_bytes(tfl)
            x = parity_inputs(3_001, import_tflite(tfl).n_inputs, seed=11)
            np.save(tmp_path / "x.npy", x)
            subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.tflite"), str(tmp_path / "x.npy"),
                            str(tmp_path / "y.npy"), kernel], check=True, env=env, timeout=300)
            np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), infer(tfl, x), err_msg=f"{name} {kernel}")


def test_kernels_compile_without_a_cache_location():
    """Where numba can find no cache directory (code without a file, read-only installs) the
    kernels compile uncached instead of failing at import."""
    from edgefleet.requant_kernels import compile_kernel

    ns: dict = {}
    exec("def twice(a):\n    return a * 2\n", ns)  # no source file: numba has nowhere to cache it
    assert compile_kernel(ns["twice"])(21) == 42
