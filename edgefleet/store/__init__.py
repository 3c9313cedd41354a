"""Telemetry and registry storage behind one interface (`Store`); SQLite is the default backend."""

from __future__ import annotations

from pathlib import Path

from edgefleet.store.base import (
    DEVICE_STATUSES,
    Alarm,
    BatchOutcome,
    Counts,
    Device,
    DeviceUpdate,
    Event,
    FleetSummary,
    IngestBatch,
    IngestBucket,
    RegistryStore,
    Reject,
    RejectRecord,
    SiteHealth,
    Store,
    TelemetryStore,
)
from edgefleet.store.sqlite import SQLiteStore, StoreError


def open_store(db: str | Path, *, synchronous: str = "FULL") -> Store:
    """Open the store at `db` (a SQLite file path; created if missing)."""
    return SQLiteStore(db, synchronous=synchronous)


__all__ = [
    "DEVICE_STATUSES", "Alarm", "BatchOutcome", "Counts", "Device", "DeviceUpdate", "Event", "FleetSummary",
    "IngestBatch", "IngestBucket", "RegistryStore", "Reject", "RejectRecord", "SQLiteStore", "SiteHealth",
    "Store", "StoreError", "TelemetryStore", "open_store",
]
