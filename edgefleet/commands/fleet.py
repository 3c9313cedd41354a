"""Fleet service commands: `serve` (ingest; later the OTA manager too), `stats`, `broker`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from dataclasses import asdict

from edgefleet.commands.fleet_db import db_label, require_db
from edgefleet.commands.helptext import Formatter, examples
from edgefleet.errors import EdgefleetError
from edgefleet.service.config import load_settings
from edgefleet.service.store.url import is_db_url

log = logging.getLogger("edgefleet.fleet")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the fleet service: MQTT ingest into the store, alarms",
                       description="Consume results, status, OTA state and debug captures from the broker "
                       "(persistent MQTT v5 session, shared subscription), store them, raise and clear alarms. "
                       "Settings also come from EDGEFLEET_* environment variables (see docs/store.md).",
                       epilog=examples("edgefleet serve --broker mqtt://127.0.0.1:1883 --db var/edgefleet.db",
                                       "edgefleet serve --role ingest --group ingest --client-id ingest-2 "
                                       "--db postgresql://ef:secret@db:5432/fleet",
                                       "edgefleet serve --notify-config plant-notify.toml --failure-hi 4.5,6.6,8.5"),
                       formatter_class=Formatter)
    p.add_argument("--broker", help="broker URL, or mqtts://host:8883 for TLS (default $EDGEFLEET_BROKER_URL or "
                                    "mqtt://127.0.0.1:1883)")
    add_tls_options(p)
    p.add_argument("--db", help="store: a SQLite file, created if missing, or postgresql://user:password@host:port/db "
                                "(schema created or migrated on connect) (default $EDGEFLEET_DB or var/edgefleet.db)")
    p.add_argument("--group", help="shared-subscription group, for several ingest processes (default "
                                   "$EDGEFLEET_INGEST_GROUP or none: a plain subscription)")
    p.add_argument("--client-id", help="MQTT client id of this ingest process; keep it stable (default "
                                       "$EDGEFLEET_INGEST_CLIENT_ID or ef-ingest-1)")
    p.add_argument("--mqtt-version", choices=["auto", "5", "3.1.1"],
                   help="MQTT protocol version (default $EDGEFLEET_MQTT_VERSION or auto: 5, else 3.1.1 for amqtt)")
    p.add_argument("--keep-raw-days", "--retention-days", dest="retention_days", type=float, metavar="DAYS",
                   help="keep raw results (and events, rejects) this many days; 1-minute rollups are kept 90 days "
                        "(at least as long), 1-hour rollups 10 years; results older than this are refused as "
                        "too_old (default: the store's setting, 30) (EDGEFLEET_RETENTION_DAYS)")
    p.add_argument("--role", choices=["all", "ingest", "ota"], default="all",
                   help="all (default): ingest, the OTA manager and notifications; ingest: ingest only (run "
                        "several with --group to split the load); ota: the OTA manager and notifications "
                        "only (run exactly one on SQLite; on PostgreSQL several may run: one leads, the "
                        "others stand by and take over)")
    p.add_argument("--notify-config", metavar="TOML",
                   help="alarm notification channels and routes (EDGEFLEET_NOTIFY_CONFIG; docs/notifications.md)")
    p.add_argument("--failure-hi", metavar="LOW,TYPICAL,HIGH",
                   help="the fleet's failure level for remaining-life estimates: the HI ratio (HI / its class "
                        "limit) at which machines failed, 5th/50th/95th percentile, e.g. 4.5,6.6,8.5 (the "
                        "default, from simulated bearing failures). Calibrate it on your fleet's own failures "
                        "(`benchmarks/run_to_failure.py --calibrate` shows how) (EDGEFLEET_FAILURE_HI)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("stats", help="print store counts (results, devices, alarms, rejected, lost)",
                       description="Counts from the store, and loss accounting: `missing` = results that never "
                       "arrived (holes in a boot's sequence numbers older than the settle window, less what "
                       "nodes reported their own rings dropped), `pending_gaps` = younger holes that "
                       "store-and-forward may still fill, `dropped_on_node`, `seq_jumps` (counters that "
                       "jumped by more than 100,000: a broken or hostile node).",
                       epilog=examples("edgefleet stats --db var/edgefleet.db",
                                       "edgefleet stats --device pump-0007   # its losses and both trend forecasts",
                                       "edgefleet stats --json | jq .missing"),
                       formatter_class=Formatter)
    p.add_argument("--db", help="store: a SQLite file or a postgresql:// URL (default $EDGEFLEET_DB or "
                                "var/edgefleet.db)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object on stdout, every figure unrounded (for scripts)")
    p.add_argument("--device", help="loss figures of one device (received, missing, pending, dropped on the node)")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("broker", help="run an MQTT broker (Mosquitto, or embedded amqtt without it) until Ctrl-C",
                       description="Runs an MQTT broker for a local fleet, in the foreground until Ctrl-C: "
                       "Mosquitto when it is installed (MQTT 5), else the embedded amqtt (MQTT 3.1.1). "
                       "Optionally a TLS listener too, with certificates from `edgefleet pki init`. "
                       "Brokers, clusters and their settings: docs/brokers.md.",
                       epilog=examples("edgefleet broker",
                                       "edgefleet broker --host 0.0.0.0 --persist var/mosquitto",
                                       "edgefleet broker --tls var/pki --require-cert"),
                       formatter_class=Formatter)
    p.add_argument("--port", type=int, default=1883, help="port of the plain MQTT listener (default 1883)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for the network)")
    p.add_argument("--persist", metavar="DIR", help="persistence directory (Mosquitto); omit for none")
    p.add_argument("--prefer", choices=["auto", "mosquitto", "amqtt"], default="auto",
                   help="which broker to run (default auto: Mosquitto if installed, else amqtt)")
    p.add_argument("--tls", metavar="PKI_DIR", nargs="?", const="var/pki", default=None,
                   help="also a TLS listener (mqtts://) with the CA and server certificate in PKI_DIR "
                        "(default var/pki; make them with `edgefleet pki init`)")
    p.add_argument("--tls-port", type=int, default=8883, help="port of the TLS listener (default 8883)")
    p.add_argument("--require-cert", action="store_true",
                   help="mutual TLS on the TLS listener: clients need a certificate from the CA, and its "
                        "common name is their MQTT username")
    p.set_defaults(func=cmd_broker)


def add_tls_options(p: argparse.ArgumentParser) -> None:
    """--ca/--cert/--key for an mqtts:// broker; the defaults come from the environment."""
    p.add_argument("--ca", metavar="PEM", help="mqtts://: CA certificate the broker's certificate must chain to "
                                              "(EDGEFLEET_MQTT_CA; default: the system trust store)")
    p.add_argument("--cert", metavar="PEM", help="mqtts:// with mutual TLS: this client's certificate "
                                                "(EDGEFLEET_MQTT_CERT; `edgefleet pki issue NAME`)")
    p.add_argument("--key", metavar="PEM", help="the private key of --cert (EDGEFLEET_MQTT_KEY)")


