"""`python -m device_sim.record --out recordings/`: recordings of simulated machines to train a model on, as a
plant's data acquisition would give them: per machine and operating point a normal recording and light faults
(for the evaluation), each naming its `machine` and `rpm` (`edgefleet model train --commission` reads both)."""

from __future__ import annotations

import argparse

from device_sim.dataset import machine_recordings, write_recordings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m device_sim.record", description=__doc__)
    ap.add_argument("--out", required=True, help="folder to write the .npz recordings into")
    ap.add_argument("--machines", type=int, default=4, help="machines (default 4)")
    ap.add_argument("--speeds", type=int, default=2, help="operating points per machine (default 2)")
    ap.add_argument("--seconds", type=float, default=20.0, help="normal recording per machine and speed (default 20)")
    ap.add_argument("--fs", type=float, default=12000.0, help="sampling rate, Hz (default 12000)")
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args(argv)
    if a.machines < 1 or a.speeds < 1 or not a.seconds > 2 or not a.fs > 0:
        ap.error("--machines and --speeds must be 1 or more, --seconds above 2, --fs positive")
    paths = write_recordings(a.out, machine_recordings(a.machines, seed=a.seed, speeds=a.speeds, normal_s=a.seconds,
                                                       fault_s=2.0, fs=a.fs, fault_g=(1.0, 2.0)))
    print(f"wrote {len(paths)} recordings to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
