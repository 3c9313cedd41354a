"""TFLite int8 quantization arithmetic, bit for bit (the reference kernels' rounding).

Pure integer math on numpy arrays; the C core (firmware/core/src/ef_layer_ref.c, and
ef_layer_m4.c on Cortex-M4) implements the same three functions.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = m * 2^(shift-31), m in [2^30, 2^31), shift <= 30."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(math.floor(q * (1 << 31) + 0.5))  # TfLiteRound: half away from zero (q > 0)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:  # single-rounding variant saturates
        return (1 << 31) - 1, 30
    return q_fixed, shift


def multiply_by_quantized_multiplier(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """TFLite's single-rounding MultiplyByQuantizedMultiplier (the LiteRT 2.x kernels).

    `(acc * M + 2^(t-1) - [acc*M < 0]) >> t` with `t = 31 - shift`: one rounding to
    nearest, exact ties away from zero (as LiteRT's BUILTIN_REF kernels give, measured),
    then the int32 cast. TFLM's double-rounding variant differs in about 1% of values.
    """
    acc = np.asarray(acc, dtype=np.int64)
    total = 31 - np.asarray(shift, dtype=np.int64)
    prod = acc * np.asarray(mult, dtype=np.int64)
    out = (prod + (np.int64(1) << (total - 1)) - (prod < 0)) >> total
    return ((out + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)  # static_cast<int32_t>


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for an int8 output."""
    def q(x: float) -> int:
        v = float(np.float32(x) / np.float32(scale))  # TFLite divides in float
        return zero_point + int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)

    lo, hi = -128, 127
    if activation == "relu":
        lo = max(lo, q(0.0))
    elif activation == "relu6":
        lo, hi = max(lo, q(0.0)), min(hi, q(6.0))
    elif activation == "relu_n1_to_1":
        lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
    elif activation != "none":
        raise ValueError(f"unsupported activation {activation}")
    return lo, hi
