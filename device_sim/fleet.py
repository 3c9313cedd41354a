"""The fleet runner: thousands of virtual nodes in one process.

Every node produces one window per period (`period_s`, default 1 s). Nodes are spread
over `ticks_per_period` phase slots so the load is smooth. At each tick, the windows of
every node due in that slot are synthesised together (physics, vectorised, grouped by
sensor rate), turned into features together, and scored with **one** Int8Engine call;
then each node's result goes to the network shard that owns the node, where the node's
own logic (sequence numbers, ring, threshold) runs and its own MQTT client publishes.
A node does exactly what a device does; only the arithmetic is batched across nodes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from device_sim.link import LinkOptions, NodeLink, Shard
from device_sim.node import Calibration, Reading, Verdict, VirtualNode
from device_sim.physics import Fault, Machines, synthesize, with_faults
from device_sim.plant import Plant
from device_sim.run_to_failure import SENSOR_FAULTS, apply_sensor_fault
from device_sim.schedule import Schedule
from edgefleet.clock import now_ms
from edgefleet.device.ota_client import OtaClient, Slots
from edgefleet.runtime import baseline as bl
from edgefleet.runtime import diagnosis
from edgefleet.runtime.artifact import Artifact
from edgefleet.runtime.engine import Detector
from edgefleet.runtime.features import analyze, plan, quantize, standardize
from edgefleet.runtime.sensor_check import OUTCOMES, SensorLimits, check_windows

log = logging.getLogger(__name__)
PROGRESS_EVERY = 16  # a commissioning node re-announces its status every this many windows learned


@dataclass
class FleetOptions:
    period_s: float = 1.0  # one window per node per period
    ticks_per_period: int = 10
    shards: int = 2  # network threads
    ring_size: int = 600  # results a node keeps while offline (10 min at 1 window/s)
    ring_sizes: dict[str, int] | None = None  # device id -> its own ring size (the soak's offline nodes)
    results_per_message: int = 1
    calibrate_n: int = 0  # >0: each node calibrates its threshold from its first n windows
    calibrate_k: float = 4.0
    seed: int = 0
    time_offset_s: float = 0.0  # simulation time at start (to begin with faults developed)
    ota_public_key: Any = None  # Ed25519 public key the nodes trust for OTA; None: no OTA
    commission: bool = False  # nodes learn their machine's normal first (docs/baseline.md)
    commission_windows: int = bl.DEFAULT_WINDOWS  # per operating class
    schedule: Schedule | None = None  # speed/load schedule of the machines (None: constant)
    speed_input: bool = True  # nodes read the machine's speed (a tachometer); False: a v2 node estimates it
    summary_every_s: float = 0.0  # > 0: summary mode, one summary per node per this many seconds (VirtualNode)


@dataclass
class Scored:
    """One tick's batch: which nodes, their scores and the per-window compute time."""

    rows: np.ndarray  # node indices
    scores: np.ndarray  # float32
    inf_us: int
    ts_ms: int


def score_windows(detector: Detector, plant: Plant, rows: np.ndarray, t_sim: float,
                  rng: np.random.Generator, *, keep: set[int] | None = None, machines: Machines | None = None,
                  sensor_faults: dict[int, tuple[str, float]] | None = None
                  ) -> tuple[np.ndarray, dict[int, dict[str, Any]]]:
    """Scores for nodes `rows` at simulation time t: physics -> features -> int8 -> one engine call.

    Returns scores (aligned with rows) and, for nodes in `keep`, everything a debug capture needs;
    `debug[-1]` holds every row's features (the active model's front end), for commissioning.
    """
    scores, debug = score_windows_multi([detector], plant, rows, t_sim, rng, keep=keep, machines=machines,
                                        sensor_faults=sensor_faults)
    return scores[0], debug


