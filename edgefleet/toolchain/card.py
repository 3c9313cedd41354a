"""Model cards: what a model costs on a device and how well it separates faults.

The card is JSON (for tools) and Markdown (for people); both come from one dict.
"""

from __future__ import annotations

import platform
import time

import numpy as np

from edgefleet.runtime import simd_gemm
from edgefleet.runtime.artifact import Artifact
from edgefleet.runtime.engine import Int8Engine
from edgefleet.runtime.features import plan


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def host_latency(artifact: Artifact, tflite_int8: bytes, *, batch: int = 256,
                 repeats: int = 200) -> dict:
    """Median microseconds per window, single and batched, for our engine and LiteRT."""
    from edgefleet.toolchain.litert_ref import invoker

    rng = np.random.default_rng(0)
    x1 = rng.integers(-128, 128, size=(1, artifact.n_inputs), dtype=np.int8)
    xb = rng.integers(-128, 128, size=(batch, artifact.n_inputs), dtype=np.int8)
    engine = Int8Engine(artifact)
    lit1, litb = invoker(tflite_int8, x1), invoker(tflite_int8, xb)
    for f in (lit1, litb, lambda: engine.infer(x1), lambda: engine.infer(xb)):
        f()  # warm up
    ours1 = _median_time(lambda: engine.infer(x1), repeats)
    oursb = _median_time(lambda: engine.infer(xb), repeats) / batch
    lite1 = _median_time(lit1, repeats)
    liteb = _median_time(litb, repeats) / batch
    return {
        "batch": batch,
        "engine_us_single": ours1 * 1e6, "engine_us_per_window_batched": oursb * 1e6,
        "litert_us_single": lite1 * 1e6, "litert_us_per_window_batched": liteb * 1e6,
        "batched_ratio_engine_over_litert": oursb / liteb,
        "engine_backend": engine.backend + (f" ({simd_gemm.KERNEL})" if engine.backend == "simd" else ""),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


def footprint(artifact: Artifact, artifact_bytes: int, fs_for_scratch: float | None = 12000.0) -> dict:
    """Device costs computed from the artifact alone."""
    out = {
        "layers": [f"{l.n_in}x{l.n_out}" for l in artifact.layers],
        "parameters": artifact.parameters,
        "macs_per_inference": artifact.macs,
        "artifact_bytes": artifact_bytes,
        "activation_ram_bytes": artifact.arena_bytes,
        "requant_mode": {0: "fp32 (LiteRT default)", 1: "int (LiteRT reference)"}[artifact.requant_mode],
    }
    if artifact.features is not None and fs_for_scratch:
        p = plan(artifact.features.params, fs_for_scratch)
        lf = artifact.features.params.lf
        # window (v2: one HF segment) + FFT buffer (float32) + feature accumulators, at this rate;
        # v2 streams: + the decimated LF block, the averaged HF PSD and the 4 biquads' state
        floats = p.seg_samples + p.nfft + artifact.n_inputs
        if lf is not None:
            floats += lf.length + (p.nfft // 2 + 1) + 8
        out["feature_scratch_bytes"] = {"fs_hz": fs_for_scratch, "bytes": 4 * floats,
                                        "front_end": f"v{artifact.features.params.version}"}
    return out


def to_markdown(card: dict) -> str:
    f, ev, lat = card.get("footprint", {}), card.get("evaluation") or {}, card.get("latency") or {}
    lines = [f"# Model card: {card.get('model_id', '?')} v{card.get('version', '?')}", ""]
    lines += ["| | |", "| --- | --- |"]
    rows = [
        ("layers", " -> ".join(f.get("layers", []))),
        ("parameters", f.get("parameters")),
        ("MACs per inference", f.get("macs_per_inference")),
        ("artifact", f"{f.get('artifact_bytes')} B"),
        ("activation RAM (engine)", f"{f.get('activation_ram_bytes')} B"),
        ("TFLM arena, same .tflite", f"{card.get('tflm_arena_bytes')} B"),
        ("feature scratch", f"{(f.get('feature_scratch_bytes') or {}).get('bytes')} B at "
                            f"{(f.get('feature_scratch_bytes') or {}).get('fs_hz')} Hz"),
        ("requantization", f.get("requant_mode")),
        ("threshold", card.get("threshold")),
        ("expects commissioning", "yes: each node learns its machine's normal first (docs/baseline.md)"
         if card.get("expects_commissioning") else "no: judged with the training set's standardization"),
    ]
    if ev:
        rows += [("AUC int8 (overall)", _fmt(ev.get("auc_int8"))),
                 ("AUC float (overall)", _fmt(ev.get("auc_float"))),
                 ("float - int8 AUC change", _fmt(ev.get("auc_change"))),
                 ("worst file AUC int8", _fmt(ev.get("min_file_auc_int8")))]
        com = ev.get("commissioned")
        if com:
            rows += [("commissioned: worst machine AUC", _fmt(com.get("min_machine_auc"))),
                     ("commissioned: AUC by label", ", ".join(f"{k} {_fmt(v)}" for k, v in com["by_label"].items()))]
    if lat:
        rows += [("host latency, engine single", f"{lat['engine_us_single']:.1f} us"
                  + (f" (backend {lat['engine_backend']})" if "engine_backend" in lat else "")),
                 ("host latency, LiteRT single", f"{lat['litert_us_single']:.1f} us"),
                 (f"engine batched ({lat['batch']})", f"{lat['engine_us_per_window_batched']:.3f} us/window"),
                 (f"LiteRT batched ({lat['batch']})", f"{lat['litert_us_per_window_batched']:.3f} us/window")]
    lines += [f"| {k} | {v} |" for k, v in rows]
    if ev.get("per_file"):
        lines += ["", "| recording | label | windows | AUC int8 | AUC float | flagged |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        for pf in ev["per_file"]:
            lines.append(f"| {pf['name']} | {pf['label']} | {pf['windows']} | {_fmt(pf['auc_int8'])} | "
                         f"{_fmt(pf['auc_float'])} | {pf['anomaly_rate']:.0%} |")
    if card.get("training"):
        t = card["training"]
        lines += ["", f"Trained on {t.get('train_windows')} normal windows from {', '.join(t.get('files', []))}; "
                  f"threshold from {t.get('val_windows')} held-out windows."]
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
