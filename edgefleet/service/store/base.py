"""The store interface: telemetry (results, ingest statistics) and registry (devices,
alarms, events, rejected messages, settings).

Two Protocols so a time-series backend (InfluxDB, docs/store.md) can take the telemetry
half while the relational registry stays in SQLite; `Store` is both. All times are
integer milliseconds since the Unix epoch (UTC). Records are plain frozen dataclasses
so the dashboard can turn lists of them into DataFrames directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from edgefleet.protocol import ResultRecord

SEVERITIES = ("warning", "major", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES, start=1)}
HEALTH_STATES = ("ok", "degrading", "alarm", "unknown")
DEVICE_STATUSES = ("online", "offline", "lost", "stale", "unknown")  # stale: online but silent


# ---------- what ingest writes ----------

@dataclass(frozen=True)
class AlarmChange:
    """What the store must do: 'raise' a new alarm, 'update' its severity, or 'clear' it."""

    op: Literal["raise", "update", "clear"]
    device: str
    ts: int  # ms, time of the window that caused the change
    severity: str
    score: float  # score of that window
    thr: float
    peak_score: float  # highest score since the alarm was raised
    why: str | None = None  # raise: the `why` (JSON text) and `hint` of the result that raised it
    hint: str | None = None


@dataclass(frozen=True)
class DeviceHealth:
    device: str
    ts: int  # ms, newest window considered
    ewma_score: float
    slope_per_h: float | None  # d log(score) / dt, per hour; None when too few points
    eta_s: float | None  # seconds until the trend crosses the threshold; 0 if above; None if not rising
    state: str  # one of HEALTH_STATES
    rul_s: float | None = None  # remaining useful life (hinge on the HI ratio, docs/baseline.md), None while not degrading
    rul_low_s: float | None = None
    rul_high_s: float | None = None  # inf: the slow end of the interval is not rising



@dataclass(frozen=True)
class DeviceUpdate:
    """Registry facts from a status message (None: leave as is)."""

    device: str
    ts: int
    status: str | None = None
    boot: str | None = None
    fw: str | None = None
    model: int | None = None
    slot: str | None = None
    thr: float | None = None
    caps: tuple[str, ...] | None = None
    site: str | None = None
    line: str | None = None
    tags: tuple[str, ...] | None = None
    comm: dict | None = None


@dataclass(frozen=True)
class Event:
    """A non-result message kept for the device history (status, ota/state, debug)."""

    device: str
    ts: int
    kind: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Reject:
    """A message refused by the codec: where it came from and why."""

    ts: int
    topic: str
    code: str
    reason: str
    payload: bytes  # the store keeps only the first REJECT_EXCERPT bytes
    size: int


REJECT_EXCERPT = 256


@dataclass
class IngestBatch:
    """Everything decoded from one batch of MQTT messages; written in one commit."""

    ingest_ts: int
    messages: int = 0
    results: list[ResultRecord] = field(default_factory=list)
    devices: list[DeviceUpdate] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    seq_marks: list[tuple[str, str, int, int]] = field(default_factory=list)  # device, boot, res_seq, ts
    summaries: list = field(default_factory=list)  # protocol.SummaryRecord: node summaries (store/summary_sql.py)


@dataclass(frozen=True)
class BatchOutcome:
    stored: int
    duplicates: int
    new: list[ResultRecord]  # the results that were not stored before, in batch order
    refused: list[Reject] = field(default_factory=list)  # older than the raw horizon (store/rollup_sql.py)


# ---------- what the dashboard reads ----------

@dataclass(frozen=True)
class Device:
    device: str
    site: str | None
    line: str | None
    tags: tuple[str, ...]
    status: str  # DEVICE_STATUSES
    boot: str | None
    fw: str | None
    model: int | None
    slot: str | None
    thr: float | None
    caps: tuple[str, ...]
    first_seen: int
    last_seen: int
    results: int
    last_score: float | None
    health: str  # alarms.HEALTH_STATES
    ewma_score: float | None
    slope_per_h: float | None
    eta_s: float | None
    alarm_severity: str | None  # of the active alarm, if any
    comm: dict | None = None  # the status `comm` object: commissioning state and baseline summary
    degrading_since: int | None = None  # ms: when the health left ok (degrading or alarm); None while ok
    rul_s: float | None = None  # remaining useful life at health_ts (DeviceHealth), None while not rising
    rul_low_s: float | None = None
    rul_high_s: float | None = None  # inf: the slow end of the interval is not rising
    health_ts: int | None = None  # ms: newest window of the last health update (what rul_s counts from)

    @property
    def comm_state(self) -> str:
        """'commissioned', 'commissioning', or 'unknown' (a node that never said: older firmware)."""
        return str(self.comm.get("state")) if self.comm else "unknown"


@dataclass(frozen=True)
class Alarm:
    id: int
    device: str
    site: str | None
    line: str | None
    raised_ts: int
    cleared_ts: int | None
    severity: str
    score: float  # at raise
    peak_score: float
    thr: float
    acked_ts: int | None
    acked_by: str | None
    note: str
    reopened: int = 0  # raised again within the hold-off after clearing: the same alarm, counted
    why: str | None = None  # what the result that raised (or reopened) it said: `why` items as JSON text
    hint: str | None = None  # and its fault-type hint (protocol.HINTS); None from nodes that do not say

    @property
    def why_items(self) -> list[dict]:
        """The `why` items ({lo, hi, share} bands or {name, share}), largest share first."""
        return json.loads(self.why) if self.why else []

    @property
    def active(self) -> bool:
        return self.cleared_ts is None


@dataclass(frozen=True)
class RejectRecord:
    id: int
    ts: int
    topic: str
    code: str
    reason: str
    payload: bytes
    size: int


@dataclass(frozen=True)
class SiteHealth:
    site: str  # "" for devices without a site
    devices: int
    online: int
    ok: int
    degrading: int
    alarm: int


@dataclass(frozen=True)
class FleetSummary:
    devices: int
    online: int
    offline: int  # offline or lost or not heard from within the stale window
    active_alarms: int
    unacked_alarms: int
    degrading: int
    models: dict[int, int]  # model version -> devices
    results: int
    rejected: int


@dataclass(frozen=True)
class IngestBucket:
    ts: int  # bucket start
    messages: int
    results: int
    duplicates: int
    rejected: int
    lag_ms_avg: float | None  # node timestamp -> commit
    lag_ms_max: int | None


@dataclass(frozen=True)
class Counts:
    results: int
    devices: int
    alarms: int
    active_alarms: int
    rejected: int
    duplicates: int
    messages: int
    events: int


# ---------- the interface ----------

@runtime_checkable
class TelemetryStore(Protocol):
    def write_results(self, results: list[ResultRecord], ingest_ts: int) -> BatchOutcome:
        """Store results, dropping duplicates by (device, boot, seq); durable on return."""

    def score_history(self, device: str, since_ms: int | None = None, until_ms: int | None = None,
                      limit: int = 10000) -> list[ResultRecord]:
        """A device's results in time order (the newest `limit` in the range)."""

    def recent_results(self, device: str, n: int) -> list[ResultRecord]:
        """The last `n` results of a device by time, oldest first."""

    def count_results(self) -> int: ...

    def shadow_results(self, shadow_model: int, *, device: str | None = None, since_ms: int | None = None,
                       limit: int = 100_000) -> list[ResultRecord]:
        """Results scored in OTA shadow mode by candidate `shadow_model` (the newest `limit`, in
        time order), with both models' outcomes: what a campaign's model-health check compares."""

    def ingest_series(self, since_ms: int, bucket_s: int = 10) -> list[IngestBucket]:
        """Ingest rate, duplicates, rejects and lag per time bucket since `since_ms`."""

    def apply_retention(self, now_ms: int, budget: int | None = None) -> int:
        """Delete telemetry older than the retention setting (raw results; rollups after theirs), in small
        transactions, at most about `budget` rows when given; returns rows deleted."""

    def rollup_rows(self, device: str, width_ms: int, since_ms: int, until_ms: int) -> list[tuple]:
        """A device's 1-minute or 1-hour rollup rows (service/rollups.py COLUMNS) in the range, in time order."""

    def close(self) -> None: ...


