"""Rollout campaigns as pure decisions: who is in which stage, and what to do next.

The manager feeds the per-device OTA states and the canaries' anomaly rates;
`decide` answers advance, wait, complete or abort (with the reason). Nothing
here touches MQTT or the database.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from edgefleet.errors import EdgefleetError

# A device's state in a campaign, as its `ota/state` reports say (docs/ota.md) plus the manager's
# own `timeout`, in progress order. The one list: the manager, the registry, the CLI and the
# dashboard all read these sets.
IN_FLIGHT_ORDER = ("offered", "accepted", "downloading", "verifying", "shadow", "trial")
DEVICE_STATES = ("confirmed", "trial", "shadow", "verifying", "downloading", "accepted", "offered",
                 "rejected", "failed", "reverted", "timeout")
TERMINAL_OK = frozenset({"confirmed"})
TERMINAL_BAD = frozenset({"rejected", "failed", "reverted", "timeout"})
IN_FLIGHT = frozenset(IN_FLIGHT_ORDER)
RUNS_CANDIDATE = frozenset({"trial", "confirmed"})  # its results come from the campaign's model
NOT_STARTED = frozenset({"offered", "accepted", "downloading"})  # on abort: nothing to revert yet
ROLLBACK = IN_FLIGHT | TERMINAL_OK  # on abort: told to revert (or to stop)

Rates = dict[str, tuple[float, float, int]]  # device -> (old model's anomaly rate, new model's, new windows)
# What the health check reads, shared by the manager and the dashboard so they see the same windows:
HEALTH_LOOKBACK_MS = 3_600_000  # before/after results from an hour before the campaign's first offer
RESULTS_LIMIT = 2000  # newest results per device
SHADOW_LIMIT = 50_000  # newest shadow-scored windows of the campaign


def retryable(state: str, reason: str) -> bool:
    """A failure the device did not choose: a download that gave up (lost or corrupted chunks,
    a broker outage) or a trial cut short by a reboot. The manager offers the model again
    (up to `Policy.retries` times) instead of counting the device as failed. A rejection, an
    unhealthy trial or a cancelled transfer is a verdict and is not retried."""
    if state == "failed":
        return not reason.startswith("cancelled")
    return state == "reverted" and "reboot" in reason


@dataclass(frozen=True)
class Target:
    """`all`, `site=S`, `line=L` or `tag=T`."""

    kind: str
    value: str = ""

    @classmethod
    def parse(cls, text: str) -> Target:
        if text == "all":
            return cls("all")
        key, sep, value = text.partition("=")
        if not sep or key not in ("site", "line", "tag") or not value:
            raise EdgefleetError(f"target {text!r}: use all, site=NAME, line=NAME or tag=NAME")
        return cls(key, value)

    def matches(self, device: dict) -> bool:
        if self.kind == "all":
            return True
        if self.kind == "tag":
            return self.value in (device.get("tags") or [])
        return device.get(self.kind) == self.value

    def __str__(self) -> str:
        return "all" if self.kind == "all" else f"{self.kind}={self.value}"


def parse_stages(text: str) -> list[float]:
    """'5%,25%,100%' -> [0.05, 0.25, 1.0]; ascending, ending at 100%."""
    try:
        stages = [float(p.strip().rstrip("%")) / 100.0 for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise EdgefleetError(f"stages {text!r}: use percentages like 5%,25%,100%") from exc
    if not stages or any(not 0 < s <= 1 for s in stages) or stages != sorted(stages) or stages[-1] != 1.0:
        raise EdgefleetError(f"stages {text!r} must ascend within (0%, 100%] and end at 100%")
    return stages


def parse_ratio(text: str, suffix: str) -> float:
    try:
        return float(text.strip().rstrip(suffix)) / (100.0 if suffix == "%" else 1.0)
    except ValueError as exc:
        raise EdgefleetError(f"{text!r} is not a number with {suffix}") from exc


# Upper bounds of a campaign's durations. A node takes a trial or shadow phase of at most 7 days
# (trial_s and shadow_s in protocol/ota_offer.schema.json); a stage timeout of "forever" would let a
# silent device hold a campaign for good, an offer re-sent "never" would strand a lost one.
MAX_PHASE_MIN = 7 * 24 * 60.0
MAX_STAGE_TIMEOUT_MIN = 30 * 24 * 60.0
MAX_OFFER_RESEND_S = 24 * 3600.0


def _check_duration(name: str, value: float, unit: str, upper: float, upper_says: str, rule: str,
                    zero_ok: bool = False) -> None:
    """Refuse a duration that is not a finite number, not above zero (or at least zero with `zero_ok`),
    or above `upper`, in one line naming the setting."""
    ok = math.isfinite(value) and (value >= 0 if zero_ok else value > 0) and value <= upper
    if not ok:
        raise EdgefleetError(f"{name}: got {value:g} {unit}; {rule}, at most {upper:g} ({upper_says})")


@dataclass
class Policy:
    stages: list[float]
    abort_failures: float = 0.10  # fraction of a stage's devices
    abort_anomaly_shift: float = 3.0  # new-model anomaly rate over old, in the canaries
    anomaly_floor: float = 0.02  # an old rate below this counts as this (avoid 0 -> anything)
    min_windows: int = 20  # per canary before its anomaly rate counts
    stage_timeout_s: float = 600.0
    trial_s: int = 60
    shadow: bool = False
    shadow_s: int = 0  # with shadow: the shadow phase before the trial (old model active, both scored)
    retries: int = 3  # offers again per device after a retryable failure (see `retryable`)
    offer_resend_s: float = 30.0  # re-publish an offer not answered for this long (a lost retained message)

    @classmethod
    def from_user(cls, stages: str, *, trial_min: float = 1.0, shadow_min: float = 0.0,
                  abort_failures: float = 0.10, abort_anomaly_shift: float = 3.0, stage_timeout_min: float = 10.0,
                  retries: int = 3, offer_resend_s: float = 30.0) -> "Policy":
        """A policy from the units people type (minutes, a fraction, a factor), validated with
        messages that name the setting. `edgefleet ota rollout` and the dashboard's start form
        both build campaigns through here."""
        if not 0 <= abort_failures < 1:
            raise EdgefleetError(f"abort-failures must be in [0%, 100%), got {abort_failures:.0%}")
        if not abort_anomaly_shift > 1:
            raise EdgefleetError(f"abort-anomaly-shift must be above 1x, got {abort_anomaly_shift:g}x")
        _check_duration("trial", trial_min, "minutes", MAX_PHASE_MIN, "7 days, the longest a node accepts",
                        "trial and shadow must be zero or positive minutes", zero_ok=True)
        _check_duration("shadow", shadow_min, "minutes", MAX_PHASE_MIN, "7 days, the longest a node accepts",
                        "trial and shadow must be zero or positive minutes", zero_ok=True)
        _check_duration("stage-timeout", stage_timeout_min, "minutes", MAX_STAGE_TIMEOUT_MIN, "30 days",
                        "stage timeout must be positive minutes")
        if retries < 0:
            raise EdgefleetError(f"retries: got {retries}; retries must be zero or more")
        _check_duration("offer-resend", offer_resend_s, "seconds", MAX_OFFER_RESEND_S, "1 day",
                        "want offer-resend positive seconds")
        return cls(stages=parse_stages(stages), abort_failures=abort_failures, abort_anomaly_shift=abort_anomaly_shift,
                   stage_timeout_s=stage_timeout_min * 60, trial_s=int(round(60 * trial_min)),
                   shadow=shadow_min > 0, shadow_s=int(round(60 * shadow_min)),
                   retries=int(retries), offer_resend_s=float(offer_resend_s))


def rollout_order(devices: list[str], campaign_id: str) -> list[str]:
    """A stable pseudo-random order, so canaries spread over sites and lines."""
    return sorted(devices, key=lambda d: hashlib.sha256(f"{campaign_id}/{d}".encode()).digest())


def stage_size(n_devices: int, fraction: float) -> int:
    return min(n_devices, max(1, math.ceil(n_devices * fraction)))


@dataclass
class Decision:
    action: str  # "wait", "advance", "complete", "abort"
    reason: str = ""
    timed_out: list[str] = field(default_factory=list)


def before_after_rates(rows: Iterable[tuple[int, bool]], model: int) -> tuple[float, float, int] | None:
    """One device's (anomaly rate under other models, under `model`, windows under `model`) from its
    (model, anomalous) results; None until it has results under both."""
    old = [a for m, a in rows if m != model]
    new = [a for m, a in rows if m == model]
    if not old or not new:
        return None
    return sum(old) / len(old), sum(new) / len(new), len(new)


def health_rates(states: dict[str, str], before_after: Rates, shadow: Rates) -> Rates:
    """The rates the canary check uses, per device. Shadow outcomes (both models on the same windows)
    win where a device has them; otherwise its rate before vs after the switch, and only while it
    runs the candidate (`RUNS_CANDIDATE`): a device that reverted or has not switched says nothing
    about the new model."""
    rates = {d: r for d, r in before_after.items() if states.get(d) in RUNS_CANDIDATE}
    rates.update({d: r for d, r in shadow.items() if d in states})
    return rates


def shadow_rates(rows: list[tuple[str, bool, bool]], devices: set[str]) -> Rates:
    """Per device: (old model's anomaly rate, candidate's, windows) over the windows both scored."""
    n: dict[str, list[int]] = {}
    for device, old, new in rows:
        if device in devices:
            acc = n.setdefault(device, [0, 0, 0])
            acc[0] += old
            acc[1] += new
            acc[2] += 1
    return {d: (o / k, w / k, k) for d, (o, w, k) in n.items()}


@dataclass(frozen=True)
class CanaryHealth:
    """The model-health check over the devices that count (`min_windows` under the new model)."""

    devices: int
    old_rate: float  # mean, floored at the policy's anomaly_floor
    new_rate: float
    limit: float  # abort when new_rate > limit * old_rate

    @property
    def shift(self) -> float:
        return self.new_rate / self.old_rate

    @property
    def failed(self) -> bool:
        return self.new_rate > self.limit * self.old_rate


def canary_health(policy: Policy, rates: Rates, members: Iterable[str] | None = None) -> CanaryHealth | None:
    """Mean anomaly rates of the counted devices (of `members`, when given); None before any counts."""
    keep = set(rates) if members is None else set(members)
    rows = [r for d, r in rates.items() if d in keep and r[2] >= policy.min_windows]
    if not rows:
        return None
    old = max(sum(r[0] for r in rows) / len(rows), policy.anomaly_floor)
    new = sum(r[1] for r in rows) / len(rows)
    return CanaryHealth(len(rows), old, new, policy.abort_anomaly_shift)


def decide(policy: Policy, stage: int, ordered: list[str], states: dict[str, str],
           offered_at: dict[str, float], now: float,
           anomaly: Rates | None = None) -> Decision:
    """Next step for a campaign at `stage` (0-based).

    `anomaly[device] = (old_rate, new_rate, new_windows)` for devices running the
    new model; the canary health check compares their mean rates.
    """
    members = ordered[:stage_size(len(ordered), policy.stages[stage])]
    timed_out = [d for d in members
                 if states.get(d, "offered") in IN_FLIGHT and d in offered_at
                 and now - offered_at[d] > policy.stage_timeout_s + policy.shadow_s]  # shadow: longer
    st = {d: ("timeout" if d in timed_out else states.get(d, "offered")) for d in members}
    bad = [d for d in members if st[d] in TERMINAL_BAD]
    if members and len(bad) / len(members) > policy.abort_failures:
        return Decision("abort", f"{len(bad)} of {len(members)} devices failed in stage {stage + 1} "
                        f"(limit {policy.abort_failures:.0%})", timed_out)
    health = canary_health(policy, anomaly or {}, members)
    if health is not None and health.failed:
        return Decision("abort", f"model health: anomaly rate {health.new_rate:.1%} under the new model vs "
                        f"{health.old_rate:.1%} before (limit {health.limit:g}x)", timed_out)
    if any(st[d] not in TERMINAL_OK | TERMINAL_BAD for d in members):
        return Decision("wait", timed_out=timed_out)
    if stage + 1 >= len(policy.stages):
        return Decision("complete", timed_out=timed_out)
    return Decision("advance", timed_out=timed_out)
