"""`edgefleet sim`: a simulated plant of virtual nodes publishing to a broker (load tests, demo)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from edgefleet.errors import EdgefleetError
from edgefleet.runtime.baseline import DEFAULT_WINDOWS

log = logging.getLogger("edgefleet.sim")
# the fault names of device_sim.physics.FAULT_LABELS (checked by tests/sim; the simulator loads lazily)
FAULT_NAMES = ("outer_race", "inner_race", "ball", "unbalance", "misalignment", "looseness", "bent_shaft")
FAULT_GROUPS = {"bearing": FAULT_NAMES[:3], "shaft": FAULT_NAMES[3:], "all": FAULT_NAMES}
DEFAULT_FAULTY = 3  # machines that develop a fault when --faulty is not given (at most --nodes)
COMMISSION_MIN_S = 30.0  # the simulator's default commissioning spans at least this much machine time
MODELS = Path(__file__).resolve().parents[1] / "models"


def faulty_for(nodes: int, faulty: int | None, default: int = DEFAULT_FAULTY) -> int:
    """Machines that develop a fault: `faulty` as given, which must be 0..nodes, else the default clamped
    to `nodes` (so `--nodes 1` alone is a valid plant). Shared with `edgefleet demo`."""
    if faulty is None:
        return min(default, nodes)
    if not 0 <= faulty <= nodes:
        raise EdgefleetError(f"--faulty {faulty}: must be between 0 and --nodes ({nodes})")
    return faulty


def commission_windows_for(period_s: float) -> int:
    """Windows per class by default: the node's 64 (DEFAULT_WINDOWS), more at a short --period so they
    span COMMISSION_MIN_S of the machine (at 0.1 s, 64 windows are 6.4 s: measured, a healthy machine of
    the README's 8-node fleet then alarmed 5-18 times in 200 s in 4 of 4 noise draws, 0 with 256+)."""
    if not period_s > 0:
        return DEFAULT_WINDOWS
    return max(DEFAULT_WINDOWS, min(4096, math.ceil(COMMISSION_MIN_S / period_s)))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim", help="run simulated machines with virtual sensor nodes against a broker",
        description="A plant of rotating machines (vibration physics, a few developing bearing "
                    "or shaft faults), each with a virtual node that computes features, runs the int8 "
                    "model and publishes results over its own MQTT connection, exactly as a device does.",
        epilog="example: edgefleet sim --broker mqtt://127.0.0.1:1883 --nodes 200 --faulty 3 "
               "--duration 600 --report sim-report.json")
    p.add_argument("--broker", default=os.environ.get("EDGEFLEET_BROKER_URL", "mqtt://127.0.0.1:1883"),
                   help="mqtt://host:port or mqtts://host:port (TLS) (default $EDGEFLEET_BROKER_URL or "
                        "mqtt://127.0.0.1:1883); a broker cluster: its members' URLs, comma-separated: "
                        "nodes are spread over them round-robin and move to the next member when theirs "
                        "fails (docs/brokers.md)")
    p.add_argument("--ca", metavar="PEM", help="mqtts://: the CA of the broker's certificate (EDGEFLEET_MQTT_CA)")
    p.add_argument("--cert", metavar="PEM|DIR",
                   help="mqtts:// with mutual TLS: a client certificate for every node, or a directory "
                        "holding DEVICE.crt and DEVICE.key per node, as `edgefleet pki issue` writes them "
                        "(EDGEFLEET_MQTT_CERT)")
    p.add_argument("--key", metavar="PEM", help="the key of a single --cert file (EDGEFLEET_MQTT_KEY)")
    p.add_argument("--nodes", type=int, default=200, help="simulated machines (default 200)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds to run (default: until Ctrl-C or SIGTERM)")
    p.add_argument("--faulty", type=int, default=None,
                   help="machines that develop a fault, 0 to --nodes (default 3, or every machine when "
                        "--nodes is below 3)")
    p.add_argument("--fault", default="bearing", metavar="KINDS", dest="fault_kinds",
                   help="the faults the --faulty machines develop, in turn: comma-separated names "
                        f"({', '.join(FAULT_NAMES)}), or bearing (default: outer_race,inner_race,ball), "
                        "shaft (unbalance,misalignment,looseness,bent_shaft) or all")
    p.add_argument("--fault-size-mm-s", type=float, nargs=2, default=(5.0, 9.0), metavar=("MIN", "MAX"),
                   help="a shaft fault's size: the velocity it adds at full severity, mm/s RMS (default 5 9: "
                        "ISO 20816 zone C/D); bearing faults are sized in g (0.8-2 g impacts)")
    p.add_argument("--report", type=Path, default=None, help="write a JSON report here at the end")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder or .efm (default: the shipped fleet model)")
    p.add_argument("--seed", type=int, default=0, help="plant and noise seed (default 0)")
    p.add_argument("--prefix", default="sim-", help="device id prefix (default sim-)")
    p.add_argument("--sites", type=int, default=3, help="plant sites, 1-4 (default 3)")
    p.add_argument("--period", type=float, default=1.0, help="seconds between windows per node (default 1)")
    p.add_argument("--summary-every", type=float, default=0.0, metavar="SECONDS",
                   help="summary mode: each node sends one summary (count, anomalies, min/mean/p95/max score) "
                        "per SECONDS (1-3600) instead of every window (docs/protocol.md, 'summary'); default off")
    p.add_argument("--batch", type=int, default=1, dest="results_per_message",
                   help="results per MQTT message (default 1; up to 256)")
    p.add_argument("--fault-onset", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="seconds after start when faults begin (default 30 90; with commissioning, after "
                        "the nodes have learned every speed: see --commission-windows)")
    p.add_argument("--fault-ramp", type=float, nargs=2, default=(120.0, 300.0), metavar=("MIN", "MAX"),
                   help="seconds from onset to full severity (default 120 300)")
    p.add_argument("--inject", action="append", default=[], metavar="DEVICE:SECONDS[:KIND]",
                   help="give DEVICE a full fault (default outer_race; a shaft fault adds 7.1 mm/s) "
                        "SECONDS after the fleet's first window, as --fault-onset counts (repeatable), "
                        "e.g. --inject sim-0007:20")
    p.add_argument("--ota-key", default=os.environ.get("EDGEFLEET_OTA_PUBLIC_KEY"), metavar="PUBLIC_KEY",
                   help="public key the nodes trust for over-the-air models (default: "
                        "$EDGEFLEET_OTA_PUBLIC_KEY, else the engineer's signing key's .pub if present; "
                        "'none' disables OTA)")
    p.add_argument("--calibrate", type=int, default=0, metavar="N",
                   help="each node calibrates its threshold from its first N windows (default off; the "
                        "older alternative to commissioning)")
    p.add_argument("--no-commission", dest="commission", action="store_false",
                   help="nodes judge with the model's own standardization instead of first learning their "
                        "machine's normal (docs/baseline.md); by default every node commissions at start")
    p.add_argument("--no-speed-input", dest="speed_input", action="store_false",
                   help="nodes have no tachometer or controller speed: a v2 model's nodes estimate the running "
                        "speed from their own spectrum for their operating classes (v1: one any-speed class)")
    p.add_argument("--commission-windows", type=int, default=None, metavar="N",
                   help="windows per operating class that end commissioning (16-4096; default 64, or as many as "
                        f"span {COMMISSION_MIN_S:.0f} s at a shorter --period: a node that learns from 6 s of its "
                        "machine sees too little of its slow speed wander and alarms on the rest)")
    p.add_argument("--speeds", type=int, default=1, metavar="K",
                   help="operating points (speed and load) each machine cycles through (default 1: constant)")
    p.add_argument("--speed-hold", type=float, nargs=2, default=(60.0, 180.0), metavar=("MIN", "MAX"),
                   help="seconds a machine holds each operating point (default 60 180)")
    p.add_argument("--speed-ramp", type=float, default=0.0, metavar="S",
                   help="seconds a change of operating point takes, a VFD ramp (default 0: a step)")
    p.add_argument("--ring", type=int, default=600,
                   help="store-and-forward ring per node, results (default 600)")
    p.add_argument("--ring-for", action="append", default=[], metavar="DEVICE=N",
                   help="a ring of N results for DEVICE instead of --ring (repeatable; the soak test gives "
                        "the nodes it keeps offline a small one, so it overflows whatever the load)")
    p.add_argument("--shards", type=int, default=2, help="network threads (default 2)")
    p.add_argument("--procs", type=int, default=1,
                   help="worker processes, each running a slice of the plant (default 1; one "
                        "process handles about 4,000 nodes on one core)")
    p.add_argument("--slice", default=None, help=argparse.SUPPRESS)  # "i/P": a worker's share
    p.add_argument("--mqtt-version", choices=["auto", "5", "3.1.1"], default="auto",
                   help="MQTT protocol (default auto: 5, or 3.1.1 for the embedded amqtt broker)")
    p.add_argument("--wait-broker", type=float, default=30.0, metavar="S",
                   help="keep trying to reach the broker this long at start (default 30 s)")
    p.add_argument("--fleet-secret", default=os.environ.get("EDGEFLEET_FLEET_SECRET"),
                   help="log in as user=device id, password derived from this secret "
                        "(default $EDGEFLEET_FLEET_SECRET; unset: anonymous)")
    p.add_argument("--credentials", type=Path, default=os.environ.get("EDGEFLEET_DEVICE_CREDENTIALS") or None,
                   metavar="FILE",
                   help="log in as user=device id with each device's own secret from FILE, as `edgefleet "
                        "device add` or deploy_passwords --credentials write it (default "
                        "$EDGEFLEET_DEVICE_CREDENTIALS); overrides --fleet-secret")
    p.set_defaults(func=run)


