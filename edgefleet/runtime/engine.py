"""The int8 inference engine over an artifact, vectorised over batches.

Bit-identical to LiteRT's int8 FULLY_CONNECTED kernels, with three backends
that give the same bits (the parity tests run each):
- `simd`: the dot products on the CPU's integer dot-product instructions
  (`simd_gemm`: VNNI bytes, or int16 pairs on AVX-512BW / AVX2), then one compiled
  requantization pass per layer. The default wherever numba and AVX2 are.
- `blas`: the dot products as a float BLAS matmul, exact here because every
  product and partial sum is an integer below 2^24 (float32) or 2^53 (float64),
  chosen per layer from its width; then the same compiled requantization.
- `numpy`: the BLAS matmul and requantization in plain numpy; no compiler needed.
"""

from __future__ import annotations

import os

import numpy as np

from edgefleet.runtime import requant_kernels, simd_gemm
from edgefleet.runtime.artifact import REQUANT_FP32, Artifact, Layer
from edgefleet.errors import ArtifactError, FeatureError
from edgefleet.runtime.features import log_band_power, plan, quantize, standardize
from edgefleet.runtime.quant import multiply_by_quantized_multiplier

FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53
CHUNK_ROWS = 2048
BACKENDS = ("simd", "blas", "numpy")


def available_backends() -> tuple[str, ...]:
    """The backends this machine can run, fastest first."""
    have = {"simd": simd_gemm.AVAILABLE and requant_kernels.AVAILABLE,
            "blas": requant_kernels.AVAILABLE, "numpy": True}
    return tuple(b for b in BACKENDS if have[b])


def default_backend() -> str:
    """The fastest available backend; `EDGEFLEET_ENGINE=simd|blas|numpy` chooses one
    (all give the same results: a way to rule the engine out when debugging)."""
    forced = os.environ.get("EDGEFLEET_ENGINE", "").strip().lower()
    if forced:
        _check_backend(forced, "EDGEFLEET_ENGINE")
        return forced
    return available_backends()[0]