def score_windows_multi(detectors: list[Detector], plant: Plant, rows: np.ndarray, t_sim: float,
                        rng: np.random.Generator, *, keep: set[int] | None = None,
                        machines: Machines | None = None, sensor_faults: dict[int, tuple[str, float]] | None = None
                        ) -> tuple[list[np.ndarray], dict[int, dict[str, Any]]]:
    """The same windows scored by several models (shadow mode: active first, then the candidate).

    One window per node is synthesised, as long as the longest model needs; each model takes
    its own feature length from the end of it, so every model sees the same signal. One engine
    call per model. Debug captures are of the first model. `sensor_faults` (machine row -> (kind,
    onset_s), run_to_failure.SENSOR_FAULTS) makes those sensors read wrong from their onset; every
    window of the first model gets the node's sensor check (`debug[-1]["sensor"]`, OUTCOMES names).
    """
    fs_of = np.array([plant.nodes[r].fs for r in rows])
    q_parts: list[list[np.ndarray]] = [[] for _ in detectors]
    order, feats, vrms, excess, speed, sensor = [], [], [], [], [], []
    windows: dict[int, np.ndarray] = {}
    for fs in np.unique(fs_of):
        sel = rows[fs_of == fs]
        lengths = [plan(d.artifact.features.params, float(fs)).n_samples for d in detectors]  # type: ignore[union-attr]
        machine_rows = np.array([plant.nodes[r].row for r in sel])
        table = plant.machines if machines is None else machines
        x_all = synthesize(table.take(machine_rows), t_sim, max(lengths), float(fs), rng)
        for j, mr in enumerate(machine_rows.tolist()):
            kind, onset = (sensor_faults or {}).get(int(mr), ("", 0.0))
            if kind and t_sim >= onset:
                rpm = table.take(np.array([mr])).shaft_hz(t_sim) * 60.0
                x_all[j:j + 1] = apply_sensor_fault(x_all[j:j + 1], np.array([t_sim]), rpm, float(fs), kind, onset, rng)
        for i, (det, n) in enumerate(zip(detectors, lengths)):
            a, fsec = det.artifact, det.artifact.features
            x = x_all[:, x_all.shape[1] - n:]
            an = analyze(x, float(fs), fsec.params)
            f = an.features
            z = standardize(f, fsec.mean, fsec.inv_std)
            q_parts[i].append(quantize(z, a.input_scale, a.input_zero_point))
            if i == 0:
                sensor.append(check_windows(x, SensorLimits()).outcome)
                feats.append(f)
                vrms.append(an.vrms_mm_s)
                speed.append(an.speed_hz)
                excess.append(diagnosis.excess(z))
                if keep:
                    for j, r in enumerate(sel):
                        if int(r) in keep:
                            windows[int(r)] = x[j]
        order.append(sel)
    idx = np.concatenate(order)
    pos = {int(r): i for i, r in enumerate(idx)}
    at = [pos[int(r)] for r in rows]
    scores, debug = [], {}
    for i, det in enumerate(detectors):
        q = np.concatenate(q_parts[i])
        y = det.engine.infer(q)  # one engine call per model for this tick
        s = det.engine.score(q, y)
        scores.append(s[at])
        if i == 0:
            f_all = np.concatenate(feats)
            debug = {r: {"samples": windows[r], "features": f_all[pos[r]], "q_in": q[pos[r]],
                         "q_out": y[pos[r]], "score": float(s[pos[r]])} for r in windows}
            # every row's features (commissioning), velocity and excess over normal ("why")
            debug[-1] = {"features": f_all[at], "vrms": np.concatenate(vrms)[at],
                         "speed_hz": np.concatenate(speed)[at], "excess": np.concatenate(excess)[at],
                         "sensor": [OUTCOMES[int(o)] for o in np.concatenate(sensor)[at]]}
    return scores, debug


