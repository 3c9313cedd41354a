"""`edgefleet data pull`: export what the fleet database holds for some devices and a time range: results as CSV
or Parquet, or the nodes' debug captures (raw windows) as `.npz` recordings for `edgefleet model train`;
`edgefleet data import`: recordings from other tools (CSV, WAV, .mat, .npy) as such `.npz`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edgefleet.commands.fleet_db import db_arg, db_label, require_db

log = logging.getLogger("edgefleet.data")


def register(sub: argparse._SubParsersAction) -> None:
    from edgefleet.service.config import default_db

    p = sub.add_parser("data", help="export the fleet's results or debug captures (CSV, Parquet, .npz)",
                       description=__doc__.split("\n\n")[0].replace("\n", " "))
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    pull = dsub.add_parser(
        "pull", help="results of devices over a time range as CSV or Parquet; debug captures as .npz recordings",
        description="Reads the fleet database (SQLite file or postgresql:// URL) oldest first in bounded slices and "
                    "writes one file (csv, parquet) or a folder of recordings (npz: one per debug capture, keyed "
                    "signal, fs, label, rpm, machine = the device, as `edgefleet model train --data` reads them).",
        epilog="examples:\n"
               "  edgefleet data pull --device sim-0007 --since 24h --out sim-0007.csv\n"
               "  edgefleet data pull --site plant-north --since 2026-12-01 --until 2026-12-06 --out north.parquet\n"
               "  edgefleet data pull --site plant-north --since 7d --format npz --out recordings/\n"
               "  edgefleet data pull --target site=north --seconds 30 --out recordings/   # ask the nodes now\n"
               "times: ISO date-times in UTC (2026-12-06T08:00:00Z, '2026-12-06 08:00'), dates, or ages (15m, 2h, 7d)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    pull.add_argument("--device", action="append", default=[], metavar="ID",
                      help="a device id (repeat, or comma-separate, for several; default every device)")
    pull.add_argument("--site", help="every device at this site (with --device: those of them at the site)")
    pull.add_argument("--since", help="start of the range (default: the oldest result kept)")
    pull.add_argument("--until", help="end of the range (default: now)")
    pull.add_argument("--out", type=Path, required=True,
                      help="file to write (.csv, .parquet) or, for npz, a folder of recordings")
    pull.add_argument("--format", choices=["csv", "parquet", "npz"],
                      help="default from --out: .parquet -> parquet, a folder or no suffix -> npz, else csv")
    pull.add_argument("--label", default="normal",
                      help="label of the npz recordings (default normal: what training learns from)")
    pull.add_argument("--max-captures", type=int, default=1000, metavar="N",
                      help="newest debug captures read per device (npz; default 1000)")
    pull.add_argument("--target", metavar="T",
                      help="ask these nodes for fresh raw windows now (all, site=S, line=L, tag=T) instead of "
                           "reading stored captures; needs --seconds and a running `edgefleet serve`")
    pull.add_argument("--seconds", type=float, metavar="N",
                      help="with --target: seconds of signal to collect per machine (one window per request)")
    pull.add_argument("--timeout", type=float, default=30.0, metavar="S",
                      help="with --target: give up on a node that has not answered a request within S seconds "
                           "(default 30)")
    pull.add_argument("--db", type=db_arg, default=db_arg(default_db()),
                      help=f"fleet database (default $EDGEFLEET_DB or {db_label(default_db())})")
    pull.set_defaults(func=cmd_pull)
    from edgefleet.commands.data_import import add_parser

    add_parser(dsub)


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    suffix = args.out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    if args.out.is_dir() or not suffix:
        return "npz"
    return "csv"


def _bar(total: int, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, file=sys.stderr, leave=False, desc="pull",
                disable=not sys.stderr.isatty())


def cmd_pull(args: argparse.Namespace) -> int:
    from edgefleet.clock import now_ms
    from edgefleet.errors import EdgefleetError
    from edgefleet.service import export
    from edgefleet.service.store import open_store

    if args.target is not None or args.seconds is not None:
        return _pull_live(args)
    fmt = _format(args)
    out: Path = args.out
    if fmt == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            out = out.with_suffix(".csv")
            fmt = "csv"
            print(f"note: pyarrow is not installed, so no Parquet: writing CSV to {out} instead "
                  "(pip install pyarrow for Parquet)", file=sys.stderr)
    if args.max_captures < 1:
        raise EdgefleetError("--max-captures must be 1 or more")
    export.check_writable(out, folder=fmt == "npz")
    now = now_ms()
    until = export.parse_when(args.until, now) if args.until else now
    since = export.parse_when(args.since, now) if args.since else None
    devices = [d.strip() for v in args.device for d in v.split(",") if d.strip()]
    where = db_label(args.db)
    store = open_store(str(require_db(args.db)))
    try:
        sel = export.select(store, where, devices=devices, site=args.site, since_ms=since, until_ms=until)
        span = (f"between {export.iso(sel.since_ms)} and {export.iso(until)}" if since is not None
                else f"up to {export.iso(until)}")
        what = (f"{sel.devices[0]}" if len(sel.devices) == 1 else f"{len(sel.devices)} devices")
        if fmt == "npz":
            caps = list(export.captures(store, sel, args.max_captures))
            if not caps:
                raise export.ExportError(f"no debug captures with samples from {what} {span} in {where}: nothing "
                                         "written (a node sends one when asked with a `debug` command)")
            with _bar(len(caps), "capture") as bar:
                n = export.write_npz(out, caps, store, args.label, bar.update)
            print(f"wrote {n:,} recordings ({what}, {span}) to {out}/ from {where}")
            return 0
        slices = export.plan(store, sel)
        total = sum(s[3] for s in slices)
        if not total:
            raise export.ExportError(f"no results from {what} {span} in {where}: nothing written")
        writer = export.write_parquet if fmt == "parquet" else export.write_csv
        try:
            with _bar(total, "result") as bar:
                n = writer(out, export.rows(store, slices), bar.update)
        except OSError as exc:
            raise export.ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
        print(f"wrote {n:,} results ({what}, {span}) to {out} ({fmt}) from {where}")
        return 0
    finally:
        store.close()


def _pull_live(args: argparse.Namespace) -> int:
    """--target T --seconds N: ask the nodes for raw windows now and write them as recordings."""
    from edgefleet.errors import EdgefleetError
    from edgefleet.service import export
    from edgefleet.service.capture import MAX_SECONDS, request_captures
    from edgefleet.service.commissioning import target_devices
    from edgefleet.service.ota.registry import OtaRegistry
    from edgefleet.service.store import open_store

    if args.target is None or args.seconds is None:
        raise EdgefleetError("--target and --seconds go together (ask these nodes for N seconds of signal each)")
    if not 0 < args.seconds <= MAX_SECONDS:
        raise EdgefleetError(f"--seconds must be above 0 and at most {MAX_SECONDS:g} per machine, got {args.seconds:g}")
    if args.device or args.site or args.since or args.until:
        raise EdgefleetError("--target asks the nodes now: it takes no --device, --site, --since or --until")
    if args.format not in (None, "npz"):
        raise EdgefleetError("--target writes .npz recordings (one per window): leave out --format or use npz")
    if args.timeout <= 0:
        raise EdgefleetError("--timeout must be above 0 seconds")
    export.check_writable(args.out, folder=True)
    where = db_label(args.db)
    store = open_store(str(require_db(args.db)))
    reg = OtaRegistry(args.db)
    try:
        devices = target_devices(store, args.target)
        print(f"asking {len(devices)} node(s) for {args.seconds:g} s of signal each "
              f"({', '.join(devices[:5])}{', ...' if len(devices) > 5 else ''}); `edgefleet serve` sends the "
              f"requests (database {where})", file=sys.stderr)
        with _bar(int(round(args.seconds * len(devices))), "s") as bar:
            got = request_captures(store, reg, devices, args.seconds, timeout_s=args.timeout,
                                   progress=lambda s: bar.update(s))
        caps = [(g.device, ts, body) for g in got for ts, body in g.captures]
        for g in got:
            if g.failed:
                print(f"{g.device}: {g.failed}; kept {g.seconds:.1f} s", file=sys.stderr)
        if not caps:
            raise export.ExportError(f"no node answered: nothing written to {args.out}")
        n = export.write_npz(args.out, caps, store, args.label, lambda _: None)
    finally:
        reg.close()
        store.close()
    full = sum(1 for g in got if not g.failed)
    print(f"wrote {n:,} recordings ({sum(g.seconds for g in got):.1f} s of signal from {len(got) - sum(bool(g.failed) for g in got)}"
          f" of {len(got)} machine(s), {full} complete) to {args.out}/")
    return 0 if full == len(got) else 1
