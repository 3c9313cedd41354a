"""Small int8 dense models built on the spot, for tests and benchmarks (imports TensorFlow).

Nothing is downloaded: weights are random or trained here, and the
representative set spans the input range so quantization is realistic.
"""

from __future__ import annotations

import numpy as np

from edgefleet.training import quantize_keras

# Shapes the parity suites (Python and C) test: name -> (layer sizes, per-channel, last activation).
PARITY_SHAPES: dict[str, tuple[list[int], bool, str | None]] = {
    "ae32_pc": ([32, 16, 8, 16, 32], True, None),
    "ae32_pt": ([32, 16, 8, 16, 32], False, None),
    "mlperf_pt": ([640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640], False, None),  # MLPerf Tiny AD
    "mlperf_pc": ([640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640], True, None),
    "narrow_relu6": ([64, 7, 3], True, "relu6"),
    "single_layer": ([20, 5], False, "relu"),
}


def make_parity_models() -> dict[str, bytes]:
    """Every PARITY_SHAPES model as int8 .tflite bytes (deterministic seeds)."""
    return {name: make_dense_tflite(sizes, per_channel=pc, seed=i, activation_last=last)
            for i, (name, (sizes, pc, last)) in enumerate(PARITY_SHAPES.items())}


def parity_inputs(n_rows: int, n_in: int, seed: int) -> np.ndarray:
    """int8 rows that stress requantization: random rows, all -128 and all 127, random
    saturated extremes, zeros with sparse spikes, narrow normals (the parity suites share them)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(n_rows, n_in), dtype=np.int8)
    x[0], x[1] = -128, 127
    k = n_rows // 100  # the stress blocks take the first 12% of the rows
    x[2:k] = np.where(rng.random((k - 2, n_in)) < 0.5, -128, 127)
    x[k:2 * k] = 0
    x[k:2 * k, rng.integers(0, n_in, k)] = 127
    x[2 * k:12 * k] = np.clip(rng.normal(0, 20, (10 * k, n_in)), -128, 127).astype(np.int8)
    return x


def make_dense_tflite(layer_sizes: list[int], *, per_channel: bool = True, seed: int = 0,
                      relu_hidden: bool = True, activation_last: str | None = None) -> bytes:
    """Random dense stack `layer_sizes[0] -> ... -> layer_sizes[-1]`, int8-quantized."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input(shape=(layer_sizes[0],))
    x = inputs
    n = len(layer_sizes) - 1
    for i, units in enumerate(layer_sizes[1:]):
        act = ("relu" if relu_hidden else None) if i < n - 1 else activation_last
        x = tf.keras.layers.Dense(units, activation=act,
                                  bias_initializer=tf.keras.initializers.RandomNormal(0.0, 0.1))(x)
    model = tf.keras.Model(inputs, x)
    rng = np.random.default_rng(seed)
    rep = rng.normal(0.0, 1.0, size=(500, layer_sizes[0])).astype(np.float32)
    return quantize_keras(model, rep, per_channel=per_channel)


def make_tflite_with_op(op: str = "conv") -> bytes:
    """A model holding an op the int8 engine does not support (for error tests)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    inputs = tf.keras.Input(shape=(16,))
    x = tf.keras.layers.Reshape((16, 1))(inputs)
    x = tf.keras.layers.Conv1D(4, 3, padding="same")(x)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(16)(x)
    model = tf.keras.Model(inputs, x)
    rep = np.random.default_rng(1).normal(size=(200, 16)).astype(np.float32)
    return quantize_keras(model, rep)