def cmd_serve(args: argparse.Namespace) -> int:
    from edgefleet.service.ingest import IngestService
    from edgefleet.service.store import open_store

    settings = load_settings(broker_url=args.broker, db=args.db, ingest_group=args.group,
                             ingest_client_id=args.client_id, mqtt_version=args.mqtt_version,
                             retention_days=args.retention_days, notify_config=args.notify_config,
                             failure_hi=args.failure_hi, mqtt_ca=args.ca, mqtt_cert=args.cert, mqtt_key=args.key)
    settings.tls()  # a missing or unreadable CA, certificate or key: one line before anything starts
    notify = None
    if args.role in ("all", "ota"):  # checked before anything starts: a bad config is one line, exit 2
        from edgefleet.service.notify import load_notify_config

        notify = load_notify_config(settings.notify_config)
    influx = {"url": settings.influx_url, "token": settings.influx_token, "org": settings.influx_org,
              "bucket": settings.influx_bucket, "reads": "ledger"}  # ingest reads back only its own writes
    store = open_store(settings.db, synchronous=settings.sqlite_sync, influx=influx)
    log.info("store: %s", db_label(settings.db))
    lo, mid, hi = settings.alarm_policy().failure_hi
    log.info("remaining life: failure at HI ratio %g (%g-%g)%s", mid, lo, hi,
             "" if settings.failure_hi else ", the shipped calibration (--failure-hi to set the fleet's own)")
    if settings.influx_url:
        log.info("telemetry store: InfluxDB %s bucket %s (registry in %s)", settings.influx_url,
                 settings.influx_bucket, db_label(settings.db))
    ota = notifier = leader = None
    try:
        removed = store.apply_retention(int(time.time() * 1000))
        if removed:
            log.info("retention (%.4g days) removed %d old rows", store.retention_days(), removed)
        if args.role in ("all", "ota") and is_db_url(settings.db):
            # a shared PostgreSQL: one OTA manager and notifier per fleet, whichever process holds the lock
            from edgefleet.service.leader import Leadership

            leader = Leadership(settings.db, lambda: [start_ota_manager(settings, store),
                                                      start_notifier(notify, store)]).start()
        elif args.role in ("all", "ota"):
            ota = start_ota_manager(settings, store)
            notifier = start_notifier(notify, store)
        if args.role == "ota":
            wait_for_signal()
        else:
            IngestService(settings, store).run_forever()
    finally:
        if leader is not None:
            leader.stop()
        if notifier is not None:
            notifier.stop()
        if ota is not None:
            ota.stop()
        store.close()
    return 0


