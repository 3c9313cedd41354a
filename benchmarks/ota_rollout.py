"""OTA rollout under faults: N simulated nodes updated in stages through `edgefleet serve`.

Everything is real and on this machine: Mosquitto (with persistence) on a free port,
`edgefleet serve` (ingest + OTA manager) on a temporary SQLite database, the simulated
fleet (one MQTT connection per node) in this process, and a subscriber process that
counts the OTA traffic on the wire. The benchmark

1. publishes model version 2 (the shipped fleet-default model re-versioned, signed
   with a temporary key the nodes trust) and starts a staged campaign;
2. injects faults: chunks lost and corrupted on the device side of the link, a share
   of the nodes rebooted in the middle of their download and another share in the
   middle of their trial, and a Mosquitto restart (stop, outage, start on the same
   port and persistence) half way through the last stage;
3. checks the outcome: every node confirmed on version 2 with a valid active model
   (hash and signature), the registry's per-device states agree with the nodes, the
   service's device table shows version 2, no retained offer is left;
4. acts as a rogue server and offers every node bad updates (bad signature, tampered
   artifact, tampered artifact with a recomputed offer hash, downgrade, another input
   shape, oversized) and checks that every node rejects each with the right reason and
   keeps running version 2;
5. prints a table and writes benchmarks/results/ota_rollout[-<tag>].json.

    .venv/bin/python benchmarks/ota_rollout.py                # 1,000 nodes
    .venv/bin/python benchmarks/ota_rollout.py --quick        # 50 nodes, a smoke run
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from _report import write_report  # noqa: E402
from device_sim.fleet import Fleet, FleetOptions  # noqa: E402
from device_sim.link import LinkOptions  # noqa: E402
from device_sim.ota_faults import OtaFaults  # noqa: E402
from device_sim.plant import make_plant  # noqa: E402
from edgefleet import protocol  # noqa: E402
from edgefleet.runtime import keys, manifest  # noqa: E402
from edgefleet.toolchain.bad_updates import BadUpdate, bad_updates, signed, versioned  # noqa: E402
from edgefleet.runtime.artifact import Artifact  # noqa: E402
from edgefleet.service.broker import start_broker  # noqa: E402
from edgefleet.service.ota.campaign import Policy, Target, parse_stages, stage_size  # noqa: E402
from edgefleet.service.ota.registry import OtaRegistry  # noqa: E402
from edgefleet.service.store import SQLiteStore  # noqa: E402

FLEET_MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
CHUNK = 1024  # bytes per ota/data chunk (the manager's offer)

# A separate process counts every OTA message the broker delivers (QoS 1, persistent
# session, so nothing published around the broker restart escapes it). Bytes are topic
# plus payload as published; MQTT framing is estimated separately.
COUNTER = r"""
import json, sys, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions
kinds, per_dev, offs = {}, {}, {}
def on_message(c, u, m):
    parts = m.topic.split("/")
    dev, kind = parts[2], "/".join(parts[3:])
    if kind == "ota/offer" and not m.payload:
        kind = "ota/offer-clear"
    k = kinds.setdefault(kind, [0, 0])
    n = len(m.topic) + len(m.payload)
    k[0] += 1
    k[1] += n
    per_dev[dev] = per_dev.get(dev, 0) + n
def on_connect(c, u, f, rc, p):
    # retain handling 2: never replay retained offers on (re)subscribe; count live traffic only
    c.subscribe("ef/v1/+/ota/#", options=SubscribeOptions(qos=1, retainHandling=2))
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ota-counter", protocol=mqtt.MQTTv5)
c.on_message, c.on_connect = on_message, on_connect
c.reconnect_delay_set(1, 2)
props = Properties(PacketTypes.CONNECT)
props.SessionExpiryInterval = 3600
c.connect("127.0.0.1", int(sys.argv[1]), clean_start=False, properties=props)
c.loop_start()
for line in sys.stdin:
    print(json.dumps({"kinds": kinds, "per_device": per_dev}), flush=True)