class Fleet:
    """Virtual nodes of a plant, their MQTT links and the clock that drives them."""

    def __init__(self, plant: Plant, artifact: Artifact, link: LinkOptions,
                 opts: FleetOptions | None = None) -> None:
        self.plant = plant
        self.opts = opts or FleetOptions()
        self.detector = Detector(artifact)
        params = self.detector.artifact.features.params  # type: ignore[union-attr]
        for fs in {n.fs for n in plant.nodes}:
            plan(params, fs)  # a FeatureError now, not in the loop
        self.link_opts = link
        self.rng = np.random.default_rng(self.opts.seed)
        thr = self.detector.threshold
        image = artifact.to_bytes()
        self._detectors: dict[int, Detector] = {artifact.model_version: self.detector}
        self.sensor_faults: dict[int, tuple[str, float]] = {}  # machine row -> (kind, onset_s): inject_sensor_fault
        self.links: list[NodeLink] = []
        for spec in plant.nodes:
            node = VirtualNode(spec.device_id, spec.fs, artifact.model_version, thr, site=spec.site,
                               line=spec.line, tags=list(spec.tags),
                               ring_size=(self.opts.ring_sizes or {}).get(spec.device_id, self.opts.ring_size),
                               results_per_message=self.opts.results_per_message,
                               calibrate_k=self.opts.calibrate_k,
                               summary_every_ms=int(round(self.opts.summary_every_s * 1000)))
            if self.opts.calibrate_n:
                node.calibration = Calibration(self.opts.calibrate_n, k=self.opts.calibrate_k)
                node.calibrate_n = self.opts.calibrate_n
            if self.opts.ota_public_key is not None:
                slots = Slots()
                slots.images["A"] = image
                node.ota = OtaClient(slots, self.opts.ota_public_key, device=spec.device_id)
            node.commission_enabled = self.opts.commission
            node.commission_windows = self.opts.commission_windows
            node.score_fn = lambda z, r=len(self.links): self._detector(r).score_standardized(z)
            node.baseline_model = artifact.model_version
            node.set_model_front_end(bl.frontend_crc(params), params.n_features)
            # round-robin over a broker cluster's members (link.members), node i on member i mod n
            self.links.append(NodeLink(node, member=len(self.links) % max(1, len(link.members))))
        n_sh = max(1, min(self.opts.shards, len(self.links)))
        self.shard_of = np.arange(len(self.links)) % n_sh
        self.shards = [Shard([lk for i, lk in enumerate(self.links) if self.shard_of[i] == s], link,
                             name=f"sim-net-{s}") for s in range(n_sh)]
        self.slot_of = np.random.default_rng(self.opts.seed + 1).permutation(len(self.links)) \
            % self.opts.ticks_per_period
        self._stop = threading.Event()
        self.windows = 0
        self.ticks = 0
        self.late_ticks = 0
        self.skipped_windows = 0  # windows not computed because the process fell a period behind
        self.max_lag_s = 0.0
        self.compute_s = 0.0
        self.t0 = 0.0
        self.t_end = 0.0

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for sh in self.shards:
            sh.start()

    def sim_time(self) -> float:
        """Simulation seconds now (the clock the fault schedule uses)."""
        return self.opts.time_offset_s + (time.monotonic() - self.t0 if self.t0 else 0.0)

    def inject_fault(self, device_id: str, kind: Fault = Fault.OUTER_RACE, *, peak_g: float = 2.0,
                     ramp_s: float = 0.0, peak_mm_s: float | None = None) -> float:
        """Give a running machine a fault from now on (full after ramp_s): a bearing defect sized by
        peak_g, a shaft fault by peak_mm_s (physics.with_faults); returns the onset in simulation
        seconds. For tests and demos that need a fault on cue."""
        rows = [s.row for s in self.plant.nodes if s.device_id == device_id]
        if not rows:
            raise KeyError(f"no simulated device {device_id!r}")
        onset = self.sim_time()
        machines = with_faults(self.plant.machines, rows, kind, onset_s=onset, ramp_s=max(ramp_s, 1e-6),
                               peak_g=peak_g, peak_mm_s=peak_mm_s)
        self.plant = replace(self.plant, machines=machines)  # the tick thread picks it up next tick
        return onset

    def inject_sensor_fault(self, device_id: str, kind: str) -> float:
        """From now on the device's sensor reads wrong (run_to_failure.SENSOR_FAULTS: loose_mount,
        saturating, dead_flat, dead_noise, dropouts), the machine unchanged; returns the onset in
        simulation seconds. For tests and demos of the node's sensor check."""
        if kind not in SENSOR_FAULTS:
            raise ValueError(f"unknown sensor fault {kind!r} (one of {', '.join(SENSOR_FAULTS)})")
        rows = [s.row for s in self.plant.nodes if s.device_id == device_id]
        if not rows:
            raise KeyError(f"no simulated device {device_id!r}")
        onset = self.sim_time()
        self.sensor_faults = {**self.sensor_faults, rows[0]: (kind, onset)}  # a new dict: the tick thread reads it
        return onset

    def connected(self) -> int:
        return sum(1 for lk in self.links if lk.connected)

    def wait_connected(self, fraction: float = 1.0, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        need = int(np.ceil(fraction * len(self.links)))
        while time.monotonic() < deadline:
            if self.connected() >= need:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stop.set()

    def run(self, duration_s: float | None = None) -> None:
        """Tick until `duration_s` elapses or `stop()`; windows are due on a fixed schedule."""
        o = self.opts
        tick_s = o.period_s / o.ticks_per_period
        self.t0 = time.monotonic()
        k = 0
        while not self._stop.is_set():
            due_at = self.t0 + k * tick_s
            if duration_s is not None and due_at - self.t0 >= duration_s:
                break
            now = time.monotonic()
            if due_at > now:
                if self._stop.wait(due_at - now):
                    break
            else:
                lag = now - due_at
                self.max_lag_s = max(self.max_lag_s, lag)
                if lag > tick_s:
                    self.late_ticks += 1
                if lag > o.period_s:  # a whole period behind: skip, as a real-time node would
                    self.skipped_windows += int((self.slot_of == k % o.ticks_per_period).sum())
                    k += 1
                    continue
            self.tick(k, o.time_offset_s + (due_at - self.t0))
            if o.ota_public_key is not None and k % o.ticks_per_period == 0:
                self.ota_tick()
            k += 1
        self.t_end = time.monotonic()

    def tick(self, k: int, t_sim: float) -> None:
        rows = np.flatnonzero(self.slot_of == k % self.opts.ticks_per_period)
        if rows.size == 0:
            return
        keep = {int(r) for r in rows if self.links[r].node.debug_request is not None}
        c0 = time.perf_counter()
        machines = self.machines_at(t_sim)
        scores, shadow, debug = self._score(rows, t_sim, keep, machines)
        every = debug.pop(-1)
        rpm = self._speeds(rows, every, machines, t_sim)
        verdicts = self._commissioning(rows, scores, every["features"], rpm, every["excess"], every.get("sensor"), t_sim,
                                       shadow)
        readings = self._readings(rows, every, rpm)
        dt = time.perf_counter() - c0
        self.compute_s += dt
        inf_us = int(dt * 1e6 / rows.size)  # batched compute per window, amortised
        ts = now_ms()
        self.windows += rows.size
        self.ticks += 1
        for s, sh in enumerate(self.shards):
            mine = self.shard_of[rows] == s
            if mine.any():
                r_s, sc_s, sh_s = rows[mine], scores[mine], shadow[mine]
                v_s = [verdicts[i] for i in np.flatnonzero(mine)]
                rd_s = [readings[i] for i in np.flatnonzero(mine)]
                dbg = {r: debug[r] for r in r_s.tolist() if r in debug}
                sh.call(lambda sh=sh, r_s=r_s, sc_s=sc_s, sh_s=sh_s, dbg=dbg, v_s=v_s, rd_s=rd_s:
                        self._deliver(sh, r_s, sc_s, dbg, ts, inf_us, sh_s, v_s, rd_s))

    def _speeds(self, rows: np.ndarray, every: dict, machines: Machines, t_sim: float) -> np.ndarray:
        """The running speed (rpm) each node uses: the machine's (a tachometer input), or without a
        speed input the v2 front end's estimate from the window's own spectrum (0: unknown, v1)."""
        if self.opts.speed_input:
            return machines.take(np.array([self.plant.nodes[r].row for r in rows])).shaft_hz(t_sim) * 60.0
        return np.nan_to_num(np.asarray(every["speed_hz"], np.float64) * 60.0, nan=0.0)

    def _readings(self, rows: np.ndarray, every: dict, rpm: np.ndarray) -> list[Reading | None]:
        """What each result reports beside its score (feature definition v2): velocity in mm/s, the
        running speed the node used, and the excess over the machine's normal that explains an
        anomaly, if it is one (docs/protocol.md)."""
        vrms = every["vrms"]
        if not np.isfinite(vrms).any():
            return [None] * rows.size  # a v1 front end: no readings
        params = self._detector(int(rows[0])).artifact.features.params  # type: ignore[union-attr]
        return [Reading(float(vrms[i]), float(rpm[i]), every["excess"][i], params)
                if np.isfinite(vrms[i]) else None for i in range(rows.size)]

    def machines_at(self, t_sim: float) -> Machines:
        """The plant's machines at their scheduled operating point at time t."""
        m = self.plant.machines
        return m if self.opts.schedule is None else self.opts.schedule.machines_at(m, t_sim)

    def _commissioning(self, rows: np.ndarray, scores: np.ndarray, features: np.ndarray, rpm: np.ndarray,
                       excess: np.ndarray | None = None, sensor: list[str] | None = None,
                       t_sim: float | None = None, shadow: np.ndarray | None = None) -> list[Verdict | None]:
        """Each node's verdict under its own baseline (docs/baseline.md): a commissioning node learns
        from the window (no verdict); a commissioned one scores it standardized by its class's
        normal, with one engine call for all of them; `scores` (and the per-input `excess` over
        normal, the "why") are updated in place.

        A window whose sensor check failed (`sensor`, OUTCOMES names) gets that state and no verdict
        (score 0): it neither commissions, nor moves the drift baseline, nor raises or clears an alarm.
        After commissioning the class centres follow benign drift (VirtualNode.judged_window), timed
        by `t_sim` (simulation seconds; None: the wall clock).

        In an OTA shadow phase (`shadow`, the candidates' scores, updated in place) a judged window is
        scored by the candidate on the same class-standardized input, against the thresholds it will
        have once it runs (`_shadow_thresholds`): the shadow check then compares like with like."""
        t_s = now_ms() / 1000.0 if t_sim is None else float(t_sim)
        sensor = sensor or [""] * rows.size
        faulty = [i for i, name in enumerate(sensor) if name]
        if not self.opts.commission and not any(self.links[r].node.baseline or self.links[r].node.commissioner
                                                for r in rows.tolist()):
            out0: list[Verdict | None] = [None] * rows.size
            for i in faulty:
                out0[i], scores[i] = Verdict(sensor[i], False), 0.0
                self._count_sensor(self.links[int(rows[i])].node, sensor[i])
            return out0
        out: list[Verdict | None] = [None] * rows.size
        judged, cls_of = [], []
        for i, r in enumerate(rows.tolist()):
            node = self.links[r].node
            if sensor[i]:  # no learning, no verdict; the drift chunk counts it (as the replay's does)
                out[i], scores[i] = Verdict(sensor[i], False), 0.0
                self._count_sensor(node, sensor[i])
                if node.commissioner is None:
                    node.judged_window(t_s, None, None)
                node.last_window_s = t_s
                continue
            com = node.commissioner
            b = node.baseline
            lookup = (b.class_for if self.opts.speed_input else b.class_for_estimate) if b is not None else None
            known = lookup is not None and lookup(float(rpm[i])) is not None
            if (com is None and b is not None and not known and rpm[i] > 0 and node.learn_new_classes
                    and len(b.classes) < bl.MAX_CLASSES):
                node.start_commissioning(rpm=float(rpm[i]))  # a speed never seen: learn its class too
                node.commission_log.append(("new_class", f"learning the class around {rpm[i]:.0f} rpm"))
                com = node.commissioner
            steady = bl.steady_speed(float(rpm[i]), node.last_rpm, bl.STEADY_SPEED if self.opts.speed_input
                                     else bl.STEADY_SPEED_ESTIMATED)
            node.last_rpm = float(rpm[i])
            if com is not None and not (known and com.only_rpm is not None
                                        and abs(rpm[i] - com.only_rpm) > bl.RPM_TOLERANCE * com.only_rpm):
                outcome = com.add(features[i], float(rpm[i])) if steady else "speed_changing"
                if outcome == "learning" and sum(n for _, n in com.counts()) % PROGRESS_EVERY == 0:
                    node.announce = True  # a new status with the progress, for the dashboard
                if outcome == "nonfinite":
                    node.commission_log.append(("nonfinite", "a window with NaN or infinite features was skipped"))
                out[i] = Verdict("commissioning", False)
                node.last_window_s = t_s
                if com.done():
                    try:
                        node.finish_commissioning(com.finish(self._detector(r).score_standardized,
                                                             frontend=node.frontend, learned_ms=now_ms()))
                    except bl.BaselineError as exc:
                        node.commission_log.append(("too_few_windows", str(exc)))
                continue
            if b is not None and node.baseline_model != node.model_version:
                b = self._rebaseline(r, node)
            if b is None:
                continue
            k = (b.class_for if self.opts.speed_input else b.class_for_estimate)(float(rpm[i]))
            if k is None:
                out[i] = Verdict("uncommissioned", False)
                node.judged_window(t_s, None, None)
                node.last_window_s = t_s
                continue
            c = b.classes[k]
            judged.append(i)
            cls_of.append((k, c))
        if judged:  # one standardization and one engine call for every judged window of the tick
            centre = np.stack([c.center for _, c in cls_of])
            spread = np.stack([c.spread for _, c in cls_of])
            z = bl.standardize(features[judged], centre, spread)
            det = self._detector(int(rows[judged[0]]))  # one model version per tick in the usual case
            s = det.score_standardized(z)
            if excess is not None and excess.shape[1] == z.shape[1]:
                excess[judged] = diagnosis.excess(z)
            h = bl.health_index(z)
            ratio = np.maximum(s / np.stack([np.float32(c.threshold) for _, c in cls_of]),
                               h / np.stack([np.float32(c.hi_threshold) for _, c in cls_of]))
            cand = self._shadow_judged(rows, judged, cls_of, z) if shadow is not None else {}
            for j, i in enumerate(judged):
                k, c = cls_of[j]
                scores[i] = s[j]
                anom = bool(s[j] > np.float32(c.threshold) or h[j] > np.float32(c.hi_threshold))
                out[i] = Verdict("", anom, float(h[j]), k, float(c.threshold), float(c.hi_threshold),
                                 drift_healthy=bool(ratio[j] < bl.DRIFT_HEALTHY))
                if j in cand:
                    cs, cthr = cand[j]
                    shadow[i] = cs  # type: ignore[index]
                    out[i] = replace(out[i], shadow_thr=cthr,  # type: ignore[type-var]
                                     shadow_anom=bool(cs > np.float32(cthr) or h[j] > np.float32(c.hi_threshold)))
                node = self.links[int(rows[i])].node
                node.judged_window(t_s, out[i], bl.to_q10(features[i]) if out[i].drift_healthy else None)
                node.last_window_s = t_s
        return out

    @staticmethod
    def _count_sensor(node: VirtualNode, name: str) -> None:
        node.sensor_windows[name] = node.sensor_windows.get(name, 0) + 1

    def _shadow_judged(self, rows: np.ndarray, judged: list[int], cls_of: list, z: np.ndarray
                       ) -> dict[int, tuple[float, float]]:
        """Per judged window (index into `judged`) of a node in a shadow phase whose candidate has the
        running front end: (the candidate's score of the class-standardized window, its class threshold)."""
        pick: dict[int, list[int]] = {}
        for j, i in enumerate(judged):
            version = self._shadow_version(int(rows[i]))
            if version:
                pick.setdefault(version, []).append(j)
        out: dict[int, tuple[float, float]] = {}
        for version, js in pick.items():
            det = self._shadow_detector(int(rows[judged[js[0]]]), version)
            if det is None:
                continue
            keep = []
            for j in js:
                thr = self._shadow_thresholds(self.links[int(rows[judged[j]])].node, version, det)
                if thr is not None and cls_of[j][0] < len(thr):
                    keep.append((j, thr[cls_of[j][0]]))
            if keep:
                cs = det.score_standardized(z[[j for j, _ in keep]])
                out.update({j: (float(v), t) for (j, t), v in zip(keep, cs.tolist())})
        return out

    @staticmethod
    def _shadow_thresholds(node: VirtualNode, version: int, det: Detector) -> list[float] | None:
        """The candidate's per-class score thresholds on this machine: learned from the commissioning
        rows the node kept, as `_rebaseline` will once the candidate runs. None when the candidate has
        another front end or no rows were kept (the node then judges it by the model's own threshold)."""
        if node.shadow_class_thr is not None and node.shadow_class_thr[0] == version:
            return node.shadow_class_thr[1]
        params = det.artifact.features.params  # type: ignore[union-attr]
        b = node.baseline
        thr = None
        if (b is not None and node.baseline_rows and bl.frontend_crc(params) == b.frontend_crc
                and params.n_features == b.n_features):
            thr = [bl.learn_class(node.baseline_rows[k], rpm, det.score_standardized).threshold
                   for k, rpm in enumerate(node.baseline_centres)]
        node.shadow_class_thr = (version, thr)
        return thr

    def _rebaseline(self, r: int, node: VirtualNode) -> bl.Baseline | None:
        """A new model with the same front end keeps the machine's normal (centre and spread) but
        needs its own score thresholds: re-derived from the commissioning rows the node kept."""
        det = self._detector(r)
        params = det.artifact.features.params  # type: ignore[union-attr]
        node.set_model_front_end(bl.frontend_crc(params), params.n_features)
        if node.baseline is None or not node.baseline_rows:
            return None  # another front end, or nothing kept: set_model_front_end re-commissions
        node.baseline = bl.Baseline(node.baseline.frontend_crc, node.baseline.learned_ms, tuple(
            bl.learn_class(node.baseline_rows[k], rpm, det.score_standardized)
            for k, rpm in enumerate(node.baseline_centres)), node.baseline.n_features)
        node.baseline_model = node.model_version
        node.drift, node.drift_note = None, None  # thresholds and centres as commissioned: drift follows anew
        node.announce = True
        return node.baseline

    def _deliver(self, shard: Shard, rows: np.ndarray, scores: np.ndarray, debug: dict, ts: int,
                 inf_us: int, shadow: np.ndarray | None = None, verdicts: list | None = None,
                 readings: list | None = None) -> None:
        """In the shard thread: each node takes its result (and answers a debug request); in a
        shadow phase the candidate's score of the same window goes with it (NaN: none); a
        commissioning node's verdict (class, thresholds, HI, or none) goes with its score."""
        for i, (r, s) in enumerate(zip(rows.tolist(), scores.tolist())):
            link = self.links[r]
            if shadow is not None and not np.isnan(shadow[i]):
                link.node.next_shadow = float(shadow[i])
            if r in debug and link.node.debug_request is not None:
                d = debug[r]
                shard.send(link, link.node.debug_capture(ts, d["samples"], d["features"], d["q_in"],
                                                         d["q_out"], d["score"]))
            shard.deliver(link, ts, s, inf_us, verdicts[i] if verdicts else None,
                          readings[i] if readings else None)

    def _score(self, rows: np.ndarray, t_sim: float, keep: set[int],
               machines: Machines | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        """One engine call per model version in use (usually one; two while a rollout is under way),
        plus one per candidate for the nodes in a shadow phase, on the same windows. Returns the
        active models' scores, the candidates' scores (NaN where no shadow) and debug captures."""
        versions = np.array([self.links[r].node.model_version for r in rows])
        shadows = np.array([self._shadow_version(r) for r in rows])
        no_shadow = np.full(rows.size, np.nan, np.float32)
        if (versions == versions[0]).all() and not shadows.any():
            s, d = score_windows(self._detector(int(rows[0])), self.plant, rows, t_sim, self.rng, keep=keep,
                                 machines=machines, sensor_faults=self.sensor_faults)
            return s, no_shadow, d
        scores = np.empty(rows.size, np.float32)
        debug: dict = {}
        feats: np.ndarray | None = None
        excess_all: np.ndarray | None = None
        vrms = np.full(rows.size, np.nan)
        speed = np.full(rows.size, np.nan)
        sensor = [""] * rows.size
        for v, sv in sorted({(int(a), int(b)) for a, b in zip(versions, shadows)}):
            sel = (versions == v) & (shadows == sv)
            dets = [self._detector(int(rows[sel][0]))]
            cand = self._shadow_detector(int(rows[sel][0]), sv) if sv else None
            if cand is not None:  # None: the shadow phase ended meanwhile
                dets.append(cand)
            s, d = score_windows_multi(dets, self.plant, rows[sel], t_sim, self.rng, keep=keep, machines=machines,
                                       sensor_faults=self.sensor_faults)
            scores[sel] = s[0]
            if len(s) > 1:
                no_shadow[sel] = s[1]
            every = d.pop(-1)
            f = every["features"]
            if feats is None:
                feats = np.full((rows.size, f.shape[1]), np.nan, np.float32)
                excess_all = np.full((rows.size, every["excess"].shape[1]), np.nan)
            if f.shape[1] == feats.shape[1]:  # a model with another front end: NaN, not commissioned on
                feats[sel] = f
                excess_all[sel] = every["excess"]
            vrms[sel] = every["vrms"]
            speed[sel] = every["speed_hz"]
            for i, name in zip(np.flatnonzero(sel).tolist(), every["sensor"]):
                sensor[i] = name
            debug.update(d)
        debug[-1] = {"features": feats, "vrms": vrms, "speed_hz": speed, "excess": excess_all, "sensor": sensor}
        return scores, no_shadow, debug

    def _shadow_version(self, row: int) -> int:
        """The candidate a node scores in a shadow phase (0: none)."""
        ota = self.links[row].node.ota
        art = ota.shadow_artifact if ota is not None else None
        return art.model_version if art is not None else 0

    def _shadow_detector(self, row: int, version: int) -> Detector | None:
        det = self._detectors.get(version)
        art = self.links[row].node.ota.shadow_artifact
        if det is None and art is not None:  # signed: the same bytes on every node
            det = self._detectors[version] = Detector(art)
        return det

    def _detector(self, row: int) -> Detector:
        node = self.links[row].node
        det = self._detectors.get(node.model_version)
        if det is None:  # a model that arrived over the air: same bytes on every node (signed)
            det = self._detectors[node.model_version] = Detector(node.ota.slots.active_artifact())
        return det

    def ota_tick(self) -> None:
        """OTA timers of every node with a download or trial in progress, in their shard threads."""
        ts = now_ms()
        for s, sh in enumerate(self.shards):
            busy = [lk for i, lk in enumerate(self.links) if self.shard_of[i] == s and lk.node.ota is not None
                    and (lk.node.ota.download is not None or lk.node.ota.slots.trial)]
            if busy:
                sh.call(lambda sh=sh, busy=busy: [sh.send(lk, out) for lk in busy for out in lk.node.ota_tick(ts)])

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every connected node has handed over its ring and got its PUBACKs.

        Each round is a job queued behind the results already posted to the shard, so a
        result still on its way to its node is never mistaken for 'nothing pending'.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [threading.Event() for _ in self.shards]
            busy = [0] * len(self.shards)

            def round_(i: int, sh: Shard) -> None:
                for lk in sh.links:
                    if lk.connected:
                        sh.pump(lk, flush=True)
                        busy[i] += bool(lk.inflight or lk.node.pending())
                done[i].set()

            for i, sh in enumerate(self.shards):
                sh.call(lambda i=i, sh=sh: round_(i, sh))
            for ev in done:
                ev.wait(max(0.0, deadline - time.monotonic()))
            if all(ev.is_set() for ev in done) and not any(busy):
                return True
            time.sleep(0.1)
        return False

    def shutdown(self) -> None:
        for sh in self.shards:
            sh.stop()
        for sh in self.shards:
            sh.join(timeout=15)

    # --- report ---------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        elapsed = max(1e-9, (self.t_end or time.monotonic()) - self.t0) if self.t0 else 0.0
        per_device = {}
        for spec, lk in zip(self.plant.nodes, self.links):
            n = lk.node
            per_device[spec.device_id] = {
                "site": spec.site, "line": spec.line, "tags": list(spec.tags), "fs": spec.fs,
                "boot": n.boot, "windows": n.windows, "published": lk.acked_results,
                "messages": lk.acked_messages, "last_seq": n.result_seq - 1, "dropped": n.dropped,
                "pending": n.pending() + sum(lk.inflight.values()), "anomalies": n.anomalies,
                "threshold": n.threshold, "connects": lk.connects, "disconnects": lk.disconnects,
                "refused": lk.refused_results, "refused_connects": lk.refused_connects,
                "debug": lk.debug_sent, "sensor_windows": dict(n.sensor_windows),
                "baseline_moves": len(n.baseline_changes),
                **self.plant.describe(spec.row)}
        tot = lambda k: sum(d[k] for d in per_device.values())  # noqa: E731
        lat = np.concatenate([np.asarray(sh.ack_latency_ms, np.float64) for sh in self.shards]
                             + [np.zeros(0)])
        return {
            "nodes": len(self.links), "duration_s": round(elapsed, 3), "windows": self.windows,
            "published": tot("published"), "messages": tot("messages"), "dropped": tot("dropped"),
            "pending": tot("pending"), "anomalies": tot("anomalies"), "refused": tot("refused"),
            "connects": tot("connects"), "disconnects": tot("disconnects"),
            "refused_connects": tot("refused_connects"),
            "windows_per_s": round(self.windows / elapsed, 1) if elapsed else 0.0,
            "published_per_s": round(tot("published") / elapsed, 1) if elapsed else 0.0,
            "compute_s": round(self.compute_s, 3), "ticks": self.ticks, "late_ticks": self.late_ticks,
            "skipped_windows": self.skipped_windows,
            "max_tick_lag_s": round(self.max_lag_s, 3),
            "ack_latency_ms": ({"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                                "max": float(lat.max())} if lat.size else None),
            "shard_errors": sum(sh.errors for sh in self.shards),
            "faulty": self.plant.faulty, "model_version": self.detector.artifact.model_version,
            "broker": ",".join(f"{h}:{p}" for h, p in self.link_opts.members) or
                      f"{self.link_opts.host}:{self.link_opts.port}",
            "failovers": sum(lk.failovers for lk in self.links),
            "mqtt_version": self.link_opts.mqtt_version,
            "results_per_message": self.opts.results_per_message,
            "per_device": per_device,
        }


SUMMED = ("nodes", "windows", "published", "messages", "dropped", "pending", "anomalies", "refused",
          "connects", "disconnects", "refused_connects", "ticks", "late_ticks", "skipped_windows",
          "shard_errors")


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from the reports of worker processes that each ran a slice of the plant.

    Counts add up; latency keeps the median of the medians and the worst p99 and max (an
    upper bound: exact percentiles would need every sample)."""
    if not reports:
        raise ValueError("no reports to merge")
    out = {k: v for k, v in reports[0].items() if k not in SUMMED}
    for k in SUMMED:
        out[k] = sum(r.get(k, 0) for r in reports)
    out["compute_s"] = round(sum(r["compute_s"] for r in reports), 3)
    out["duration_s"] = max(r["duration_s"] for r in reports)
    out["max_tick_lag_s"] = max(r["max_tick_lag_s"] for r in reports)
    d = out["duration_s"] or 1e-9
    out["windows_per_s"] = round(out["windows"] / d, 1)
    out["published_per_s"] = round(out["published"] / d, 1)
    lats = [r["ack_latency_ms"] for r in reports if r.get("ack_latency_ms")]
    out["ack_latency_ms"] = ({"p50": float(np.median([x["p50"] for x in lats])),
                              "p99": max(x["p99"] for x in lats), "max": max(x["max"] for x in lats)}
                             if lats else None)
    out["faulty"] = sorted(sum((r["faulty"] for r in reports), []))
    out["per_device"] = {k: v for r in reports for k, v in r["per_device"].items()}
    out["injected"] = {k: v for r in reports for k, v in r.get("injected", {}).items()}
    out["procs"] = len(reports)
    return out


__all__ = ["Fleet", "FleetOptions", "merge_reports", "score_windows"]
