"""One virtual node's device logic, without any networking (the link moves its bytes).

What a node keeps, exactly as the firmware does: a boot id drawn at boot, per-kind
sequence numbers from 0, a bounded store-and-forward ring of results not yet handed
to the broker (oldest dropped first, the drop count reported in every result
message), its threshold (from the artifact, set by command, or calibrated from its
own first N normal windows with a streaming statistic), its commissioning baseline
(learned on site, kept across reboots like flash: docs/baseline.md) and a pending
debug capture.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgefleet.protocol import (
    PROTOCOL_VERSION,
    ProtocolError,
    encode,
    result_message,
    summary_of_scores,
    topic,
)
from edgefleet.runtime import diagnosis
from edgefleet.runtime.baseline import (
    DEFAULT_WINDOWS,
    MAX_CLASSES,
    MIN_WINDOWS,
    Baseline,
    BaselineError,
    ClassBaseline,
    Commissioner,
    drift,
)
from edgefleet.runtime.features import FeatureParams

FIRMWARE_VERSION = "1.1.0"
DEBUG_MAX_N = 256  # windows one debug command may ask for: a bound a hostile or mistaken sender cannot pass
CAPS = ["debug", "debug_n", "calib", "commission"]  # debug_n: a debug command's `n` windows in a row
DRIFT_CHUNK = 32  # windows per drift step after commissioning: the replay's chunk (toolchain/replay.py)
DRIFT_NOTE = 0.1  # a class centre moved this many spreads since its last report: a status says so


@dataclass(frozen=True)
class Verdict:
    """A commissioned node's judgement of one window (or why there is none)."""

    state: str  # "" judged, "commissioning", "uncommissioned", or a sensor fault (sensor_check.OUTCOMES)
    anom: bool
    hi: float | None = None
    cls: int | None = None
    thr: float | None = None  # the class's score threshold (the message's thr)
    hi_thr: float | None = None
    drift_healthy: bool = False  # judged, and under DRIFT_HEALTHY of both class limits: drift may learn from it
    shadow_thr: float | None = None  # in a shadow phase: the candidate's threshold for this class (None: none)
    shadow_anom: bool = False  # ... and its verdict on the window, by the same rule as the active model's


@dataclass
class DriftFollower:
    """Benign slow drift after commissioning, on the node exactly as the replay does it
    (`score_following_drift`): every DRIFT_CHUNK windows (all of them count: judged, uncommissioned,
    sensor faults) each class's centre follows the median of its healthy windows of the chunk
    (`baseline.drift`: bounded rate, capped at DRIFT_CAP spreads from `origin`, the commissioned
    centre), over the time since the last step. A centre that moved DRIFT_NOTE spreads or more since
    its last report gives a change ({t_s, cls, max_shift_spreads}); windows are judged by the
    baseline as it was at the chunk's start."""

    origin: list  # per class: commissioned centre, int16 Q10
    noted: list  # per class: centre at the last reported change
    t_prev: float  # seconds: end of the previous step (the last commissioning window at first)
    rows: list = field(default_factory=list)  # per class: Q10 rows of this chunk's healthy windows
    count: int = 0

    @classmethod
    def start(cls, baseline: Baseline, t_s: float) -> DriftFollower:
        return cls([c.center.copy() for c in baseline.classes], [c.center.astype(np.int64) for c in baseline.classes],
                   float(t_s), [[] for _ in baseline.classes])

    def add(self, cls_k: int | None, q_row: np.ndarray | None) -> bool:
        """Count one window (a healthy class window's Q10 row with it); True when a step is due."""
        self.count += 1
        if cls_k is not None and q_row is not None and 0 <= cls_k < len(self.rows):
            self.rows[cls_k].append(q_row)
        return self.count >= DRIFT_CHUNK

    def step(self, baseline: Baseline, t_s: float) -> tuple[Baseline, list[dict]]:
        """Apply the chunk: the baseline with moved centres, and the changes to report."""
        dt = float(t_s) - self.t_prev
        classes, changes = list(baseline.classes), []
        for k, c in enumerate(classes):
            if k >= len(self.rows) or not self.rows[k]:
                continue
            classes[k] = drift(c, self.origin[k], np.stack(self.rows[k]), dt)
            sp = c.spread.astype(np.int64)
            if (np.abs(classes[k].center.astype(np.int64) - self.noted[k]) / sp).max() >= DRIFT_NOTE:
                self.noted[k] = classes[k].center.astype(np.int64)
                total = np.abs(self.noted[k] - self.origin[k].astype(np.int64)) / sp
                changes.append({"t_s": round(float(t_s), 3), "cls": k, "max_shift_spreads": round(float(total.max()), 3)})
        self.t_prev, self.count = float(t_s), 0
        self.rows = [[] for _ in classes]
        return Baseline(baseline.frontend_crc, baseline.learned_ms, tuple(classes), baseline.n_features), changes