"""


# ---------------------------------------------------------------- a server the nodes must not trust

class Rogue:
    """Offers and serves updates directly over MQTT, as an attacker on the broker could."""

    def __init__(self, host: str, port: int) -> None:
        self.campaign = ""
        self.blob = b""
        self.states: dict[str, list[tuple[str, str]]] = {}
        self.lock = threading.Lock()
        self.seq = 0
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-rogue", protocol=mqtt.MQTTv5)
        c.max_queued_messages_set(0)
        c.on_message = self._on_message
        c.connect(host, port)
        c.subscribe([("ef/v1/+/ota/req", 1), ("ef/v1/+/ota/state", 1)])
        c.loop_start()
        self.client = c

    def _publish(self, device: str, kind: str, body: dict | None, retain: bool = False) -> None:
        if body is None:
            payload = b""
        else:
            self.seq += 1
            payload = protocol.encode(kind, {"v": protocol.PROTOCOL_VERSION, "seq": self.seq, **body})
        self.client.publish(protocol.topic(device, kind), payload, qos=1, retain=retain)

    def _on_message(self, _c, _u, msg) -> None:
        m = protocol.decode_message(msg.topic, msg.payload)
        if m.body.get("campaign") != self.campaign:
            return
        if m.kind == "ota/state":
            with self.lock:
                self.states.setdefault(m.device, []).append((m.body["state"], m.body.get("reason", "")))
        elif m.kind == "ota/req":
            off, n = int(m.body["off"]), int(m.body["len"])
            data = self.blob[off:off + n]
            if data:
                self._publish(m.device, "ota/data", {"campaign": self.campaign, "model": m.body["model"],
                                                     "off": off, "crc": zlib.crc32(data),
                                                     "data": base64.b64encode(data).decode()})

    def offer(self, devices: list[str], campaign: str, bad: BadUpdate, ticket_key=None) -> None:
        """With `ticket_key` (the fleet's campaign key: an insider) each offer carries a valid ticket, so the
        node's manifest and artifact checks are what refuse it; without, it is refused as unauthorized."""
        with self.lock:
            self.campaign, self.blob, self.states = campaign, bad.blob, {}
        for d in devices:
            self._publish(d, "ota/offer", bad.offer(campaign, chunk=CHUNK, trial_s=5, ticket_key=ticket_key, device=d),
                          retain=True)

    def outcome(self) -> dict[str, list[tuple[str, str]]]:
        with self.lock:
            return {d: list(v) for d, v in self.states.items()}

    def clear(self, devices: list[str]) -> None:
        for d in devices:
            self._publish(d, "ota/offer", None, retain=True)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# ---------------------------------------------------------------- helpers

def retained_offers(host: str, port: int, wait_s: float = 3.0) -> int:
    """Non-empty retained offers still on the broker (a finished campaign leaves none)."""
    seen: dict[str, int] = {}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{time.time_ns()}", protocol=mqtt.MQTTv5)
    c.on_message = lambda _c, _u, m: seen.__setitem__(m.topic, len(m.payload)) if m.retain else None
    c.connect(host, port)
    c.subscribe("ef/v1/+/ota/offer", qos=1)
    c.loop_start()
    time.sleep(wait_s)
    c.loop_stop()
    c.disconnect()
    return sum(1 for n in seen.values() if n)


def wire_snapshot(counter: subprocess.Popen) -> dict:
    counter.stdin.write("\n")
    counter.stdin.flush()
    return json.loads(counter.stdout.readline())


def wire_delta(a: dict, b: dict) -> dict:
    kinds = {k: [v[0] - a["kinds"].get(k, [0, 0])[0], v[1] - a["kinds"].get(k, [0, 0])[1]]
             for k, v in b["kinds"].items()}
    per = {d: n - a["per_device"].get(d, 0) for d, n in b["per_device"].items()}
    return {"kinds": {k: v for k, v in kinds.items() if v[0]}, "per_device": per}


def mqtt_overhead(msgs: int) -> int:
    """Framing of a QoS 1 PUBLISH (v5: header, length, topic length, packet id, properties)
    plus its PUBACK, about 12 bytes per message."""
    return 12 * msgs


def active_model_valid(node, public, man: bytes) -> bool:
    """The active slot holds the published artifact: hash, signature and self-test check out."""
    img = node.ota.slots.images[node.ota.slots.active]
    if not img:
        return False
    try:
        manifest.verify(man, public, img)
        Artifact.from_bytes(img)
    except Exception:
        return False
    return True


# ---------------------------------------------------------------- the run

def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="smoke run: 50 nodes, short trial and outage")
    ap.add_argument("--stages", default="5%,25%,100%")
    ap.add_argument("--trial", type=int, default=10, help="trial seconds before a node confirms (default 10)")
    ap.add_argument("--period", type=float, default=2.0, help="seconds between windows per node (default 2)")
    ap.add_argument("--loss", type=float, default=0.10, help="fraction of chunks lost (default 0.10)")
    ap.add_argument("--corrupt", type=float, default=0.02, help="fraction of chunks corrupted (default 0.02)")
    ap.add_argument("--reboot-download", type=float, default=0.05, help="fraction of nodes rebooted mid-download")
    ap.add_argument("--reboot-trial", type=float, default=0.05, help="fraction of nodes rebooted mid-trial")
    ap.add_argument("--restart-at", type=float, default=0.5,
                    help="restart the broker when this fraction of nodes confirmed (default 0.5; 0: no restart)")
    ap.add_argument("--restart-mode", choices=["term", "kill"], default="term",
                    help="stop Mosquitto with SIGTERM (saves its persistence) or SIGKILL")
    ap.add_argument("--outage", type=float, default=5.0, help="seconds the broker stays down (default 5)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="give up on the campaign after this long")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    ap.add_argument("--tag", default="", help="report name suffix: results/ota_rollout-<tag>.json")
    args = ap.parse_args()
    if args.quick:
        args.nodes = 50 if args.nodes == 1000 else args.nodes
        args.trial = min(args.trial, 5)
        args.outage = min(args.outage, 2.0)
        args.tag = args.tag or "quick"
    return args


class Bench:
    """What one run holds: work directory, keys, broker, wire counter, `edgefleet serve`, fleet."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.n = args, args.nodes
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < self.n * 2 + 1024:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(self.n * 2 + 1024, hard), hard))
        self.work = Path(tempfile.mkdtemp(prefix="ota-bench-"))
        self.key = keys.generate(self.work / "bench.key")
        self.other_key = keys.generate(self.work / "other.key")
        self.base = FLEET_MODEL.read_bytes()
        self.v2, art2 = versioned(self.base, 2)
        self.man2 = signed(self.v2, art2, self.key, model_id="fleet-bench")
        rng = random.Random(args.seed)
        self.plant = make_plant(self.n, seed=args.seed)
        self.ids = [s.device_id for s in self.plant.nodes]
        n = self.n
        picked = rng.sample(self.ids, min(n, math.ceil(n * args.reboot_download) + math.ceil(n * args.reboot_trial)))
        k_dl = math.ceil(n * args.reboot_download)
        self.faults = OtaFaults(args.loss, args.corrupt, set(picked[:k_dl]), set(picked[k_dl:]), args.seed)
        self.procs: list[subprocess.Popen] = []
        self.broker = start_broker(prefer="mosquitto", persistence_dir=self.work / "persist",
                                   workdir=self.work / "broker", log_file=self.work / "mosquitto.log")
        self.fleet: Fleet | None = None
        self.runner: threading.Thread | None = None
        self.rogue: Rogue | None = None

    def start(self) -> None:
        """Wire counter, `edgefleet serve` and the fleet; returns once serve knows every node."""
        n, broker = self.n, self.broker
        self.counter = subprocess.Popen([sys.executable, "-c", COUNTER, str(broker.port)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.procs.append(self.counter)
        self.db = self.work / "fleet.db"
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "edgefleet", "serve", "--broker", broker.url, "--db", str(self.db),
             "--client-id", "bench-serve"], cwd=REPO, stdout=subprocess.DEVNULL,
            env=dict(os.environ, EDGEFLEET_CAMPAIGN_KEY=str(self.work / "bench.key")),  # signs campaign tickets
            stderr=open(self.work / "serve.log", "w")))
        self.fleet = Fleet(self.plant, Artifact.from_bytes(self.base),
                           LinkOptions(broker.host, broker.port, ota_data_hook=self.faults.on_chunk),
                           FleetOptions(period_s=self.args.period, ota_public_key=self.key.public_key(),
                                        seed=self.args.seed))
        t_conn = time.monotonic()
        self.fleet.start()
        if not self.fleet.wait_connected(1.0, 120):
            raise SystemExit(f"only {self.fleet.connected()} of {n} nodes connected")
        self.runner = threading.Thread(target=self.fleet.run, daemon=True)
        self.runner.start()
        self.store = SQLiteStore(self.db)
        deadline = time.time() + 120
        while len(self.store.devices()) < n and time.time() < deadline:
            time.sleep(0.5)
        if len(self.store.devices()) < n:
            raise SystemExit(f"serve knows {len(self.store.devices())} of {n} devices; see {self.work}/serve.log")
        print(f"{n} nodes connected and registered in {time.monotonic() - t_conn:.1f} s")

    def wire(self) -> dict:
        return wire_snapshot(self.counter)

    def close(self) -> None:
        if self.rogue is not None:
            self.rogue.close()
        if self.fleet is not None:
            self.fleet.stop()
            if self.runner is not None:
                self.runner.join(15)
            self.fleet.shutdown()
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.broker.stop()
        if self.args.keep:
            print(f"work directory kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def run_campaign(b: Bench, registry: OtaRegistry, policy: Policy, stages: list[float]) -> dict:
    """Start the campaign and follow it to its end, restarting the broker once on the way."""
    args, n, broker = b.args, b.n, b.broker
    camp = registry.create_campaign(2, Target.parse("all"), policy, campaign_id="bench-v2")
    t0 = time.monotonic()
    stage_start, stage_times = t0, []
    seen_stage = 0
    restart: dict = {}
    while True:
        time.sleep(0.25)
        b.faults.reboot_trials(b.fleet)
        c = registry.campaign(camp.id)
        if c.stage != seen_stage:
            now = time.monotonic()
            stage_times.append(now - stage_start)
            stage_start, seen_stage = now, c.stage
            print(f"  stage {len(stage_times)} done after {stage_times[-1]:.1f} s")
        if c.state in ("completed", "aborted"):
            stage_times.append(time.monotonic() - stage_start)
            break
        by = registry.status(camp.id)[0]["by_state"]
        if (args.restart_at and not restart and c.stage == len(stages) - 1
                and by.get("confirmed", 0) >= args.restart_at * n):
            restart = {"at_s": round(time.monotonic() - t0, 1), "confirmed_before": by.get("confirmed", 0),
                       "in_flight_before": sum(v for k, v in by.items() if k not in ("confirmed",)),
                       "mode": args.restart_mode, "outage_s": args.outage}
            print(f"  broker {args.restart_mode} at {restart['at_s']} s: {by}")
            (broker.kill if args.restart_mode == "kill" else broker.stop)()
            time.sleep(args.outage)
            broker.restart()  # same port, config and persistence directory
            restart["down_s"] = round(time.monotonic() - t0 - restart["at_s"], 1)
        if time.monotonic() - t0 > args.timeout:
            print(f"  campaign still {c.state} after {args.timeout} s: {by}")
            break
    total_s = time.monotonic() - t0
    b.faults.enabled = False
    c = registry.campaign(camp.id)
    print(f"campaign {c.state} in {total_s:.1f} s {c.reason}")
    return {"campaign": c, "total_s": total_s, "stage_times": stage_times, "restart": restart}


def check_rollout(b: Bench, registry: OtaRegistry, ran: dict, stages: list[float], w0: dict, w1: dict) -> dict:
    """The good update's outcome on the nodes, in the registry, the service's table and on the wire."""
    n, c = b.n, ran["campaign"]
    states = registry.device_states(c.id)
    deadline = time.time() + 30
    while time.time() < deadline and sum(1 for d in b.store.devices() if d.model == 2) < n:
        time.sleep(0.5)
    store_models = Counter(d.model for d in b.store.devices())
    nodes = {lk.node.device_id: lk.node for lk in b.fleet.links}
    on_new = sum(1 for nd in nodes.values() if nd.ota.current_version() == 2 and nd.model_version == 2)
    confirmed_dev = sum(1 for nd in nodes.values() if nd.ota.slots.confirmed_version == 2
                        and nd.ota.slots.trial is None and nd.ota.download is None)
    valid = sum(1 for nd in nodes.values() if active_model_valid(nd, b.key.public_key(), b.man2))
    agree = sum(1 for d, nd in nodes.items()
                if (states.get(d, {}).get("state") == "confirmed") == (nd.ota.slots.confirmed_version == 2))
    offers = registry.offer_counts(c.id)
    hist_states = Counter(h["state"] for d in b.ids for h in registry.history(d) if h["campaign"] == c.id)
    left = retained_offers(b.broker.host, b.broker.port)
    delta = wire_delta(w0, w1)
    kinds = delta["kinds"]
    per_node = sorted(delta["per_device"].get(d, 0) for d in b.ids)
    data_msgs = kinds.get("ota/data", [0, 0])[0]
    chunks_min = n * math.ceil(len(b.v2) / CHUNK)
    ok = (c.state == "completed" and on_new == n and confirmed_dev == n and valid == n and agree == n
          and registry.status(c.id)[0]["by_state"] == {"confirmed": n} and left == 0
          and store_models.get(2, 0) == n)
    rollout = {
        "campaign_state": c.state, "reason": c.reason, "total_s": round(ran["total_s"], 1),
        "stages": [{"stage": f"{s:.0%}", "devices": stage_size(n, s) - (stage_size(n, stages[i - 1]) if i else 0),
                    "wall_s": round(t, 1)} for i, (s, t) in enumerate(zip(stages, ran["stage_times"]))],
        "broker_restart": ran["restart"],
        "success": {"nodes": n, "on_new_version": on_new, "confirmed_on_device": confirmed_dev,
                    "valid_active_model": valid, "registry_confirmed": sum(
                        1 for s in states.values() if s["state"] == "confirmed"),
                    "registry_agrees_with_node": agree, "service_device_table_v2": store_models.get(2, 0),
                    "retained_offers_left": left},
        "retries": {"offers_total": sum(offers.values()), "devices_offered_again": sum(
            1 for v in offers.values() if v > 1), "history_states": dict(hist_states)},
        "ok": ok,
    }
    wire = {
        "by_kind": {k: {"messages": v[0], "bytes": v[1]} for k, v in sorted(kinds.items())},
        "total_bytes": sum(v[1] for v in kinds.values()),
        "total_messages": sum(v[0] for v in kinds.values()),
        "mqtt_framing_estimate_bytes": mqtt_overhead(sum(v[0] for v in kinds.values())),
        "per_node_bytes": {"min": per_node[0], "median": statistics.median(per_node),
                           "mean": round(sum(per_node) / n, 1), "max": per_node[-1]},
        "per_node_over_artifact": round(statistics.median(per_node) / len(b.v2), 2),
        "data_chunks": data_msgs, "data_chunks_minimum": chunks_min,
        "chunks_retransmitted": data_msgs - chunks_min,
        "note": "topic + payload of each MQTT PUBLISH as sent once (device->broker or "
                "server->broker); offer clears are empty retained publishes",
    }
    return {"rollout": rollout, "wire": wire}


def offer_bad_updates(b: Bench) -> dict:
    """Act as a rogue server: offer every node each bad kind; count rejections and their reasons."""
    n = b.n
    b.rogue = Rogue(b.broker.host, b.broker.port)
    bad = {}
    for kind, spec in bad_updates(b.base, b.key, b.other_key, current=2).items():
        w_a = b.wire()
        tb = time.monotonic()
        b.rogue.offer(b.ids, f"bad-{kind}", spec, ticket_key=b.key)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            out = b.rogue.outcome()
            if len(out) == n and all(v[-1][0] in ("rejected", "failed") for v in out.values()):
                break
            time.sleep(0.25)
        wall = time.monotonic() - tb
        out = b.rogue.outcome()
        b.rogue.clear(b.ids)
        time.sleep(1.0)
        finals = {d: v[-1] for d, v in out.items()}
        rejected = sum(1 for s, _ in finals.values() if s == "rejected")
        right = sum(1 for s, r in finals.values() if s == "rejected" and spec.expect in r)
        reasons = Counter(r for _, r in finals.values())
        bad[kind] = {"offered": n, "answered": len(out), "rejected": rejected, "right_reason": right,
                     "reached_trial": sum(1 for v in out.values() if any(s == "trial" for s, _ in v)),
                     "expected_reason": spec.expect, "reasons": dict(reasons.most_common(3)),
                     "wall_s": round(wall, 2), "wire": wire_delta(w_a, b.wire())["kinds"]}
        print(f"  {kind:17} rejected {rejected}/{n}, right reason {right}, in {wall:.1f} s")
    return bad


def main() -> int:
    args = parse_args()
    stages = parse_stages(args.stages)
    b = Bench(args)
    try:
        b.start()
        registry = OtaRegistry(b.db)
        registry.publish(b.v2, b.man2, {"note": "benchmark: fleet-default re-versioned"}, b.key.public_key())
        w0 = b.wire()
        b.faults.enabled = True
        policy = Policy(stages=stages, trial_s=args.trial, stage_timeout_s=600.0, abort_failures=0.10)
        ran = run_campaign(b, registry, policy, stages)
        time.sleep(3.0)  # the last clears and births reach the counter and the store
        checked = check_rollout(b, registry, ran, stages, w0, b.wire())
        bad = offer_bad_updates(b)
        nodes = [lk.node for lk in b.fleet.links]
        still_good = sum(1 for nd in nodes if nd.ota.current_version() == 2 and nd.ota.slots.trial is None
                         and nd.ota.download is None and active_model_valid(nd, b.key.public_key(), b.man2))
        report = {
            "config": {"nodes": b.n, "stages": args.stages, "trial_s": args.trial, "period_s": args.period,
                       "chunk_loss": args.loss, "chunk_corrupt": args.corrupt,
                       "reboot_mid_download": args.reboot_download, "reboot_mid_trial": args.reboot_trial,
                       "broker_restart_at": args.restart_at, "seed": args.seed,
                       "policy": {"abort_failures": policy.abort_failures, "retries": policy.retries,
                                  "stage_timeout_s": policy.stage_timeout_s}},
            "model": {"version": 2, "bytes": len(b.v2), "chunk_bytes": CHUNK,
                      "chunks_per_download": math.ceil(len(b.v2) / CHUNK)},
            "rollout": checked["rollout"],
            "faults": {**dict(b.faults.counts), "broker_restarts": 1 if ran["restart"] else 0},
            "wire": checked["wire"],
            "bad_updates": bad,
            "after_bad_updates": {"on_good_model": still_good, "nodes": b.n,
                                  "foreign_reports_in_campaign_table": len(registry.device_states("bad-tampered"))},
            "fleet": {k: v for k, v in b.fleet.report().items() if k not in ("per_device",)},
        }
        report["ok"] = checked["rollout"]["ok"] and still_good == b.n and all(
            x["rejected"] == b.n and x["right_reason"] == b.n and x["reached_trial"] == 0 for x in bad.values())
        print_table(report)
        write_report(f"ota_rollout-{args.tag}" if args.tag else "ota_rollout", report)
        return 0 if report["ok"] else 1
    finally:
        b.close()


def print_table(r: dict) -> None:
    ro, w, s = r["rollout"], r["wire"], r["rollout"]["success"]
    n = r["config"]["nodes"]
    print()
    print(f"OTA rollout, {n} simulated nodes, stages {r['config']['stages']}, trial {r['config']['trial_s']} s")
    for st in ro["stages"]:
        print(f"  stage {st['stage']:>5}  {st['devices']:5d} devices  {st['wall_s']:7.1f} s")
    print(f"  total                       {ro['total_s']:7.1f} s   campaign {ro['campaign_state']}")
    print(f"  confirmed on device {s['confirmed_on_device']}/{n}, valid active model {s['valid_active_model']}/{n}, "
          f"registry agrees {s['registry_agrees_with_node']}/{n}, service table v2 {s['service_device_table_v2']}/{n}, "
          f"retained offers left {s['retained_offers_left']}")
    print(f"  faults: {r['faults']}")
    print(f"  retries: {ro['retries']['devices_offered_again']} devices offered again, "
          f"history {ro['retries']['history_states']}")
    print("  wire (topic + payload):")
    for k, v in w["by_kind"].items():
        print(f"    {k:16} {v['messages']:8d} msgs {v['bytes']:12,d} B")
    pn = w["per_node_bytes"]
    print(f"    total {w['total_bytes']:,d} B in {w['total_messages']:,d} msgs (+~{w['mqtt_framing_estimate_bytes']:,d} B "
          f"MQTT framing); per node median {pn['median']:,.0f} B ({w['per_node_over_artifact']}x the "
          f"{r['model']['bytes']} B artifact), max {pn['max']:,d} B")
    print(f"    data chunks {w['data_chunks']:,d} (minimum {w['data_chunks_minimum']:,d}, "
          f"retransmitted {w['chunks_retransmitted']:,d})")
    print("  bad updates (rogue server):")
    for k, b in r["bad_updates"].items():
        print(f"    {k:17} rejected {b['rejected']:5d}/{n}  right reason {b['right_reason']:5d}  "
              f"reached trial {b['reached_trial']}  {b['wall_s']:6.1f} s")
    print(f"  after bad updates: {r['after_bad_updates']['on_good_model']}/{n} on the good model; "
          f"{'PASS' if r['ok'] else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
