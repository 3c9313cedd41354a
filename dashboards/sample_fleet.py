"""A synthetic but plausible plant written through the store's public API, for tests and screenshots.

Machines on several sites and lines report a score per window; a few degrade
(score rising towards the threshold), a few cross it and alarm, a few drop
offline. Nodes commission (docs/baseline.md): most are commissioned with one
any-speed class; the first alarming machine runs at three speeds, each with its own
thresholds; one is re-learning its normal after maintenance (2 of 3 speeds done,
the third in progress); one, commissioned at three speeds, lately runs at a fourth
(its windows get no verdict: it needs a class); a few older nodes report no
commissioning at all. Nodes other than the older ones report velocity RMS (mm/s) and running speed (feature
definition v2): healthy machines in ISO 20816 zones A/B, degrading ones climbing into C, alarming ones into C/D,
and their anomalous windows say why (contributing bands, a fault hint: unbalance, a bearing outer race,
misalignment); each alarming machine has a debug capture (a raw window with its 1x, 2x and bearing lines),
plant-east is set to ISO class III, one machine to class I, the alarming machines carry a bearing geometry
(a 6205: 9 balls, 7.94 mm on a 39.04 mm pitch). Results go in as ingest batches (so ingest statistics and lag exist), and
the real `AlarmTracker` turns them into alarms and health trends, exactly as the
fleet service does. Run `python -m dashboards.sample_fleet --db PATH` to look at
the dashboard without a broker or simulator.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.protocol import ResultRecord
from edgefleet.service.alarms import AlarmPolicy, AlarmTracker
from edgefleet.service.store import DeviceUpdate, Event, IngestBatch, Reject, Store, open_store

SITES = {"plant-north": ("L1", "L2", "L3"), "plant-south": ("L1", "L2"), "plant-east": ("L1", "L2")}
MACHINES = ("pump", "fan", "motor", "gearbox")
THRESHOLD = 2.667  # the shipped CWRU model's default threshold
HI_THRESHOLD = 1.8  # a plausible health-indicator threshold of an any-speed class
# (rpm_lo, rpm_hi, score threshold, HI threshold) per class, in rpm order as a node reports them
ANY_SPEED = ((0.0, 0.0, THRESHOLD, HI_THRESHOLD),)
THREE_SPEEDS = ((1140.0, 1260.0, 2.31, 1.62), (1425.0, 1575.0, 2.667, 1.71), (1706.2, 1885.8, 3.05, 1.84))
SPEED_ORDER = (1, 2, 0)  # a three-speed machine's schedule: 30 windows at each class in turn
COMM_TARGET = 64  # windows per class that end commissioning (the node's default)
RELEARN = ((1500.0, COMM_TARGET), (1200.0, COMM_TARGET), (1796.0, 17))  # re-learning: windows per speed, in order
NEW_SPEED_SHARE = 0.12  # the machine needing a class: this last share of the timeline at a speed in no class
REJECTS = (("schema", "result: 'score' is a required property"), ("json", "payload is not JSON"),
           ("topic", "topic ef/v1/?/result has an invalid device id"), ("size", "payload of 70000 bytes > 65536"))


@dataclass
class SampleFleet:
    """Which devices were made to do what (the tests assert on these)."""

    devices: list[str] = field(default_factory=list)
    alarm: list[str] = field(default_factory=list)  # crossed the threshold: active alarm
    degrading: list[str] = field(default_factory=list)  # rising clear of the healthy band, still below the threshold
    offline: list[str] = field(default_factory=list)  # stopped reporting, offline status
    multi_speed: list[str] = field(default_factory=list)  # commissioned at 3 speeds (the first alarming machine)
    commissioning: list[str] = field(default_factory=list)  # re-learning its normal: commissioning windows last
    needs_class: list[str] = field(default_factory=list)  # 3 speeds learned, lately runs at a 4th: no verdict
    older: list[str] = field(default_factory=list)  # firmware without commissioning: no `comm`, no class
    captures: list[str] = field(default_factory=list)  # a debug capture with raw samples (the alarming machines)
    hints: dict[str, str] = field(default_factory=dict)  # the fault hint each alarming machine's windows give
    results: int = 0
    rejects: int = 0


def _ratio(kind: str, frac: float, rng: random.Random, peak: float) -> float:
    """score / threshold at fraction `frac` of the timeline for a machine of `kind`."""
    noise = math.exp(rng.gauss(0.0, 0.03))
    if kind == "alarm":  # exponential growth from 0.3 crossing 1.0 at 80% of the timeline, up to `peak`
        base = 0.3 * math.exp(math.log(1 / 0.3) / 0.8 * frac) if frac < 0.8 else \
            math.exp(math.log(peak) * (frac - 0.8) / 0.2)
        return base * noise
    if kind == "degrading":  # from 0.3 to 0.92 over the timeline: clear of the healthy band, under the threshold
        return 0.3 * math.exp(math.log(0.92 / 0.3) * frac) * noise
    return 0.3 * noise


BEARING = {"n_balls": 9, "ball_d_mm": 7.94, "pitch_d_mm": 39.04, "contact_deg": 0.0}  # SKF 6205 (CWRU drive end)
HINTS = ("unbalance", "bearing_outer_race", "misalignment")  # per alarming machine, in turn
CAPTURE_FS = 12000.0
CAPTURE_N = 8192


def _why(hint: str, rpm: float) -> str:
    """The `why` of an anomalous window of a machine with fault `hint` (canonical JSON text, as the store keeps it)."""
    f1 = rpm / 60.0
    band = lambda f, share: f'{{"lo":{round(f * 0.88, 1):g},"hi":{round(f * 1.12, 1):g},"share":{share:g}}}'  # noqa: E731
    if hint == "unbalance":
        return f'[{band(f1, 0.62)},{{"name":"vrms","share":0.21}},{band(3 * f1, 0.05)}]'
    if hint == "misalignment":
        return f'[{band(2 * f1, 0.55)},{band(f1, 0.18)},{{"name":"vrms","share":0.11}}]'
    return '[{"lo":2800,"hi":3400,"share":0.48},{"name":"kurtosis","share":0.22},{"lo":3400,"hi":4100,"share":0.09}]'


def _capture(hint: str, rpm: float, severity: float, rng: random.Random) -> list[float]:
    """A raw window (g) with the lines a fault of `hint` shows: 1x/2x for shaft faults, a 3 kHz resonance struck
    at BPFO for an outer-race defect, on a little noise."""
    f1 = rpm / 60.0
    bpfo = 9 / 2 * (1 - 7.94 / 39.04) * f1
    out = []
    for i in range(CAPTURE_N):
        t = i / CAPTURE_FS
        x = 0.02 * math.sin(2 * math.pi * f1 * t) + rng.gauss(0.0, 0.01)
        if hint == "unbalance":
            x += 0.08 * severity * math.sin(2 * math.pi * f1 * t + 0.4)
        elif hint == "misalignment":
            x += 0.06 * severity * math.sin(2 * math.pi * 2 * f1 * t) + 0.02 * math.sin(2 * math.pi * 3 * f1 * t)
        else:  # impacts every 1/BPFO s ringing a 3 kHz resonance
            since = t % (1.0 / bpfo)
            x += 0.3 * severity * math.exp(-since * 900.0) * math.sin(2 * math.pi * 3000.0 * since)
        out.append(round(x, 5))
    return out


def _comm_commissioned(classes: tuple, learned_ms: int, rng: random.Random) -> dict:
    """A commissioned node's status `comm` object (docs/baseline.md, "Reported")."""
    return {"state": "commissioned", "hash": f"{rng.getrandbits(64):016x}", "learned": learned_ms,
            "classes": [{"rpm": [lo, hi], "n": COMM_TARGET, "thr": thr, "hi_thr": hi_thr}
                        for lo, hi, thr, hi_thr in classes]}


