"""`edgefleet demo`: broker, fleet service, simulated plant and dashboard, supervised together.

Each part is the ordinary command a user would run by hand; the demo only
starts them in order, waits for each to be ready, prints where to look, and
stops everything on Ctrl-C (or when any part dies, saying which).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from edgefleet.commands.helptext import Formatter, examples
from edgefleet.errors import EdgefleetError
from edgefleet.protocol.connect import free_port

log = logging.getLogger("edgefleet.demo")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_FAULTY = 6  # machines that develop a fault when --faulty is not given (at most --nodes)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole system locally: broker, service, 100 nodes, dashboard",
                       description="Starts Mosquitto (or the embedded amqtt broker when no mosquitto "
                       "binary exists), `edgefleet serve` on an SQLite store, `edgefleet sim` with a "
                       "plant of simulated machines (a few developing faults), and the "
                       "Streamlit dashboard, each with its log in --workdir. It prints the dashboard's "
                       "address and the commands to look further; Ctrl-C stops everything.",
                       epilog=examples("edgefleet demo",
                                       "edgefleet demo --nodes 20 --faulty 2 --fresh --dashboard-port 8502",
                                       "edgefleet demo --nodes 10 --no-dashboard --duration 300"),
                       formatter_class=Formatter)
    p.add_argument("--nodes", type=int, default=100,
                   help="simulated machines (default 100: each computes a ~1 s v2 window per second, "
                        "~5 ms of a core; fleet-default's 80 ms windows take 0.1 ms, for load tests use `edgefleet sim`)")
    p.add_argument("--faulty", type=int, default=None,
                   help=f"machines that develop a fault, 0 to --nodes (default {DEFAULT_FAULTY}, or every machine "
                        f"when --nodes is smaller)")
    p.add_argument("--fault", default="all", metavar="KINDS",
                   help="what the faulty machines develop: bearing, shaft, all, or kinds such as "
                        "unbalance,outer_race (default all: bearings, unbalance, misalignment, looseness, "
                        "bent shaft)")
    p.add_argument("--model", type=Path, default=None,
                   help="fleet model (default: the shipped fleet-v2, which reports velocity in mm/s and "
                        "says why a machine alarms; fleet-default is the lighter v1 model)")
    p.add_argument("--calibrate", type=int, default=0,
                   help="older alternative to commissioning: each node sets its threshold from its first N "
                        "windows (default 0: off)")
    p.add_argument("--commission-windows", type=int, default=64, metavar="N",
                   help="windows per speed that end each node's commissioning (default 64, the node's: about 3 "
                        "minutes per speed in the demo; 24 gave 10 warnings on healthy machines in an hour, "
                        "benchmarks/demo_alarms.py)")
    p.add_argument("--speeds", type=int, default=3,
                   help="speeds each machine cycles through while the demo runs (default 3)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--workdir", type=Path, default=REPO / "var" / "demo", help="database and logs (default var/demo)")
    p.add_argument("--mqtt-port", type=int, default=0, help="broker port (default: a free port)")
    p.add_argument("--dashboard-port", type=int, default=8501,
                   help="port of the dashboard on 127.0.0.1 (default 8501; a taken port is refused)")
    p.add_argument("--no-dashboard", action="store_true", help="skip the dashboard (e.g. for load tests)")
    p.add_argument("--fresh", action="store_true",
                   help="start from an empty database (default: keep the last run's, and say so)")
    p.set_defaults(func=cmd_demo)


def dashboard_entrypoint() -> str:
    """The installed dashboard's entrypoint file, found by import (not by a path into a checkout)."""
    spec = importlib.util.find_spec("dashboards.app")
    if spec is None or spec.origin is None:
        raise EdgefleetError("the dashboard package is not installed (run `bash scripts/setup.sh`), "
                             "or start the demo with --no-dashboard")
    return spec.origin


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EdgefleetError(f"{what} exited with code {proc.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
            return
        except OSError:
            time.sleep(0.2)
    raise EdgefleetError(f"{what} did not listen on port {port} within {timeout:.0f} s")


class Supervisor:
    """Starts child processes with their own log files and stops them in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        logf = open(self.workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        self.children.append((name, proc))
        log.info("started %s (pid %d), log %s", name, proc.pid, logf.name)
        return proc

    def dead(self) -> tuple[str, int] | None:
        for name, proc in self.children:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self) -> None:
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in reversed(self.children):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.info("stopped %s (exit %s)", name, proc.returncode)


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_plant(args: argparse.Namespace) -> None:
    """The plant `edgefleet sim` is asked for, checked before anything starts: the default --faulty is
    clamped to --nodes (`--nodes 2` alone is a valid demo); a --faulty given above --nodes is refused."""
    if args.nodes < 1:
        raise EdgefleetError(f"--nodes {args.nodes}: the demo needs at least 1 machine")
    from edgefleet.commands.sim import faulty_for

    args.faulty = faulty_for(args.nodes, args.faulty, DEFAULT_FAULTY)


def cmd_demo(args: argparse.Namespace) -> int:
    check_plant(args)
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "fleet.db"
    if args.model is not None and not args.model.exists():
        raise EdgefleetError(f"--model {args.model} does not exist (a model folder or .efm; the shipped ones are in "
                             f"{REPO / 'edgefleet' / 'models'})")
    if not args.no_dashboard and not port_free(args.dashboard_port):
        raise EdgefleetError(f"port {args.dashboard_port} is taken (another dashboard or demo?): stop it, or "
                             f"choose another with --dashboard-port {args.dashboard_port + 1}")
    if args.fresh:
        for f in workdir.glob("fleet.db*"):
            f.unlink()
        shutil.rmtree(workdir / "broker-data", ignore_errors=True)
    reused = db.exists()
    port = args.mqtt_port or free_port()
    py = sys.executable
    sup = Supervisor(workdir)
    # SIGTERM (a service manager, `kill`) stops every child like Ctrl-C does
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        # `edgefleet broker`: Mosquitto with persistence and raised queue limits (so a broker
        # restart loses nothing), or the embedded amqtt broker where no mosquitto binary exists
        broker = sup.start("broker", [py, "-m", "edgefleet", "broker", "--port", str(port),
                                      "--persist", str(workdir / "broker-data")])
        broker_kind = ("Mosquitto, persistent" if shutil.which("mosquitto")
                       else "embedded amqtt broker (no mosquitto binary found)")
        wait_port(port, broker, broker_kind)
        url = f"mqtt://127.0.0.1:{port}"
        serve = sup.start("serve", [py, "-m", "edgefleet", "serve", "--broker", url, "--db", str(db)])
        time.sleep(1.0)
        if serve.poll() is not None:
            raise EdgefleetError(f"edgefleet serve exited with code {serve.returncode}; see {workdir}/serve.log")
        model = args.model or (REPO / "edgefleet" / "models" / "fleet-v2")
        procs = max(1, min(2, (os.cpu_count() or 1), args.nodes // 50))
        sim_argv = [py, "-m", "edgefleet", "sim", "--broker", url, "--nodes", str(args.nodes), "--procs", str(procs),
                    "--faulty", str(args.faulty), "--fault", args.fault, "--model", str(model),
                    "--report", str(workdir / "sim-report.json")]
        if args.duration:
            sim_argv += ["--duration", str(args.duration)]
        if args.calibrate:
            sim_argv += ["--calibrate", str(args.calibrate), "--no-commission"]
        else:
            sim_argv += ["--commission-windows", str(args.commission_windows), "--speeds", str(args.speeds),
                         "--speed-hold", "30", "60"]
        sup.start("sim", sim_argv)
        if not args.no_dashboard:
            dash = sup.start("dashboard", [py, "-m", "streamlit", "run", dashboard_entrypoint(),
                                           "--server.port", str(args.dashboard_port), "--server.address",
                                           "127.0.0.1", "--server.headless", "true",
                                           "--browser.gatherUsageStats", "false", "--", "--db", str(db)],
                            # loopback only, no accounts in a fresh demo: sign-in off (a banner says so)
                            env={"EDGEFLEET_DASHBOARD_AUTH": os.environ.get("EDGEFLEET_DASHBOARD_AUTH", "off")})
            wait_port(args.dashboard_port, dash, "dashboard")
        print(f"\n  edgefleet demo running: {args.nodes} simulated machines ({args.faulty} developing faults)\n"
              f"  broker      {url} ({broker_kind})\n"
              f"  store       {db}" + (" (the last run's, kept: --fresh starts empty)" if reused else "") + "\n"
              + ("" if args.no_dashboard else f"  dashboard   http://127.0.0.1:{args.dashboard_port}\n")
              + f"  logs        {workdir}/*.log\n"
              f"  stats       edgefleet stats --db {db} --json\n"
              f"  other commands on this demo: export EDGEFLEET_DB={db}\n\n  Ctrl-C stops everything.\n", flush=True)
        end = time.monotonic() + args.duration + 5 if args.duration else None
        while end is None or time.monotonic() < end:
            died = sup.dead()
            if died and not (died[0] == "sim" and args.duration and died[1] == 0):
                raise EdgefleetError(f"{died[0]} exited with code {died[1]}; see {workdir}/{died[0]}.log")
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        sup.stop()
        signal.signal(signal.SIGTERM, previous)
