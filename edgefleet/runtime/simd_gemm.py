"""Exact int8 matrix products on the CPU's integer dot-product instructions, through numba.

numpy has no integer GEMM, and a float BLAS matmul does one multiply-add per
float lane per instruction. x86 has integer instructions that do more, exactly:
- `vpdpbusd` (AVX512-VNNI): 4 unsigned x signed byte products summed into each
  int32 lane, 64 multiply-adds per instruction. Activations go in as `x + 128`
  (unsigned), and the engine folds `128 * sum(W)` into the bias, as XNNPACK does.
- `pmaddwd` (AVX-512BW, AVX2): 2 int16 products summed into each int32 lane
  (LLVM fuses the accumulate into `vpdpwssd` where VNNI exists).
Neither saturates here: a group sums to at most 4 * 255 * 128.

The kernel is a register-tiled GEMM written in Python: 4 rows x LANES outputs of
int32 accumulators stay in vector registers while the inner loop walks the input
groups. numba has no vector type, so this module declares one (`VecI32`) and
the intrinsics that emit the LLVM IR: zero, "accumulate one input group of one
row against LANES outputs' weight groups", and store.

`KERNEL` is the best the CPU has ("vnni", "avx512", "avx2") or "" without numba
or AVX2, in which case `AVAILABLE` is False and the engine uses float BLAS.
`EDGEFLEET_SIMD_KERNEL=avx512|avx2|none` asks for less (the tests run every
kernel this machine can run this way). `REASON` says why the kernel is off.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

ROWS = 4  # rows per register tile; inputs are padded to a multiple of this
KERNELS = ("vnni", "avx512", "avx2")


def _kernel() -> tuple[str, str]:
    """(the kernel to use or "", why none is used)."""
    asked = os.environ.get("EDGEFLEET_SIMD_KERNEL", "").strip().lower()
    if asked == "none":
        return "", "EDGEFLEET_SIMD_KERNEL=none"
    if asked and asked not in KERNELS:
        warnings.warn(f"EDGEFLEET_SIMD_KERNEL={asked!r} is not one of {', '.join(KERNELS)}, none: "
                      "using the best kernel this CPU has", stacklevel=2)
        asked = ""
    try:
        from llvmlite import binding
        from numba import config  # the settings numba compiles with: environment and .numba_config.yaml
        cpu = set(binding.get_host_cpu_features().flatten().split(","))
    except Exception as exc:  # pragma: no cover - numba missing or unusable (e.g. numpy too new)
        return "", f"numba is not usable here ({type(exc).__name__}: {exc})"
    if config.DISABLE_JIT:
        return "", "NUMBA_DISABLE_JIT is set"
    if (config.CPU_NAME or "host") != "host" or config.CPU_FEATURES:
        # numba then compiles for a named CPU, where LLVM may not select the host's intrinsics
        return "", "NUMBA_CPU_NAME / NUMBA_CPU_FEATURES ask numba to compile for a named CPU"
    have = [k for k, need in zip(KERNELS, (("+avx512vnni", "+avx512bw"), ("+avx512bw",), ("+avx2",)))
            if all(f in cpu for f in need)]
    if asked:
        return (asked, "") if asked in have else ("", f"this CPU cannot run the {asked} kernel")
    return (have[0], "") if have else ("", "this CPU has no AVX2")


KERNEL, REASON = _kernel()
AVAILABLE = bool(KERNEL)
LANES = 8 if KERNEL == "avx2" else 16  # int32 accumulators per vector
GROUP = 4 if KERNEL == "vnni" else 2  # inputs per product group
ACT_DTYPE = np.uint8 if KERNEL == "vnni" else np.int16  # how activations are stored
ACT_OFFSET = 128 if KERNEL == "vnni" else 0  # stored activation = int8 value + ACT_OFFSET
# numba's disk cache is keyed by CPU and signature, not by KERNEL: a forced kernel compiles afresh
_CACHE = "EDGEFLEET_SIMD_KERNEL" not in os.environ


def pad_to(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def group_weights(weights: np.ndarray, k_padded: int, m_padded: int) -> np.ndarray:
    """int8 weights [m, k] -> [k/GROUP][m][GROUP] (zero padded), the order the kernel reads:
    for one group of inputs, the weight groups of LANES consecutive outputs. int8 for the
    VNNI kernel, int16 for pmaddwd."""
    m, k = weights.shape
    w = np.zeros((m_padded, k_padded), np.int16 if GROUP == 2 else np.int8)
    w[:m, :k] = weights
    return np.ascontiguousarray(w.T.reshape(k_padded // GROUP, GROUP, m_padded).transpose(0, 2, 1)).reshape(-1)


if AVAILABLE:
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic, models, register_model

    from edgefleet.runtime.requant_kernels import compile_kernel, requant_exact, requant_fp32_fast

    _I32 = ir.IntType(32)
    _V_I32 = ir.VectorType(_I32, LANES)
    _V_GROUPS = ir.VectorType(ir.IntType(8 if GROUP == 4 else 16), LANES * GROUP)
    _DOT = {"vnni": "llvm.x86.avx512.vpdpbusd.512", "avx512": "llvm.x86.avx512.pmaddw.d.512",
            "avx2": "llvm.x86.avx2.pmadd.wd"}[KERNEL]

    class VecI32(types.Type):
        """LANES int32 values in one vector register."""

        def __init__(self) -> None:
            super().__init__(name=f"VecI32x{LANES}")

    vec_i32 = VecI32()

    @register_model(VecI32)
    class _VecI32Model(models.PrimitiveModel):
        def __init__(self, dmm, fe_type):
            super().__init__(dmm, fe_type, _V_I32)

    def _element_ptr(context, builder, array_type, array, index, pointee):
        data = context.make_array(array_type)(context, builder, array).data
        return builder.bitcast(builder.gep(data, [index]), pointee.as_pointer())

    def _declare(builder, name: str, ret, args):
        return builder.module.globals.get(name) or ir.Function(builder.module, ir.FunctionType(ret, args), name)

    @intrinsic
    def vec_zero(typingctx):
        def codegen(context, builder, sig, args):
            return ir.Constant(_V_I32, [0] * LANES)
        return vec_i32(), codegen

    @intrinsic
    def vec_dot_group(typingctx, acc, x, x_at, w, w_at):
        """acc + the products of the input group x[x_at:x_at+GROUP] (the same in every lane)
        with w[w_at:w_at+LANES*GROUP], summed per lane."""
        def codegen(context, builder, sig, args):
            acc_v, x_arr, x_i, w_arr, w_i = args
            group = builder.load(_element_ptr(context, builder, sig.args[1], x_arr, x_i, _I32), align=1)
            splat = builder.insert_element(ir.Constant(_V_I32, None), group, ir.Constant(_I32, 0))
            splat = builder.shuffle_vector(splat, ir.Constant(_V_I32, None), ir.Constant(_V_I32, [0] * LANES))
            xv = builder.bitcast(splat, _V_GROUPS)
            wv = builder.load(_element_ptr(context, builder, sig.args[3], w_arr, w_i, _V_GROUPS), align=1)
            if GROUP == 4:  # vpdpbusd(acc, unsigned bytes, signed bytes)
                return builder.call(_declare(builder, _DOT, _V_I32, [_V_I32, _V_GROUPS, _V_GROUPS]), [acc_v, xv, wv])
            return builder.add(acc_v, builder.call(_declare(builder, _DOT, _V_I32, [_V_GROUPS, _V_GROUPS]), [xv, wv]))
        return vec_i32(acc, x, x_at, w, w_at), codegen

    @intrinsic
    def vec_store(typingctx, v, out, at):
        def codegen(context, builder, sig, args):
            v_, out_arr, i = args
            builder.store(v_, _element_ptr(context, builder, sig.args[1], out_arr, i, _V_I32), align=4)
            return context.get_dummy_value()
        return types.none(v, out, at), codegen

    def gemm(x, k, w, m, out):
        """out[r, o] = sum_i x[r, i] * W[o, i], exactly, for every row.

        x: ACT_DTYPE, rows of k values (k a multiple of GROUP) flattened, row count a multiple
        of ROWS; w: `group_weights(W, k, m)`; out: int32, rows of m values (m a multiple of LANES).
        No bounds checks run in here: the shapes are checked once, up front.
        """
        n = x.size // k
        if n % ROWS or x.size != n * k or k % GROUP or m % LANES or w.size < k * m or out.size < n * m:
            raise ValueError("gemm: x must hold a multiple of ROWS rows of k values, k a multiple of "
                             "GROUP, m of LANES, w k*m weights and out n*m values")
        for r in range(0, n, 4):
            x0, x1, x2, x3 = r * k, (r + 1) * k, (r + 2) * k, (r + 3) * k
            for ob in range(0, m, LANES):
                a0, a1, a2, a3 = vec_zero(), vec_zero(), vec_zero(), vec_zero()
                for i in range(0, k, GROUP):
                    wo = i * m + GROUP * ob
                    a0 = vec_dot_group(a0, x, x0 + i, w, wo)
                    a1 = vec_dot_group(a1, x, x1 + i, w, wo)
                    a2 = vec_dot_group(a2, x, x2 + i, w, wo)
                    a3 = vec_dot_group(a3, x, x3 + i, w, wo)
                vec_store(a0, out, r * m + ob)
                vec_store(a1, out, (r + 1) * m + ob)
                vec_store(a2, out, (r + 2) * m + ob)
                vec_store(a3, out, (r + 3) * m + ob)

    def _dependency_key() -> int:
        """A hash of requant_kernels.py. numba keys a cached function on its own file's time
        stamp, bytecode and closure values, not on the functions it inlines from other files:
        `forward` holds this in its closure so an edited requant kernel is never served from
        a stale cache."""
        import edgefleet.runtime.requant_kernels as dep

        return int.from_bytes(hashlib.sha256(Path(dep.__file__).read_bytes()).digest()[:8], "little")

    def _make_forward(dependency_key: int):
        """`forward` as a closure over `dependency_key` (see `_dependency_key`)."""
        def forward(x, out, k0, m_pads, w_all, w_off, t_off, fast, bias32, scale, bias, mult, total,
                    int_mode, lo, hi, zp):
            """A whole int8 model in one call (one dispatch, so small batches stay cheap).

            x: int8 [n, n_in]; out: int8 [n, n_out]. Layer l: GEMM on `w_all[w_off[l]:w_off[l+1]]`
            (`group_weights` order) into m_pads[l] int32 columns, then requantization to the
            stored activation type with the per-output constants `[t_off[l]:t_off[l+1]]` (fast
            fp32 kernel where fast[l]); zp already includes ACT_OFFSET, bias the folded offsets.
            """
            dependency_key  # noqa: B018 - in the closure, so in the cache key (see _dependency_key)
            n, n_in = x.shape
            rows = -(-n // ROWS) * ROWS
            q = np.zeros(rows * k0, ACT_DTYPE)
            for r in range(n):  # 1-D row views: these loops vectorize, 2-D slice assignment does not
                src, dst = x[r], q[r * k0:r * k0 + n_in]
                for i in range(n_in):
                    dst[i] = src[i] + ACT_OFFSET
            k = k0
            for layer in range(m_pads.size):
                m = m_pads[layer]
                acc = np.empty(rows * m, np.int32)
                gemm(q, k, w_all[w_off[layer]:w_off[layer + 1]], m, acc)
                q = np.empty(rows * m, ACT_DTYPE)
                t0, t1 = t_off[layer], t_off[layer + 1]
                if fast[layer]:
                    requant_fp32_fast(acc, bias32[t0:t1], scale[t0:t1], lo[layer], hi[layer], zp[layer], q)
                else:
                    requant_exact(acc, bias[t0:t1], scale[t0:t1], mult[t0:t1], total[t0:t1], int_mode,
                                  lo[layer], hi[layer], zp[layer], q)
                k = m
            n_out = out.shape[1]
            for r in range(n):
                src, dst = q[r * k:r * k + n_out], out[r]
                for o in range(n_out):
                    dst[o] = src[o] - ACT_OFFSET
        return forward

    gemm = compile_kernel(gemm, cache=_CACHE)
    forward = compile_kernel(_make_forward(_dependency_key()), cache=_CACHE)