def _relearn_speeds(n: int) -> list[float]:
    """The speed of each of the first `n` re-learning windows (RELEARN in order; the last speed runs on)."""
    out: list[float] = []
    for rpm, k in RELEARN:
        out += [rpm] * k
    return (out + [RELEARN[-1][0]] * n)[:n]


def _comm_progress(speeds: list[float]) -> dict:
    """A commissioning node's `comm` after the windows at `speeds`: classes in the order they opened."""
    counts: dict[float, int] = {}
    for rpm in speeds:
        counts[rpm] = min(COMM_TARGET, counts.get(rpm, 0) + 1)
    return {"state": "commissioning", "target": COMM_TARGET,
            "progress": [{"rpm": rpm, "n": n} for rpm, n in counts.items()]}


def populate(store: Store, *, now_ms: int | None = None, per_line: int = 4, minutes: float = 20.0,
             period_s: float = 5.0, n_alarm: int = 3, n_degrading: int = 2, n_offline: int = 2,
             n_older: int = 2, seed: int = 7, policy: AlarmPolicy = AlarmPolicy()) -> SampleFleet:
    """Write `minutes` of history ending at `now_ms` for `per_line` machines on every line of SITES."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    fleet = SampleFleet()
    meta: dict[str, tuple[str, str, str]] = {}
    for site, lines in SITES.items():
        for line in lines:
            for i in range(per_line):
                dev = f"{site.split('-')[1]}-{line.lower()}-{i + 1:02d}"
                fleet.devices.append(dev)
                meta[dev] = (site, line, MACHINES[(i + len(line)) % len(MACHINES)])
    n_health = n_alarm + n_degrading + n_offline
    picks = rng.sample(fleet.devices, n_health + 2 + n_older)
    fleet.alarm = sorted(picks[:n_alarm])
    fleet.degrading = sorted(picks[n_alarm:n_alarm + n_degrading])
    fleet.offline = sorted(picks[n_alarm + n_degrading:n_health])
    fleet.commissioning = [picks[n_health]]
    fleet.needs_class = [picks[n_health + 1]]
    fleet.older = sorted(picks[n_health + 2:])
    fleet.multi_speed = fleet.alarm[:1]
    kind = {d: "alarm" for d in fleet.alarm} | {d: "degrading" for d in fleet.degrading}
    peaks = {d: (1.6, 3.0, 7.0)[i % 3] for i, d in enumerate(fleet.alarm)}  # warning, major, critical
    model = {d: (4 if i % 9 == 0 else 3) for i, d in enumerate(fleet.devices)}  # a canary group on v4
    three = set(fleet.multi_speed + fleet.commissioning + fleet.needs_class)
    classes = {d: THREE_SPEEDS if d in three else ANY_SPEED for d in fleet.devices if d not in fleet.older}

    steps = int(minutes * 60 / period_s)
    t_start = now_ms - steps * int(period_s * 1000)
    offline_after = int(steps * 0.6)
    relearn_from = max(steps // 4, steps - sum(k for _, k in RELEARN))  # the commissioning machine's restart
    new_speed_from = steps - max(10, int(steps * NEW_SPEED_SHARE))  # the machine needing a class
    comm = {d: _comm_commissioned(c, t_start - (3 + i % 30) * 86_400_000 - rng.randrange(86_400_000), rng)
            for i, (d, c) in enumerate(classes.items())}
    births = [DeviceUpdate(d, t_start - 5000, status="online", boot=f"{rng.getrandbits(32):08x}",
                           fw="1.1.0" if d in fleet.older else "1.2.0", model=model[d], slot="A", thr=THRESHOLD,
                           caps=("ota", "debug", "calib", "shadow"), site=meta[d][0], line=meta[d][1],
                           tags=(meta[d][2],), comm=comm.get(d)) for d in fleet.devices]
    store.write_batch(IngestBatch(t_start - 4000, len(births), [], births,
                                  [Event(u.device, u.ts, "status", {"state": "online", "fw": u.fw, "model": u.model,
                                                                    "slot": "A"} | ({"comm": u.comm} if u.comm else {}))
                                   for u in births]))
    boots = {u.device: u.boot for u in births}
    relearning = _relearn_speeds(steps - relearn_from)
    fleet.hints = {d: HINTS[i % len(HINTS)] for i, d in enumerate(fleet.alarm)}
    base_rpm = {d: (1480.0, 2960.0, 990.0)[i % 3] for i, d in enumerate(fleet.devices)}
    rr = random.Random(seed + 1)  # the readings' own draws: the scores, alarms and states stay as they were
    base_vrms = {d: 0.7 + 1.1 * rr.random() for d in fleet.devices}  # zone A/B of class II
    last_rpm: dict[str, float] = {}

    def readings(d: str, ratio: float, cls: int | None, anom: bool) -> dict:
        """vrms and rpm of a v2 node (older nodes: none); why and hint on an anomalous window."""
        if d in fleet.older:
            return {}
        rpm = ((THREE_SPEEDS[cls][0] + THREE_SPEEDS[cls][1]) / 2 if cls is not None and len(classes[d]) == 3
               else base_rpm[d]) * math.exp(rr.gauss(0.0, 0.002))
        last_rpm[d] = rpm
        vrms = base_vrms[d] * max(ratio / 0.3, 0.5) ** 0.8 * math.exp(rr.gauss(0.0, 0.04))
        if peaks.get(d, 0.0) < 5.0:  # only the critical machine reaches zone D (class II: 7.1 mm/s), which is critical
            vrms = min(vrms, 6.5)
        out = {"vrms": round(min(vrms, 999.0), 3), "rpm": round(rpm, 1)}
        if anom and d in fleet.hints:
            out |= {"why": _why(fleet.hints[d], rpm), "hint": fleet.hints[d]}
        return out

    tracker = AlarmTracker(policy)
    for step in range(steps):
        ts = t_start + step * int(period_s * 1000)
        frac = step / max(1, steps - 1)
        results = []
        for d in fleet.devices:
            if d in fleet.offline and step >= offline_after:
                continue
            ratio = _ratio(kind.get(d, "ok"), frac, rng, peaks.get(d, 1.0))
            t, inf_us = ts + rng.randrange(0, 900), 380 + rng.randrange(40)
            if d in fleet.older:  # no baseline: the model's own threshold, no state, class or HI
                score = THRESHOLD * ratio
                results.append(ResultRecord(d, boots[d], step, t, model[d], round(score, 5), THRESHOLD,
                                            score > THRESHOLD, inf_us))
                continue
            state = ("commissioning" if d in fleet.commissioning and step >= relearn_from else
                     "uncommissioned" if d in fleet.needs_class and step >= new_speed_from else "")
            if state:  # no verdict: the model's threshold, no class, no HI
                score = THRESHOLD * ratio * (1.6 if state == "uncommissioned" else 1.0)
                results.append(ResultRecord(d, boots[d], step, t, model[d], round(score, 5), THRESHOLD, False,
                                            inf_us, state=state, **readings(d, ratio, None, False)))
                continue
            cls = SPEED_ORDER[(step // 30) % 3] if len(classes[d]) == 3 else 0
            _, _, thr, hi_thr = classes[d][cls]
            score, hi = thr * ratio, hi_thr * ratio * 0.85 * math.exp(rng.gauss(0.0, 0.05))
            anom = score > thr or hi > hi_thr
            results.append(ResultRecord(d, boots[d], step, t, model[d], round(score, 5), thr, anom, inf_us,
                                        hi=round(hi, 5), cls=cls, hi_thr=hi_thr, **readings(d, ratio, cls, anom)))
        updates, events = [], []
        if step == offline_after:
            updates = [DeviceUpdate(d, ts, status="offline") for d in fleet.offline]
            events = [Event(d, ts, "status", {"state": "offline"}) for d in fleet.offline]
        if step in (relearn_from, steps - 1):  # the re-learning node reports its progress
            c = _comm_progress(relearning[:step - relearn_from + 1])
            updates += [DeviceUpdate(d, ts, comm=c) for d in fleet.commissioning]
            events += [Event(d, ts, "status", {"state": "online", "comm": c}) for d in fleet.commissioning]
        if step == steps - 2:  # the alarming machines' debug captures, one window each (`debug` message body)
            for i, d in enumerate(fleet.alarm):
                rpm = last_rpm.get(d, base_rpm[d])
                events.append(Event(d, ts, "debug", {"v": 1, "boot": boots[d], "seq": 0, "ts": ts, "id": f"dbg-{i}",
                                                     "model": model[d], "fs": CAPTURE_FS,
                                                     "samples": _capture(fleet.hints[d], rpm, peaks[d], rr),
                                                     "score": round(THRESHOLD * peaks[d], 4), "thr": THRESHOLD,
                                                     "anom": True}))
            fleet.captures = list(fleet.alarm)
        rejects = [Reject(ts, f"ef/v1/{rng.choice(fleet.devices)}/result", code, reason, b'{"v":1,"res":[', 14)
                   for code, reason in REJECTS if rng.random() < (0.25 if code == "schema" else 0.06)]
        ingest_ts = ts + 1000 + rng.randrange(0, 400)
        outcome = store.write_batch(IngestBatch(ingest_ts, len(results) // 8 + 1 + len(rejects), results,
                                                updates, events, rejects))
        fleet.results += outcome.stored
        fleet.rejects += len(rejects)
        changes = tracker.observe_many(sorted(outcome.new, key=lambda r: (r.device, r.seq)))
        last = step == steps - 1
        if changes or last or step % 12 == 0:
            touched = fleet.devices if last or step % 12 == 0 else sorted({c.device for c in changes})
            health = [h for h in (tracker.health(d, now_ms=ts) for d in touched) if h is not None]
            store.apply_alarm_changes(changes, health)
    store.set_machine_class("III", site="plant-east")  # large machines on rigid foundations
    store.set_machine_class("I", device=fleet.degrading[0])  # a small motor
    for d in fleet.alarm:
        store.set_bearing(d, BEARING)
    return fleet


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", type=Path, required=True, help="SQLite store to create (must not exist)")
    p.add_argument("--per-line", type=int, default=4, help="machines per line (7 lines)")
    p.add_argument("--minutes", type=float, default=20.0)
    args = p.parse_args(argv)
    if args.db.exists():
        p.error(f"{args.db} exists; give a new path")
    store = open_store(args.db)
    try:
        fleet = populate(store, per_line=args.per_line, minutes=args.minutes)
    finally:
        store.close()
    print(f"{args.db}: {len(fleet.devices)} devices, {fleet.results} results, alarm {fleet.alarm}, "
          f"degrading {fleet.degrading}, offline {fleet.offline}; three speeds {fleet.multi_speed}, "
          f"commissioning {fleet.commissioning}, needs a class {fleet.needs_class}, older nodes {fleet.older}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
