"""`edgefleet doctor`: check a deployment for what would lose data, and say how to fix it.

The checks live in `edgefleet.service.doctor`; this module parses the command line, prints the
checklist (or one JSON object) and turns the report into the exit status (docs/doctor.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
import time

from edgefleet.errors import EdgefleetError
from edgefleet.service.store.url import mask_url

DESCRIPTION = """\
Check a deployment for the settings that lose data without a trace, and print a checklist with
the fix for each problem. The broker is probed with real MQTT traffic (its config file is never
read), on topics under ef-doctor/<random>/ with client ids ef-doctor-<random>-*; the store is
opened read-only, so the doctor can run beside `edgefleet serve`.

broker (--broker):
  broker.mqtt5                the broker answers, accepts MQTT v5 and carries a QoS 1 message
  broker.session              a persistent session (clean_start=0, session expiry) survives a
                              reconnect and receives what was published while it was away
  broker.queue                a burst of --burst QoS 1 messages is published to an offline
                              session: how many does the broker keep? Mosquitto keeps 1,000 by
                              default (max_queued_messages) and drops the rest silently
  broker.message_size         one payload of the protocol's largest size (512 KiB) gets through;
                              if refused, the largest that does is found and reported
  broker.retained             a retained message reaches a subscriber that comes later
  broker.shared_subscription  two members of a $share/ group split the messages between them
  broker.tls                  mqtts://: the TLS handshake nodes make (CA, host name, expiry: warn
                              under 30 days); mqtt:// off loopback: a warning (readable, forgeable)
  broker.anonymous            a client with no credentials and no certificate is refused; one let
                              in can publish as any device (its real results become duplicates):
                              fail, or a warning on loopback (`edgefleet broker` for development)
store (--db):
  store.file                  the file exists, is SQLite, and the file and its directory are writable
  store.wal                   journal_mode is wal (readers do not block ingest)
  store.schema                PRAGMA user_version is the one this edgefleet writes
  store.disk                  free disk lasts at least 7 days at the last hour's rate (retention
                              taken into account)
  clock.skew                  device time vs ingest time over each device's latest results:
                              warn over 60 s; fail when a clock is behind by more than retention

A broker whose ACL keeps the doctor out shows "could not probe: not authorized" (skipped), not a
failure. Progress goes to stderr; the checklist (or --json) to stdout."""

EPILOG = """\
exit status: 0 nothing found that loses data (warnings allowed), 1 a check failed, 2 usage error

examples:
  edgefleet doctor                                   # $EDGEFLEET_BROKER_URL and $EDGEFLEET_DB, or the defaults
  edgefleet doctor --broker mqtt://broker.plant:1883 --db /var/lib/edgefleet/edgefleet.db
  edgefleet doctor --broker mqtt://doctor:secret@broker.plant:1883 --skip store
  edgefleet doctor --broker mqtts://broker.plant:8883 --ca pki/ca.crt --cert pki/ef-ingest-1.crt --key pki/ef-ingest-1.key
  edgefleet doctor --burst 50000 --json | jq '.checks[] | select(.status != "pass")'

a failing queue check looks like:
  {fail} broker.queue: an offline session kept 1,000 of 2,000 QoS 1 messages: the broker dropped 1,000 ...
      fix: in mosquitto.conf set `max_queued_messages 1000000` ... and `max_queued_bytes 0` ...

