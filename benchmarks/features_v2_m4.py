"""Feature time per window on the emulated Cortex-M4F, v1 beside v2, and the RAM each front end uses;
written to results/features_v2_m4.json.

The MCU image's `features ARTIFACT FS N` mode (firmware/ports/mps2-an386/main_infer.c) runs N windows
through the node pipeline's front end, fed in the pieces ef_pipeline_next asks for from a fixed table
of samples (1x/2x harmonics, noise, a 1 g DC offset), with the node's buffers (2 x 1,024 floats).
Instructions are counted from QEMU's exec trace (`-singlestep -d exec,nochain`, one `Trace` line per
executed instruction) as (count(N2) - count(N1)) / (N2 - N1): start-up, artifact loading and planning
cancel out. The count is the front end alone (input copy, filter, segments, LF spectrum, features),
without quantization and inference (benchmarks/mcu_qemu.py has the engine).

Run: .venv/bin/python benchmarks/features_v2_m4.py
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
sys.path.insert(0, str(REPO / "tests" / "firmware"))
FW = REPO / "firmware"
ELF = FW / "build" / "mps2-an386" / "ef_mcu_infer.elf"
V1_MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
M4_HZ = 180e6  # an STM32F446 at full speed, for the share of one core (instructions ~ cycles, docs/mcu.md)


def count_instructions(artifact: Path, fs: float, n: int) -> int:
    cmd = ["qemu-system-arm", "-machine", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-singlestep", "-d", "exec,nochain",
           "-D", "/dev/stdout", "-kernel", str(ELF), "-append", f"features {artifact} {fs!r} {n}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    count = 0
    assert p.stdout is not None
    for chunk in iter(lambda: p.stdout.read(1 << 22), b""):
        count += chunk.count(b"Trace")
    if p.wait() != 0:
        raise RuntimeError(f"features run failed: {cmd}")
    return count


def ram_bytes(params, fs: float) -> dict:
    """The front end's buffers at this rate (float32), out of the node's two 1,024-float FFT buffers."""
    from edgefleet.runtime.features import plan

    p = plan(params, fs)
    if params.lf is None:
        return {"fft_buffer": 4 * p.nfft, "scratch": 4 * p.nfft, "total": 8 * p.nfft}
    keep = p.seg_samples - p.hop
    return {"segment_fft_buffer": 4 * p.nfft, "lf_stream": 4 * params.lf.length, "segment_overlap": 4 * keep,
            "total": 4 * (p.nfft + params.lf.length + keep)}


def measure(name: str, artifact: Path, params, fs: float, n1: int, n2: int) -> dict:
    from edgefleet.runtime.features import plan

    c1, c2 = count_instructions(artifact, fs, n1), count_instructions(artifact, fs, n2)
    per_window = (c2 - c1) / (n2 - n1)
    p = plan(params, fs)
    seconds = p.n_samples / fs
    row = {"front_end": name, "fs": fs, "window_samples": p.n_samples, "window_s": round(seconds, 4),
           "hf_segments": p.n_segments, "nfft": p.nfft,
           "instructions_per_window": round(per_window), "instructions_per_second_of_signal": round(per_window / seconds),
           "instructions_per_sample": round(per_window / p.n_samples, 1),
           "share_of_a_180MHz_m4": round(per_window / seconds / M4_HZ, 4),
           "ram_buffers_bytes": ram_bytes(params, fs), "runs": [n1, n2]}
    print(f"{name} at {fs:g} Hz: {per_window:,.0f} instructions per {seconds:.3f} s window "
          f"({per_window / seconds:,.0f}/s, {per_window / p.n_samples:.1f} per sample)")
    return row


def main() -> int:
    subprocess.run(["make", "-s", "-C", str(FW), "mps2-an386"], check=True, capture_output=True)
    from edgefleet.runtime.artifact import load_artifact
    from v2_helpers import v2_artifact, v2_params

    v1_params = load_artifact(V1_MODEL).features.params
    rows = [measure("v1 (fleet-default: 32 bands, 0.08 s)", V1_MODEL, v1_params, 12000.0, 2, 12)]
    with tempfile.TemporaryDirectory() as d:
        for fs, params in ((12000.0, v2_params()), (4000.0, v2_params(f_hi=1900.0))):
            path = Path(d) / f"v2-{fs:g}.efm"
            path.write_bytes(v2_artifact(params).to_bytes())
            rows.append(measure("v2 (32 HF + 16 LF bands + vrms, kurtosis, crest)", path, params, fs, 1, 3))
        v1_4k = Path(d) / "v1-4k.efm"
        import dataclasses

        from edgefleet.runtime.artifact import FeatureSection
        from edgefleet.runtime.features import FeatureParams

        base = load_artifact(V1_MODEL)
        p4 = FeatureParams.spaced(32, 100.0, 1900.0)
        v1_4k.write_bytes(dataclasses.replace(base, _raw=None, features=FeatureSection(
            params=p4, mean=base.features.mean, inv_std=base.features.inv_std)).to_bytes())
        rows.insert(1, measure("v1 (32 bands 100-1,900 Hz, 0.08 s)", v1_4k, p4, 4000.0, 2, 12))
    size = json.loads((FW / "build" / "mps2-an386" / "size.json").read_text())
    v1_12k = rows[0]
    v2_12k = next(r for r in rows if r["front_end"].startswith("v2") and r["fs"] == 12000.0)
    out = write_report("features_v2_m4", {
        "what": "feature front end instructions per window on the emulated Cortex-M4F (QEMU 7.2 mps2-an386, exec "
                "trace), arm-none-eabi-gcc 12.2 -Os, EF_FEATURES_NFFT_MAX=1024; v1 beside v2; RAM of the "
                "front end's buffers; node image flash/RAM (size report)",
        "rows": rows,
        "v2_over_v1_per_second_of_signal_12k": round(v2_12k["instructions_per_second_of_signal"]
                                                     / v1_12k["instructions_per_second_of_signal"], 2),
        "node_image": {k: v for k, v in size.items() if k not in ("modules",)},
        "front_end_flash": {"features_v1": size["modules"].get("features", {}).get("flash"),
                            "lowfreq_v2": size["modules"].get("lowfreq", {}).get("flash"),
                            "pipeline": size["modules"].get("pipeline", {}).get("flash"),
                            "libm_tan_for_v2": size["features_v2"]["libm_tan"]},
    })
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