@runtime_checkable
class RegistryStore(Protocol):
    def write_registry(self, batch: IngestBatch, outcome: BatchOutcome) -> None:
        """Device registry, events, rejects and ingest statistics of one batch, one commit."""

    def apply_alarm_changes(self, changes: list[AlarmChange], health: list[DeviceHealth]) -> None: ...

    def device(self, device: str) -> Device | None: ...

    def devices(self, site: str | None = None, now_ms: int | None = None,
                stale_s: float = 120.0) -> list[Device]: ...

    def set_device_meta(self, device: str, site: str | None = None, line: str | None = None,
                        tags: tuple[str, ...] | None = None) -> None: ...

    def fleet_summary(self, now_ms: int, stale_s: float = 120.0) -> FleetSummary: ...

    def site_health(self, now_ms: int, stale_s: float = 120.0) -> list[SiteHealth]: ...

    def alarms(self, *, active: bool | None = None, acked: bool | None = None, device: str | None = None,
               site: str | None = None, min_severity: str | None = None, since_ms: int | None = None,
               limit: int = 500) -> list[Alarm]: ...

    def active_alarm(self, device: str) -> Alarm | None: ...

    def ack_alarm(self, alarm_id: int, by: str, ts: int, note: str = "") -> bool:
        """Acknowledge; False if no such alarm or already acknowledged."""

    def events(self, device: str, kind: str | None = None, limit: int = 100) -> list[Event]: ...

    def rejects(self, limit: int = 100, since_ms: int | None = None) -> list[RejectRecord]: ...

    def counts(self) -> Counts: ...

    def loss(self, now_ms: int, device: str | None = None, settle_ms: int = ...) -> dict:
        """Results that never arrived: missing, pending_gaps, dropped_on_node, seq_jumps, per device."""

    def reject_counts(self) -> dict[str, int]:
        """Rejected messages per reason code."""

    def retention_days(self) -> float: ...

    def set_retention_days(self, days: float) -> None: ...


