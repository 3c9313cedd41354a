"""The integer GEMM under the engine's default backend: exact on every shape and extreme
value, with every kernel this CPU can run (VNNI bytes, AVX-512BW and AVX2 int16 pairs)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgefleet.runtime import simd_gemm

pytestmark = pytest.mark.skipif(not simd_gemm.AVAILABLE, reason=f"no simd kernel: {simd_gemm.REASON}")


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

    from edgefleet.toolchain.litert_ref import infer
    from edgefleet.toolchain.testmodels import parity_inputs
    from edgefleet.toolchain.tflite_import import import_tflite

    cpu = binding.get_host_cpu_features().flatten()
    runnable = [k for k, f in (("vnni", "+avx512vnni"), ("avx512", "+avx512bw"), ("avx2", "+avx2")) if f in cpu]
    assert simd_gemm.KERNEL == runnable[0]
    code = ("import sys, numpy as np\n"
            "from edgefleet.runtime import simd_gemm\n"
            "from edgefleet.runtime.engine import Int8Engine\n"
            "from edgefleet.toolchain.tflite_import import import_tflite\n"
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
    from edgefleet.runtime.requant_kernels import compile_kernel

    ns: dict = {}
    exec("def twice(a):\n    return a * 2\n", ns)  # no source file: numba has nowhere to cache it
    assert compile_kernel(ns["twice"])(21) == 42


CACHE_PROBE = """
import json, sys
import numpy as np
from edgefleet.runtime.artifact import Artifact
from edgefleet.runtime.engine import Int8Engine
from edgefleet.runtime import simd_gemm
art = Artifact.from_bytes(open(sys.argv[1], "rb").read())
x = np.random.default_rng(0).integers(-128, 128, (64, art.n_inputs)).astype(np.int8)
y = Int8Engine(art, backend="simd").infer(x)
st = simd_gemm.forward.stats
assert simd_gemm.__file__.startswith(sys.argv[2]), simd_gemm.__file__
print(json.dumps({"hits": sum(st.cache_hits.values()), "misses": sum(st.cache_misses.values()),
                  "y": y.tolist()}))
"""


def test_cached_forward_recompiles_when_the_requant_kernels_change(tmp_path):
    """numba's disk cache keys `forward` on its own file only; the requantization kernels it
    inlines live in another file. An edit there must not be served from a stale cache."""
    import shutil

    import edgefleet

    src = tmp_path / "src"
    shutil.copytree(os.path.dirname(edgefleet.__file__), src / "edgefleet",
                    ignore=shutil.ignore_patterns("__pycache__"))
    model = src / "edgefleet" / "models" / "fleet-default" / "model.efm"
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEFLEET_SIMD_KERNEL", "EDGEFLEET_ENGINE")}
    env.update(PYTHONPATH=str(src), NUMBA_CACHE_DIR=str(tmp_path / "cache"))

    def probe() -> dict:
        out = subprocess.run([sys.executable, "-c", CACHE_PROBE, str(model), str(src)], env=env, check=True, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300).stdout  # cwd: not the checkout
        return json.loads(out.strip().splitlines()[-1])

    first, second = probe(), probe()
    assert first["misses"] >= 1 and second == {**first, "hits": second["hits"], "misses": 0}
    assert second["hits"] >= 1
    with open(src / "edgefleet" / "runtime" / "requant_kernels.py", "a") as f:
        f.write("\n# an edit: the cached forward must not be reused\n")
    third = probe()
    assert third["misses"] >= 1 and third["y"] == first["y"]


def test_gemm_refuses_shapes_it_would_read_past():
    """The kernel runs without bounds checks, so its shape contract is checked at entry."""
    k, m = simd_gemm.GROUP * 3, simd_gemm.LANES
    w = simd_gemm.group_weights(np.ones((m, k), np.int8), k, m)
    out = np.empty(simd_gemm.ROWS * m, np.int32)
    with pytest.raises(ValueError, match="multiple of ROWS"):
        simd_gemm.gemm(np.zeros((simd_gemm.ROWS - 1) * k, simd_gemm.ACT_DTYPE), k, w, m, out)
    with pytest.raises(ValueError, match="multiple of ROWS"):
        simd_gemm.gemm(np.zeros(simd_gemm.ROWS * k, simd_gemm.ACT_DTYPE), k, w[:-1], m, out)


SWITCH_PROBE = """
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from edgefleet.runtime import simd_gemm
    from edgefleet.runtime.engine import Int8Engine, available_backends
from edgefleet.runtime.artifact import load_artifact
from edgefleet.errors import ArtifactError
import numpy as np
art = load_artifact("MODEL")
try:
    Int8Engine(art, backend="simd"); refused = ""
except ArtifactError as exc:
    refused = str(exc)
eng = Int8Engine(art)
y = eng.infer(np.zeros((3, art.n_inputs), np.int8))
print(json.dumps({"kernel": simd_gemm.KERNEL, "reason": simd_gemm.REASON, "backend": eng.backend,
                  "refused": refused, "warnings": [str(w.message) for w in caught], "rows": len(y)}))
"""


@pytest.mark.parametrize("env, yaml, backend, says", [
    ({"NUMBA_CPU_NAME": "generic"}, "", "blas", "compile for a named CPU"),
    ({"NUMBA_CPU_FEATURES": "+sse2"}, "", "blas", "compile for a named CPU"),
    ({}, "cpu_name: generic\n", "blas", "compile for a named CPU"),  # numba's config file
    ({"EDGEFLEET_SIMD_KERNEL": "none"}, "", "blas", "EDGEFLEET_SIMD_KERNEL=none"),
    ({"NUMBA_DISABLE_JIT": "1"}, "", "numpy", "NUMBA_DISABLE_JIT is set"),
    ({"EDGEFLEET_SIMD_KERNEL": "avx3"}, "", "simd", "is not one of vnni, avx512, avx2, none"),
])
def test_simd_switches_off_cleanly(tmp_path, env, yaml, backend, says):
    """Where numba is configured to compile for a named CPU the host's vector intrinsics may not
    be selected (LLVM would abort the process): the engine falls back to blas and says why; with
    the JIT disabled, to numpy. A misspelt kernel name warns instead of passing silently."""
    import edgefleet

    model = os.path.join(os.path.dirname(edgefleet.__file__), "models", "fleet-default", "model.efm")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFLEET_", "NUMBA_"))}
    if yaml:
        (tmp_path / ".numba_config.yaml").write_text(yaml)
    out = subprocess.run([sys.executable, "-c", SWITCH_PROBE.replace("MODEL", model)], env={**base, **env},
                         cwd=tmp_path, check=True, capture_output=True, text=True, timeout=300).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["rows"] == 3 and got["backend"] == backend
    if backend == "simd":
        assert got["kernel"] == simd_gemm.KERNEL and not got["refused"]
        assert any(says in w for w in got["warnings"]), got["warnings"]
    else:
        assert got["kernel"] == "" and says in got["reason"]
        assert "'simd' is not available here" in got["refused"] and says in got["refused"]
