"""Helpers to run the firmware host programs from tests (imported by conftest and tests)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"


@dataclass(frozen=True)
class Build:
    release: Path  # -O2
    san: Path  # -fsanitize=address,undefined, aborts on the first report

    def tool(self, name: str, *, sanitized: bool = True) -> Path:
        return (self.san if sanitized else self.release) / name


def run(cmd: list, *, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run a host program; sanitizer reports make it exit non-zero (halt_on_error)."""
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, timeout=timeout, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd[0]} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')[-3000:]}")
    return proc


def c_infer(fw: Build, artifact: bytes, x: np.ndarray, tmp: Path, *, sanitized: bool = True) -> np.ndarray:
    """int8 rows through firmware/build/.../ef_infer."""
    a, i, o = tmp / "model.efm", tmp / "in.bin", tmp / "out.bin"
    a.write_bytes(artifact)
    np.ascontiguousarray(x, np.int8).tofile(i)
    run([fw.tool("ef_infer", sanitized=sanitized), a, i, o])
    return np.fromfile(o, np.int8).reshape(len(x), -1)
