"""Small int8 dense models built on the spot, for tests and benchmarks (imports TensorFlow).

Nothing is downloaded: weights are random or trained here, and the
representative set spans the input range so quantization is realistic.
"""

from __future__ import annotations

import numpy as np

from edgefleet.toolchain.training import quantize_keras

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
    from edgefleet.toolchain.tf_loader import import_tensorflow

    tf = import_tensorflow()

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
    from edgefleet.toolchain.tf_loader import import_tensorflow

    tf = import_tensorflow()

    tf.keras.utils.set_random_seed(1)
    inputs = tf.keras.Input(shape=(16,))
    x = tf.keras.layers.Reshape((16, 1))(inputs)
    x = tf.keras.layers.Conv1D(4, 3, padding="same")(x)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(16)(x)
    model = tf.keras.Model(inputs, x)
    rep = np.random.default_rng(1).normal(size=(200, 16)).astype(np.float32)
    return quantize_keras(model, rep)


def with_tie_scales(tflite: bytes, seed: int) -> bytes:
    """`tflite` with every dense layer's weights, bias and scales replaced so that many
    accumulators land exactly half-way between two outputs: small weights, weight scales
    with 4-bit mantissas, activation scales powers of two. Pass a model without ReLU
    (`relu_hidden=False`): ReLU clamps the negative ties away. Real models almost never hit such ties;
    these make the rounding of exact ties (LiteRT: away from zero) testable."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    rng = np.random.default_rng(seed)
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite, 0))
    graph = model.subgraphs[0]
    acts: dict[int, tuple[float, int]] = {}
    for op in graph.operators:
        x_i, w_i, b_i = op.inputs
        for i in (x_i, op.outputs[0]):  # a tensor shared by two layers gets one scale
            acts.setdefault(i, (2.0 ** -int(rng.integers(0, 2)), int(rng.integers(-20, 21))))
        for i in (x_i, op.outputs[0]):
            graph.tensors[i].quantization.scale, graph.tensors[i].quantization.zeroPoint = [acts[i][0]], [acts[i][1]]
        w_t = graph.tensors[w_i]
        n_out, n_in = w_t.shape
        n_scales = len(w_t.quantization.scale)
        w_scale = [float(rng.integers(1, 16) * 2.0 ** -int(rng.integers(4, 7))) for _ in range(n_scales)]
        w_t.quantization.scale, w_t.quantization.zeroPoint = w_scale, [0] * n_scales
        model.buffers[w_t.buffer].data = rng.integers(-15, 16, (n_out, n_in), dtype=np.int8).view(np.uint8).ravel()
        if b_i >= 0:  # the converter drops a bias it could fold into the next linear layer
            b_t = graph.tensors[b_i]
            b_t.quantization.scale = [w * acts[x_i][0] for w in w_scale]
            b_t.quantization.zeroPoint = [0] * n_scales
            model.buffers[b_t.buffer].data = rng.integers(-300, 300, n_out, dtype=np.int32).view(np.uint8)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def make_tie_models() -> dict[str, bytes]:
    """Per-tensor and per-channel models whose requantization meets many exact ties."""
    def tie_model(per_channel: bool, seed: int) -> bytes:
        dense = make_dense_tflite([12, 8, 6], per_channel=per_channel, seed=20 + seed, relu_hidden=False)
        return with_tie_scales(dense, seed=seed)
    return {"tie_pt": tie_model(False, 1), "tie_pc": tie_model(True, 2)}


def tie_cases(mode: str, n_rows: int) -> list[tuple[str, bytes, bytes, np.ndarray, int]]:
    """What the parity suites (Python, host C, QEMU M4) run on the tie models: per model
    (name, .tflite, artifact bytes in requant `mode`, `n_rows` parity inputs, how many negative
    ties those inputs meet in the first layer, for the suite to check it is testing something)."""
    from edgefleet.runtime.artifact import Artifact
    from edgefleet.toolchain.tflite_import import import_tflite

    cases = []
    for name, tfl in make_tie_models().items():
        artifact = import_tflite(tfl, requant=mode).to_bytes()
        art = Artifact.from_bytes(artifact)
        x = parity_inputs(n_rows, art.n_inputs, seed=7)
        cases.append((name, tfl, artifact, x, negative_ties_in_first_layer(art, x)))
    return cases


def negative_ties_in_first_layer(art, x: np.ndarray) -> int:
    """How many first-layer values of `x` sit exactly half-way below zero (acc*M = -(k + 1/2) 2^t)
    with both neighbours inside the clamp range (so the rounding shows in the output)."""
    layer = art.layers[0]
    acc = (x.astype(np.int64) - layer.input_zero_point) @ layer.weights.T.astype(np.int64)
    acc += 0 if layer.bias is None else layer.bias
    prod = acc * np.broadcast_to(layer.multiplier.astype(np.int64), (layer.n_out,))
    total = 31 - np.broadcast_to(layer.shift.astype(np.int64), (layer.n_out,))
    tie = (prod < 0) & (prod % (np.int64(1) << total) == np.int64(1) << (total - 1))
    y = ((prod >> total) + layer.output_zero_point)  # the tie's lower neighbour, before the clamp
    return int((tie & (y >= layer.act_min) & (y < layer.act_max)).sum())