def _check_backend(name: str, what: str) -> None:
    if name not in BACKENDS:
        raise ArtifactError(f"{what} must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name not in available_backends():
        why = simd_gemm.REASON if name == "simd" and not simd_gemm.AVAILABLE else requant_kernels.REASON
        raise ArtifactError(f"engine backend {name!r} is not available here ({why}); "
                            f"available: {', '.join(available_backends())}")


class _PreparedLayer:
    """Per-layer constants computed once (TFLM's Prepare stage). `__call__` is the numpy
    backend's Eval, `fused` the blas backend's; `prepare_simd` adds the simd backend's constants.

    The dot product runs as a float BLAS matmul, exact because every partial sum
    is an integer below the dtype's mantissa (checked here). Requantization:
    - fp32 mode (LiteRT default / XNNPACK): `rint(clamp(float32(acc) * scale))`;
    - int mode (LiteRT reference): `(acc*M + 2^(t-1) - [acc*M < 0]) >> t` (nearest,
      ties away from zero), done in float64 when `|acc|*M + 2^(t-1) < 2^53` (then
      `trunc(acc * M*2^-t +- 0.5)` is exact), else in int64.
    """

    def __init__(self, layer: Layer, mode: int) -> None:
        self.layer, self.mode = layer, mode
        w = layer.weights.astype(np.int64)
        bias = layer.bias.astype(np.int64) if layer.bias is not None else np.zeros(layer.n_out, np.int64)
        dot_bound = int(np.abs(w).sum(axis=1).max()) * 256  # |x| <= 128 and |x - zp| <= 255
        self.dtype = np.float32 if dot_bound < FLOAT32_EXACT else np.float64
        self.wt = np.ascontiguousarray(layer.weights.T.astype(self.dtype))
        # fold the input zero point into the bias: W(x - zp) + b = Wx + (b - zp * sum(W))
        self.bias = bias - layer.input_zero_point * w.sum(axis=1)
        self.bias_f = self.bias.astype(np.float64)
        self.zp = layer.output_zero_point
        self.lo, self.hi = layer.act_min - self.zp, layer.act_max - self.zp
        self.scale32 = np.broadcast_to(layer.scale.astype(np.float32), (layer.n_out,)).copy()
        mult = np.broadcast_to(layer.multiplier.astype(np.int64), (layer.n_out,))
        total = 31 - np.broadcast_to(layer.shift.astype(np.int64), (layer.n_out,))
        acc_bound = dot_bound + int(np.abs(self.bias).max())
        worst = acc_bound * int(mult.max()) + (1 << int(total.max() - 1))
        # exact in float64, and no int32 wrap to imitate (an artifact's M and shift are not
        # checked against its scale, so a crafted one could ask for |result| >= 2^31)
        self.int_in_float = worst < FLOAT64_EXACT and worst >> int(total.min()) < 1 << 31
        self.scale64 = mult.astype(np.float64) * np.exp2(-total.astype(np.float64))
        self.mult, self.total = mult, total
        self.bias32 = self.bias.astype(np.float32)
        self.fast_fp32 = (mode == REQUANT_FP32 and self.dtype == np.float32
                          and bool((np.abs(self.bias) < FLOAT32_EXACT).all()))
        # the fused kernels' arguments: typed once (one numba specialization) and tiled over rows
        tile = requant_kernels.tile_rows
        self.lo32, self.hi32, self.zp32 = np.float32(self.lo), np.float32(self.hi), np.float32(self.zp)
        self.int_mode = mode != REQUANT_FP32
        self.k_bias32, self.k_scale = tile(self.bias32), tile(self.scale32)
        self.mult64, self.total64 = np.array(mult, np.int64), np.array(total, np.int64)
        self.k_bias, self.k_mult, self.k_total = tile(self.bias), tile(self.mult64), tile(self.total64)
        self.k_pad = self.m_pad = 0  # set by prepare_simd

    def prepare_simd(self, k_pad: int) -> None:
        """Constants for the simd backend: weights in group order; the stored activations'
        offset folded into the bias (sum(W * (x + c)) = sum(W * x) + c * sum(W)); per-output
        constants padded to whole vectors (padding outputs come out as the zero point and
        meet zero weights in the next layer)."""
        n_out = self.layer.n_out
        self.k_pad, self.m_pad = k_pad, simd_gemm.pad_to(n_out, simd_gemm.LANES)
        self.w_groups = simd_gemm.group_weights(self.layer.weights, k_pad, self.m_pad)
        bias = self.bias - simd_gemm.ACT_OFFSET * self.layer.weights.astype(np.int64).sum(axis=1)
        self.simd_fast = (self.mode == REQUANT_FP32 and self.dtype == np.float32
                          and bool((np.abs(bias) < FLOAT32_EXACT).all()))

        def padded(v: np.ndarray, fill) -> np.ndarray:
            out = np.full(self.m_pad, fill, v.dtype)
            out[:n_out] = v
            return requant_kernels.tile_rows(out)
        self.s_bias32, self.s_bias, self.s_scale = padded(bias.astype(np.float32), 0), padded(bias, 0), padded(self.scale32, 0)
        self.s_mult, self.s_total = padded(self.mult64, 0), padded(self.total64, 1)

    def fused(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Same values as `__call__`: the BLAS matmul, then one compiled requantization pass
        (into `out`, e.g. the int8 result, or a new float32 array). Never in place: the
        kernels vectorize only when input and output do not overlap."""
        acc = x.astype(self.dtype, copy=False) @ self.wt
        dst = np.empty(acc.shape, np.float32) if out is None else out
        a, d = acc.reshape(-1), dst.reshape(-1)  # views: both C-contiguous
        if self.fast_fp32:
            requant_kernels.requant_fp32_fast(a, self.k_bias32, self.k_scale, self.lo32, self.hi32, self.zp32, d)
        else:
            requant_kernels.requant_exact(a, self.k_bias, self.k_scale, self.k_mult, self.k_total,
                                          self.int_mode, self.lo32, self.hi32, self.zp32, d)
        return dst

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """int8-valued rows (any real dtype) -> int8-valued rows (float32 or float64 values)."""
        if self.fast_fp32:
            # float32 throughout: the dot is an exact integer below 2^24, and adding the
            # (exactly representable) bias rounds once, like XNNPACK's int32 -> float
            v = x.astype(np.float32, copy=False) @ self.wt
            v += self.bias32
            v *= self.scale32
            np.clip(v, self.lo, self.hi, out=v)
            np.rint(v, out=v)
            v += self.zp
            return v
        acc = (x.astype(self.dtype) @ self.wt).astype(np.float64)
        acc += self.bias_f  # still an exact integer
        if self.mode == REQUANT_FP32:
            v = acc.astype(np.float32)  # the int32 -> float32 conversion, nearest even
            v *= self.scale32
            np.clip(v, self.lo, self.hi, out=v)
            np.rint(v, out=v)
        elif self.int_in_float:
            v = acc
            v *= self.scale64
            v += np.copysign(0.5, v)  # exact: still below 2^53 units of 2^-t
            np.trunc(v, out=v)
            np.clip(v, self.lo, self.hi, out=v)
        else:
            v = multiply_by_quantized_multiplier(acc.astype(np.int64), self.mult, 31 - self.total)
            np.clip(v, self.lo, self.hi, out=v)
        v += self.zp
        return v


class Int8Engine:
    """Runs int8 rows through the artifact's layers."""

    def __init__(self, artifact: Artifact, backend: str | None = None) -> None:
        """`backend`: one of BACKENDS; None picks `default_backend()`."""
        self.artifact = artifact
        self.backend = default_backend() if backend is None else backend
        _check_backend(self.backend, "engine backend")
        self._layers = [_PreparedLayer(layer, artifact.requant_mode) for layer in artifact.layers]
        if self.backend == "simd":
            self._simd_args = self._pack_simd()

    def _pack_simd(self) -> tuple:
        """Every layer's simd-backend constants concatenated: the arguments of `simd_gemm.forward`."""
        k_pad = k0 = simd_gemm.pad_to(self.n_inputs, simd_gemm.GROUP)
        for layer in self._layers:
            layer.prepare_simd(k_pad)
            k_pad = layer.m_pad
        ls = self._layers

        def offsets(sizes) -> np.ndarray:
            return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(layer, name) for layer in ls])

        def per_layer(name: str, add: int = 0) -> np.ndarray:
            return np.array([getattr(layer, name) + add for layer in ls], np.float32)
        return (k0, np.array([layer.m_pad for layer in ls], np.int64), cat("w_groups"),
                offsets([layer.w_groups.size for layer in ls]), offsets([layer.s_bias.size for layer in ls]),
                np.array([layer.simd_fast for layer in ls]), cat("s_bias32"), cat("s_scale"), cat("s_bias"),
                cat("s_mult"), cat("s_total"), ls[0].int_mode,
                per_layer("lo"), per_layer("hi"), per_layer("zp", simd_gemm.ACT_OFFSET))

    @property
    def n_inputs(self) -> int:
        return self.artifact.n_inputs

    @property
    def n_outputs(self) -> int:
        return self.artifact.n_outputs

    def infer(self, x: np.ndarray) -> np.ndarray:
        """int8 [n, n_inputs] (or [n_inputs]) -> int8 [n, n_outputs]."""
        x = np.asarray(x)
        if x.dtype != np.int8:
            raise ArtifactError(f"engine input must be int8, got {x.dtype}")
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ArtifactError(f"engine input must have shape [n, {self.n_inputs}], got {x.shape}")
        out = np.empty((x.shape[0], self.n_outputs), np.int8)
        *hidden, last = self._layers
        for start in range(0, x.shape[0], CHUNK_ROWS):  # chunks stay in cache between layers
            h = x[start:start + CHUNK_ROWS]
            if self.backend == "simd":
                simd_gemm.forward(np.ascontiguousarray(h), out[start:start + CHUNK_ROWS], *self._simd_args)
            elif self.backend == "blas":
                for layer in hidden:
                    h = layer.fused(h)
                last.fused(h, out[start:start + CHUNK_ROWS])
            else:
                for layer in self._layers:
                    h = layer(h)
                out[start:start + CHUNK_ROWS] = h
        return out[0] if single else out

    def score_f32(self, q_in: np.ndarray, q_out: np.ndarray) -> np.ndarray:
        """Rule 1 exactly as the C core computes it (ef_score_mse): float32, summed in feature order.
        The commissioning baseline's thresholds come from these scores, so both sides agree bit for bit."""
        a = self.artifact
        qi = np.asarray(q_in, np.int32)
        qo = np.asarray(q_out, np.int32)
        s_in, s_out = np.float32(a.input_scale), np.float32(a.output_scale)
        acc = np.zeros(qi.shape[:-1], np.float32)
        for i in range(qi.shape[-1]):
            d = s_out * (qo[..., i] - a.output_zero_point).astype(np.float32) - \
                s_in * (qi[..., i] - a.input_zero_point).astype(np.float32)
            acc = acc + d * d
        return (acc / np.float32(qi.shape[-1])).astype(np.float32)

    def errors(self, q_in: np.ndarray, q_out: np.ndarray) -> np.ndarray:
        """Squared error of each input between dequantized output and input, float64 [..., inputs]."""
        a = self.artifact
        x = (np.asarray(q_in, np.float64) - a.input_zero_point) * np.float64(np.float32(a.input_scale))
        y = (np.asarray(q_out, np.float64) - a.output_zero_point) * np.float64(np.float32(a.output_scale))
        return (y - x) ** 2

    def score(self, q_in: np.ndarray, q_out: np.ndarray) -> np.ndarray:
        """Rule 1: mean squared error between dequantized output and dequantized input."""
        return np.mean(self.errors(q_in, q_out), axis=-1).astype(np.float32)