See docs/doctor.md for what each check measures and why."""

SYMBOLS = {"pass": "✔", "fail": "✘", "warn": "!", "skip": "-"}
ASCII_SYMBOLS = {"pass": "+", "fail": "x", "warn": "!", "skip": "-"}


def register(sub: argparse._SubParsersAction) -> None:
    from edgefleet.service.config import default_db
    from edgefleet.service.doctor import (
        DEFAULT_BURST,
        DEFAULT_CLOCK_SAMPLES,
        DEFAULT_TIMEOUT_S,
    )

    p = sub.add_parser("doctor", help="check broker, store and clocks for what would lose data; print the fixes",
                       description=DESCRIPTION, epilog=EPILOG.format(fail=_symbols()["fail"]),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", metavar="URL",
                   help="broker to probe, mqtt://[user:password@]host[:port] (default $EDGEFLEET_BROKER_URL or "
                        "mqtt://127.0.0.1:1883; credentials also from EDGEFLEET_BROKER_USERNAME/_PASSWORD)")
    p.add_argument("--ca", metavar="PEM", help="mqtts://: CA of the broker's certificate (EDGEFLEET_MQTT_CA)")
    p.add_argument("--cert", metavar="PEM", help="mqtts:// with client certificates: the doctor's certificate "
                   "(EDGEFLEET_MQTT_CERT; an account the broker knows, e.g. the ingest one)")
    p.add_argument("--key", metavar="PEM", help="its private key (EDGEFLEET_MQTT_KEY)")
    p.add_argument("--db", metavar="PATH", default=default_db(),
                   help=f"fleet store to check: a SQLite file or a postgresql:// URL (default $EDGEFLEET_DB or "
                        f"{mask_url(default_db())})")
    p.add_argument("--json", action="store_true",
                   help='one JSON object on stdout: {"ok": bool, "checks": [{"name", "status", "detail", "fix"}]}')
    p.add_argument("--burst", type=int, default=DEFAULT_BURST, metavar="N",
                   help=f"QoS 1 messages queued for the offline session (default {DEFAULT_BURST:,}); the queue "
                        "check can only see a limit below N")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"seconds to wait for each broker answer (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--clock-samples", type=int, default=DEFAULT_CLOCK_SAMPLES, metavar="N",
                   help=f"latest results per device for the clock check (default {DEFAULT_CLOCK_SAMPLES})")
    p.add_argument("--skip", action="append", choices=["broker", "store"], default=[],
                   help="leave out the broker checks or the store and clock checks (repeatable)")
    p.set_defaults(func=cmd_doctor)


def _check_args(args: argparse.Namespace) -> None:
    if not 1 <= args.burst <= 10_000_000:
        raise EdgefleetError(f"--burst must be 1..10,000,000, got {args.burst}")
    if not args.timeout > 0:
        raise EdgefleetError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.clock_samples < 1:
        raise EdgefleetError(f"--clock-samples must be at least 1, got {args.clock_samples}")


def _progress(msg: str) -> None:
    print(f"doctor: {msg}", file=sys.stderr, flush=True)


def _symbols() -> dict[str, str]:
    """✔/✘ where stdout can encode them, plain ASCII otherwise (never a UnicodeEncodeError)."""
    try:
        "".join(SYMBOLS.values()).encode(sys.stdout.encoding or "ascii")
        return SYMBOLS
    except (UnicodeEncodeError, LookupError):
        return ASCII_SYMBOLS


def format_report(report, header: str) -> str:
    """The checklist: one line per check, its fix indented below (once, when checks share it)."""
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
    sym = _symbols()
    out, last_fix = [header, ""], ""
    for c in report.checks:
        out.append(textwrap.fill(f"{sym[c.status]} {c.name}: {c.detail}", width, subsequent_indent="    "))
        if c.fix and c.status != "pass" and c.fix != last_fix:
            out.append(textwrap.fill(f"fix: {c.fix}", width, initial_indent="    ", subsequent_indent="         "))
        last_fix = c.fix if c.status != "pass" else ""
    counts = {s: sum(1 for c in report.checks if c.status == s) for s in ("fail", "warn", "pass", "skip")}
    tally = f"{counts['fail']} failed, {counts['warn']} warnings, {counts['pass']} passed, {counts['skip']} skipped"
    verdict = ("nothing found that loses data" if report.ok else
               f"the {sym['fail']} lines lose data: fix them and run `edgefleet doctor` again")
    return "\n".join(out + ["", f"{tally}: {verdict}"])


def cmd_doctor(args: argparse.Namespace) -> int:
    from edgefleet.service.config import load_settings
    from edgefleet.service.doctor import run_doctor

    _check_args(args)
    from edgefleet.protocol.connect import TlsFiles

    settings = load_settings(broker_url=args.broker, mqtt_ca=args.ca, mqtt_cert=args.cert, mqtt_key=args.key)
    host, port = settings.broker_host_port
    broker = "broker" not in args.skip
    tls = settings.tls() if broker else None  # a missing or bad PEM file: one line, exit 2
    files = TlsFiles(settings.mqtt_ca or None, settings.mqtt_cert or None, settings.mqtt_key or None)
    user, password = settings.credentials()
    db = None if "store" in args.skip else args.db
    started = time.monotonic()
    report = run_doctor(host=host if broker else None, port=port if broker else None, db=db, username=user,
                        password=password, burst=args.burst, timeout=args.timeout,
                        clock_samples=args.clock_samples, progress=_progress, tls=tls, tls_files=files)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        parts = ([f"broker {settings.broker_display}"] if broker else []) + ([f"store {mask_url(db)}"] if db else [])
        print(format_report(report, f"edgefleet doctor: {', '.join(parts) or 'nothing to check'}"))
    _progress(f"done in {time.monotonic() - started:.1f} s")
    return 0 if report.ok else 1
