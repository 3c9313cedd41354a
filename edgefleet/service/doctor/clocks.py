"""Device clocks against the time ingest received their results, and running every check."""

from __future__ import annotations

import sqlite3
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.service.doctor.broker_checks import run_broker_checks
from edgefleet.service.doctor.report import (
    CLOCK_WARN_S,
    DEFAULT_BURST,
    DEFAULT_CLOCK_SAMPLES,
    DEFAULT_TIMEOUT_S,
    Check,
    Progress,
    Report,
    _quiet,
)
from edgefleet.service.doctor.store_checks import (
    _read_only,
    check_disk,
    check_schema,
    check_store_file,
    check_wal,
    inspect_store,
)
from edgefleet.service.store.sqlite import DEFAULT_RETENTION_DAYS
from edgefleet.service.store.url import is_db_url, mask_url

# ---------------------------------------------------------------- clocks

@dataclass(frozen=True)
class DeviceSkew:
    """ingest_ts - ts over a device's latest results, ms: positive = the device's clock is behind
    (or its results were delayed on the way), negative = ahead."""

    device: str
    n: int
    median_ms: float
    worst_ms: int


def device_skews(db: str | Path, samples: int = DEFAULT_CLOCK_SAMPLES) -> list[DeviceSkew]:
    """Skew of each device from its latest `samples` results (by the results_device_ts index: a device
    whose clock is far behind still shows, which a global 'latest by ts' would miss)."""
    out = []
    with _read_only(Path(db)) as conn:
        devices = [r[0] for r in conn.execute("SELECT DISTINCT device FROM devices")]
        for dev in devices:
            rows = conn.execute("SELECT ingest_ts - ts FROM results WHERE device = ? ORDER BY ts DESC LIMIT ?",
                                (dev, samples)).fetchall()
            if rows:
                lags = [int(r[0]) for r in rows]
                out.append(DeviceSkew(dev, len(lags), statistics.median(lags), max(lags, key=abs)))
    return out


def check_clock(skews: list[DeviceSkew], retention_days: float = DEFAULT_RETENTION_DAYS) -> Check:
    name = "clock.skew"
    if not skews:
        return Check(name, "skip", "no results in the store to compare device time with ingest time")
    off = sorted((s for s in skews if abs(s.median_ms) > CLOCK_WARN_S * 1000), key=lambda s: -abs(s.median_ms))
    worst = max(skews, key=lambda s: abs(s.median_ms))
    summary = f"{len(skews)} devices; worst {worst.device}: median {_human_s(worst.median_ms)}, " \
              f"worst {_human_s(worst.worst_ms)} (ingest time - device time)"
    if not off:
        return Check(name, "pass", summary)
    names = ", ".join(f"{s.device} ({_human_s(s.median_ms)})" for s in off[:5]) + (", ..." if len(off) > 5 else "")
    fix = ("run NTP (chrony, systemd-timesyncd) wherever nodes get their time: on the node, or on the host of "
           "its `edgefleet bridge` (an MCU node takes the bridge's clock at hello, then counts its own "
           "milliseconds and drifts: restart the bridge to resync it); results carry the device's time, so "
           "retention, alarms and charts go by it")
    if any(s.median_ms > retention_days * 86_400_000 for s in off):
        return Check(name, "fail", f"{len(off)} device(s) off by more than {CLOCK_WARN_S:g} s: {names}; some are "
                     f"behind by more than the retention ({retention_days:g} days), so their results are deleted "
                     "at the next retention run", fix)
    return Check(name, "warn", f"{len(off)} of {len(skews)} device(s) off by more than {CLOCK_WARN_S:g} s: {names}",
                 fix)


# ---------------------------------------------------------------- all of it

def run_store_checks(db: str | Path, *, now: int | None = None,
                     clock_samples: int = DEFAULT_CLOCK_SAMPLES) -> list[Check]:
    """The store checks and the clock check (which reads the store's results)."""
    if is_db_url(str(db)):
        from edgefleet.service.doctor.pg_checks import run_pg_checks

        return run_pg_checks(str(db))
    facts = inspect_store(db, now)
    clock = Check("clock.skew", "skip", "no store with results to read")
    if facts.exists and not facts.error and {"results", "devices"} <= facts.tables:
        try:
            clock = check_clock(device_skews(db, clock_samples), facts.retention_days)
        except sqlite3.DatabaseError as exc:  # e.g. serve began writing the file we read immutable
            clock = Check("clock.skew", "skip", f"could not read the results: {exc}", "run the doctor again")
    return [check_store_file(facts), check_wal(facts), check_schema(facts), check_disk(facts), clock]


def run_doctor(*, host: str | None, port: int | None, db: str | Path | None, username: str | None = None,
               password: str | None = None, burst: int = DEFAULT_BURST, timeout: float = DEFAULT_TIMEOUT_S,
               clock_samples: int = DEFAULT_CLOCK_SAMPLES, progress: Progress = _quiet,
               tls: Any = None, tls_files: Any = None) -> Report:
    """The broker checks (when host is given; over TLS with `tls`, an ssl.SSLContext, and the
    TlsFiles it came from), then the store and clock checks (when db is given)."""
    checks: list[Check] = []
    if host is not None and port is not None:
        checks += run_broker_checks(host, port, username=username, password=password, burst=burst,
                                    timeout=timeout, progress=progress, tls=tls, tls_files=tls_files)
    if db is not None:
        progress(f"store {mask_url(str(db))}")
        checks += run_store_checks(db, clock_samples=clock_samples)
    return Report(tuple(checks))


def _human_s(ms: float) -> str:
    s = ms / 1000
    if abs(s) < 120:
        return f"{s:+.1f} s"
    if abs(s) < 7200:
        return f"{s / 60:+.1f} min"
    if abs(s) < 172800:
        return f"{s / 3600:+.1f} h"
    return f"{s / 86400:+.1f} days"