def default_model() -> Path:
    """The shipped fleet model (trained on the simulator's machines), else any shipped model."""
    folders = sorted(d for d in MODELS.glob("*") if (d / "model.efm").is_file())
    if (MODELS / "fleet-default" / "model.efm").is_file():
        return MODELS / "fleet-default"
    for d in folders:
        card = d / "card.json"
        if card.is_file() and "sim_normal" in card.read_text("utf-8", errors="replace"):
            return d
    if folders:
        return folders[0]
    raise EdgefleetError(f"no model found under {MODELS}; pass --model FOLDER_OR_EFM")


def _ota_key(arg: str | None):
    """The Ed25519 public key nodes verify OTA manifests with, or None (OTA off)."""
    from edgefleet.runtime import keys

    if arg == "none":
        return None
    path = Path(arg) if arg else keys.public_path(keys.DEFAULT_KEY)
    if not path.exists():
        if arg:
            raise EdgefleetError(f"OTA public key {path} does not exist")
        log.info("no OTA public key at %s: over-the-air updates are off for these nodes", path)
        return None
    return keys.load_public(path)


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < need:
            log.warning("open-file limit %d is below the %d this many nodes need", target, need)


def parse_fault_kinds(text: str) -> tuple[str, ...]:
    """`--fault`: comma-separated fault names or a group (bearing, shaft, all), as names."""
    names: list[str] = []
    for part in (p.strip().lower().replace("-", "_") for p in text.split(",")):
        if part in FAULT_GROUPS:
            names += FAULT_GROUPS[part]
        elif part in FAULT_NAMES:
            names.append(part)
        else:
            raise EdgefleetError(f"--fault {text!r}: unknown fault {part!r}; one of {', '.join(FAULT_NAMES)}, "
                                 f"or {', '.join(FAULT_GROUPS)}")
    return tuple(dict.fromkeys(names))


