"""Exact integer matrix products on the CPU's int16 multiply-add instruction, through numba.

numpy has no integer GEMM, and a float BLAS matmul tops out at one multiply-add
per float lane per instruction. x86's `pmaddwd` multiplies 16-bit pairs and adds
each pair into a 32-bit lane: twice the float rate, and with AVX512-VNNI LLVM
fuses the accumulate too (`vpdpwssd`). int8 activations (as int16) times int8
weights fit it exactly: a pair sums to at most 2 * 128 * 127.

The kernel is a register-tiled GEMM written in Python: 4 rows x LANES outputs
of int32 accumulators stay in vector registers while the inner loop walks the
input pairs. numba has no vector type, so this module declares one (`VecI32`)
and three intrinsics that emit the LLVM IR: a zero vector, "accumulate one
input pair of one row against LANES output weight pairs", and a store.

`LANES` is 16 with AVX-512BW, 8 with AVX2, 0 without either (or without numba),
in which case `AVAILABLE` is False and the engine uses its float BLAS path.
"""

from __future__ import annotations

import os

import numpy as np

ROWS = 4  # rows per register tile; inputs are padded to a multiple of this


def _lanes() -> int:
    """16 with AVX-512BW, 8 with AVX2, else 0; `EDGEFLEET_INT16_LANES=8|0` asks for less
    (the tests run the AVX2 kernel on AVX-512 machines this way)."""
    try:
        from llvmlite import binding
    except ImportError:  # pragma: no cover - numba (and llvmlite) not installed
        return 0
    features = set(binding.get_host_cpu_features().flatten().split(","))
    lanes = 16 if "+avx512bw" in features else 8 if "+avx2" in features else 0
    cap = os.environ.get("EDGEFLEET_INT16_LANES")
    return min(lanes, int(cap)) if cap in ("0", "8", "16") else lanes


LANES = _lanes()
AVAILABLE = LANES > 0
# numba's disk cache is keyed by CPU and signature, not by LANES: a forced width compiles afresh
_CACHE = "EDGEFLEET_INT16_LANES" not in os.environ


def pad_to(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pair_weights(weights: np.ndarray, k_padded: int, m_padded: int) -> np.ndarray:
    """int8 weights [m, k] -> int16 laid out [k/2][m][2] (zero padded), the order the kernel
    reads: for one pair of inputs, the weight pairs of LANES consecutive outputs."""
    m, k = weights.shape
    w = np.zeros((m_padded, k_padded), np.int16)
    w[:m, :k] = weights
    return np.ascontiguousarray(w.T.reshape(k_padded // 2, 2, m_padded).transpose(0, 2, 1)).reshape(-1)


if AVAILABLE:
    from llvmlite import ir
    from numba import njit, types
    from numba.extending import intrinsic, models, register_model

    _I32 = ir.IntType(32)
    _V_I32 = ir.VectorType(_I32, LANES)
    _V_I16 = ir.VectorType(ir.IntType(16), 2 * LANES)
    _PMADD = ("llvm.x86.avx512.pmaddw.d.512" if LANES == 16 else "llvm.x86.avx2.pmadd.wd")

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

    @intrinsic
    def vec_zero(typingctx):
        def codegen(context, builder, sig, args):
            return ir.Constant(_V_I32, [0] * LANES)
        return vec_i32(), codegen

    @intrinsic
    def vec_madd_pair(typingctx, acc, x, x_at, w, w_at):
        """acc + pmaddwd(the int16 pair x[x_at:x_at+2] in every lane, w[w_at:w_at+2*LANES])."""
        def codegen(context, builder, sig, args):
            acc_v, x_arr, x_i, w_arr, w_i = args
            pair = builder.load(_element_ptr(context, builder, sig.args[1], x_arr, x_i, _I32), align=2)
            splat = builder.insert_element(ir.Constant(_V_I32, None), pair, ir.Constant(_I32, 0))
            splat = builder.shuffle_vector(splat, ir.Constant(_V_I32, None), ir.Constant(_V_I32, [0] * LANES))
            wv = builder.load(_element_ptr(context, builder, sig.args[3], w_arr, w_i, _V_I16), align=2)
            fn = builder.module.globals.get(_PMADD) or ir.Function(
                builder.module, ir.FunctionType(_V_I32, [_V_I16, _V_I16]), _PMADD)
            return builder.add(acc_v, builder.call(fn, [builder.bitcast(splat, _V_I16), wv]))
        return vec_i32(acc, x, x_at, w, w_at), codegen

    @intrinsic
    def vec_store(typingctx, v, out, at):
        def codegen(context, builder, sig, args):
            v_, out_arr, i = args
            builder.store(v_, _element_ptr(context, builder, sig.args[1], out_arr, i, _V_I32), align=4)
            return context.get_dummy_value()
        return types.none(v, out, at), codegen

    @njit(cache=_CACHE, nogil=True, boundscheck=False)
    def gemm(x, k, w, m, out):
        """out[r, o] = sum_i x[r, i] * W[o, i], exactly, for every row.

        x: int16, rows of k values (k even) flattened, row count a multiple of ROWS;
        w: `pair_weights(W, k, m)`; out: int32, rows of m values (m a multiple of LANES).
        """
        n = x.size // k
        for r in range(0, n, 4):
            x0, x1, x2, x3 = r * k, (r + 1) * k, (r + 2) * k, (r + 3) * k
            for ob in range(0, m, LANES):
                a0, a1, a2, a3 = vec_zero(), vec_zero(), vec_zero(), vec_zero()
                for i in range(0, k, 2):
                    wo = (i * m + 2 * ob)
                    a0 = vec_madd_pair(a0, x, x0 + i, w, wo)
                    a1 = vec_madd_pair(a1, x, x1 + i, w, wo)
                    a2 = vec_madd_pair(a2, x, x2 + i, w, wo)
                    a3 = vec_madd_pair(a3, x, x3 + i, w, wo)
                vec_store(a0, out, r * m + ob)
                vec_store(a1, out, (r + 1) * m + ob)
                vec_store(a2, out, (r + 2) * m + ob)
                vec_store(a3, out, (r + 3) * m + ob)

    from edgefleet.requant_kernels import requant_exact, requant_fp32_fast

    @njit(cache=_CACHE, nogil=True, boundscheck=False)
    def forward(x, out, k0, m_pads, w_all, w_off, t_off, fast, bias32, scale, bias, mult, total,
                int_mode, lo, hi, zp):
        """A whole int8 model in one call (one dispatch, so small batches stay cheap).

        x: int8 [n, n_in]; out: int8 [n, n_out]. Layer l: GEMM on `w_all[w_off[l]:w_off[l+1]]`
        (`pair_weights` order) into m_pads[l] int32 columns, then requantization to int16 with
        the per-output constants `[t_off[l]:t_off[l+1]]` (fast fp32 kernel where fast[l]).
        """
        n, n_in = x.shape
        rows = -(-n // 4) * 4
        q = np.zeros(rows * k0, np.int16)
        for r in range(n):  # 1-D row views: these loops vectorize, 2-D slice assignment does not
            src, dst = x[r], q[r * k0:r * k0 + n_in]
            for i in range(n_in):
                dst[i] = src[i]
        k = k0
        for layer in range(m_pads.size):
            m = m_pads[layer]
            acc = np.empty(rows * m, np.int32)
            gemm(q, k, w_all[w_off[layer]:w_off[layer + 1]], m, acc)
            q = np.empty(rows * m, np.int16)
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
                dst[o] = src[o]
