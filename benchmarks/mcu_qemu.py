"""Instructions per inference and per MAC of the int8 engine on the emulated Cortex-M4F
(QEMU mps2-an386), for the default fleet model and the 10-layer 640-input model, plus the
node image's size report; written to results/mcu_qemu.json.

Instructions are counted from QEMU's exec trace (`-singlestep -d exec,nochain`: one `Trace`
line per executed instruction): the image runs N1 and N2 inferences of the same row, and
(count(N2) - count(N1)) / (N2 - N1) is one inference, with loading and start-up cancelled out.
QEMU counts instructions, not cycles: on a Cortex-M4 most of these take one cycle, loads
two (pipelined back to back), multiplies one; see docs/mcu.md for the cycle estimate.

Run: .venv/bin/python benchmarks/mcu_qemu.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FW = REPO / "firmware"
ELF = FW / "build" / "mps2-an386" / "ef_mcu_infer.elf"
FLEET_MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"


def count_instructions(artifact: Path, n: int) -> int:
    """Executed instructions of one run of `bench ARTIFACT n` (streamed; the trace is never stored)."""
    cmd = ["qemu-system-arm", "-machine", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-singlestep", "-d", "exec,nochain",
           "-D", "/dev/stdout", "-kernel", str(ELF), "-append", f"bench {artifact} {n}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    count = 0
    assert p.stdout is not None
    for chunk in iter(lambda: p.stdout.read(1 << 20), b""):
        count += chunk.count(b"Trace")
    if p.wait() != 0:
        raise RuntimeError(f"bench run failed: {cmd}")
    return count


def macs(artifact: Path) -> tuple[int, list[str]]:
    from edgefleet.runtime.artifact import load_artifact

    a = load_artifact(artifact)
    shapes = [f"{layer.n_in}x{layer.n_out}" for layer in a.layers]
    return sum(layer.n_in * layer.n_out for layer in a.layers), shapes


def measure(name: str, artifact: Path, n1: int, n2: int) -> dict:
    c1, c2 = count_instructions(artifact, n1), count_instructions(artifact, n2)
    per_inf = (c2 - c1) / (n2 - n1)
    m, shapes = macs(artifact)
    row = {"model": name, "layers": shapes, "macs": m, "instructions_per_inference": round(per_inf),
           "instructions_per_mac": round(per_inf / m, 3), "runs": [n1, n2]}
    print(f"{name}: {m} MACs, {per_inf:,.0f} instructions per inference, {per_inf / m:.2f} per MAC")
    return row


def main() -> int:
    subprocess.run(["make", "-s", "-C", str(FW), "mps2-an386"], check=True, capture_output=True)
    from edgefleet.toolchain.testmodels import PARITY_SHAPES, make_dense_tflite
    from edgefleet.toolchain.tflite_import import import_tflite

    rows = [measure("fleet-default", FLEET_MODEL, 2, 12)]
    with tempfile.TemporaryDirectory() as d:
        for name, (sizes, per_channel, last) in PARITY_SHAPES.items():
            if sizes[0] != 640:
                continue
            tfl = make_dense_tflite(sizes, per_channel=per_channel, seed=0, activation_last=last)
            for mode in ("fp32", "int"):
                path = Path(d) / f"{name}-{mode}.efm"
                path.write_bytes(import_tflite(tfl, requant=mode).to_bytes())
                rows.append(measure(f"{name} ({mode} requant)", path, 1, 2))
    size = json.loads((FW / "build" / "mps2-an386" / "size.json").read_text())
    out = write_report("mcu_qemu", {
        "what": "int8 engine instructions on the emulated Cortex-M4F (QEMU 7.2 mps2-an386, exec trace), "
                "arm-none-eabi-gcc 12.2 -Os; node image size report",
        "engine": rows, "node_image": {k: v for k, v in size.items() if k != "modules"},
        "node_modules": size["modules"]})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
