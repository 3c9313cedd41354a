"""`edgefleet model ...`: train, evaluate, import, run and describe int8 anomaly models."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from edgefleet.commands.fleet_db import db_arg
from edgefleet.commands.helptext import Formatter, examples
from edgefleet.errors import DataError, EdgefleetError, ModelImportError

log = logging.getLogger("edgefleet.model")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="train, evaluate, import, run and describe models",
                       description="Anomaly models: an int8 autoencoder over spectral features, "
                       "shipped as a compact artifact that microcontrollers read in place.")
    ms = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    t = ms.add_parser("train", help="train a model folder from recordings of normal running",
                      description="Trains on windows of recordings labelled 'normal' (others are used "
                      "only for evaluation), sets the threshold on the held-out tail of each normal "
                      "recording, quantizes to full int8 and writes a model folder: .tflite files, "
                      "model.efm artifact, signed manifest.json, card.json and card.md.",
                      epilog=examples("edgefleet model train --data ../shared/data/cwru --out models/cwru",
                                      "edgefleet model train --data recordings/ --features v2 --commission --out models/v2"),
                      formatter_class=Formatter)
    t.add_argument("--data", required=True, type=Path,
                   help="folder of .npz recordings: signal, fs (Hz), label, unit (default g), scale for counts "
                        "(docs/features.md, Recordings); other formats: `edgefleet data import`")
    t.add_argument("--out", type=Path, default=Path("model"), help="model folder to write (default: ./model)")
    t.add_argument("--epochs", type=int, default=150, help="training epochs (default 150)")
    t.add_argument("--bands", type=int, default=32, help="spectral bands = model inputs (default 32)")
    t.add_argument("--fmin", type=float, default=100.0, help="lowest band edge, Hz (default 100)")
    t.add_argument("--fmax", type=float, default=5000.0, help="highest band edge, Hz (default 5000)")
    t.add_argument("--spacing", choices=["linear", "log"], default="linear", help="band spacing (default linear)")
    t.add_argument("--window", type=float, default=0.08,
                   help="window length, seconds (default 0.08; in --features v2 the length of the "
                        "high-frequency segments averaged over the ~1 s window)")
    t.add_argument("--features", choices=["v1", "v2"], default="v1",
                   help="feature definition (docs/features.md): v1 bearing bands of one short window; v2 adds "
                        "running-speed bands 5-150 Hz (unbalance, misalignment, looseness), velocity RMS in "
                        "mm/s, kurtosis and crest over ~1 s windows (default v1)")
    t.add_argument("--hidden", default="16,8,16", help="hidden layer widths (default 16,8,16)")
    t.add_argument("--version", type=int, default=None, dest="model_version",
                   help="model version (default: the next free one in the fleet database --db, so that "
                        "nodes take it as an update; 1 without a database)")
    t.add_argument("--db", type=db_arg, default=None,
                   help="fleet database (SQLite file or postgresql:// URL) to pick the next free version "
                        "from (default $EDGEFLEET_DB or var/edgefleet.db)")
    t.add_argument("--model-id", default=None, help="model name in the manifest (default: folder name)")
    t.add_argument("--key", type=Path, default=None,
                   help="Ed25519 signing key (default $EDGEFLEET_SIGNING_KEY or ~/.config/edgefleet/signing.key, created if absent)")
    t.add_argument("--requant", choices=["fp32", "int"], default="fp32",
                   help="bit-exact target: fp32 = LiteRT default resolver, int = LiteRT reference kernels "
                        "(default fp32)")
    t.add_argument("--seed", type=int, default=0, help="random seed of the training (default 0)")
    t.add_argument("--no-tflm", action="store_true", help="skip measuring the TFLM arena for the card")
    t.add_argument("--commission", action="store_true",
                   help="train for commissioned nodes: standardize each machine (recording key `machine`) "
                        "and speed class (`rpm`) by its own robust baseline, as a node will on site "
                        "(docs/baseline.md); the card then says the model expects commissioning")
    t.set_defaults(func=cmd_train)

    e = ms.add_parser("evaluate", help="ROC AUC per recording and overall, float and int8",
                      description="Scores every window of labelled recordings with the model folder's float "
                      "and int8 models and prints the ROC AUC (normal against the other labels) per "
                      "recording and overall, and the share of windows over the threshold.",
                      epilog=examples("edgefleet model evaluate models/cwru --data ../shared/data/cwru",
                                      "edgefleet model evaluate models/cwru --data ../shared/data/cwru --json"),
                      formatter_class=Formatter)
    e.add_argument("model_dir", type=Path, help="model folder (from `edgefleet model train`)")
    e.add_argument("--data", required=True, type=Path,
                   help="folder of labelled .npz recordings (as for train; other formats: `edgefleet data import`)")
    e.add_argument("--json", action="store_true", help="print one JSON object (auc_int8, auc_float, per_file)")
    e.add_argument("--commission", action="store_true",
                   help="judge the model as a node runs it: each machine (`machine` key of a recording) "
                        "first commissions a baseline on the start of its normal recordings (classes from "
                        "`rpm`), then its held-out normal and fault recordings are scored (docs/baseline.md)")
    e.add_argument("--commission-fraction", type=float, default=0.5, metavar="F",
                   help="share of each normal recording used to commission (default 0.5)")
    e.set_defaults(func=cmd_evaluate)

    i = ms.add_parser("import", help="make an artifact from an int8 .tflite",
                      description="Converts a full-int8 .tflite whose graph is a chain of FULLY_CONNECTED "
                      "layers (fused ReLU/ReLU6 or none; per-channel or per-tensor weights) into an "
                      "artifact. Other ops are refused with the op's name.",
                      epilog=examples("edgefleet model import autoencoder_int8.tflite --out models/ae.efm",
                                      "edgefleet model import ae.tflite --out models/ae.efm --version 3 --requant int"),
                      formatter_class=Formatter)
    i.add_argument("tflite", type=Path, help="the full-int8 .tflite model to convert")
    i.add_argument("--out", required=True, type=Path, help="artifact file to write (.efm)")
    i.add_argument("--version", type=int, default=1, dest="model_version",
                   help="model version written into the artifact; nodes take a higher one as an update (default 1)")
    i.add_argument("--requant", choices=["fp32", "int"], default="fp32",
                   help="bit-exact target: fp32 = LiteRT default resolver, int = LiteRT reference kernels "
                        "(default fp32)")
    i.set_defaults(func=cmd_import)

    r = ms.add_parser("run", help="int8 batch inference: X.npy [n, inputs] -> Y.npy [n, outputs]",
                      description="Runs an artifact on a batch of int8 inputs with the host engine (the same "
                      "arithmetic as a node) and writes the int8 outputs.",
                      epilog=examples("edgefleet model run edgefleet/models/fleet-default --input x.npy --output y.npy",
                                      "edgefleet model run models/ae.efm --input x.npy --output y.npy --engine numpy"),
                      formatter_class=Formatter)
    r.add_argument("artifact", type=Path, help="artifact file, or a model folder")
    r.add_argument("--input", required=True, type=Path, help="int8 .npy of shape [n, inputs]")
    r.add_argument("--output", required=True, type=Path, help=".npy to write, int8 [n, outputs]")
    r.add_argument("--engine", choices=["simd", "blas", "numpy"], default=None,
                   help="engine backend (default: the fastest this machine has, or EDGEFLEET_ENGINE); all "
                        "give the same bits, so another backend rules the engine out when a result looks wrong")
    r.set_defaults(func=cmd_run)

    c = ms.add_parser("card", help="print a model folder's card",
                      description="Prints the model card that training wrote (card.json) as Markdown: data, "
                      "features, threshold, accuracy, footprint and latency.",
                      epilog=examples("edgefleet model card edgefleet/models/fleet-default",
                                      "edgefleet model card models/cwru --json"),
                      formatter_class=Formatter)
    c.add_argument("model_dir", type=Path, help="model folder (holding card.json)")
    c.add_argument("--json", action="store_true", help="print card.json itself instead of Markdown")
    c.set_defaults(func=cmd_card)


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty())


def cmd_train(args: argparse.Namespace) -> int:
    from edgefleet.runtime import keys, manifest
    from edgefleet.toolchain.card import footprint, host_latency, to_markdown
    from edgefleet.toolchain.datasets import load_folder
    from edgefleet.toolchain.evaluation import evaluate
    from edgefleet.toolchain.model_folder import (
        ARTIFACT,
        CARD_JSON,
        CARD_MD,
        FLOAT,
        INT8,
        MANIFEST,
        ModelFolder,
    )
    from edgefleet.toolchain.tflm_arena import smallest_arena
    from edgefleet.toolchain.training import TrainConfig, train_model

    try:
        hidden = [int(v) for v in args.hidden.split(",") if v]
    except ValueError as exc:
        raise EdgefleetError(f"--hidden must be comma-separated integers, got {args.hidden!r}") from exc
    if args.epochs < 1:
        raise EdgefleetError("--epochs must be >= 1")
    if args.model_version is None:
        args.model_version = next_free_version(args.db)
        log.info("model version %d: the next free one", args.model_version)
    elif args.model_version < 1:
        raise EdgefleetError("--version must be 1 or more")
    cfg = TrainConfig(n_bands=args.bands, f_lo_hz=args.fmin, f_hi_hz=args.fmax, window_s=args.window,
                      spacing=args.spacing,
                      hidden=hidden, epochs=args.epochs, seed=args.seed, model_version=args.model_version,
                      requant=args.requant, commission=args.commission, front_end=int(args.features[1]))
    recordings = load_folder(args.data)
    log.info("loaded %d recordings from %s (%d normal)", len(recordings), args.data,
             sum(r.is_normal for r in recordings))
    _check_band_top(recordings, args.fmax)
    bar = _progress(cfg.epochs, "training")

    def on_epoch(epoch: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if epoch % max(1, cfg.epochs // 5) == 0 or epoch == cfg.epochs:
            log.info("epoch %d/%d loss %.4f", epoch, cfg.epochs, loss)

    trained = train_model(recordings, cfg, progress=on_epoch)
    bar.close()
    art = trained.artifact
    art_bytes = art.to_bytes()
    folder = ModelFolder(args.out)
    model_id = args.model_id or args.out.resolve().name
    key, created = keys.load_or_create(args.key)
    if created:
        log.info("created signing key %s (public key beside it, .pub)", args.key or keys.DEFAULT_KEY)
    body = manifest.build_body(art_bytes, art, key.public_key(), model_id=model_id)

    log.info("evaluating on %s", args.data)
    normal_names = {r.name: cfg.train_fraction for r in recordings if r.is_normal}
    ev = evaluate(art, trained.tflite_float, recordings, trained_on=normal_names)
    if cfg.commission:  # judged as nodes will run it: each machine on its own baseline
        from edgefleet.toolchain.evaluation import evaluate_commissioned

        ev["commissioned"] = evaluate_commissioned(art, recordings, fraction=cfg.train_fraction,
                                                   folder_name=Path(args.data).resolve().name)
    log.info("measuring host latency and the TFLM arena")
    card = {
        "model_id": model_id, "version": art.model_version, "created": body["created"],
        "threshold": float(art.scoring.threshold),
        "expects_commissioning": cfg.commission,
        "features": {"window_s": cfg.window_s, "bands": cfg.n_bands, "f_lo_hz": cfg.f_lo_hz,
                     "f_hi_hz": cfg.f_hi_hz, "spacing": cfg.spacing,
                     "definition": f"docs/features.md v{art.features.params.version}",
                     "inputs": art.features.params.feature_names()},
        "footprint": footprint(art, len(art_bytes)),
        "tflm_arena_bytes": None if args.no_tflm else smallest_arena(trained.tflite_int8),
        "evaluation": ev,
        "latency": host_latency(art, trained.tflite_int8),
        "training": {"config": trained.card_config(), "files": sorted(normal_names),
                     "train_windows": trained.train_windows, "val_windows": trained.val_windows,
                     "final_loss": trained.history[-1], "trained_on": normal_names},
    }
    folder.write(INT8, trained.tflite_int8)
    folder.write(FLOAT, trained.tflite_float)
    folder.write(ARTIFACT, art_bytes)
    folder.write(MANIFEST, manifest.sign(body, key))
    folder.write(CARD_JSON, json.dumps(card, indent=2, default=float) + "\n")
    folder.write(CARD_MD, to_markdown(card))
    print(to_markdown(card))
    print(f"wrote {args.out}/ ({ARTIFACT} {len(art_bytes)} B, {MANIFEST} signed with key "
          f"{body['key_id']})")
    return 0


def _check_band_top(recordings, fmax: float) -> None:
    """Before training: a recording whose Nyquist frequency is under --fmax cannot feed the bands;
    say which --fmax it can (an 8 kHz WAV sees up to 4 kHz, the default bands reach 5 kHz)."""
    slowest = min(recordings, key=lambda r: r.fs)
    if fmax > slowest.fs / 2:
        raise DataError(f"{slowest.name}: recorded at {slowest.fs:g} Hz, it sees up to {slowest.fs / 2:g} Hz (Nyquist), but the "
                        f"bands reach --fmax {fmax:g} Hz: pass --fmax {0.45 * slowest.fs:g} or leave it out")


def next_free_version(db: Path | str | None) -> int:
    """One above every version the fleet knows: published in the registry or running on a device
    (a node refuses an update that is not newer than what it runs)."""
    import sqlite3

    from edgefleet.service.config import default_db
    from edgefleet.service.store.url import is_db_url

    if is_db_url(str(db or default_db())):  # a PostgreSQL store: read it as it is (no migration)
        from edgefleet.service.store.postgres import connect, schema_version

        conn = connect(str(db or default_db()), migrate_schema=False)
        try:
            if schema_version(conn) <= 0:
                return 1
            return 1 + max(conn.execute("SELECT coalesce(max(version), 0) FROM ota_models").fetchone()[0],
                           conn.execute("SELECT coalesce(max(model), 0) FROM devices").fetchone()[0])
        finally:
            conn.close()
    path = Path(db or default_db())
    if not path.is_file():
        return 1 if db is None else _missing_db(path)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        seen = [0]
        for sql in ("SELECT max(version) FROM ota_models", "SELECT max(model) FROM devices"):
            try:
                seen.append(con.execute(sql).fetchone()[0] or 0)
            except sqlite3.DatabaseError:
                pass  # a store without that table yet
    finally:
        con.close()
    return max(seen) + 1


def _missing_db(path: Path) -> int:
    raise EdgefleetError(f"no fleet database at {path} to pick the next version from; pass --version N")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from edgefleet.toolchain.datasets import load_folder
    from edgefleet.toolchain.evaluation import evaluate
    from edgefleet.toolchain.model_folder import ModelFolder

    folder = ModelFolder(args.model_dir)
    art = folder.artifact()
    trained_on = (folder.card().get("training") or {}).get("trained_on", {})
    recordings = load_folder(args.data)
    if args.commission:
        return _evaluate_commissioned(art, recordings, args)
    ev = evaluate(art, folder.tflite_float(), recordings, trained_on=trained_on)
    if args.json:  # NaN (no normal or no fault windows to compare) is not JSON: null
        print(json.dumps(_no_nan(ev), default=float))
        return 0
    print(f"{'recording':28} {'label':11} {'windows':>7} {'AUC int8':>9} {'AUC float':>9} {'flagged':>8}")
    for f in ev["per_file"]:
        a8 = "—" if f["auc_int8"] is None else f"{f['auc_int8']:.4f}"
        af = "—" if f["auc_float"] is None else f"{f['auc_float']:.4f}"
        print(f"{f['name']:28} {f['label']:11} {f['windows']:7d} {a8:>9} {af:>9} {f['anomaly_rate']:8.0%}")
    print("\n" + _overall(ev))
    return 0


def _no_nan(v):
    """NaN (an AUC without normal or without fault windows) as null: NaN is not JSON."""
    if isinstance(v, dict):
        return {k: _no_nan(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_no_nan(x) for x in v]
    return None if isinstance(v, float) and v != v else v


def _overall(ev: dict) -> str:
    """The summary line; without normal or without fault windows there is no AUC, and it says why."""
    tail = f"{ev['normal_windows']} normal windows (held-out tail of training recordings); threshold {ev['threshold']:.4g}"
    if not ev["normal_windows"]:
        labels = sorted({f["label"] for f in ev["per_file"]})
        return (f"no AUC: no normal recording (label 'normal'; labels found: {', '.join(labels)}) to compare the "
                "fault recordings with; add one of this machine's normal running. " + tail)
    if ev["min_file_auc_int8"] is None:
        return ("no AUC: no fault recordings (every label is 'normal'); the 'flagged' column is the "
                "false-alarm rate. " + tail)
    return (f"overall AUC int8 {ev['auc_int8']:.4f}, float {ev['auc_float']:.4f}; worst file "
            f"{ev['min_file_auc_int8']:.4f}; " + tail)


def _evaluate_commissioned(art, recordings, args: argparse.Namespace) -> int:
    from edgefleet.toolchain.evaluation import evaluate_commissioned

    if not 0.0 < args.commission_fraction < 1.0:
        raise DataError(f"--commission-fraction must be between 0 and 1 (exclusive), got {args.commission_fraction}")
    ev = evaluate_commissioned(art, recordings, fraction=args.commission_fraction,
                               folder_name=Path(args.data).resolve().name)
    if args.json:
        print(json.dumps(ev, default=float))
        return 0
    fmt = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
    print(f"{'machine':24} {'classes':>7} {'windows':>7} {'AUC':>7} {'false alarms':>12} {'detected':>8}")
    for name, m in ev["machines"].items():
        if "error" in m:
            print(f"{name:24} not commissioned: {m['error']}")
            continue
        print(f"{name:24} {len(m['classes']):7d} {m['windows']:7d} {fmt(m['auc_int8'], '.4f'):>7} "
              f"{fmt(m['false_alarm_rate'], '.1%'):>12} {fmt(m['detection_rate'], '.1%'):>8}")
    print("\nAUC by label: " + (", ".join(f"{k} {v:.4f}" for k, v in ev["by_label"].items())
                                 or "none (no fault recordings: the false-alarm rate on held-out normal windows is the check)"))
    print(f"worst machine AUC {fmt(ev['min_machine_auc'], '.4f')}; {ev['uncommissioned_windows']} windows in "
          f"uncommissioned conditions (not judged); commissioned on the first "
          f"{ev['commission_fraction']:.0%} of each normal recording")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from edgefleet.toolchain.tflite_import import import_tflite

    try:
        data = args.tflite.read_bytes()
    except OSError as exc:
        raise ModelImportError(f"cannot read {args.tflite}: {exc.strerror}") from exc
    art = import_tflite(data, model_version=args.model_version, requant=args.requant)
    blob = art.to_bytes()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(blob)
    print(f"wrote {args.out}: {len(art.layers)} layers "
          f"({' -> '.join([str(art.n_inputs)] + [str(l.n_out) for l in art.layers])}), {art.macs} MACs, "
          f"{len(blob)} B, activation RAM {art.arena_bytes} B, requant {args.requant}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edgefleet.runtime.artifact import load_artifact
    from edgefleet.runtime.engine import Int8Engine
    from edgefleet.toolchain.model_folder import ARTIFACT

    path = args.artifact / ARTIFACT if args.artifact.is_dir() else args.artifact
    art = load_artifact(path)
    try:
        with open(args.input, "rb") as f:
            if f.read(6) != b"\x93NUMPY":  # else numpy's error advises unpickling the file
                raise DataError(f"{args.input} is not a .npy file (write one with numpy.save)")
        x = np.load(args.input, allow_pickle=False)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read {args.input} as .npy: {exc}") from exc
    if x.dtype != np.int8:
        raise DataError(f"{args.input} holds {x.dtype}; int8 inputs are required (quantize first)")
    if x.ndim != 2 or x.shape[1] != art.n_inputs:
        raise DataError(f"{args.input} has shape {x.shape}; this model takes [n, {art.n_inputs}]")
    engine = Int8Engine(art, backend=args.engine)
    y = engine.infer(x)
    np.save(args.output, y)
    print(f"wrote {args.output}: {y.shape[0]} rows x {y.shape[1]} int8 (engine backend {engine.backend})")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from edgefleet.toolchain.card import to_markdown
    from edgefleet.toolchain.model_folder import ModelFolder

    card = ModelFolder(args.model_dir).card()
    if not card:
        raise EdgefleetError(f"{args.model_dir} has no card.json (train it with `edgefleet model train`)")
    print(json.dumps(card, indent=2) if args.json else to_markdown(card))
    return 0
