"""Soak: the whole stack for a long run under scheduled chaos, then published vs stored vs accounted.

Everything real, started by this script on this machine: Mosquitto with the project's config and
persistence (`edgefleet.service.broker.start_broker`, as `edgefleet broker` and the tests run it),
`edgefleet serve` as a process on a SQLite store, `edgefleet sim` as a process. The simulated nodes
reach the broker through a small TCP proxy in this script (`LinkProxy`): their "network", which
can cut a node's link or keep it off the air. Chaos, at fixed fractions of `--duration`:

- hostile payloads: a burst of malformed messages (tests/fleet/malformed.py, each refused by the
  codec), a result stamped an hour ahead (refused: claim), a device whose sequence jumps by ~4e9
  and one with a hole of 40 results (a data-loss alarm once the hole settles, after 15 minutes);
- link drops: 5 % of the nodes lose their TCP connection (4 waves); paho re-sends what was in
  flight, the ring holds the rest;
- a node offline past its ring: 1 % of the nodes kept off the air for 20 % of the run, each with a
  small ring of its own (`edgefleet sim --ring-for`, default a tenth of what it makes in that time),
  so their rings overflow even if the sim skips up to 90 % of its windows on a busy machine
  (`dropped`, reported by the node);
- `kill -9` of serve, twice, restarted after a few seconds (the broker keeps its session);
- node reboots, twice 0.5 % of the nodes (`cmd` reboot: new boot id, the RAM ring is lost; the
  new boot's births name the old boot and its last seq, status `prev`, so the lost tail is counted);
- a slow store: for 6 % of the run every SQLite commit of serve first sleeps `--slow-commit-ms`
  (EDGEFLEET_TEST_COMMIT_DELAY_FILE, edgefleet/service/store/slow_commit.py), as a disk whose fsync
  takes that long: ingest falls behind, the broker holds the rest, nothing may be lost;
- a broker restart (clean stop, persistence on, same port); with `--broker-crash` also a `kill -9`
  of the broker in the middle of the first serve outage.

At the end (the sim stopped and drained, ingest idle) the store is read with the accounting's
settle window at 0, and per device:

    stored + missing + dropped_on_node  ==  published + dropped (sim) + arrived without a PUBACK

`published` is what the broker acknowledged to the nodes (the sim's report); a result the node
sent but never saw acknowledged (a reboot, or still pending when the sim stopped) may or may not
have reached the store, so per device `stored - published` and `missing` together must stay
within what that node lost unacknowledged (`windows - published - dropped`). `lost silently` is
what was acknowledged (or dropped on the node) and is neither stored nor accounted: it must be 0.
Stronger, since births after a reboot and the clean goodbye carry how far a boot's results went:
every result a node emitted (a sequence number assigned) is stored or counted (`stored + missing +
dropped_on_node == windows` per device; `assigned_not_accounted` must be 0); `missing` is 0 on every
node but the rebooted ones (whose RAM tail is lost by design); the offline nodes' rings overflowed
and the store's `dropped_on_node` equals their own count. `verdict` names each check; exit 0 when
all hold.
Plus: no result stored twice; RSS of serve, Mosquitto and the sim over time (growth per process
life); ingest lag (ingest_ts - ts of every stored result); data-loss and health alarms raised
and cleared; rejects. Figures printed and written to benchmarks/results/soak.json (`--report`).

    .venv/bin/python benchmarks/soak.py                                   # 2,000 nodes, 30 min
    .venv/bin/python benchmarks/soak.py --procs 2 --period 2 --report benchmarks/results/soak_2000_30min.json
    .venv/bin/python benchmarks/soak.py --duration 50 --nodes 40 --report /tmp/soak.json   # the test's
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import resource
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import RESULTS, machine  # noqa: E402

PREFIX = "soak-"  # simulated nodes; hostile devices are named "hostile-..."
SERVE_CLIENT_ID = "ef-ingest-soak"


class SoakError(Exception):
    """A part did not start or stop as it should: one line, no traceback."""


# --- the nodes' network ----------------------------------------------------------------------------


def connect_client_id(buf: bytes | bytearray) -> str | None:
    """The client id of an MQTT CONNECT at the start of `buf`; None until it has fully arrived.
    ValueError if it is not a CONNECT."""
    if len(buf) < 2:
        return None
    if buf[0] >> 4 != 1:
        raise ValueError("first packet is not CONNECT")
    length, mult, i = 0, 1, 1
    while True:
        if i >= len(buf):
            return None
        b = buf[i]
        length += (b & 127) * mult
        mult *= 128
        i += 1
        if b < 128:
            break
        if i > 4:
            raise ValueError("bad remaining length")
    if len(buf) < i + length:
        return None
    p = i + 2 + int.from_bytes(buf[i:i + 2], "big")  # protocol name
    level = buf[p]
    p += 4  # level, flags, keepalive
    if level == 5:  # properties
        plen, mult = 0, 1
        while True:
            b = buf[p]
            plen += (b & 127) * mult
            mult *= 128
            p += 1
            if b < 128:
                break
        p += plen
    n = int.from_bytes(buf[p:p + 2], "big")
    return bytes(buf[p + 2:p + 2 + n]).decode("utf-8", "replace")


@dataclass(eq=False)
class _Pair:
    down: socket.socket
    up: socket.socket | None = None
    cid: str = ""
    hello: bytearray = field(default_factory=bytearray)
    to_up: bytearray = field(default_factory=bytearray)
    to_down: bytearray = field(default_factory=bytearray)
    closed: bool = False


class LinkProxy(threading.Thread):
    """TCP proxy between the simulated nodes and the broker, one pair of sockets per connection,
    keyed by the MQTT client id of its CONNECT. `drop(ids)` cuts those nodes' links (the broker and
    the node each see their socket close); `block(ids, seconds)` also refuses their reconnects
    (accepted, CONNECT read, closed) until the time is up."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(name="link-proxy", daemon=True)
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.by_cid: dict[str, set[_Pair]] = defaultdict(set)
        self.blocked: dict[str, float] = {}
        self.halt = threading.Event()
        self.accepted = self.refused = self.cut = self.upstream_failed = 0

    def drop(self, ids) -> None:
        self.jobs.put(("drop", list(ids), 0.0))

    def block(self, ids, seconds: float) -> None:
        self.jobs.put(("block", list(ids), time.monotonic() + seconds))

    def stop(self) -> None:
        self.halt.set()
        self.join(5)

    def run(self) -> None:
        while not self.halt.is_set():
            for key, ev in self.sel.select(timeout=0.1):
                if key.data is None:
                    self._accept()
                    continue
                pair, side = key.data
                if pair.closed:
                    continue
                if ev & selectors.EVENT_WRITE:
                    self._flush(pair, side)
                if ev & selectors.EVENT_READ and not pair.closed:
                    self._read(pair, side)
            while True:
                try:
                    op, ids, until = self.jobs.get_nowait()
                except queue.Empty:
                    break
                for cid in ids:
                    if op == "block":
                        self.blocked[cid] = until
                    for pair in list(self.by_cid.get(cid, ())):
                        self.cut += 1
                        self._close(pair)
        for pairs in list(self.by_cid.values()):
            for pair in list(pairs):
                self._close(pair)
        self.listener.close()

    def _accept(self) -> None:
        for _ in range(256):
            try:
                sock, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted += 1
            pair = _Pair(sock)
            self.sel.register(sock, selectors.EVENT_READ, (pair, "down"))

    def _read(self, pair: _Pair, side: str) -> None:
        src = pair.down if side == "down" else pair.up
        try:
            data = src.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(pair)
            return
        if pair.up is None:  # still waiting for the CONNECT
            pair.hello += data
            try:
                cid = connect_client_id(pair.hello)
            except (ValueError, IndexError):
                self._close(pair)
                return
            if cid is not None:
                self._open_upstream(pair, cid)
            return
        if side == "down":
            pair.to_up += data
            self._flush(pair, "up")
        else:
            pair.to_down += data
            self._flush(pair, "down")

    def _open_upstream(self, pair: _Pair, cid: str) -> None:
        pair.cid = cid
        until = self.blocked.get(cid)
        if until is not None:
            if time.monotonic() < until:
                self.refused += 1
                self._close(pair)
                return
            del self.blocked[cid]
        try:
            up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2.0)
        except OSError:  # the broker is restarting: the node will retry
            self.upstream_failed += 1
            self._close(pair)
            return
        up.setblocking(False)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair.up = up
        self.sel.register(up, selectors.EVENT_READ, (pair, "up"))
        self.by_cid[cid].add(pair)
        pair.to_up += pair.hello
        pair.hello.clear()
        self._flush(pair, "up")

    def _flush(self, pair: _Pair, side: str) -> None:
        sock, buf = (pair.up, pair.to_up) if side == "up" else (pair.down, pair.to_down)
        if sock is None or pair.closed:
            return
        if buf:
            try:
                n = sock.send(buf)
                del buf[:n]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close(pair)
                return
        try:
            self.sel.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if buf else 0), (pair, side))
        except (KeyError, ValueError):
            pass

    def _close(self, pair: _Pair) -> None:
        if pair.closed:
            return
        pair.closed = True
        for s in (pair.down, pair.up):
            if s is None:
                continue
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.close()
            except OSError:
                pass
        if pair.cid:
            self.by_cid.get(pair.cid, set()).discard(pair)


