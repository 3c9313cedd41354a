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


def medians_us(fns: dict, repeats: int) -> dict:
    """Median wall time of each callable in microseconds, timed round-robin so that load
    from other work on the machine falls on all of them alike."""
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) * 1e6 for k, v in times.items()}


def throughput(tflite: bytes, batches=(1, 256, 4096), requant: str = "fp32") -> list[dict]:
    """The engine (every backend this machine has) beside LiteRT, per window, at each one's
    default threading and with both held to one thread (BLAS through threadpoolctl, LiteRT's
    num_threads). Every backend's output is checked equal to LiteRT's first."""
    from threadpoolctl import threadpool_limits

    from edgefleet.runtime.engine import Int8Engine, available_backends
    from edgefleet.toolchain.litert_ref import invoker
    from edgefleet.toolchain.tflite_import import import_tflite

    art = import_tflite(tflite, requant=requant)
    engines = {b: Int8Engine(art, backend=b) for b in available_backends()}
    default = next(iter(engines.values()))
    rows = []
    for b in batches:
        x = np.random.default_rng(b).integers(-128, 128, size=(b, default.n_inputs), dtype=np.int8)
        lite, lite2 = invoker(tflite, x), invoker(tflite, x, num_threads=2)
        ref = lite()
        assert all(np.array_equal(e.infer(x), ref) for e in engines.values()), "engine differs from LiteRT"
        reps = 300 if b <= 256 else 60
        fns = {**{f"engine_{name}": (lambda e=e: e.infer(x)) for name, e in engines.items()},
               "litert": lite, "litert_2_threads": lite2}
        t = medians_us(fns, reps)
        with threadpool_limits(1):
            one = medians_us({"engine": lambda: default.infer(x), "litert": invoker(tflite, x, num_threads=1)}, reps)
        row = {"batch": b, "backend": default.backend, "engine_us_per_window": t[f"engine_{default.backend}"] / b,
               **{f"{k}_us_per_window": v / b for k, v in t.items()},
               "engine_1_thread_us_per_window": one["engine"] / b,
               "litert_1_thread_us_per_window": one["litert"] / b}
        row["ratio"] = row["engine_us_per_window"] / row["litert_us_per_window"]
        row["ratio_by_backend"] = {name: t[f"engine_{name}"] / t["litert"] for name in engines}
        row["ratio_1_thread"] = one["engine"] / one["litert"]
        row["ratio_vs_litert_2_threads"] = row["engine_us_per_window"] / row["litert_2_threads_us_per_window"]
        rows.append(row)
    return rows


def print_speed(speed: dict) -> None:
    print("\nPython int8 engine vs LiteRT (default resolver, XNNPACK), median us per window; "
          "'defaults': each as shipped (LiteRT: 1 thread; engine: simd backend 1 thread, blas "
          "backend's BLAS on all cores); '1 thread': both held to one")
    print(f"  {'model':10} {'batch':>6} {'backend':>7} {'engine':>8} {'LiteRT':>8} {'ratio':>6} | "
          f"{'1 thread':>8} {'ratio':>6} | {'LiteRT 2 thr':>12} {'ratio':>6} | other backends")
    for name, rows in speed.items():
        for r in rows:
            others = " ".join(f"{k} {v:.2f}x" for k, v in r["ratio_by_backend"].items() if k != r["backend"])
            print(f"  {name:10} {r['batch']:6d} {r['backend']:>7} {r['engine_us_per_window']:8.3f} "
                  f"{r['litert_us_per_window']:8.3f} {r['ratio']:6.2f} | "
                  f"{r['engine_1_thread_us_per_window']:8.3f} {r['ratio_1_thread']:6.2f} | "
                  f"{r['litert_2_threads_us_per_window']:12.3f} {r['ratio_vs_litert_2_threads']:6.2f} | {others}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cwru")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--speed-only", action="store_true",
                    help="only time the engine against LiteRT (shipped CWRU model and the MLPerf-shaped one); "
                         "writes benchmarks/results/model_toolchain_speed.json")
    args = ap.parse_args()
    if args.speed_only:
        return speed_only()

    from edgefleet.toolchain.card import footprint
    from edgefleet.toolchain.datasets import load_folder
    from edgefleet.toolchain.evaluation import evaluate
    from edgefleet.toolchain.testmodels import make_dense_tflite
    from edgefleet.toolchain.tflm_arena import smallest_arena
    from edgefleet.toolchain.training import TrainConfig, train_model

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
    from edgefleet.toolchain.tflite_import import import_tflite

    mlperf_art = import_tflite(mlperf)
    mlperf_fp = footprint(mlperf_art, len(mlperf_art.to_bytes()), None)
    mlperf_tflm = smallest_arena(mlperf)
    print(f"  MLPerf-Tiny-AD-shaped model: artifact {mlperf_fp['artifact_bytes']} B, activation RAM "
          f"{mlperf_fp['activation_ram_bytes']} B, TFLM arena {mlperf_tflm} B, .tflite {len(mlperf)} B")

    speed = {"default": throughput(trained.tflite_int8), "mlperf_ad": throughput(mlperf)}
    print_speed(speed)
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
    from edgefleet.toolchain.testmodels import make_dense_tflite

    print(f"machine: {machine()}")
    shipped = (REPO / "edgefleet" / "models" / "cwru-de-12k" / "model_int8.tflite").read_bytes()
    mlperf = make_dense_tflite([640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640], per_channel=False)
    speed = {"default": throughput(shipped), "mlperf_ad": throughput(mlperf)}
    print_speed(speed)
    write_report("model_toolchain_speed", {"speed": speed})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
