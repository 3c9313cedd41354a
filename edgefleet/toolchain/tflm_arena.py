"""The smallest TFLM arena that runs a `.tflite`, for the model card's comparison.

TFLM has no getter for used arena bytes and kills the process on tiny arenas
(FIELD-NOTES), so each probe runs in a fresh subprocess and we bisect.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

_PROBE = """
import sys, numpy as np
from tflite_micro import runtime
model = open(sys.argv[1], 'rb').read()
it = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2]))
d = it.get_input_details(0)
it.set_input(np.zeros(d['shape'], d['dtype']), 0)
it.invoke()
print(it.get_output(0).shape)
"""


def runs_with(model_path: Path, arena: int) -> bool:
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(model_path), str(arena)],
                          capture_output=True, timeout=120)
    return proc.returncode == 0


def smallest_arena(tflite: bytes, *, hi: int = 1 << 20, granularity: int = 16) -> int | None:
    """Smallest working arena in bytes (to `granularity`), or None if TFLM cannot run the model."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.tflite"
        path.write_bytes(tflite)
        if not runs_with(path, hi):
            return None
        lo = 512  # below this TFLM crashes rather than fails (FIELD-NOTES)
        if runs_with(path, lo):
            return lo
        while hi - lo > granularity:
            mid = (lo + hi) // 2
            if runs_with(path, mid):
                hi = mid
            else:
                lo = mid
        return hi