@runtime_checkable
class Store(TelemetryStore, RegistryStore, Protocol):
    """Telemetry and registry together: what ingest and the dashboard use."""

    def write_batch(self, batch: IngestBatch) -> BatchOutcome:
        """Results, then registry of one ingest batch; everything durable on return."""


def device_rollup(batch: IngestBatch, outcome: BatchOutcome
                  ) -> tuple[dict[str, list[Any]], int, int, int | None]:
    """What a batch's new results change in the device registry, per device [first ts, last ts, count,
    last score, model, thr], and the ingest lag over them (sum, count, max ms); every backend writes it."""
    per_dev: dict[str, list[Any]] = {}
    lag_sum = lag_n = 0
    lag_max: int | None = None
    for r in outcome.new:
        lag = batch.ingest_ts - r.ts
        lag_sum += lag
        lag_n += 1
        lag_max = lag if lag_max is None or lag > lag_max else lag_max
        d = per_dev.get(r.device)
        if d is None:
            per_dev[r.device] = [r.ts, r.ts, 1, r.score, r.model, r.thr]
        else:
            d[0] = min(d[0], r.ts)
            d[2] += 1
            if r.ts >= d[1]:
                d[1], d[3], d[4], d[5] = r.ts, r.score, r.model, r.thr
    return per_dev, lag_sum, lag_n, lag_max


def device_update_columns(u: DeviceUpdate) -> dict[str, Any]:
    """The devices-table columns a status or birth sets (those it carries; lists and dicts as JSON)."""
    fields = {"boot": u.boot, "fw": u.fw, "model": u.model, "slot": u.slot, "thr": u.thr,
              "caps": None if u.caps is None else json.dumps(list(u.caps)),
              "site": u.site, "line": u.line,
              "tags": None if u.tags is None else json.dumps(list(u.tags)),
              "comm": None if u.comm is None else json.dumps(u.comm, separators=(",", ":"))}
    sets = {k: v for k, v in fields.items() if v is not None}
    if u.status is not None:
        sets["status"], sets["status_ts"] = u.status, u.ts
    return sets