@dataclass(frozen=True)
class Reading:
    """What a v2 front end reports beside the score (docs/protocol.md): velocity in mm/s, the
    running speed the node used, and each input's excess over normal, which explains an anomaly."""

    vrms: float
    rpm: float
    excess: Any  # float64 [inputs]: diagnosis.excess of the standardized inputs
    params: FeatureParams
    bearing: diagnosis.BearingGeometry | None = None

    def fields(self, anom: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if math.isfinite(self.vrms):
            out["vrms"] = round(min(max(self.vrms, 0.0), 1000.0), 4)
        if math.isfinite(self.rpm) and 30.0 <= self.rpm <= 100_000.0:
            out["rpm"] = round(self.rpm, 1)
        if anom and self.excess is not None:
            why = diagnosis.contributors(self.excess, self.params)
            if why:
                out["why"] = [c.to_message() for c in why]
                out["hint"] = diagnosis.fault_hint(self.excess, self.params, self.rpm / 60.0, self.bearing)
        return out


def merge_baseline(old: Baseline | None, new: Baseline) -> Baseline:
    """A re-learned or added class replaces the old classes whose band holds its centre; the
    other old classes stay (at most MAX_CLASSES, the newest kept)."""
    if old is None or old.frontend_crc != new.frontend_crc or old.n_features != new.n_features:
        return new
    centres = [0.5 * (c.rpm_lo + c.rpm_hi) for c in new.classes]
    keep: list[ClassBaseline] = [c for c in old.classes
                                 if not any(c.contains(x) or (c.any_speed and x == 0) for x in centres)]
    classes = sorted((*keep, *new.classes), key=lambda c: c.rpm_lo)[-MAX_CLASSES:]
    return Baseline(new.frontend_crc, new.learned_ms, tuple(classes), new.n_features)
MAX_RESULTS_PER_MESSAGE = 256  # protocol limit (result.schema.json maxItems)


@dataclass
class Calibration:
    """Streaming threshold: Welford mean and variance of log(score) over n windows.

    Scores are squared errors (positive, right-skewed), so the statistic runs on their
    logarithm; threshold = exp(mean + k * std). O(1) memory, no training.
    """

    n_target: int
    k: float = 4.0
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, score: float) -> None:
        x = math.log(max(score, 1e-12))
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    @property
    def done(self) -> bool:
        return self.n >= self.n_target

    def threshold(self) -> float:
        std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        return math.exp(self.mean + self.k * std)