# --- processes and samples ---------------------------------------------------------------------------


def rss_mb(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def tree_rss_mb(pid: int | None) -> float | None:
    """RSS of a process and its children (a sim with --procs > 1 runs workers)."""
    total = rss_mb(pid)
    if total is None:
        return None
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return total + sum(rss_mb(int(k)) or 0.0 for k in kids)


def busy_processes(own: set[int], n: int = 8) -> list[str]:
    """What else runs on the machine: the top CPU users that are not ours."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[1:]
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out:
        pid, pcpu, cmd = line.split(None, 2) if len(line.split(None, 2)) == 3 else (line, "0", "")
        if int(pid) in own or float(pcpu) < 1.0:
            continue
        rows.append(f"{pcpu}% {cmd[:110]}")
        if len(rows) >= n:
            break
    return rows


class Serve:
    """`edgefleet serve` as a child process on the soak's store; stderr appended to one log."""

    def __init__(self, url: str, db: Path, log: Path, delay_file: Path | None = None) -> None:
        self.url, self.db, self.log, self.delay_file = url, db, log, delay_file
        self.proc: subprocess.Popen | None = None
        self.starts: list[float] = []

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until it has subscribed; returns the seconds it took."""
        t0 = time.monotonic()
        offset = self.log.stat().st_size if self.log.exists() else 0
        env = dict(os.environ, EDGEFLEET_SESSION_EXPIRY_S="3600", EDGEFLEET_STATS_INTERVAL_S="10",
                   PYTHONUNBUFFERED="1")
        if self.delay_file is not None:  # the slow-store phase writes this file (store/slow_commit.py)
            env["EDGEFLEET_TEST_COMMIT_DELAY_FILE"] = str(self.delay_file)
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--broker", self.url,
                                          "--db", str(self.db), "--client-id", SERVE_CLIENT_ID, "--group", ""],
                                         cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
        while time.monotonic() - t0 < timeout:
            with open(self.log, "rb") as f:
                f.seek(offset)
                if b"subscribed to" in f.read():
                    self.starts.append(time.monotonic())
                    return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise SoakError(f"edgefleet serve exited with {self.proc.returncode}; see {self.log}")
            time.sleep(0.1)
        raise SoakError(f"edgefleet serve did not subscribe within {timeout:g} s; see {self.log}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def count_results(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute("SELECT count(*) FROM results").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return -1


# --- hostile payloads ----------------------------------------------------------------------------------


class Publisher:
    """A QoS 1 paho publisher with a bounded window (paho loses messages beyond 65,535 in flight).
    Runs in a child process of its own (`helper`), so the proxy's thread cannot starve it."""

    def __init__(self, port: int, client_id: str, window: int = 100, timeout: float = 60.0) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.timeout = timeout
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.max_inflight_messages_set(window)
        self.c.max_queued_messages_set(0)
        self.slots = threading.Semaphore(window)
        self.lock = threading.Lock()
        self.sent = self.acked = 0
        self.connected = threading.Event()
        self.c.on_connect = lambda *_a: self.connected.set()
        self.c.on_publish = self._on_publish
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not self.connected.wait(timeout):
            raise SoakError(f"no CONNACK from the broker on port {port} within {timeout:g} s")

    def _on_publish(self, *_a) -> None:
        with self.lock:
            self.acked += 1
        self.slots.release()

    def publish(self, topic: str, payload: bytes) -> None:
        if not self.slots.acquire(timeout=self.timeout):
            raise SoakError(f"no PUBACK for {self.timeout:g} s ({self.acked} of {self.sent} acknowledged)")
        with self.lock:
            self.sent += 1
        self.c.publish(topic, payload, qos=1)

    def close(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self.acked < self.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        self.c.disconnect()
        self.c.loop_stop()


def helper(argv: list[str]) -> int:
    """`soak.py _hostile PORT N SEED` or `soak.py _reboot PORT TAG DEVICE...`: one JSON line on stdout."""
    try:
        if argv[0] == "_hostile":
            out = hostile_burst(int(argv[1]), int(argv[2]), int(argv[3]))
        else:
            out = reboot_cmd(int(argv[1]), argv[3:], argv[2])
    except (SoakError, OSError) as exc:
        out = {"error": str(exc)}
    print(json.dumps(out))
    return 0


def run_helper(*argv: str, timeout: float = 180.0) -> dict:
    """A helper in its own process; its error, or a timeout, is reported, never raised."""
    try:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], cwd=REPO, capture_output=True,
                           text=True, timeout=timeout)
        return json.loads(p.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"error": f"{argv[0]} helper still running after {timeout:g} s"}
    except (ValueError, IndexError):
        return {"error": f"{argv[0]} helper failed: {(p.stderr or '').strip().splitlines()[-1:]}"}