def _parse_injection(text: str) -> tuple[str, float, str]:
    """DEVICE:SECONDS[:KIND] (KIND a fault name, default outer_race)."""
    kind = "outer_race"
    head, sep, last = text.rpartition(":")
    if sep and head.count(":") >= 1 and not last.strip().replace(".", "", 1).isdigit():
        kind = last.strip().lower().replace("-", "_")
        if kind not in FAULT_NAMES:
            raise EdgefleetError(f"--inject {text!r}: unknown fault {last!r}; one of {', '.join(FAULT_NAMES)}")
        text = head
    dev, sep, at = text.rpartition(":")
    try:
        seconds = float(at)
    except ValueError:
        seconds = -1.0
    if not sep or not dev or seconds < 0:
        raise EdgefleetError(f"--inject {text!r}: expected DEVICE:SECONDS[:KIND], e.g. sim-0007:20 or "
                             "sim-0007:20:unbalance")
    return dev, seconds, kind


def _parse_ring_for(text: str) -> tuple[str, int]:
    """`--ring-for DEVICE=N`: that node's ring holds N results."""
    dev, sep, n = text.rpartition("=")
    if not sep or not dev or not n.isdigit() or int(n) < 1:
        raise EdgefleetError(f"--ring-for {text!r}: expected DEVICE=N with N >= 1, e.g. sim-0007=10")
    return dev, int(n)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from device_sim.fleet import Fleet, FleetOptions
    from device_sim.link import LinkOptions
    from device_sim.plant import make_plant
    from edgefleet.protocol.connect import probe_mqtt_version
    from edgefleet.runtime.artifact import load_artifact

    if args.nodes < 1:
        raise EdgefleetError("--nodes must be at least 1")
    args.faulty = faulty_for(args.nodes, args.faulty)
    if args.duration is not None and args.duration <= 0:
        raise EdgefleetError("--duration must be > 0 seconds")
    if args.commission_windows is None:  # the node's 64, or enough to span COMMISSION_MIN_S at a short --period
        args.commission_windows = commission_windows_for(args.period)
    if not 16 <= args.commission_windows <= 4096:
        raise EdgefleetError("--commission-windows must be between 16 and 4096")
    if not 1 <= args.speeds <= 8:
        raise EdgefleetError("--speeds must be between 1 and 8 (a node learns at most 8 operating classes)")
    if not 0 < args.speed_hold[0] <= args.speed_hold[1]:
        raise EdgefleetError("--speed-hold needs 0 < MIN <= MAX seconds")
    if not 0 <= args.speed_ramp < args.speed_hold[0]:
        raise EdgefleetError("--speed-ramp must be 0 or more seconds and shorter than the shortest hold")
    if not 1 <= args.results_per_message <= 256:
        raise EdgefleetError("--batch must be 1..256 results per message")
    if args.summary_every and not (1.0 <= args.summary_every <= 3600.0 and args.summary_every >= args.period):
        raise EdgefleetError(f"--summary-every must be 1-3600 seconds and at least --period ({args.period:g} s), "
                             f"got {args.summary_every:g}")
    if args.period <= 0 or args.ring < 1 or args.shards < 1 or not 1 <= args.sites <= 4:
        raise EdgefleetError("--period > 0, --ring >= 1, --shards >= 1 and --sites 1-4 are required")
    if args.procs < 1:
        raise EdgefleetError("--procs must be at least 1")
    injections = [_parse_injection(text) for text in args.inject]
    ring_sizes = dict(_parse_ring_for(text) for text in args.ring_for)
    kinds = parse_fault_kinds(args.fault_kinds)
    if not 0 < args.fault_size_mm_s[0] <= args.fault_size_mm_s[1] <= 50:
        raise EdgefleetError("--fault-size-mm-s needs 0 < MIN <= MAX <= 50 mm/s")
    if args.procs > 1 and args.slice is None:
        return _run_workers(args)
    part, parts = _parse_slice(args.slice)
    from edgefleet.service.cluster import parse_member_urls

    members = parse_member_urls(args.broker)
    host, port = members[0]
    tls = node_tls(args)
    model = args.model or default_model()
    artifact = load_artifact(model / "model.efm" if model.is_dir() else model)
    if artifact.features is None or artifact.scoring is None:
        raise EdgefleetError(f"{model}: the artifact needs a features and a scoring section")
    version = args.mqtt_version
    if version == "auto":  # also waits for a broker that is still starting (compose, demo)
        deadline = time.monotonic() + max(0.0, args.wait_broker)
        probe_tls = tls(plant_first_id(args)) if tls else None
        while (version := next((v for h, p in members if (v := probe_mqtt_version(h, p, tls=probe_tls))), None)) \
                is None and time.monotonic() < deadline:
            time.sleep(1.0)
        if version is None:
            raise EdgefleetError(f"cannot reach a broker at {', '.join(f'{h}:{p}' for h, p in members)} "
                                 f"(waited {args.wait_broker:g} s)")
    password = None
    if args.credentials:
        from edgefleet.service.credentials import load_secrets

        secrets_by_device = load_secrets(args.credentials)
        width = max(4, len(str(args.nodes - 1)))
        missing = [d for d in (f"{args.prefix}{i:0{width}d}" for i in range(args.nodes)) if d not in secrets_by_device]
        if missing:
            raise EdgefleetError(f"{args.credentials}: no secret for {len(missing)} of the {args.nodes} nodes "
                                 f"(first: {missing[0]}); `edgefleet device add {missing[0]} ...` makes them")
        password = secrets_by_device.__getitem__
    elif args.fleet_secret:
        from edgefleet.service.credentials import device_password

        password = lambda dev: device_password(args.fleet_secret, dev)  # noqa: E731
    _raise_fd_limit(args.nodes // parts + 256)
    from device_sim.physics import fault_from_label

    whole = make_plant(args.nodes, n_faulty=args.faulty, seed=args.seed, prefix=args.prefix,
                       n_sites=args.sites, fault_onset_s=fault_onset(args),
                       fault_ramp_s=tuple(args.fault_ramp), kinds=tuple(map(fault_from_label, kinds)),
                       fault_peak_mm_s=tuple(args.fault_size_mm_s))
    schedule = None
    if args.speeds > 1:
        from device_sim.schedule import Schedule

        schedule = Schedule.stepped(args.nodes, np.random.default_rng(args.seed + 17), speeds=args.speeds,
                                    hold_s=tuple(args.speed_hold), ramp_s=args.speed_ramp)
    plant = replace(whole, nodes=whole.nodes[part::parts])  # the same plant, this worker's nodes
    fleet = Fleet(plant, artifact,
                  LinkOptions(host, port, mqtt_version=version, password=password, tls=tls,
                              members=tuple(members) if len(members) > 1 else ()),
                  FleetOptions(period_s=args.period, shards=args.shards, ring_size=args.ring,
                               results_per_message=args.results_per_message,
                               calibrate_n=args.calibrate, seed=args.seed + part,
                               ota_public_key=_ota_key(args.ota_key), commission=args.commission,
                               commission_windows=args.commission_windows, schedule=schedule,
                               speed_input=args.speed_input, ring_sizes=ring_sizes,
                               summary_every_s=args.summary_every))
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()
        fleet.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    log.info("sim: %d nodes (%d faulty: %s), model %s v%d, broker %s:%d MQTT %s", args.nodes,
             args.faulty, ", ".join(plant.faulty) or "none", model, artifact.model_version, host, port,
             version)
    for dev, _, _ in injections:
        if dev not in {n.device_id for n in whole.nodes}:
            raise EdgefleetError(f"--inject: no simulated device {dev!r} (ids are {args.prefix}0000...)")
    unknown = sorted(set(ring_sizes) - {n.device_id for n in whole.nodes})
    if unknown:
        raise EdgefleetError(f"--ring-for: no simulated device {unknown[0]!r} (ids are {args.prefix}0000...)")
    mine = {n.device_id for n in plant.nodes}
    injections = [(dev, at, kind) for dev, at, kind in injections if dev in mine]
    injected: dict[str, float] = {}

    def inject(dev: str, kind: str) -> None:
        injected[dev] = fleet.inject_fault(dev, fault_from_label(kind))
        log.info("injected a full %s fault on %s", kind, dev)

    fleet.start()
    timers = [threading.Timer(at, inject, args=(dev, kind)) for dev, at, kind in injections]
    if not fleet.wait_connected(0.99, timeout=min(60.0, max(5.0, len(plant.nodes) / 50))):
        log.warning("only %d of %d nodes connected so far; running anyway", fleet.connected(),
                    len(plant.nodes))
    for t in timers:  # seconds counted from the first window, like the fault schedule
        t.daemon = True
        t.start()
    try:
        fleet.run(args.duration)
        if not fleet.drain(timeout=15.0):
            log.warning("some results were still unacknowledged after 15 s")
    finally:
        for t in timers:
            t.cancel()
        fleet.shutdown()
    report = fleet.report()
    report["model"] = str(model)
    report["injected"] = injected
    _write_report(report, args.report)
    return 0


def _write_report(report: dict, path: Path | None) -> None:
    summary = {k: v for k, v in report.items() if k != "per_device"}
    print(json.dumps(summary), file=sys.stderr)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(path)


def _parse_slice(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    try:
        part, parts = (int(x) for x in text.split("/"))
    except ValueError:
        raise EdgefleetError(f"--slice {text!r}: expected I/P") from None
    if not 0 <= part < parts:
        raise EdgefleetError(f"--slice {text!r}: need 0 <= I < P")
    return part, parts


def fault_onset(args: argparse.Namespace) -> tuple[float, float]:
    """When the scheduled faults begin: as asked, else after commissioning can have finished (a
    fault during commissioning would be learned as the machine's normal)."""
    if args.fault_onset is not None:
        return tuple(args.fault_onset)  # type: ignore[return-value]
    if not args.commission:
        return (30.0, 90.0)
    windows_s = args.commission_windows * args.period  # one class's windows, at one speed
    if args.speeds <= 1:
        learn = windows_s
    else:  # every speed visited, as often as it takes to collect a class's windows at the shortest hold
        learn = args.speeds * args.speed_hold[1] * math.ceil(windows_s / args.speed_hold[0])
    return (learn + 30.0, learn + 90.0)


def plant_first_id(args: argparse.Namespace) -> str:
    """The first node's id, as device_sim.plant.make_plant names it."""
    return f"{args.prefix}{0:0{max(4, len(str(args.nodes - 1)))}d}"


def node_tls(args: argparse.Namespace):
    """For mqtts://: device id -> ssl.SSLContext (one shared context, or one per device from a
    directory of DEVICE.crt/DEVICE.key); None for mqtt://. Bad files: one line, before any node starts."""
    from edgefleet.protocol.connect import TlsFiles, tls_context, uses_tls

    if not uses_tls(args.broker):
        return None
    files = TlsFiles.from_env(ca=args.ca, cert=args.cert, key=args.key)
    if files.cert and os.path.isdir(files.cert):
        cert_dir, cache = Path(files.cert), {}

        def per_device(dev: str):
            if dev not in cache:
                cache[dev] = tls_context(TlsFiles(files.ca, str(cert_dir / f"{dev}.crt"), str(cert_dir / f"{dev}.key")))
            return cache[dev]

        per_device(plant_first_id(args))
        return per_device
    ctx = tls_context(files)
    return lambda _dev: ctx


def _worker_argv(args: argparse.Namespace, part: int, report: Path) -> list[str]:
    """The same simulation, restricted to slice part/procs, reporting to its own file."""
    argv = [sys.executable, "-m", "edgefleet", "sim", "--broker", args.broker, "--nodes", str(args.nodes),
            "--faulty", str(args.faulty), "--fault", args.fault_kinds,
            "--fault-size-mm-s", *map(str, args.fault_size_mm_s),
            "--seed", str(args.seed), "--prefix", args.prefix,
            "--sites", str(args.sites), "--period", str(args.period),
            "--batch", str(args.results_per_message), "--calibrate", str(args.calibrate),
            "--summary-every", str(args.summary_every),
            "--ring", str(args.ring), "--shards", str(args.shards),
            "--mqtt-version", args.mqtt_version, "--wait-broker", str(args.wait_broker),
            "--fault-onset", *map(str, fault_onset(args)), "--fault-ramp", *map(str, args.fault_ramp),
            "--commission-windows", str(args.commission_windows), "--speeds", str(args.speeds),
            "--speed-hold", *map(str, args.speed_hold), "--speed-ramp", str(args.speed_ramp),
            *([] if args.commission else ["--no-commission"]),
            *([] if args.speed_input else ["--no-speed-input"]),
            "--procs", str(args.procs), "--slice", f"{part}/{args.procs}", "--report", str(report)]
    if args.duration is not None:
        argv += ["--duration", str(args.duration)]
    for opt in ("ca", "cert", "key", "credentials", "ota_key"):  # file paths, not secrets
        if getattr(args, opt, None):
            argv += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    if args.model is not None:
        argv += ["--model", str(args.model)]
    for text in args.inject:
        argv += ["--inject", text]
    for text in args.ring_for:
        argv += ["--ring-for", text]
    return argv


def _run_workers(args: argparse.Namespace) -> int:
    """Run --procs worker processes (one slice of the plant each) and merge their reports."""
    import subprocess
    import tempfile

    from device_sim.fleet import merge_reports

    with tempfile.TemporaryDirectory(prefix="ef-sim-") as tmp:
        reports = [Path(tmp) / f"part{i}.json" for i in range(args.procs)]
        env = dict(os.environ)  # a secret travels to the workers in their environment, not in argv
        if args.fleet_secret:
            env["EDGEFLEET_FLEET_SECRET"] = args.fleet_secret
        procs = [subprocess.Popen(_worker_argv(args, i, reports[i]), env=env) for i in range(args.procs)]

        def forward(signum, _frame) -> None:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, forward)
            signal.signal(signal.SIGINT, forward)
        codes = [p.wait() for p in procs]
        done = [json.loads(r.read_text()) for r in reports if r.is_file()]
        if len(done) != args.procs:
            raise EdgefleetError(f"{args.procs - len(done)} of {args.procs} worker processes wrote no "
                                 f"report (exit codes {codes})")
    _write_report(merge_reports(done), args.report)
    return max(codes)