def start_notifier(config, store):
    """Alarm notifications beside the OTA manager (one per fleet); None, said once, when none are set up."""
    if config.enabled and not hasattr(store, "route_events"):
        raise EdgefleetError(f"notifications need a store with an alarm journal and outbox (SQLite or PostgreSQL), "
                             f"not {type(store).__name__}")
    if not config.enabled:
        log.info("notifications: none configured (no channels or routes; --notify-config or "
                 "EDGEFLEET_NOTIFY_CONFIG, docs/notifications.md): alarms are on the dashboard only")
        return None
    from edgefleet.service.notify import Notifier

    notifier = Notifier(store, config)
    notifier.start()
    return notifier


def start_ota_manager(settings, store):
    """The OTA manager beside ingest: campaigns from the registry in the same database file."""
    from edgefleet.service.ota.campaign import RESULTS_LIMIT, SHADOW_LIMIT
    from edgefleet.service.ota.manager import OtaManager
    from edgefleet.service.ota.registry import OtaRegistry

    def devices() -> dict[str, dict]:
        return {d.device: {"site": d.site, "line": d.line, "tags": list(d.tags), "model": d.model}
                for d in store.devices()}

    def results(device: str, since_ms: int) -> list[tuple[int, bool]]:
        return [(r.model, r.anom) for r in store.score_history(device, since_ms, limit=RESULTS_LIMIT)]

    host, port = settings.broker_host_port
    user, password = settings.credentials()
    manager = OtaManager(OtaRegistry(settings.db), host, port, devices=devices, results=results,
                         username=user, password=password, client_id=f"{settings.ingest_client_id}-ota",
                         tls=settings.tls(), members=settings.broker_members, mqtt_version=settings.mqtt_version)
    manager.shadow_results = lambda model, since_ms: [  # shadow mode: both models on the same windows
        (r.device, r.anom, bool(r.shadow_anom)) for r in store.shadow_results(model, since_ms=since_ms, limit=SHADOW_LIMIT)]
    manager.start()
    log.info("OTA manager running (campaigns from %s)", db_label(settings.db))
    return manager


def wait_for_signal() -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


def stats_dict(db: str, device: str | None = None) -> dict:
    from edgefleet.service.store import open_store

    store = open_store(str(require_db(db)))
    try:
        out = asdict(store.counts())
        now = int(time.time() * 1000)
        s = store.fleet_summary(now)
        out.update(online=s.online, degrading=s.degrading, unacked_alarms=s.unacked_alarms,
                   models={str(k): v for k, v in s.models.items()}, retention_days=store.retention_days(),
                   rejects_by_code=store.reject_counts())
        loss = store.loss(now, device=device)
        per_device = loss.pop("devices")
        out.update(loss)
        if device is not None:
            if store.device(device) is None:
                raise EdgefleetError(f"device {device!r} is not in {db_label(db)}")
            out["device"] = {"id": device, **per_device.get(device, {"received": 0, "missing": 0, "pending_gaps": 0,
                                                                      "dropped_on_node": 0, "seq_jumps": 0, "boots": 0})}
            from edgefleet.service.forecasts import device_forecasts
            from edgefleet.service.store import summary_sql

            # both trend forecasts, each saying which horizon it used (issue 18 item 4)
            out["device"]["forecasts"] = [f.to_dict() for f in device_forecasts(store, device, now)]
            out["device"]["summaries"] = summary_sql.summary_loss(store, device)["devices"].get(device, {})
        else:
            out["lossy_devices"] = per_device
        return out
    finally:
        store.close()