def hostile_burst(port: int, n: int, seed: int) -> dict:
    """n malformed messages, one result from an hour ahead, a sequence jump and a hole of 40."""
    sys.path.insert(0, str(REPO / "tests" / "fleet"))  # the suite's generator: each payload refused by the codec
    from malformed import malformed

    from edgefleet import protocol

    def result(boot: str, seqs, ts0: int) -> bytes:
        res = [{"seq": s, "ts": ts0 + 10 * i, "score": 0.01, "anom": False, "inf_us": 400} for i, s in enumerate(seqs)]
        return protocol.encode("result", protocol.result_message(boot, 1, 0.05, res))

    pub = Publisher(port, f"soak-hostile-{seed}")
    t0 = time.monotonic()
    bad = 0
    for topic, payload in malformed(n, seed=seed):
        pub.publish(topic, payload)
        bad += 1
    now = int(time.time() * 1000)
    pub.publish(protocol.topic("hostile-future", "result"), result("0000f00d", [0], now + 3_600_000))
    pub.publish(protocol.topic("hostile-jump", "result"), result("0000beef", range(5), now))
    pub.publish(protocol.topic("hostile-jump", "result"), result("0000beef", [4_000_000_000], now + 100))
    pub.publish(protocol.topic("hostile-gap", "result"), result("0000cafe", range(10), now))
    pub.publish(protocol.topic("hostile-gap", "result"), result("0000cafe", range(50, 60), now + 500))
    pub.close()
    return {"malformed": bad, "claim": 1, "expected_rejects": bad + 1, "seq_jump_devices": 1, "hole": 40,
            "acked": pub.acked, "sent": pub.sent, "publish_s": round(time.monotonic() - t0, 2)}


# --- the run -------------------------------------------------------------------------------------------


def offline_phase(args: argparse.Namespace) -> tuple[float, int]:
    """Seconds the offline nodes stay cut off (20 % of the run) and their ring: a tenth of the windows
    they make in that time at the nominal rate, so it overflows unless the sim skips over 90 % of its
    windows (it skipped 61 % at load 30). Their own small ring, not the fleet's: the others' rings must
    still hold every link outage."""
    off_s = 0.2 * args.duration
    ring = getattr(args, "offline_ring", None) or max(2, min(args.ring, round(0.1 * off_s / args.period)))
    return off_s, ring


def node_ids(n: int) -> list[str]:
    width = max(4, len(str(n - 1)))  # as device_sim.plant.make_plant names them
    return [f"{PREFIX}{i:0{width}d}" for i in range(n)]


