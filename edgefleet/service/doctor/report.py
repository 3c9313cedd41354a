"""The report: one `Check` per line of the checklist, and the settings every check shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

STATUSES = ("pass", "fail", "warn", "skip")
PREFIX = "ef-doctor"  # topics and client ids of the probes
DEFAULT_BURST = 2000  # above Mosquitto's default queue (1,000), so that default fails
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_CLOCK_SAMPLES = 20  # latest results per device for the clock check
CLOCK_WARN_S = 60.0
DISK_WARN_DAYS = 7.0
DISK_FAIL_DAYS = 1.0
SESSION_EXPIRY_S = 120  # a probe session the doctor could not end (killed) expires on its own
SHARED_MESSAGES = 20
BURST_WINDOW = 100  # QoS 1 messages in flight in a burst, unless the broker's Receive Maximum is lower
RC_NOT_AUTHORIZED = (0x86, 0x87, 0x8C)  # bad user name or password, not authorized, bad auth method
SIZE_STEPS = 10  # publishes spent finding the largest payload a refusing broker takes

Progress = Callable[[str], None]

NOT_AUTHORIZED_FIX = (f"let the doctor's user publish and subscribe on {PREFIX}/# and $share/+/{PREFIX}/# "
                      f"(Mosquitto ACL: `user NAME` then `topic readwrite {PREFIX}/#`), or run it with the "
                      "credentials of a user who may (mqtt://user:password@host or EDGEFLEET_BROKER_USERNAME/"
                      "EDGEFLEET_BROKER_PASSWORD)")

# ---------------------------------------------------------------- the report

@dataclass(frozen=True)
class Check:
    """One line of the checklist. `fix` says what to change when status is fail, warn or skip."""

    name: str
    status: str  # pass | fail | warn | skip
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


@dataclass(frozen=True)
class Report:
    """All checks; `ok` is False when one of them failed (something would lose data)."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def _quiet(_msg: str) -> None:
    """The default progress callback: say nothing."""


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"
