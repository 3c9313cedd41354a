"""Turn an int8 `.tflite` of FULLY_CONNECTED layers into an edgefleet artifact.

Quantization parameters are read from the flatbuffer itself (LiteRT reports
per-tensor weights as many scales after allocation, FIELD-NOTES), and the
requantization multipliers are derived exactly as TFLite's Prepare does.
"""

from __future__ import annotations

import numpy as np

from edgefleet.runtime.artifact import REQUANT_MODES, Artifact, FeatureSection, Layer, Scoring
from edgefleet.errors import ModelImportError
from edgefleet.runtime.quant import activation_range, quantize_multiplier

_ACTIVATIONS = {0: ("none", 0), 1: ("relu", 1), 2: ("relu_n1_to_1", 3), 3: ("relu6", 2)}


def _schema():
    from ai_edge_litert import schema_py_generated as schema  # ships with LiteRT

    return schema


def _names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def import_tflite(tflite: bytes, *, model_version: int = 1, min_firmware: str = "1.0.0",
                  requant: str = "fp32",
                  features: FeatureSection | None = None, threshold: float | None = None) -> Artifact:
    """Artifact from a full-int8 `.tflite` whose graph is a chain of FULLY_CONNECTED ops.

    `requant` picks whose arithmetic the artifact reproduces bit for bit: "fp32" is
    LiteRT's default resolver (XNNPACK), "int" its BUILTIN_REF reference kernels.
    """
    if requant not in REQUANT_MODES:
        raise ModelImportError(f"requant must be one of {sorted(REQUANT_MODES)}, got {requant!r}")
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    except Exception as exc:  # flatbuffers raises assorted errors on garbage
        raise ModelImportError(f"not a readable .tflite flatbuffer ({type(exc).__name__})") from exc
    if not model.subgraphs:
        raise ModelImportError("the .tflite holds no subgraph")
    if len(model.subgraphs) != 1:
        raise ModelImportError(f"the .tflite holds {len(model.subgraphs)} subgraphs; one is supported")
    graph = model.subgraphs[0]
    op_names = _names(schema.BuiltinOperator)
    type_names = _names(schema.TensorType)
    tensors = graph.tensors

    def tensor_type(i: int) -> str:
        return type_names.get(tensors[i].type, str(tensors[i].type))

    def qparams(i: int) -> tuple[np.ndarray, np.ndarray]:
        q = tensors[i].quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            raise ModelImportError(f"tensor {tensors[i].name!r} is not quantized")
        return np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint, np.int64)

    def buffer_array(i: int, dtype: str) -> np.ndarray:
        buf = model.buffers[tensors[i].buffer]
        data = buf.data
        if data is None or len(data) == 0:
            if buf.offset and buf.size:
                data = tflite[buf.offset: buf.offset + buf.size]
            else:
                raise ModelImportError(f"tensor {tensors[i].name!r} has no constant data")
        return np.frombuffer(bytes(bytearray(data)), dtype=dtype)

    ops = graph.operators or []
    if not ops:
        raise ModelImportError("the .tflite graph has no operators")
    layers: list[Layer] = []
    expected_input = graph.inputs[0] if graph.inputs is not None and len(graph.inputs) == 1 else None
    if expected_input is None:
        raise ModelImportError("the model must have exactly one input tensor")
    current = int(expected_input)
    for index, op in enumerate(ops):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = op_names.get(builtin, f"op {builtin}")
        if name != "FULLY_CONNECTED":
            raise ModelImportError(
                f"unsupported op {name} (operator {index}); the int8 engine supports FULLY_CONNECTED "
                "layers with fused ReLU, ReLU6, ReLU_N1_TO_1 or no activation")
        inputs = [int(t) for t in op.inputs]
        x_i, w_i = inputs[0], inputs[1]
        b_i = inputs[2] if len(inputs) > 2 and inputs[2] >= 0 else None
        y_i = int(op.outputs[0])
        if x_i != current:
            raise ModelImportError(f"operator {index} does not consume the previous layer's output: "
                                   "only a plain chain of layers is supported")
        for t, want in ((x_i, "INT8"), (w_i, "INT8"), (y_i, "INT8")):
            if tensor_type(t) != want:
                raise ModelImportError(
                    f"tensor {tensors[t].name!r} is {tensor_type(t)}; a full-int8 model is required "
                    "(int8 input, output and weights: quantize with inference_input_type=tf.int8)")
        opts = op.builtinOptions
        act_code = int(getattr(opts, "fusedActivationFunction", 0) or 0)
        if act_code not in _ACTIVATIONS:
            raise ModelImportError(f"operator {index}: unsupported fused activation code {act_code}")
        if getattr(opts, "keepNumDims", False) and len(tensors[x_i].shape) > 2:
            raise ModelImportError(f"operator {index}: keep_num_dims with rank > 2 is not supported")
        w_shape = [int(s) for s in tensors[w_i].shape]
        if len(w_shape) != 2:
            raise ModelImportError(f"operator {index}: weights must be 2-D, got {w_shape}")
        n_out, n_in = w_shape
        x_shape = [int(s) for s in tensors[x_i].shape]
        if x_shape[-1] != n_in:
            raise ModelImportError(f"operator {index}: input width {x_shape[-1]} != weights {n_in}")
        weights = buffer_array(w_i, "<i1").reshape(n_out, n_in)
        x_scale, x_zp = qparams(x_i)
        w_scale, w_zp = qparams(w_i)
        y_scale, y_zp = qparams(y_i)
        if (w_zp != 0).any():
            raise ModelImportError(f"operator {index}: weight zero points must be 0 (symmetric int8)")
        if w_scale.size not in (1, n_out):
            raise ModelImportError(f"operator {index}: {w_scale.size} weight scales for {n_out} outputs")
        bias = None
        if b_i is not None:
            if tensor_type(b_i) != "INT32":
                raise ModelImportError(f"operator {index}: bias is {tensor_type(b_i)}, int32 required")
            bias = buffer_array(b_i, "<i4").copy()
            if bias.size != n_out:
                raise ModelImportError(f"operator {index}: bias has {bias.size} values for {n_out} outputs")
        in_s, out_s = float(x_scale[0]), float(y_scale[0])
        mults, shifts = zip(*(quantize_multiplier(in_s * float(ws) / out_s) for ws in w_scale))
        # fp32 mode: XNNPACK computes the scale in float32, (input * kernel) / output
        scale = (np.float32(x_scale[0]) * w_scale.astype(np.float32)) / np.float32(y_scale[0])
        if not (scale < 256).all():
            raise ModelImportError(f"operator {index}: requantization scale >= 256 is not supported")
        act_name, act_id = _ACTIVATIONS[act_code]
        lo, hi = activation_range(act_name, float(y_scale[0]), int(y_zp[0]))
        layers.append(Layer(weights=weights.copy(), bias=bias,
                            multiplier=np.asarray(mults, np.int32), shift=np.asarray(shifts, np.int32),
                            scale=scale.astype(np.float32),
                            input_zero_point=int(x_zp[0]), output_zero_point=int(y_zp[0]),
                            act_min=lo, act_max=hi, activation=act_id))
        current = y_i
    if graph.outputs is None or len(graph.outputs) != 1 or int(graph.outputs[0]) != current:
        raise ModelImportError("the model's single output must be the last layer's output")
    in_scale, in_zp = qparams(int(expected_input))
    out_scale, out_zp = qparams(current)
    return Artifact(layers=layers, input_scale=float(in_scale[0]), input_zero_point=int(in_zp[0]),
                    output_scale=float(out_scale[0]), output_zero_point=int(out_zp[0]),
                    model_version=model_version, min_firmware=min_firmware,
                    requant_mode=REQUANT_MODES[requant], features=features,
                    scoring=Scoring(threshold=threshold) if threshold is not None else None)