def plan(args: argparse.Namespace) -> tuple[list[tuple[float, str, dict]], dict]:
    """The chaos schedule (seconds after the sim starts) and which nodes take what."""
    d = args.duration
    rng = random.Random(args.seed)
    ids = node_ids(args.nodes)
    pool = ids[:]
    rng.shuffle(pool)
    n_off = max(1, args.nodes // 100)
    n_reboot = max(1, args.nodes // 200)
    offline, pool = pool[:n_off], pool[n_off:]
    reboots = [pool[:n_reboot], pool[n_reboot:2 * n_reboot]]
    pool = pool[2 * n_reboot:]
    n_drop = max(1, args.nodes // 20)
    drops = [rng.sample(pool, min(n_drop, len(pool))) for _ in range(4)]
    off_at = 0.15 * d
    off_s, off_ring = offline_phase(args)
    events = [
        (0.08 * d, "hostile", {"n": args.hostile}),
        (0.12 * d, "link_drop", {"nodes": drops[0]}),
        (off_at, "offline_past_ring", {"nodes": offline, "seconds": off_s, "ring": off_ring}),
        (0.25 * d, "kill9_serve", {"down_s": args.serve_down}),
        (0.35 * d, "reboot", {"nodes": reboots[0]}),
        (0.40 * d, "link_drop", {"nodes": drops[1]}),
        (0.50 * d, "broker_restart", {}),
        (0.53 * d, "slow_store", {"ms": getattr(args, "slow_commit_ms", 0.0), "seconds": 0.06 * d}),
        (0.59 * d, "slow_store_end", {}),
        (0.60 * d, "reboot", {"nodes": reboots[1]}),
        (0.65 * d, "link_drop", {"nodes": drops[2]}),
        (0.75 * d, "kill9_serve", {"down_s": args.serve_down}),
        (0.85 * d, "link_drop", {"nodes": drops[3]}),
    ]
    sets = {"offline": offline, "rebooted": reboots[0] + reboots[1], "link_dropped": sorted(set(sum(drops, [])))}
    return sorted(events, key=lambda e: e[0]), sets


def reboot_cmd(port: int, nodes: list[str], tag: str) -> dict:
    from edgefleet import protocol

    pub = Publisher(port, f"soak-ops-{tag}")
    for i, dev in enumerate(nodes):
        body = {"v": 1, "seq": i, "id": f"soak-reboot-{tag}-{i}", "op": "reboot"}
        pub.publish(protocol.topic(dev, "cmd"), protocol.encode("cmd", body))
    pub.close()
    return {"sent": pub.sent, "acked": pub.acked}


class Sampler(threading.Thread):
    """Every `every` s: RSS of serve, Mosquitto and the sim, results stored, load average."""

    def __init__(self, every: float, t0: float, serve: Serve, broker, sim: subprocess.Popen, db: Path) -> None:
        super().__init__(name="sampler", daemon=True)
        self.every, self.t0, self.serve, self.broker, self.sim, self.db = every, t0, serve, broker, sim, db
        self.rows: list[dict] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            serve_pid = self.serve.proc.pid if self.serve.proc and self.serve.proc.poll() is None else None
            broker_pid = self.broker.pid if self.broker.running() else None
            self.rows.append({"t": round(time.monotonic() - self.t0, 1), "serve_pid": serve_pid,
                              "serve_mb": rss_mb(serve_pid), "broker_pid": broker_pid,
                              "broker_mb": rss_mb(broker_pid),
                              "sim_mb": tree_rss_mb(self.sim.pid) if self.sim.poll() is None else None,
                              "stored": count_results(self.db), "load1": round(os.getloadavg()[0], 2)})


def load_figures(start: tuple[float, ...], end: tuple[float, ...], rows: list[dict]) -> dict:
    """The machine's load average: at the start and the end (1, 5, 15 min) and the 1-min figure
    sampled through the run (min, median, max): a busy machine makes the sim skip windows and
    ingest lag, so every figure of the run is read beside it."""
    during = [r["load1"] for r in rows if r.get("load1") is not None]
    out = {"start": [round(x, 2) for x in start], "end": [round(x, 2) for x in end]}
    if during:
        out["during_1min"] = {"min": min(during), "median": round(float(np.median(during)), 2), "max": max(during),
                              "samples": len(during)}
    return out


def verdict(out: dict, broker_crash: bool) -> dict[str, bool]:
    """The soak's checks, each by name; the run passes when all hold. `emitted` is every result a
    node made (a sequence number assigned: the sim's `windows`), what the issue calls published;
    the sim's own `published` is only what the broker acknowledged."""
    inv = out["invariant"]
    checks = {
        "emitted == stored + missing + dropped_on_node (total)":
            out["windows"] == out["stored"] + out["missing"] + out["dropped_on_node"],
        "emitted == stored + missing + dropped_on_node (every device)": out["assigned_not_accounted"] == 0,
        "stored + missing + dropped_on_node == published + dropped + arrived without PUBACK (every device)":
            inv["holds"],
        "lost silently == 0": out["lost_silently"] == 0,
        "no (device, boot, seq) stored twice": out["duplicate_keys_in_store"] == 0,
        "dropped_on_node (store) == dropped (nodes' own count)":
            out["dropped_on_node"] == out["dropped_reported_by_sim"],
        "dropped_on_node > 0 (the offline phase overflowed rings)": out["dropped_on_node"] > 0,
        "every offline node's ring overflowed": (out["offline"]["overflowed"] == out["offline_nodes"] > 0),
        "no helper errors": not out.get("helper_errors"),
    }
    if not broker_crash:  # a broker crash loses what it acknowledged since its last save: counted, not prevented
        checks["acked but not stored == 0"] = out["acked_not_stored"] == 0
        checks["missing == 0 where no loss is promised (all but the rebooted nodes)"] = \
            out["missing_where_no_loss_promised"] == 0
    h = out["hostile"]
    if h.get("expected_rejects"):
        checks["every hostile message rejected with a code"] = h["rejected_in_store"] == h["expected_rejects"]
        checks["the seq jump counted once"] = h["seq_jumps"] == 1
    return checks


def rss_growth(rows: list[dict], key: str, pid_key: str, warmup_s: float) -> list[dict]:
    """Per process life (pid): RSS after warm-up, at the end, and the least-squares slope in MB/h."""
    lives: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r[pid_key] and r[key] is not None:
            lives[r[pid_key]].append((r["t"], r[key]))
    out = []
    for pid, pts in lives.items():
        start = pts[0][0]
        warm = [(t, m) for t, m in pts if t - start >= warmup_s] or pts
        t, m = np.array([p[0] for p in warm]), np.array([p[1] for p in warm])
        slope = float(np.polyfit(t, m, 1)[0] * 3600) if len(warm) >= 3 and np.ptp(t) > 0 else None
        half = t >= t[0] + 0.5 * np.ptp(t)  # the second half: after a step (a queue the broker kept), is it flat?
        late = float(np.polyfit(t[half], m[half], 1)[0] * 3600) if half.sum() >= 3 and np.ptp(t[half]) > 0 else None
        out.append({"pid": pid, "from_s": start, "to_s": pts[-1][0], "mb_first": round(pts[0][1], 1),
                    "mb_after_warmup": round(warm[0][1], 1), "mb_last": round(pts[-1][1], 1),
                    "mb_max": round(max(p[1] for p in pts), 1), "mb_median": round(float(np.median(m)), 1),
                    "slope_mb_per_h": None if slope is None else round(slope, 2),
                    "slope_second_half_mb_per_h": None if late is None else round(late, 2), "samples": len(pts)})
    return out


def run(args: argparse.Namespace) -> dict:
    from edgefleet.service.broker import mosquitto_binary, start_broker

    if not mosquitto_binary():
        raise SoakError("mosquitto is not installed (scripts/setup.sh installs it)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * args.nodes + 512
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard) if hard != resource.RLIM_INFINITY else need, hard))
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ef-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    db, sim_report = work / "fleet.db", work / "sim.json"
    events, sets = plan(args)
    off_ring = offline_phase(args)[1]
    print(f"soak: {args.nodes} nodes, {args.duration:g} s, ring {args.ring} results ({len(sets['offline'])} offline "
          f"nodes: {off_ring}), work dir {work}", flush=True)
    own: set[int] = {os.getpid()}
    background = {"start": busy_processes(own)}
    load_start = os.getloadavg()
    log_lines: list[dict] = []

    def note(t: float, what: str, **kw) -> None:
        log_lines.append({"t": round(t, 1), "event": what, **kw})
        print(f"  t={t:7.1f} s  {what} " + " ".join(f"{k}={v}" for k, v in kw.items() if k != "nodes"), flush=True)

    broker = start_broker(prefer="mosquitto", persistence_dir=work / "persist", workdir=work / "broker",
                          log_file=work / "broker" / "mosquitto.log")
    proxy = LinkProxy(broker.port)
    proxy.start()
    delay_file = work / "commit_delay_ms"
    delay_file.unlink(missing_ok=True)
    serve = Serve(broker.url, db, work / "serve.log", delay_file)
    sim = None
    sampler = None
    try:
        serve.start()
        own.add(serve.proc.pid)
        sim_cmd = [sys.executable, "-m", "edgefleet", "sim", "--broker", f"mqtt://127.0.0.1:{proxy.port}",
                   "--nodes", str(args.nodes), "--faulty", str(max(1, args.nodes // 100)), "--prefix", PREFIX,
                   "--duration", str(args.duration), "--ring", str(args.ring), "--period", str(args.period),
                   "--seed", str(args.seed), "--procs", str(args.procs), "--report", str(sim_report),
                   "--ota-key", "none", *(a for dev in sets["offline"] for a in ("--ring-for", f"{dev}={off_ring}"))]
        sim_log = open(work / "sim.log", "w")
        sim = subprocess.Popen(sim_cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=sim_log,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
        own.add(sim.pid)
        t0 = time.monotonic()
        sampler = Sampler(args.sample_s or max(2.0, args.duration / 180), t0, serve, broker, sim, db)
        sampler.start()
        hostile: dict = {}
        helper_errors: list[str] = []
        crashed = False
        serve_restart_s, broker_restart_s = [], []
        for at, what, ev in events:
            while time.monotonic() - t0 < at:
                if sim.poll() is not None:
                    raise SoakError(f"edgefleet sim exited early ({sim.returncode}); see {work / 'sim.log'}")
                time.sleep(0.2)
            now = time.monotonic() - t0
            if what == "hostile":
                hostile = run_helper("_hostile", str(broker.port), str(ev["n"]), str(args.seed))
                note(now, what, **{k: hostile.get(k) for k in ("sent", "acked", "error") if k in hostile})
            elif what == "link_drop":
                proxy.drop(ev["nodes"])
                note(now, what, nodes=len(ev["nodes"]))
            elif what == "offline_past_ring":
                proxy.block(ev["nodes"], ev["seconds"])
                note(now, what, nodes=len(ev["nodes"]), seconds=round(ev["seconds"], 1), ring=ev["ring"])
            elif what == "kill9_serve":
                serve.kill9()
                note(now, "kill -9 serve")
                if args.broker_crash and not crashed:  # the worst moment: the session's queue is growing
                    time.sleep(ev["down_s"] / 2)
                    broker.kill()  # loses what Mosquitto took since its last save (autosave every 30 s)
                    broker.restart()
                    crashed = True
                    note(time.monotonic() - t0, "broker crash (kill -9) and start")
                    time.sleep(ev["down_s"] / 2)
                else:
                    time.sleep(ev["down_s"])
                took = serve.start()
                own.add(serve.proc.pid)
                serve_restart_s.append(round(took, 2))
                note(time.monotonic() - t0, "serve restarted", subscribed_after_s=round(took, 2))
            elif what == "reboot":
                sent = run_helper("_reboot", str(broker.port), f"{int(now)}", *ev["nodes"])
                helper_errors += [sent["error"]] if "error" in sent else []
                note(now, what, nodes=len(ev["nodes"]), **sent)
            elif what == "slow_store":
                if ev["ms"] > 0:
                    delay_file.write_text(f"{ev['ms']:g}\n")
                    note(now, "slow store: every commit sleeps first", ms=ev["ms"], for_s=round(ev["seconds"], 1))
            elif what == "slow_store_end":
                if delay_file.exists():
                    delay_file.unlink()
                    note(now, "slow store ends")
            elif what == "broker_restart":
                b0 = time.monotonic()
                broker.restart()
                broker_restart_s.append(round(time.monotonic() - b0, 2))
                note(now, "broker restart", took_s=broker_restart_s[-1])
        background["middle"] = busy_processes(own)
        try:
            sim.wait(args.duration + 180)
        except subprocess.TimeoutExpired:
            raise SoakError(f"edgefleet sim did not stop; see {work / 'sim.log'}") from None
        sim_log.close()
        if sim.returncode != 0 or not sim_report.exists():
            raise SoakError(f"edgefleet sim exited with {sim.returncode}; see {work / 'sim.log'}")
        note(time.monotonic() - t0, "sim stopped")
        # until ingest has taken everything: no new row for 6 s; a busy machine may need long, so
        # there is no deadline while rows keep coming (a hard cap of an hour, or twice the run)
        stable, last, cap = 0, -2, time.monotonic() + max(3600.0, 2 * args.duration)
        while stable < 3 and time.monotonic() < cap:
            time.sleep(2.0)
            cur = count_results(db)
            stable, last = (stable + 1 if cur == last else 0), cur
        time.sleep(args.loss_wait)  # let serve's loss tracking run once more on the final state
        note(time.monotonic() - t0, "ingest idle", stored=last)
        sampler.halt.set()
        sampler.join(10)
        background["end"] = busy_processes(own)
        code = serve.stop()
        if code not in (0, None):
            raise SoakError(f"edgefleet serve exited with {code} on SIGTERM; see {work / 'serve.log'}")
        proxy_stats = {"accepted": proxy.accepted, "cut": proxy.cut, "refused_while_blocked": proxy.refused,
                       "upstream_failed": proxy.upstream_failed}
        wall = time.monotonic() - t0
    finally:
        if sampler is not None:
            sampler.halt.set()
        if sim is not None and sim.poll() is None:
            sim.terminate()
            try:
                sim.wait(30)
            except subprocess.TimeoutExpired:
                sim.kill()
        serve.stop()
        proxy.stop()
        broker.stop()
    rep = json.loads(sim_report.read_text())
    out = analyse(args, rep, db, sets, hostile, sampler.rows)
    out.update({
        "config": {"nodes": args.nodes, "duration_s": args.duration, "ring": args.ring, "period_s": args.period,
                   "offline_ring": off_ring, "offline_s": round(offline_phase(args)[0], 1),
                   "procs": args.procs, "seed": args.seed, "hostile": args.hostile, "serve_down_s": args.serve_down,
                   "broker_crash": args.broker_crash, "slow_commit_ms": args.slow_commit_ms,
                   "store": "SQLite, synchronous=FULL", "broker": "Mosquitto, project config, persistence on"},
        "schedule": log_lines, "serve_restart_subscribed_s": serve_restart_s, "broker_restart_s": broker_restart_s,
        "proxy": proxy_stats, "helper_errors": helper_errors + ([hostile["error"]] if "error" in hostile else []),
        "wall_s": round(wall, 1), "workdir": str(work),
        "load_avg": load_figures(load_start, os.getloadavg(), sampler.rows),
        "other_processes": background,
    })
    return out


def analyse(args: argparse.Namespace, rep: dict, db: Path, sets: dict, hostile: dict, samples: list[dict]) -> dict:
    from edgefleet.service.store import SQLiteStore

    per = rep["per_device"]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    stored = dict(con.execute("SELECT device, count(*) FROM results WHERE device >= ? AND device < ? GROUP BY device",
                              (PREFIX, PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1))).fetchall())
    dup_keys = con.execute("SELECT count(*) FROM (SELECT 1 FROM results GROUP BY device, boot, seq HAVING count(*) > 1)"
                           ).fetchone()[0]
    boots_seen = dict(con.execute("SELECT device, count(DISTINCT boot) FROM results GROUP BY device").fetchall())
    rows = np.array(con.execute("SELECT ingest_ts, ingest_ts - ts FROM results WHERE device >= ? AND device < ?",
                                (PREFIX, PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1))).fetchall(), np.float64).reshape(-1, 2)
    lag = rows[:, 1]
    minute = ((rows[:, 0] - rows[:, 0].min()) // 60_000).astype(int) if len(rows) else np.zeros(0, int)
    lag_by_minute = [{"minute": int(m), "results": int((minute == m).sum()),
                      "p50_ms": float(np.median(lag[minute == m])), "max_ms": float(lag[minute == m].max())}
                     for m in np.unique(minute)]
    con.close()
    store = SQLiteStore(db)
    try:
        loss = store.loss(int(time.time() * 1000), settle_ms=0)  # every hole counted, settled or not
        loss_settled = store.loss(int(time.time() * 1000))  # as `edgefleet stats` says it now
        counts = store.counts()
        reject_codes = store.reject_counts()
        loss_alarms = store.loss_alarms()
        health = store.alarms(limit=100000)
    finally:
        store.close()
    L = loss["devices"]
    tot = defaultdict(int)
    bad: list[dict] = []
    not_accounted: list[dict] = []
    for dev, d in per.items():
        s = stored.get(dev, 0)
        e = L.get(dev, {})
        m, dn, pend = e.get("missing", 0), e.get("dropped_on_node", 0), e.get("pending_gaps", 0)
        p, dsim, w = d["published"], d["dropped"], d["windows"]
        unacked = w - p - dsim  # lost in RAM at a reboot, or still unacknowledged when the sim stopped
        arrived_unacked = s + m + dn - p - dsim  # what the store has or counts beyond acked + dropped
        silent = max(0, p + dsim - (s + m + dn))  # acknowledged or dropped, and neither stored nor counted
        tot["published"] += p
        tot["stored"] += s
        tot["missing"] += m
        tot["pending_gaps"] += pend
        tot["dropped_on_node"] += dn
        tot["dropped_sim"] += dsim
        tot["windows"] += w
        tot["unacked"] += unacked
        tot["assigned_not_accounted"] += abs(w - (s + m + dn))  # every seq a node assigned: stored or counted
        if w != s + m + dn:
            not_accounted.append({"device": dev, "windows": w, "stored": s, "missing": m, "dropped_on_node": dn,
                                  "published": p, "boots_in_store": boots_seen.get(dev)})
        tot["arrived_unacked"] += max(0, arrived_unacked)
        tot["acked_not_stored"] += max(0, p - s)
        tot["lost_silently"] += silent
        ok = silent == 0 and 0 <= arrived_unacked <= unacked and dn == dsim
        if not ok:
            bad.append({"device": dev, "published": p, "stored": s, "missing": m, "dropped_on_node": dn,
                        "dropped_sim": dsim, "windows": w, "unacked": unacked, "boots_in_store": boots_seen.get(dev)})
    hostile_loss = {k: v for k, v in L.items() if k.startswith("hostile-")}
    lhs = tot["stored"] + tot["missing"] + tot["dropped_on_node"]
    rhs = tot["published"] + tot["dropped_sim"] + tot["arrived_unacked"]
    rebooted = set(sets["rebooted"])
    offline = {d: {"dropped_sim": per.get(d, {}).get("dropped", 0),
                   "dropped_on_node": L.get(d, {}).get("dropped_on_node", 0), "windows": per.get(d, {}).get("windows", 0)}
               for d in sets["offline"]}
    no_loss_missing = {d: e.get("missing", 0) for d, e in L.items()
                       if d in per and d not in rebooted and e.get("missing", 0)}
    lag_ok = lag.size > 0
    out = {
        "published": tot["published"], "stored": tot["stored"], "missing": tot["missing"],
        "pending_gaps": tot["pending_gaps"], "dropped_on_node": tot["dropped_on_node"],
        "dropped_reported_by_sim": tot["dropped_sim"], "windows": tot["windows"],
        "unacknowledged_on_nodes": tot["unacked"], "arrived_without_puback": tot["arrived_unacked"],
        "acked_not_stored": tot["acked_not_stored"], "lost_silently": tot["lost_silently"],
        "assigned_not_accounted": tot["assigned_not_accounted"], "devices_not_accounted": not_accounted[:50],
        "devices_not_accounted_n": len(not_accounted),
        "rebooted_tail_counted": sum(L.get(d, {}).get("missing", 0) for d in rebooted),
        "missing_where_no_loss_promised": sum(no_loss_missing.values()),
        "missing_where_no_loss_promised_devices": dict(sorted(no_loss_missing.items())[:50]),
        "offline": {"overflowed": sum(1 for v in offline.values() if v["dropped_sim"] > 0),
                    "dropped_sim": sum(v["dropped_sim"] for v in offline.values()),
                    "dropped_on_node": sum(v["dropped_on_node"] for v in offline.values()),
                    "dropped_min": min((v["dropped_sim"] for v in offline.values()), default=0),
                    "windows_min": min((v["windows"] for v in offline.values()), default=0), "per_device": offline},
        "invariant": {"stored + missing + dropped_on_node": lhs,
                      "published + dropped (sim) + arrived without PUBACK": rhs, "holds": lhs == rhs and not bad},
        "devices_failing": bad[:50], "devices_failing_n": len(bad),
        "duplicate_keys_in_store": dup_keys, "redeliveries_dropped_as_duplicates": counts.duplicates,
        "rebooted_nodes": len(rebooted), "offline_nodes": len(sets["offline"]),
        "link_dropped_nodes": len(sets["link_dropped"]),
        "boots_in_store_of_rebooted": sum(boots_seen.get(d, 0) for d in rebooted),
        "sim": {k: rep.get(k) for k in ("windows", "published", "dropped", "pending", "connects", "disconnects",
                                         "skipped_windows", "late_ticks", "windows_per_s", "ack_latency_ms",
                                         "shard_errors", "compute_s", "duration_s")},
        "loss_as_stats_reports_now": {k: loss_settled[k] for k in ("missing", "pending_gaps", "dropped_on_node",
                                                                  "seq_jumps")},
        "hostile": {**hostile, "rejected_in_store": counts.rejected, "reject_codes": reject_codes,
                    "seq_jumps": loss["seq_jumps"], "hostile_devices_loss": hostile_loss},
        "alarms": {"data_loss_raised": len(loss_alarms),
                   "data_loss_cleared": sum(1 for a in loss_alarms if a["cleared_ts"] is not None),
                   "data_loss_devices": sorted({a["device"] for a in loss_alarms}),
                   "health_raised": len(health), "health_cleared": sum(1 for a in health if not a.active)},
        "ingest_lag_ms": ({"p50": float(np.percentile(lag, 50)), "p90": float(np.percentile(lag, 90)),
                           "p99": float(np.percentile(lag, 99)), "max": float(lag.max()), "n": int(lag.size)}
                          if lag_ok else None),
        "ingest_lag_by_minute_of_ingest": lag_by_minute,
        "rss": {"serve": rss_growth(samples, "serve_mb", "serve_pid", 120.0),
                "broker": rss_growth(samples, "broker_mb", "broker_pid", 120.0),
                "sim_mb_median": (round(float(np.median([r["sim_mb"] for r in samples if r["sim_mb"]])), 1)
                                  if any(r["sim_mb"] for r in samples) else None)},
        "samples": samples,
    }
    return out


def summary(out: dict) -> str:
    inv = out["invariant"]
    lag = out["ingest_lag_ms"] or {}
    lines = [
        f"published (PUBACKed) {out['published']:,}; stored {out['stored']:,}; missing {out['missing']:,}; "
        f"dropped_on_node {out['dropped_on_node']:,} (sim says {out['dropped_reported_by_sim']:,}); "
        f"pending_gaps {out['pending_gaps']:,}",
        f"unacknowledged on nodes (reboots, end) {out['unacknowledged_on_nodes']:,}, of which reached the store "
        f"{out['arrived_without_puback']:,}; acked but not stored {out['acked_not_stored']:,}; "
        f"lost silently {out['lost_silently']:,}",
        f"every assigned seq stored or counted (stored + missing + dropped_on_node == windows): "
        f"{'yes' if out['assigned_not_accounted'] == 0 else 'NO'} ({out['devices_not_accounted_n']} devices off by "
        f"{out['assigned_not_accounted']:,}); counted as missing on rebooted nodes {out['rebooted_tail_counted']:,}",
        f"invariant stored + missing + dropped_on_node = {inv['stored + missing + dropped_on_node']:,} == "
        f"published + dropped + arrived without PUBACK = "
        f"{inv['published + dropped (sim) + arrived without PUBACK']:,}: {'holds' if inv['holds'] else 'BROKEN'}"
        f" ({out['devices_failing_n']} devices failing)",
        f"duplicates stored {out['duplicate_keys_in_store']}; redeliveries dropped as duplicates "
        f"{out['redeliveries_dropped_as_duplicates']:,}",
        f"hostile: {out['hostile'].get('expected_rejects', 0):,} sent to be refused, {out['hostile']['rejected_in_store']:,}"
        f" rejects stored {out['hostile']['reject_codes']}; seq jumps {out['hostile']['seq_jumps']}",
        f"alarms: data-loss raised {out['alarms']['data_loss_raised']} cleared {out['alarms']['data_loss_cleared']} "
        f"{out['alarms']['data_loss_devices']}; health raised {out['alarms']['health_raised']} "
        f"cleared {out['alarms']['health_cleared']}",
        f"ingest lag ms p50 {lag.get('p50', 0):.0f} p90 {lag.get('p90', 0):.0f} p99 {lag.get('p99', 0):.0f} "
        f"max {lag.get('max', 0):.0f}",
    ]
    off = out["offline"]
    lines.append(f"offline past their ring: {off['overflowed']} of {out['offline_nodes']} nodes overflowed, dropped "
                 f"{off['dropped_sim']:,} (store: {off['dropped_on_node']:,}; fewest {off['dropped_min']:,}); "
                 f"missing where no loss is promised {out['missing_where_no_loss_promised']:,}")
    load = out.get("load_avg", {})
    if load.get("during_1min"):
        lines.append(f"load average (1 min) during the run: min {load['during_1min']['min']} median "
                     f"{load['during_1min']['median']} max {load['during_1min']['max']}; sim skipped "
                     f"{out['sim'].get('skipped_windows') or 0:,} windows")
    if out.get("helper_errors"):
        lines.append(f"helper errors: {out['helper_errors']}")
    for name, ok in out.get("checks", {}).items():
        lines.append(f"  [{'ok' if ok else 'FAIL'}] {name}")
    for name in ("serve", "broker"):
        for life in out["rss"][name]:
            lines.append(f"RSS {name} pid {life['pid']} ({life['from_s']:.0f}-{life['to_s']:.0f} s): "
                         f"{life['mb_after_warmup']} -> {life['mb_last']} MB (max {life['mb_max']}), "
                         f"slope {life['slope_mb_per_h']} MB/h (second half {life['slope_second_half_mb_per_h']})")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        print(f"soak: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=1800.0, help="seconds the sim runs (default 1800)")
    ap.add_argument("--nodes", type=int, default=2000, help="simulated nodes (default 2,000)")
    ap.add_argument("--procs", type=int, default=1, help="sim worker processes (default 1)")
    ap.add_argument("--ring", type=int, default=None,
                    help="each node's ring, results (default: 30 %% of the run, at most 600)")
    ap.add_argument("--offline-ring", type=int, default=None,
                    help="the ring of the nodes kept offline (default: a tenth of the windows they make in "
                         "their 20 %% of the run, at least 2)")
    ap.add_argument("--period", type=float, default=1.0, help="seconds between a node's windows (default 1)")
    ap.add_argument("--hostile", type=int, default=2000, help="malformed messages in the burst (default 2,000)")
    ap.add_argument("--serve-down", type=float, default=None,
                    help="seconds serve stays dead after each kill -9 (default 5 %% of the run, 3-20)")
    ap.add_argument("--broker-crash", action="store_true",
                    help="also kill -9 the broker while serve is down the first time: what it took since its last "
                         "save is lost and must show up as missing (acked but not stored is then expected)")
    ap.add_argument("--slow-commit-ms", type=float, default=1000.0,
                    help="the slow-store phase: ms every commit of serve sleeps first (default 1,000; 0: no phase)")
    ap.add_argument("--loss-wait", type=float, default=12.0, help=argparse.SUPPRESS)
    ap.add_argument("--sample-s", type=float, default=None, help="RSS sampling interval (default duration/180, >= 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="keep logs, the store and the sim report here")
    ap.add_argument("--report", type=Path, default=RESULTS / "soak.json",
                    help="JSON report (default benchmarks/results/soak.json)")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_hostile", "_reboot"):
        return helper(argv)
    args = ap.parse_args(argv)
    if args.duration < 40:
        ap.error("--duration must be at least 40 s (the chaos schedule needs room)")
    if not 10 <= args.nodes <= 20000:
        ap.error("--nodes must be between 10 and 20,000")
    if not 0 <= args.slow_commit_ms <= 60_000:
        ap.error("--slow-commit-ms must be 0-60,000")
    if args.procs < 1 or args.period <= 0 or args.hostile < 0:
        ap.error("--procs >= 1, --period > 0 and --hostile >= 0 are required")
    if args.ring is None:
        args.ring = max(5, min(600, int(0.3 * args.duration / args.period)))
    if args.ring < 1:
        ap.error("--ring must be at least 1")
    if args.offline_ring is not None and not 1 <= args.offline_ring < 0.2 * args.duration / args.period:
        ap.error("--offline-ring must be at least 1 and less than the windows of the offline phase (20 % of the run)")
    if args.serve_down is None:
        args.serve_down = min(20.0, max(3.0, 0.05 * args.duration))
    try:
        out = run(args)
    except (SoakError, OSError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 130
    out["checks"] = verdict(out, args.broker_crash)
    out["passed"] = all(out["checks"].values())
    print(summary(out))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps({"machine": machine(), **out}, indent=1, default=float) + "\n")
    print(f"report written to {args.report}")
    return 0 if out["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