class Detector:
    """A node's whole pipeline: windows -> features -> int8 -> engine -> score vs threshold."""

    def __init__(self, artifact: Artifact) -> None:
        if artifact.features is None:
            raise ArtifactError("this artifact has no feature section: it takes raw int8 inputs only")
        if artifact.scoring is None:
            raise ArtifactError("this artifact has no scoring section (no threshold)")
        self.artifact = artifact
        self.engine = Int8Engine(artifact)

    @property
    def threshold(self) -> float:
        assert self.artifact.scoring is not None
        return float(self.artifact.scoring.threshold)

    def window_samples(self, fs: float) -> int:
        assert self.artifact.features is not None
        return plan(self.artifact.features.params, fs).n_samples

    def features(self, windows: np.ndarray, fs: float) -> np.ndarray:
        """Log band power [n, bands] (the front end, before any standardization)."""
        f = self.artifact.features
        assert f is not None
        return log_band_power(windows, fs, f.params)

    def standardized(self, windows: np.ndarray, fs: float) -> np.ndarray:
        f = self.artifact.features
        assert f is not None
        return standardize(self.features(windows, fs), f.mean, f.inv_std)

    def score_standardized(self, z: np.ndarray) -> np.ndarray:
        """Scores float32 [n] of inputs already standardized by a node's baseline, computed as the
        C node does (`Int8Engine.score_f32`), so thresholds and verdicts match it bit for bit."""
        a = self.artifact
        q = quantize(np.asarray(z, np.float32), a.input_scale, a.input_zero_point)
        return self.engine.score_f32(q, self.engine.infer(q))

    def quantized_inputs(self, windows: np.ndarray, fs: float) -> np.ndarray:
        a = self.artifact
        return quantize(self.standardized(windows, fs), a.input_scale, a.input_zero_point)

    def score_windows(self, windows: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
        """Scores float32 [n] and anomaly flags bool [n] for windows [n, N] sampled at fs."""
        q = self.quantized_inputs(windows, fs)
        scores = self.engine.score(q, self.engine.infer(q))
        return scores, scores > np.float32(self.threshold)


__all__ = ["Int8Engine", "Detector", "FeatureError"]
