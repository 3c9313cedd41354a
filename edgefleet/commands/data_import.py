"""`edgefleet data import`: recordings from other tools (CSV, WAV, .mat, .npy) as edgefleet `.npz`."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np

from edgefleet.errors import DataError

log = logging.getLogger(__name__)
MAX_RPM = 100_000.0  # above any rotating machine a vibration sensor is put on (turbochargers, spindles)
NORMAL_SYNONYMS = {"healthy", "ok", "good", "baseline", "nominal", "norm", "none", "no_fault", "nofault",
                   "no-fault", "fault-free", "fault_free", "clean", "reference", "0"}
FORMATS = ("text tables (.csv .tsv .txt .dat, or no suffix: comma, semicolon, tab or space separated, "
           "optional header), .wav, MATLAB v5 .mat, .npy")


def add_parser(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser(
        "import", help="convert CSV / WAV / .mat / .npy vibration files into .npz recordings",
        description="Writes one .npz per file (and per --split piece) as `model train --data`, `model evaluate` "
                    "and `replay` read them: signal float32 in g, fs in Hz, label, unit, source, channel. "
                    f"Reads {FORMATS}. Nothing that changes a result is guessed: the rate comes from --fs, a WAV "
                    "header, a .mat number (--fs-key) or a time column in seconds (they must agree); with more "
                    "than one possible channel, --channel names it; the unit is --unit (default g), and a column "
                    "header naming another unit stops the import until --unit is given. Text tables and WAV are "
                    "read in chunks.",
        epilog="examples:\n"
               "  edgefleet data import logger.csv --unit m/s2 --out recordings/            # time column gives fs\n"
               "  edgefleet data import ims/2004.02.12.10.32.39 --fs 20480 --channel 0 --out recordings/\n"
               "  edgefleet data import femto/Bearing1_1/ --fs 25600 --channel 4 --join --interval 10 --out rec/\n"
               "  edgefleet data import baseline_1.mat --channel bearing.gs --fs-key bearing.sr --resample 48828 "
               "--out rec/\n"
               "  edgefleet data import pump.wav --scale 0.000488 --unit g --label normal --machine pump-3 --out rec/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, help="files, or folders (every file in them, sorted)")
    p.add_argument("--out", type=Path, required=True, help="folder to write the .npz recordings to")
    p.add_argument("--fs", type=float, metavar="HZ", help="sampling rate in Hz (needed when the file does not "
                   "state it: no WAV header, no time column, no --fs-key)")
    p.add_argument("--fs-key", metavar="PATH", help=".mat: the number holding the rate, e.g. bearing.sr")
    p.add_argument("--channel", metavar="NAME|INDEX",
                   help="column name or 0-based index (tables, multi-channel WAV/.npy), or array path (.mat, "
                        "e.g. X097_DE_time, bearing.gs, N15_M07_F10_K001_1.Y.vibration_1)")
    p.add_argument("--unit", help="unit of the samples (after --scale): g, mg, m/s2, mm/s2 (default g)")
    p.add_argument("--scale", type=float, metavar="S",
                   help="unit per count for integer samples (WAV PCM, ADC dumps): e.g. 16/32768 = 0.000488 for a "
                        "+-16 g 16-bit sensor; a WAV always needs it (it stores no unit)")
    p.add_argument("--resample", type=float, metavar="HZ",
                   help="resample to this rate (anti-aliased); for files above the front end's 50 kHz, e.g. "
                        "MFPT 97,656 Hz -> 48,828")
    p.add_argument("--split", type=float, metavar="SECONDS",
                   help="cut into recordings of this length (a long file is read in chunks and never held whole)")
    p.add_argument("--join", action="store_true",
                   help="the files are snapshots of one machine (IMS, FEMTO): write one recording whose windows "
                        "never straddle two snapshots (key segment), in the order given")
    p.add_argument("--interval", type=float, metavar="SECONDS",
                   help="with --join: seconds between snapshot starts (replay's time axis; default: back to back)")
    p.add_argument("--label", default="normal",
                   help="label: normal (training learns from it) or a fault name (evaluation only); default normal")
    p.add_argument("--machine", help="machine name (key machine: commissioning groups recordings by it)")
    p.add_argument("--rpm", type=float, help="running speed in rpm, if known (key rpm: the speed class)")
    p.set_defaults(func=cmd_import)


def _warn_unknown_label(label: str) -> None:
    """A label that is neither `normal` nor a fault the project names is written as given (a fault
    label: evaluation only, never trained on), but said once: `healthy` is most likely meant as normal."""
    from edgefleet.commands.sim import FAULT_NAMES
    from edgefleet.runtime.diagnosis import HINTS

    known = {"normal", *FAULT_NAMES, *(h for h in HINTS if h != "unknown")}
    if label in known:
        return
    key = label.strip().lower()
    if key in NORMAL_SYNONYMS:
        log.warning("--label %r is not 'normal': it is written as a fault label (evaluation only, never trained "
                    "on); if the recording is of a healthy machine, pass --label normal", label)
    else:
        log.warning("--label %r is neither 'normal' nor a known fault name (%s); it is written as a fault label "
                    "(evaluation only, never trained on)", label, ", ".join(sorted(known - {"normal"})))


def _inputs(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            if not files:
                raise DataError(f"{p}: an empty folder")
            out.extend(files)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p} does not exist")
    return out


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "x"


def cmd_import(args: argparse.Namespace) -> int:
    from edgefleet.toolchain.import_readers import reader_for
    from edgefleet.toolchain.importers import ImportOptions

    for name, v in (("--fs", args.fs), ("--scale", args.scale), ("--resample", args.resample),
                    ("--split", args.split), ("--interval", args.interval)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise DataError(f"{name} must be a number > 0, got {v:g}")
    if args.label != "normal" and args.label.strip().lower() == "normal":
        raise DataError(f"--label {args.label!r}: write 'normal' (training learns only from that exact label)")
    if args.rpm is not None and not (np.isfinite(args.rpm) and 0 < args.rpm <= MAX_RPM):
        raise DataError(f"--rpm must be a running speed > 0 and <= {MAX_RPM:g} rpm, got {args.rpm:g}")
    if args.join and args.split:
        raise DataError("--join and --split do not go together (--join makes one recording of the snapshots)")
    if args.interval is not None and not args.join:
        raise DataError("--interval is for --join (seconds between snapshots)")
    if args.unit is not None:
        from edgefleet.toolchain.datasets import to_g_factor

        to_g_factor(args.unit)
    opts = ImportOptions(fs=args.fs, unit=args.unit, scale=args.scale, channel=args.channel, fs_key=args.fs_key,
                         resample=args.resample, split_s=args.split)
    files = _inputs(args.files)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"label": args.label, "unit": "g", **({"machine": args.machine} if args.machine else {}),
            **({"rpm": float(args.rpm)} if args.rpm is not None else {})}
    written: list[Path] = []  # staged as NAME.npz.part, renamed once every file has been read
    try:
        if args.join:
            written.append(_join(files, opts, args, meta))
        else:
            for f in files:
                pieces = reader_for(f)(f, opts)
                for k, piece in enumerate(pieces):
                    stem = _safe(f.name if f.suffix.lower() not in (".csv", ".tsv", ".txt", ".dat", ".wav", ".mat",
                                                                       ".npy") else f.stem)
                    name = stem + (f"-{_safe(args.channel)}" if args.channel else "") + (f"-{k:03d}" if args.split else "")
                    written.append(_write(args.out / f"{name}.npz", piece, meta))
    except BaseException:
        for w in written:  # an import either writes every recording or none
            _part(w).unlink(missing_ok=True)
        raise
    for w in written:
        _part(w).rename(w)
        print(_summary(w))
    _warn_unknown_label(args.label)  # once written: a refused import says one line only
    return 0


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _summary(path: Path) -> str:
    with np.load(path) as z:
        n, fs = z["signal"].size, float(z["fs"])
        return (f"{path}: {n:,} samples at {fs:g} Hz ({n / fs:.3f} s) from {z['source']} [{z['channel']}], "
                f"{z['source_unit']} -> g, label {z['label']}")


def _write(path: Path, piece, meta: dict, **extra) -> Path:
    if path.exists() or _part(path).exists():
        raise DataError(f"{path} exists; remove it or pass another --out (nothing is overwritten)")
    try:
        with open(_part(path), "xb") as f:
            np.savez(f, signal=piece.signal, fs=np.float64(piece.fs), source=piece.source, channel=piece.channel,
                     source_unit=piece.unit, **meta, **extra)
    except BaseException:
        _part(path).unlink(missing_ok=True)
        raise
    return path


def _join(files: list[Path], opts, args: argparse.Namespace, meta: dict) -> Path:
    """Snapshots of one machine as one recording: equal lengths and rates, `segment` = a snapshot."""
    from edgefleet.toolchain.import_readers import reader_for
    from edgefleet.toolchain.importers import Piece

    snaps: list[Piece] = []
    for f in files:
        pieces = list(reader_for(f)(f, opts))
        if len(pieces) != 1:
            raise DataError(f"{f.name}: not one snapshot")
        if snaps and (pieces[0].fs != snaps[0].fs or pieces[0].signal.size != snaps[0].signal.size):
            raise DataError(f"{f.name}: {pieces[0].signal.size} samples at {pieces[0].fs:g} Hz, but "
                            f"{files[0].name} has {snaps[0].signal.size} at {snaps[0].fs:g} Hz: snapshots to join "
                            "must be alike")
        snaps.append(pieces[0])
    n, fs = snaps[0].signal.size, snaps[0].fs
    step = args.interval if args.interval is not None else n / fs
    if step < n / fs:
        raise DataError(f"--interval {step:g} s is shorter than one snapshot ({n / fs:g} s)")
    joined = Piece(np.concatenate([s.signal for s in snaps]), fs, f"{len(snaps)} snapshots {files[0].name}.."
                   f"{files[-1].name}", snaps[0].channel, snaps[0].unit)
    name = _safe(args.machine or files[0].parent.name or "snapshots") + "-joined"
    return _write(args.out / f"{name}.npz", joined, meta, segment=np.int64(n),
                  t_s=np.arange(len(snaps), dtype=np.float64) * step)
