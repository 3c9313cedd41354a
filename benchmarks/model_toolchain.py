"""Benchmark for the model toolchain: AUC on CWRU, footprint vs TFLM, engine vs LiteRT speed.

    .venv/bin/python benchmarks/model_toolchain.py [--data ../shared/data/cwru] [--epochs 150]

Prints a table and writes benchmarks/results/model_toolchain.json. Medians of
repeated runs; our engine and LiteRT are timed side by side in one process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def median_us(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e6


def throughput(tflite: bytes, batches=(1, 256, 4096), requant: str = "fp32") -> list[dict]:
    from edgefleet.engine import Int8Engine
    from edgefleet.litert_ref import invoker
    from edgefleet.tflite_import import import_tflite

    engine = Int8Engine(import_tflite(tflite, requant=requant))
    rows = []
    for b in batches:
        x = np.random.default_rng(b).integers(-128, 128, size=(b, engine.n_inputs), dtype=np.int8)
        lite = invoker(tflite, x)
        lite()
        engine.infer(x)
        reps = 300 if b <= 256 else 60
        ours, ref = median_us(lambda: engine.infer(x), reps), median_us(lite, reps)
        floor = median_us(matmuls_only(engine, x), reps)
        rows.append({"batch": b, "engine_us_per_window": ours / b, "litert_us_per_window": ref / b,
                     "ratio": ours / ref, "matmul_only_us_per_window": floor / b,
                     "matmul_only_ratio": floor / ref})
    return rows


def matmuls_only(engine, x: np.ndarray):
    """The engine's float BLAS matmuls alone, on each layer's real inputs: the floor of any
    numpy engine, since numpy has no int8 GEMM (LiteRT runs XNNPACK's int8 kernels)."""
    inputs, h = [], x
    for layer in engine._layers:
        inputs.append(np.ascontiguousarray(h, dtype=layer.dtype))
        h = layer(h)

    def run() -> None:
        for layer, xin in zip(engine._layers, inputs):
            xin @ layer.wt
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cwru")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--speed-only", action="store_true",
                    help="only time the engine against LiteRT (shipped CWRU model and the MLPerf-shaped one); "
                         "prints, writes no report")
    args = ap.parse_args()
    if args.speed_only:
        return speed_only()

    from edgefleet.card import footprint
    from edgefleet.datasets import load_folder
    from edgefleet.evaluation import evaluate
    from edgefleet.testmodels import make_dense_tflite
    from edgefleet.tflm_arena import smallest_arena
    from edgefleet.training import TrainConfig, train_model

    print(f"machine: {machine()}")
    recs = load_folder(args.data)
    cfg = TrainConfig(epochs=args.epochs)
    t0 = time.perf_counter()
    trained = train_model(recs, cfg)
    train_s = time.perf_counter() - t0
    art = trained.artifact
    ev = evaluate(art, trained.tflite_float, recs,
                  trained_on={r.name: cfg.train_fraction for r in recs if r.is_normal})
    fp = footprint(art, len(art.to_bytes()))
    tflm = smallest_arena(trained.tflite_int8)
    hardest = min((f for f in ev["per_file"] if f["auc_int8"] is not None), key=lambda f: f["auc_int8"])
    print(f"\nCWRU (train: first 70% of normal_0hp_97; test: its last 30% + all 18 fault files), "
          f"trained in {train_s:.1f} s")
    print(f"  AUC int8 {ev['auc_int8']:.4f}  float {ev['auc_float']:.4f}  change {ev['auc_change']:+.4f}  "
          f"hardest file {hardest['name']} {hardest['auc_int8']:.4f}")
    print(f"  artifact {fp['artifact_bytes']} B | activation RAM {fp['activation_ram_bytes']} B | "
          f"TFLM arena (same .tflite) {tflm} B | MACs {fp['macs_per_inference']}")

    mlperf = make_dense_tflite([640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640], per_channel=False)
    from edgefleet.tflite_import import import_tflite

    mlperf_art = import_tflite(mlperf)
    mlperf_fp = footprint(mlperf_art, len(mlperf_art.to_bytes()), None)
    mlperf_tflm = smallest_arena(mlperf)
    print(f"  MLPerf-Tiny-AD-shaped model: artifact {mlperf_fp['artifact_bytes']} B, activation RAM "
          f"{mlperf_fp['activation_ram_bytes']} B, TFLM arena {mlperf_tflm} B, .tflite {len(mlperf)} B")

    speed = {"default": throughput(trained.tflite_int8), "mlperf_ad": throughput(mlperf)}
    print("\nPython int8 engine vs LiteRT (default resolver), median us per window:")
    print(f"  {'model':10} {'batch':>6} {'engine':>9} {'LiteRT':>9} {'ratio':>6} {'matmuls alone':>14}")
    for name, rows in speed.items():
        for r in rows:
            print(f"  {name:10} {r['batch']:6d} {r['engine_us_per_window']:9.3f} "
                  f"{r['litert_us_per_window']:9.3f} {r['ratio']:6.2f} "
                  f"{r['matmul_only_us_per_window']:9.3f} ({r['matmul_only_ratio']:.2f}x)")
    write_report("model_toolchain", {
        "train_seconds": train_s, "epochs": args.epochs,
        "auc_int8": ev["auc_int8"], "auc_float": ev["auc_float"], "auc_change": ev["auc_change"],
        "hardest_file": {"name": hardest["name"], "auc_int8": hardest["auc_int8"]},
        "per_file": ev["per_file"], "footprint": fp, "tflm_arena_bytes": tflm,
        "mlperf_ad": {"footprint": mlperf_fp, "tflm_arena_bytes": mlperf_tflm, "tflite_bytes": len(mlperf)},
        "speed": speed,
    })
    return 0


def speed_only() -> int:
    from edgefleet.testmodels import make_dense_tflite

    print(f"machine: {machine()}")
    shipped = (REPO / "edgefleet" / "models" / "cwru-de-12k" / "model_int8.tflite").read_bytes()
    mlperf = make_dense_tflite([640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640], per_channel=False)
    for name, tfl in (("default", shipped), ("mlperf_ad", mlperf)):
        for r in throughput(tfl):
            print(f"  {name:10} {r['batch']:6d} engine {r['engine_us_per_window']:9.3f}  LiteRT "
                  f"{r['litert_us_per_window']:9.3f}  ratio {r['ratio']:6.2f}  matmuls alone "
                  f"{r['matmul_only_us_per_window']:9.3f} ({r['matmul_only_ratio']:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
