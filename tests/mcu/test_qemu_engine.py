"""The int8 engine on the emulated Cortex-M4F (QEMU mps2-an386) against LiteRT, bit for bit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import OpResolverType

from edgefleet.runtime.artifact import Artifact
from edgefleet.toolchain.litert_ref import infer as litert_infer
from edgefleet.toolchain.testmodels import PARITY_SHAPES, parity_inputs
from edgefleet.toolchain.tflite_import import import_tflite

from .conftest import FIRMWARE, FLEET_MODEL

QEMU_INFER = FIRMWARE / "tools" / "qemu-infer"
ROWS_SMALL, ROWS_WIDE = 3000, 600  # per model; the 640-input models cost ~0.26 M MACs per row


def qemu_infer(artifact: bytes, x: np.ndarray, tmp: Path) -> np.ndarray:
    a, i, o = tmp / "m.efm", tmp / "in.bin", tmp / "out.bin"
    a.write_bytes(artifact)
    x.tofile(i)
    proc = subprocess.run([str(QEMU_INFER), str(a), str(i), str(o)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return np.fromfile(o, dtype=np.int8)


@pytest.mark.parametrize("name", list(PARITY_SHAPES))
@pytest.mark.parametrize("mode, resolver", [("fp32", None), ("int", OpResolverType.BUILTIN_REF)])
def test_m4_engine_bit_exact_with_litert(mcu, tflite_models, tmp_path, name, mode, resolver):
    tfl = tflite_models[name]
    artifact = import_tflite(tfl, requant=mode).to_bytes()
    n_in = Artifact.from_bytes(artifact).n_inputs
    x = parity_inputs(ROWS_WIDE if n_in >= 640 else ROWS_SMALL, n_in, seed=len(name) + 3)
    ref = litert_infer(tfl, x, resolver)
    ours = qemu_infer(artifact, x, tmp_path).reshape(ref.shape)
    assert np.array_equal(ours, ref), f"{name}/{mode}: {(ours != ref).sum()} of {ref.size} values differ"


def test_m4_engine_equals_host_on_the_fleet_model(mcu, tmp_path):
    x = parity_inputs(ROWS_SMALL, 32, seed=11)
    ours = qemu_infer(FLEET_MODEL.read_bytes(), x, tmp_path)
    (tmp_path / "x.bin").write_bytes(x.tobytes())
    subprocess.run([str(FIRMWARE / "build" / "host" / "ef_infer"), str(FLEET_MODEL), str(tmp_path / "x.bin"),
                    str(tmp_path / "h.bin")], check=True, capture_output=True)
    assert np.array_equal(ours, np.fromfile(tmp_path / "h.bin", np.int8))


def test_qemu_infer_refuses_a_corrupt_artifact_and_ragged_input(mcu, tmp_path):
    art = bytearray(FLEET_MODEL.read_bytes())
    art[100] ^= 0x40  # CRC mismatch
    (tmp_path / "bad.efm").write_bytes(art)
    (tmp_path / "in.bin").write_bytes(bytes(64))
    proc = subprocess.run([str(QEMU_INFER), str(tmp_path / "bad.efm"), str(tmp_path / "in.bin"),
                           str(tmp_path / "o.bin")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "artifact rejected" in proc.stderr + proc.stdout
    (tmp_path / "rag.bin").write_bytes(bytes(33))
    proc = subprocess.run([str(QEMU_INFER), str(FLEET_MODEL), str(tmp_path / "rag.bin"), str(tmp_path / "o.bin")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "whole number of rows" in proc.stderr + proc.stdout


@pytest.mark.parametrize("mode, resolver", [("fp32", None), ("int", OpResolverType.BUILTIN_REF)])
def test_m4_engine_rounds_exact_ties_like_litert(mcu, tmp_path, mode, resolver):
    """The M4 kernels' own requantization on models full of exact ties (LiteRT: away from zero)."""
    from edgefleet.toolchain.testmodels import tie_cases

    for name, tfl, artifact, x, ties in tie_cases(mode, ROWS_SMALL):
        assert ties > 30
        ref = litert_infer(tfl, x, resolver)
        ours = qemu_infer(artifact, x, tmp_path).reshape(ref.shape)
        assert np.array_equal(ours, ref), f"{name}/{mode}: {(ours != ref).sum()} of {ref.size} values differ"
