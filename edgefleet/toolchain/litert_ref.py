"""LiteRT, the reference the int8 engine is checked against: one place to run a `.tflite`."""

from __future__ import annotations

from typing import Callable

import numpy as np


def invoker(tflite: bytes, x: np.ndarray, resolver=None, num_threads: int | None = None
            ) -> Callable[[], np.ndarray]:
    """A prepared interpreter for inputs shaped like `x`; calling it runs one invoke and returns the output.

    `resolver` is an `OpResolverType`; None is LiteRT's default (XNNPACK for int8 dense layers).
    `num_threads` None is LiteRT's default (one thread for these models, measured).
    """
    from ai_edge_litert.interpreter import Interpreter

    kw = {} if resolver is None else {"experimental_op_resolver_type": resolver}
    if num_threads is not None:
        kw["num_threads"] = num_threads
    it = Interpreter(model_content=tflite, **kw)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], x.shape)
    it.allocate_tensors()

    def run() -> np.ndarray:
        it.set_tensor(inp["index"], x)
        it.invoke()
        return it.get_tensor(out["index"])

    return run


def infer(tflite: bytes, x: np.ndarray, resolver=None) -> np.ndarray:
    """LiteRT's outputs for a batch `x` (any dtype the model takes)."""
    return invoker(tflite, x, resolver)()