def cmd_stats(args: argparse.Namespace) -> int:
    settings = load_settings(db=args.db)
    out = stats_dict(settings.db, args.device)
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print("\n".join(stats_lines(out)))
    return 0


LOSS_WORDS = (("received", "received"), ("missing", "missing"), ("pending_gaps", "pending"),
              ("dropped_on_node", "dropped on node"), ("seq_jumps", "seq jumps"), ("boots", "boots"),
              ("windows", "windows"))
STATE_WORDS = {"rising": "rising", "above": "already over the alarm level",  # as the dashboard says them
               "flat": "no significant rise", "too_few": "too few points for a trend"}


def fmt_value(v) -> str:
    """One value for people: '-' for None, no trailing .0, 3 significant digits for other floats, no reprs."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.0f}" if v.is_integer() and abs(v) < 1e15 else f"{v:.3g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt_value(x)}" for k, x in v.items()) or "-"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_value(x) for x in v) or "-"
    return str(v)


def _seconds(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s"


def _loss_words(d: dict) -> str:
    return ", ".join(f"{word} {d[k]}" for k, word in LOSS_WORDS if k in d) or "-"


def forecast_words(f: dict) -> str:
    """A forecast in one line: where it came from, its state, then the fit (3 significant digits)."""
    from edgefleet.service.alarms import span_words

    parts = [STATE_WORDS.get(f["state"], f["state"])]
    if f.get("eta_s"):
        parts[0] = f"reaches the alarm level in about {span_words(f['eta_s'])} at this trend"
    if f.get("level_ratio") is not None:
        parts.append(f"level {f['level_ratio']:.3g} x threshold")
    if f.get("slope_per_day") is not None:
        parts.append(f"slope {f['slope_per_day']:+.3g} per day (t {fmt_value(f.get('t_stat'))})")
    return f"{f['horizon']}: " + "; ".join(parts)


def stats_lines(out: dict) -> list[str]:
    """`stats` for people: aligned `name  value` lines, numbers rounded, nested figures spelled out (--json keeps
    everything exactly)."""
    lines = []
    for k, v in out.items():
        if k == "models":
            v = ", ".join(f"v{m} on {n} device{'s' if n != 1 else ''}" for m, n in v.items()) or "-"
        elif k == "settle_s":
            k, v = "settle", _seconds(v)
        elif k == "retention_days":
            k, v = "retention", f"{fmt_value(v)} days"
        elif k == "lossy_devices":
            lines.append(f"{k:16} {len(v) or '-'}")
            lines += [f"  {dev:14} {_loss_words(d)}" for dev, d in v.items()]
            continue
        elif k == "device":
            lines.append(f"{'device':16} {v['id']}")
            lines.append(f"  {'loss':14} {_loss_words(v)}")
            if "summaries" in v:
                lines.append(f"  {'summaries':14} {_loss_words(v['summaries'])}")
            for f in v.get("forecasts", []):
                name = {"rollup_1h": "long trend"}.get(f["source"], "short trend")
                lines.append(f"  {name:14} {forecast_words(f)}")
            continue
        lines.append(f"{k:16} {fmt_value(v)}")
    return lines


def cmd_broker(args: argparse.Namespace) -> int:
    from edgefleet.service.broker import TlsListener, start_broker

    if args.require_cert and not args.tls:
        raise EdgefleetError("--require-cert needs --tls PKI_DIR")
    tls = TlsListener.from_pki(args.tls, args.tls_port, args.require_cert) if args.tls else None
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with start_broker(args.port, host=args.host, prefer=args.prefer, persistence_dir=args.persist, tls=tls) as b:
        also = f" and {b.tls_url} (CA {tls.ca}{', client certificates required' if tls.require_certificate else ''})" \
            if tls else ""
        print(f"{b.kind} broker on {b.url}{also} (MQTT {b.mqtt_version}); Ctrl-C stops it", flush=True)
        while not done.wait(0.5):
            if not b.running():
                raise EdgefleetError(f"the {b.kind} broker exited")
    return 0
