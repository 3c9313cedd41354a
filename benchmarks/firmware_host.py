"""Firmware core figures on the host: object sizes, stack, working RAM vs the TFLM arena,
engine latency and node-loop throughput (release build), written to results/firmware_host.json.

Run: .venv/bin/python benchmarks/firmware_host.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FW = REPO / "firmware"
MODEL = REPO / "edgefleet" / "models" / "cwru-de-12k"
BUILD = FW / "build" / "host"


def sh(cmd: list) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, check=True, text=True)


def object_sizes() -> dict:
    sh(["make", "-C", FW, "sizes"])
    sizes = {}
    for line in (FW / "build" / "sizes.txt").read_text().splitlines()[1:]:
        text, data, bss, *_rest, name = line.split()
        sizes[Path(name).stem] = {"text": int(text), "data": int(data), "bss": int(bss)}
    stack = {}
    for line in (FW / "build" / "stack-usage.txt").read_text().splitlines():
        m = re.match(r".*:(\w+)\s+(\d+)\s+\w+", line)
        if m:
            stack[m.group(1)] = int(m.group(2))
    core = ("ef_model", "ef_engine", "ef_layer_ref", "ef_features", "ef_crc")  # engine = walk + portable kernel
    return {"objects_Os_x86_64": sizes,
            "engine_plus_features_text_bytes": sum(sizes[m]["text"] for m in core),
            "stack_bytes": {k: stack[k] for k in ("ef_engine_infer", "ef_layer_run", "ef_features_compute",
                                                  "ef_model_open", "ef_features_quantize",
                                                  # commissioning (docs/baseline.md): learn a class, judge a window
                                                  "ef_baseline_learn_class", "ef_commission_finish",
                                                  "ef_baseline_judge", "ef_commission_add")}}


def timed(cmd: list) -> float:
    t = time.perf_counter()
    sh(cmd)
    return time.perf_counter() - t


def engine_latency(tmp: Path) -> dict:
    rows = 200_000
    x = np.random.default_rng(0).integers(-128, 128, (rows, 32), dtype=np.int8)
    x.tofile(tmp / "big.bin")
    x[:1].tofile(tmp / "one.bin")
    one = min(timed([BUILD / "ef_infer", MODEL / "model.efm", tmp / "one.bin", tmp / "o"]) for _ in range(5))
    big = min(timed([BUILD / "ef_infer", MODEL / "model.efm", tmp / "big.bin", tmp / "o"]) for _ in range(3))
    return {"rows": rows, "us_per_inference": (big - one) / rows * 1e6}


def node_throughput(tmp: Path) -> dict:
    from edgefleet.toolchain.datasets import load_folder

    rec = next(r for r in load_folder(REPO.parent / "shared" / "data" / "cwru") if r.is_normal)
    rec.signal.astype("<f4").tofile(tmp / "s.f32")
    t = timed([BUILD / "ef_node", MODEL / "model.efm", tmp / "s.f32", rec.fs, "--quiet"])
    out = sh([BUILD / "ef_node", MODEL / "model.efm", tmp / "s.f32", rec.fs, "--quiet"]).stdout
    summary = json.loads(out.splitlines()[-1])
    return {"recording": rec.name, "windows": summary["windows"], "nfft": summary["nfft"],
            "us_per_window_incl_startup": t / summary["windows"] * 1e6}


def main() -> None:
    from edgefleet.toolchain.tflm_arena import smallest_arena

    sh(["make", "-C", FW, "host"])
    info = json.loads(sh([BUILD / "ef_infer", "--info", MODEL / "model.efm"]).stdout)
    tflm = smallest_arena((MODEL / "model_int8.tflite").read_bytes())
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        report = {
            "sizes": object_sizes(),
            "model": str(MODEL.relative_to(REPO)),
            "working_ram": {
                "engine_activation_arena_bytes": info["arena_bytes"],
                "tflm_smallest_arena_bytes": tflm,
                "engine_vs_tflm": info["arena_bytes"] / tflm if tflm else None,
                "feature_buffers_bytes_at_12kHz": 2 * 4 * 1024,
            },
            "engine": engine_latency(tmp),
            "node_loop": node_throughput(tmp),
        }
    write_report("firmware_host", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
