"""Fused requantization kernels for the int8 engine, compiled by numba.

After a layer's exact dot products (the simd backend's int32 GEMM, or the blas
backend's float matmul, see engine.py) what is left is bias, scale, clamp,
rounding and zero point. In numpy that is five passes over the layer's output
and costs more than the matmul itself on small models. These kernels do it in
one pass, the way XNNPACK and the TFLite reference kernels do it per output
value, and write the next layer's input type (float32, int16, uint8 or int8).

numba is optional: `AVAILABLE` is False when it cannot be imported or used, and
the engine then runs its numpy path (same results, slower). Kernels are cached
on disk (`cache=True`), so only the first process on a machine pays the compile.
"""

from __future__ import annotations

import numpy as np

try:  # pragma: no cover - exercised by which backend the tests see
    from numba import config, njit
except Exception:  # pragma: no cover - not installed, or installed but unusable (numpy too new)
    njit = None

# NUMBA_DISABLE_JIT would leave these as Python loops: the numpy backend is faster then
AVAILABLE = njit is not None and not config.DISABLE_JIT
REASON = ("" if AVAILABLE else "NUMBA_DISABLE_JIT is set" if njit is not None
          else "numba is not installed or not usable (pip install numba)")


def requant_fp32_fast(acc, bias, scale, lo, hi, zp, out):
    """LiteRT default (XNNPACK) requantization when `acc + bias` rounds once in float32.

    acc: a layer's exact integer dot products (float32, or int32 below 2^24), rows
    flattened; out: same length, float32, int16 or uint8 (next layer's input) or int8. bias, scale:
    per-output float32 constants tiled over whole rows (see `tile_rows`), so the
    inner loop is long and vectorizes. `rint(clamp((acc + bias) * scale)) + zp`.
    """
    t = bias.size
    for s in range(0, acc.size, t):
        a, d = acc[s:s + t], out[s:s + t]
        for j in range(a.size):
            v = (np.float32(a[j]) + bias[j]) * scale[j]
            v = min(max(v, lo), hi)
            d[j] = np.rint(v) + zp


def requant_exact(acc, bias, scale, mult, total, int_mode, lo, hi, zp, out):
    """Both requantization modes with the accumulator as an exact int64 (arguments as above,
    bias int64, mult and total int64, all tiled).

    fp32 mode: `rint(clamp(float32(acc) * scale))`, the int32 -> float32 conversion
    rounding to nearest even as XNNPACK's does. int mode (TFLite reference, single
    rounding): `(acc * M + 2^(t-1) - [acc*M < 0]) >> t`, nearest with ties away from
    zero, wrapped to int32 like `static_cast`.
    """
    t = bias.size
    for s in range(0, acc.size, t):
        a, d = acc[s:s + t], out[s:s + t]
        for j in range(a.size):
            q = np.int64(a[j]) + bias[j]
            if int_mode:
                p = q * mult[j]
                q = (p + (np.int64(1) << (total[j] - 1)) - np.int64(p < 0)) >> total[j]
                q = ((q + 2147483648) & 0xFFFFFFFF) - 2147483648
                v = np.float32(min(max(q, np.int64(lo)), np.int64(hi)))
            else:
                v = np.rint(min(max(np.float32(q) * scale[j], lo), hi))
            d[j] = v + zp


def tile_rows(per_output: np.ndarray, target: int = 1024) -> np.ndarray:
    """Per-output constants repeated over whole rows, about `target` values long."""
    return np.tile(per_output, max(1, target // per_output.size))


def compile_kernel(fn, cache: bool = True):
    """`fn` compiled by numba (no bounds checks, GIL released), cached on disk when numba can
    find a writable cache directory (set NUMBA_CACHE_DIR in read-only installs); otherwise
    compiled afresh in each process, which costs about a second at first use."""
    try:
        return njit(cache=cache, nogil=True, boundscheck=False)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(cache=False, nogil=True, boundscheck=False)(fn)


if AVAILABLE:
    requant_fp32_fast = compile_kernel(requant_fp32_fast)
    requant_exact = compile_kernel(requant_exact)
