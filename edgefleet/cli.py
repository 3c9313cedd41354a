"""The `edgefleet` command line: one sub-command group per module in `edgefleet.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from edgefleet import __version__
from edgefleet.errors import EdgefleetError

# Each module defines `register(subparsers)`; its parsers set `func(args) -> int`.
COMMAND_MODULES = ["model", "keys", "fleet", "sim", "ota", "commission", "replay", "demo", "bridge", "doctor",
                   "alarms", "machine", "pki", "device", "data", "users", "audit"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefleet",
        description="Predictive maintenance for TinyML machine fleets: train and ship int8 "
        "anomaly detectors, run the fleet service, simulate nodes.",
        epilog="Run `edgefleet COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"edgefleet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"edgefleet.commands.{name}")
        except ImportError as exc:  # a broken install must not lose a command without a word
            raise EdgefleetError(
                f"command group {name!r} cannot be loaded ({exc}); the installation is incomplete: "
                "run `bash scripts/setup.sh` again") from exc
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except EdgefleetError as exc:
        print(f"edgefleet: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not args.verbose:  # TensorFlow's start-up chatter (imported later, by training) only with -v
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgefleetError as exc:
        print(f"edgefleet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edgefleet ... | head`: the reader left; not an error, and no second one at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug: say so in one line; the traceback only when asked for (-v)
        if args.verbose:
            raise
        print(f"edgefleet: internal error: {type(exc).__name__}: {exc} (run again with -v for the details, "
              "and please report it)", file=sys.stderr)
        return 3