@dataclass
class Outgoing:
    """A message for the link: topic, payload, QoS, retain, and how many results it carries."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    results: int = 0
    oldest_ms: int = 0  # window time of the oldest result carried (latency includes batching)


@dataclass
class VirtualNode:
    """Device state and message building for one simulated machine's sensor node."""

    device_id: str
    fs: float
    model_version: int
    threshold: float
    site: str | None = None
    line: str | None = None
    tags: list[str] = field(default_factory=list)
    ring_size: int = 600
    results_per_message: int = 1
    calibrate_k: float = 4.0
    boot: str = field(default_factory=lambda: secrets.token_hex(4))
    ring: deque = field(init=False)
    dropped: int = 0
    result_seq: int = 0
    prev_boot: tuple[str, int] | None = None  # (boot id, last result seq) of the boot before a warm reset
    status_seq: int = 0
    debug_seq: int = 0
    calibration: Calibration | None = None
    debug_request: str | None = None  # cmd id of a pending debug capture ("" if none given)
    debug_left: int = 0  # captures still owed to that request (`n` of the command, at most DEBUG_MAX_N)
    anomalies: int = 0
    windows: int = 0
    announce: bool = False  # threshold changed by calibration: publish a new birth status
    handled_cmds: deque = field(default_factory=lambda: deque(maxlen=32))
    ota: Any = None  # an edgefleet.device.ota_client.OtaClient when the node takes OTA updates
    ota_seq: dict = field(default_factory=dict)  # per-kind sequence numbers of ota/req, ota/state
    calibrate_n: int = 0  # recalibrate after a model change when commissioning used calibration
    trial_windows: int = 0  # windows scored by a model on trial, and how many were anomalous
    trial_anomalies: int = 0
    ota_outbox: list = field(default_factory=list)  # OTA reports made while offline (after a reboot)
    shadow_model: int | None = None  # OTA shadow phase: the candidate scored beside the active model
    shadow_threshold: float = 0.0
    next_shadow: float | None = None  # the candidate's score of the next window (set by the fleet)
    shadow_class_thr: tuple | None = None  # (candidate version, its per-class thresholds from baseline_rows)
    baseline: Baseline | None = None  # the machine's own normal (survives reboots, like flash)
    commissioner: Commissioner | None = None  # learning in progress (RAM: lost on reboot)
    commission_windows: int = DEFAULT_WINDOWS
    commission_enabled: bool = False  # a node without a baseline commissions by itself
    learn_new_classes: bool = True  # after commissioning, a speed in no class starts learning that class
    last_rpm: float = 0.0  # the previous window's speed: a ramp is not learned from
    n_features: int = 0
    frontend: int = 0  # CRC of the running model's front end (a baseline is valid only for it)
    commission_log: list = field(default_factory=list)  # named outcomes: (what, detail), newest last
    score_fn: Any = None  # standardized features -> scores: the node's engine, set by the fleet
    baseline_model: int = 0  # the model version whose scores set the class thresholds
    baseline_rows: list = field(default_factory=list)  # per class: its commissioning rows (Q10), kept
    baseline_centres: list = field(default_factory=list)  # per class: the rpm that opened it (0: any)
    follow_drift: bool = True  # after commissioning, class centres follow benign drift (DriftFollower)
    drift: DriftFollower | None = None  # the drift follower of the current baseline (None: starts at the next window)
    last_window_s: float = 0.0  # time of the previous window, seconds (the drift follower's first step)
    baseline_changes: list = field(default_factory=list)  # every reported drift move, newest last
    drift_note: dict | None = None  # the newest move as status `comm.drift` carries it
    sensor_windows: dict = field(default_factory=dict)  # windows per sensor fault outcome
    # summary mode (docs/protocol.md, "summary"): > 0 sends one `summary` per period of this many ms (aligned
    # to multiples of it) instead of every window; the ring then holds summaries, `dropped` counts summaries
    summary_every_ms: int = 0
    summary_seq: int = 0
    summary_acc: list = field(default_factory=list)  # (ts, score, anom, vrms or None) of the open period
    summary_key: tuple | None = None  # (period index, model, thr) of the open period

    def __post_init__(self) -> None:
        topic(self.device_id, "result")  # validates the device id once
        self.ring = deque(maxlen=self.ring_size)
        self.topics = {k: topic(self.device_id, k)
                       for k in ("result", "status", "debug", "cmd", "ota/offer", "ota/data", "ota/req",
                                 "ota/state", "summary")}

    # --- status -------------------------------------------------------------------------
    def birth(self, now_ms: int) -> Outgoing:
        body: dict[str, Any] = {"v": PROTOCOL_VERSION, "boot": self.boot, "seq": self._next_status(),
                                "ts": now_ms, "state": "online", "fw": FIRMWARE_VERSION,
                                "model": self.model_version,
                                "slot": self.ota.slots.active if self.ota is not None else "A",
                                "thr": _positive(self.threshold), "caps": list(CAPS)}
        if self.site:
            body["site"] = self.site
        if self.line:
            body["line"] = self.line
        if self.tags:
            body["tags"] = list(self.tags)
        if self.prev_boot is not None:  # every birth of this boot: a mark the store already has changes nothing
            body["prev"] = {"boot": self.prev_boot[0], "res_seq": self.prev_boot[1]}
        comm = self.comm_summary()
        if comm is not None:
            body["caps"] = list(CAPS)
            body["comm"] = comm
        return Outgoing(self.topics["status"], encode("status", body), retain=True)

    # --- commissioning (docs/baseline.md) ------------------------------------------------
    def comm_summary(self) -> dict[str, Any] | None:
        """The status `comm` object, None for a node that does not commission."""
        if self.commissioner is not None:
            return {"state": "commissioning", "target": self.commissioner.target,
                    "progress": [{"rpm": round(r, 1), "n": n} for r, n in self.commissioner.counts()]}
        if self.baseline is not None:
            out = {"state": "commissioned", **self.baseline.summary()}
            if self.drift_note is not None:
                out["drift"] = dict(self.drift_note)
            return out
        return None

    def judged_window(self, t_s: float, verdict: Verdict | None, q_row: np.ndarray | None) -> list[dict]:
        """After commissioning, every window's part in drift following (docs/baseline.md, "Drift after
        commissioning"): a healthy judged window's Q10 row feeds its class; every DRIFT_CHUNK windows
        the centres step. Returns the changes of this step (each also announced in a status)."""
        if not self.follow_drift or self.baseline is None:
            return []
        if self.drift is None:
            self.drift = DriftFollower.start(self.baseline, self.last_window_s or t_s)
        ok = verdict is not None and verdict.drift_healthy
        if not self.drift.add(verdict.cls if ok else None, q_row if ok else None):  # type: ignore[union-attr]
            return []
        self.baseline, changes = self.drift.step(self.baseline, t_s)
        for ch in changes:
            self.baseline_changes.append(ch)
            self.drift_note = {"cls": ch["cls"], "max_shift_spreads": ch["max_shift_spreads"],
                               "ts": max(0, int(round(ch["t_s"] * 1000)))}
            self.announce = True
        return changes

    def start_commissioning(self, windows: int | None = None, rpm: float | None = None) -> None:
        self.commissioner = Commissioner(self.n_features, target=windows or self.commission_windows, only_rpm=rpm)
        self.announce = True

    def ensure_commissioning(self) -> None:
        """A node without a baseline starts commissioning by itself (at boot, after a new front end)."""
        if self.commission_enabled and self.baseline is None and self.commissioner is None:
            self.start_commissioning()

    def finish_commissioning(self, baseline: Baseline) -> None:
        com = self.commissioner
        self.baseline = merge_baseline(self.baseline if com and com.only_rpm else None, baseline)
        if com is not None:  # keep the rows (flash on a device): thresholds for a new model need them
            rows = {c.rpm_center: np.stack(c.rows) for c in com.classes if len(c.rows) >= MIN_WINDOWS}
            old = dict(zip(self.baseline_centres, self.baseline_rows)) if com.only_rpm else {}
            old.update(rows)
            centres = [0.5 * (c.rpm_lo + c.rpm_hi) for c in self.baseline.classes]
            pick = [min(old, key=lambda r, x=x: abs(r - x)) if old else 0.0 for x in centres]
            self.baseline_centres = [float(p) for p in pick]
            self.baseline_rows = [old[p] for p in pick] if old else []
        self.baseline_model = self.model_version
        self.shadow_class_thr = None  # a candidate's thresholds come from the new rows
        self.commissioner = None
        self.drift, self.drift_note = None, None  # a new commissioned centre: drift follows from there
        self.announce = True

    def set_model_front_end(self, frontend: int, n_features: int) -> None:
        """After a model change: keep the baseline when the front end is the same, else re-commission."""
        if self.baseline is not None and (self.baseline.frontend_crc != frontend
                                          or self.baseline.n_features != n_features):
            self.baseline, self.drift, self.drift_note = None, None, None
            self.commission_log.append(("front_end_changed", "re-commissioning for the new model's front end"))
        self.frontend, self.n_features = frontend, n_features
        self.ensure_commissioning()

    def death(self, now_ms: int, state: str = "lost") -> Outgoing:
        """The last will ('lost', registered at connect) or a clean goodbye ('offline'), which says
        how far this boot's results go (`res_seq`), so a loss at the very end is counted too."""
        body = {"v": PROTOCOL_VERSION, "boot": self.boot, "seq": self._next_status(), "ts": now_ms,
                "state": state}
        if state == "offline" and self.result_seq > 0:
            body["res_seq"] = self.result_seq - 1
        return Outgoing(self.topics["status"], encode("status", body), retain=True)

    def _next_status(self) -> int:
        self.status_seq += 1
        return self.status_seq - 1

    # --- results ------------------------------------------------------------------------
    def add_result(self, ts_ms: int, score: float, inf_us: int, shadow_score: float | None = None,
                   verdict: Verdict | None = None, reading: Reading | None = None) -> bool:
        """Record one window's score; returns the (active model's) anomaly decision. Drops the
        oldest if full. In a shadow phase `shadow_score` (or `next_shadow`) is the candidate's
        score of the same window: reported beside, and what the shadow health check counts.
        A commissioning node passes its `verdict` (class, thresholds, HI, or no verdict)."""
        if shadow_score is None:
            shadow_score, self.next_shadow = self.next_shadow, None
        anom = bool(score > self.threshold) if verdict is None else verdict.anom
        thr = self.threshold if verdict is None or verdict.thr is None else verdict.thr
        self.windows += 1
        self.anomalies += anom
        shadow = None
        if shadow_score is not None and self.shadow_model is not None:
            if verdict is not None and verdict.shadow_thr is not None:  # judged by the class, as it will be
                shadow = (self.shadow_model, verdict.shadow_thr, max(0.0, float(shadow_score)), verdict.shadow_anom)
            else:
                shadow = (self.shadow_model, self.shadow_threshold, max(0.0, float(shadow_score)),
                          bool(shadow_score > self.shadow_threshold))
        if self.ota is not None and self.ota.slots.trial:
            in_shadow = self.shadow_model is not None
            if shadow is not None or not in_shadow:
                self.trial_windows += 1
                self.trial_anomalies += shadow[3] if in_shadow else anom
        said = reading.fields(anom) if reading is not None else None
        if self.summary_every_ms > 0:
            self._summarize(ts_ms, float(score), anom, thr, said)
            return self._calibrate(score, verdict, anom)
        if len(self.ring) == self.ring.maxlen:
            self.dropped += 1
        extra = None if verdict is None else (verdict.state, verdict.hi, verdict.cls, verdict.hi_thr)
        self.ring.append((self.result_seq, ts_ms, float(score), anom, int(inf_us), thr,
                          self.model_version, shadow, extra, said))
        self.result_seq += 1
        return self._calibrate(score, verdict, anom)

    def _calibrate(self, score: float, verdict: Verdict | None, anom: bool) -> bool:
        cal = self.calibration
        if cal is not None and not (verdict is not None and verdict.state.startswith("sensor_")):
            cal.add(score)
            if cal.done:
                self.threshold = _positive(cal.threshold())
                self.calibration = None
                self.announce = True
        return anom

    def _summarize(self, ts_ms: int, score: float, anom: bool, thr: float, said: dict | None) -> None:
        """Summary mode: add the window to the open period; a window of the next period (or of another model or
        threshold) closes it into one summary in the ring. Windows in a no-verdict state count too (anom false)."""
        key = (ts_ms // self.summary_every_ms, self.model_version, thr)
        if self.summary_key is not None and key != self.summary_key:
            self.close_summary()
        self.summary_key = key
        self.summary_acc.append((ts_ms, max(0.0, score), anom, (said or {}).get("vrms")))

    def close_summary(self) -> None:
        """The open period as one summary message in the ring (nothing when no window came)."""
        acc, key = self.summary_acc, self.summary_key
        self.summary_acc, self.summary_key = [], None
        if not acc or key is None:
            return
        vr = [a[3] for a in acc]
        body = summary_of_scores(self.boot, self.summary_seq, max(a[0] for a in acc), self.summary_every_ms,
                                 key[1], _positive(key[2]), [a[1] for a in acc], sum(a[2] for a in acc),
                                 self.dropped, vrms=vr if all(v is not None for v in vr) else None)
        self.summary_seq += 1
        if len(self.ring) == self.ring.maxlen:
            self.dropped += 1
        self.ring.append(("summary", body["ts"], encode("summary", body)))

    def pending(self) -> int:
        return len(self.ring)

    def next_message(self, *, flush: bool = False) -> Outgoing | None:
        """The oldest results as one message (same threshold), or None if not enough yet.

        Normally waits for `results_per_message` results; `flush` sends whatever is there
        (after a reconnect, or when the batch is old), up to the protocol's 256.
        """
        if not self.ring:
            return None
        if self.ring[0][0] == "summary":  # summary mode: one summary per message, as soon as it is made
            return Outgoing(self.topics["summary"], self.ring[0][2], results=1, oldest_ms=self.ring[0][1])
        limit = MAX_RESULTS_PER_MESSAGE if flush else self.results_per_message
        if not flush and len(self.ring) < self.results_per_message:
            return None
        thr, model, sh, cl = self.ring[0][5], self.ring[0][6], _shadow_key(self.ring[0][7]), _class_key(self.ring[0][8])
        batch = []
        for item in self.ring:  # one message = one threshold, model version, shadow model, class
            if (len(batch) >= limit or item[5] != thr or item[6] != model or _shadow_key(item[7]) != sh
                    or _class_key(item[8]) != cl):
                break
            batch.append(item)
        res = []
        for s, ts, sc, an, us, _, _, shw, ex, said in batch:
            r: dict[str, Any] = {"seq": s, "ts": ts, "score": max(0.0, sc), "anom": an, "inf_us": us}
            if said:
                r.update(said)
            if ex is not None and ex[1] is not None and math.isfinite(ex[1]):
                r["hi"] = max(0.0, float(ex[1]))
            if ex is not None and ex[0]:
                r["state"] = ex[0]
            if shw:
                r["shadow"] = {"score": shw[2], "anom": shw[3]}
            res.append(r)
        body = result_message(self.boot, model, _positive(thr), res, self.dropped,
                              shadow={"model": sh[0], "thr": _positive(sh[1])} if sh else None,
                              cls=cl[0] if cl else None, hi_thr=_positive(cl[1]) if cl else None)
        return Outgoing(self.topics["result"], encode("result", body), results=len(batch),
                        oldest_ms=batch[0][1])

    def commit(self, n_results: int) -> None:
        """The first n results of the ring are now the link's (handed to the MQTT client)."""
        for _ in range(n_results):
            self.ring.popleft()

    # --- commands -----------------------------------------------------------------------
    def handle_command(self, body: dict[str, Any], now_ms: int) -> list[Outgoing]:
        """Apply a decoded `cmd` message; returns what the node publishes in answer."""
        cid = body["id"]
        if cid in self.handled_cmds:  # QoS 1 may deliver twice
            return []
        self.handled_cmds.append(cid)
        op = body["op"]
        if op == "commission":
            if not self.n_features:
                return []  # this node does not commission (no front end known)
            self.start_commissioning(body.get("windows"), body.get("rpm"))
            return [self.birth(now_ms)]
        if op == "commission_end":
            return self.end_commissioning(now_ms)
        if op == "calibrate":
            self.calibration = Calibration(int(body.get("n", 100)), k=self.calibrate_k)
            return []
        if op == "set_threshold":
            if "thr" not in body:
                return []
            self.threshold = float(body["thr"])
            return [self.birth(now_ms)]
        if op == "debug":
            self.debug_request = cid
            self.debug_left = max(1, min(int(body.get("n", 1)), DEBUG_MAX_N))
            return []
        if op == "ping":
            return [self.birth(now_ms)]
        if op == "revert" and self.ota is not None:
            return self.ota_events(self.ota.revert(now_ms / 1000.0, "revert command", body.get("campaign")), now_ms)
        return []  # reboot is handled by the link/fleet

    # --- over-the-air model updates (edgefleet.device.ota_client does the logic) --------------------
    def handle_ota(self, kind: str, body: dict[str, Any], now_ms: int) -> list[Outgoing]:
        """An ota/offer or ota/data message; returns the requests and states to publish."""
        if self.ota is None:
            return []
        now = now_ms / 1000.0
        events = self.ota.offer(body, now) if kind == "ota/offer" else self.ota.chunk(body, now)
        return self.ota_events(events, now_ms)

    def ota_tick(self, now_ms: int) -> list[Outgoing]:
        """OTA timers; a trial (or shadow phase) ends healthy unless more than half its windows
        were anomalous (under the candidate, in shadow)."""
        if self.ota is None:
            return []
        healthy = self.trial_windows < 10 or self.trial_anomalies <= self.trial_windows // 2
        return self.ota_events(self.ota.tick(now_ms / 1000.0, healthy=healthy), now_ms)

    def ota_events(self, events: list[tuple[str, dict]], now_ms: int) -> list[Outgoing]:
        """Wrap the OTA client's messages, and follow a model switch (trial start or revert)."""
        out = []
        for kind, body in events:
            seq = self.ota_seq.get(kind, 0)
            self.ota_seq[kind] = seq + 1
            out.append(Outgoing(self.topics[kind], encode(kind, {"v": PROTOCOL_VERSION, "boot": self.boot,
                                                                  "seq": seq, **body})))
        version = self.ota.current_version() if self.ota else self.model_version
        if version != self.model_version:
            self.model_version = version
            art = self.ota.slots.active_artifact()
            self.threshold = _positive(float(art.scoring.threshold))
            self.trial_windows = self.trial_anomalies = 0
            if self.calibrate_n:
                self.calibration = Calibration(self.calibrate_n, k=self.calibrate_k)
            out.append(self.birth(now_ms))
        art = self.ota.shadow_artifact if self.ota else None
        if (art.model_version if art else None) != self.shadow_model:  # a shadow phase began or ended
            self.shadow_model = art.model_version if art else None
            self.shadow_class_thr = None
            self.shadow_threshold = _positive(float(art.scoring.threshold)) if art else 0.0
            self.trial_windows = self.trial_anomalies = 0
        return out

    def end_commissioning(self, now_ms: int, score=None) -> list[Outgoing]:
        """`commission_end`: finish with the classes that have enough windows (the fleet supplies the
        scoring function through `score_fn`); too few windows: keep commissioning, say why."""
        com, fn = self.commissioner, score or self.score_fn
        if com is None or fn is None:
            return []
        try:
            self.finish_commissioning(com.finish(fn, frontend=self.frontend, learned_ms=now_ms, min_windows=MIN_WINDOWS))
        except BaselineError as exc:
            self.commission_log.append(("too_few_windows", str(exc)))
            return []
        return [self.birth(now_ms)]

    def reboot(self, *, power_cut: bool = False) -> None:
        """New boot: new id, sequences from 0; the ring (RAM) is lost, as on a device. A warm reset
        keeps the old boot's id and last result seq (the firmware's retained RAM record) for the
        births to carry (`prev`), so the store counts the lost tail; a power cut loses that too. The
        record changes only when a seq is assigned: a boot that assigned none passes the older one on."""
        if power_cut:
            self.prev_boot = None
        elif self.result_seq > 0:
            self.prev_boot = (self.boot, self.result_seq - 1)
        self.boot = secrets.token_hex(4)
        self.result_seq = self.status_seq = self.debug_seq = self.summary_seq = 0
        self.summary_acc, self.summary_key = [], None  # the open period was in RAM
        self.dropped = 0
        self.ring.clear()
        self.calibration = None
        self.next_shadow = None
        self.commissioner = None  # learning in RAM is lost; the baseline (flash) is kept
        if self.drift is not None:  # the drift chunk in progress (RAM) is lost; the commissioned centres are kept
            self.drift.count, self.drift.rows = 0, [[] for _ in self.drift.rows]
        self.ensure_commissioning()
        if self.ota is not None:  # a reboot during trial reverts to the previous model
            self.ota_seq.clear()
            now = int(time.time() * 1000)
            self.ota_outbox.extend(self.ota_events(self.ota.boot(now / 1000.0), now))

    def debug_capture(self, ts_ms: int, samples, features, q_in, q_out, score: float) -> Outgoing:
        """The debug message for the window just scored, under the request's id; the request ends
        after its `n` captures (one by default)."""
        body: dict[str, Any] = {
            "v": PROTOCOL_VERSION, "boot": self.boot, "seq": self.debug_seq, "ts": ts_ms,
            "model": self.model_version, "fs": float(self.fs),
            "samples": [float(x) for x in samples], "features": [float(x) for x in features],
            "q_in": [int(x) for x in q_in], "q_out": [int(x) for x in q_out],
            "score": max(0.0, float(score)), "thr": _positive(self.threshold),
            "anom": bool(score > self.threshold)}
        if self.debug_request:
            body["id"] = self.debug_request
        self.debug_seq += 1
        self.debug_left -= 1
        if self.debug_left <= 0:
            self.debug_request, self.debug_left = None, 0
        return Outgoing(self.topics["debug"], encode("debug", body))


def _class_key(extra: tuple | None) -> tuple | None:
    """(class, HI threshold) of a judged ring item: what one result message shares."""
    return (extra[2], extra[3]) if extra is not None and extra[2] is not None else None


def _shadow_key(shadow: tuple | None) -> tuple | None:
    """(model, threshold) of a ring item's shadow outcome: what one result message shares."""
    return shadow[:2] if shadow else None


def _positive(thr: float) -> float:
    """The protocol requires thr > 0: refuse anything else here rather than send a bad message."""
    if not (thr > 0) or not math.isfinite(thr):
        raise ProtocolError("schema", f"threshold must be a positive finite number, got {thr}")
    return float(thr)


__all__ = ["VirtualNode", "Calibration", "Outgoing", "Verdict", "FIRMWARE_VERSION", "MAX_RESULTS_PER_MESSAGE",
           "merge_baseline"]
