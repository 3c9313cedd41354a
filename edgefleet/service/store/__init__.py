"""Telemetry and registry storage behind one interface (`Store`); SQLite is the default backend,
PostgreSQL the shared one (`--db postgresql://...`)."""

from __future__ import annotations

from pathlib import Path

from edgefleet.service.store.base import (
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
from edgefleet.service.store.sqlite import SQLiteStore, StoreError
from edgefleet.service.store.url import is_db_url, mask_url


def open_store(db: str | Path, *, synchronous: str = "FULL", influx: dict | None = None) -> Store:
    """Open the store at `db`: a SQLite file path (created if missing), or a PostgreSQL URL
    (postgresql://user:password@host:port/dbname; the schema is created or migrated on connect).

    With `influx` (url, token, org, bucket: from EDGEFLEET_INFLUX_* settings) results also go to
    InfluxDB 2 and score queries read from it; the registry stays in the SQLite file.
    """
    if is_db_url(db):
        if influx and influx.get("url"):
            raise StoreError(f"InfluxDB telemetry (EDGEFLEET_INFLUX_URL) goes beside a SQLite ledger only, not "
                             f"{mask_url(db)}: unset EDGEFLEET_INFLUX_URL or use a SQLite --db")
        from edgefleet.service.store.postgres import PostgresStore

        return PostgresStore(str(db).strip(), synchronous=synchronous)
    if influx and influx.get("url"):
        from edgefleet.service.store.influx import InfluxStore

        return InfluxStore(db, url=influx["url"], token=influx.get("token", ""), org=influx.get("org", ""),
                           bucket=influx.get("bucket") or "edgefleet", synchronous=synchronous,
                           reads=influx.get("reads", "influx"))
    return SQLiteStore(db, synchronous=synchronous)


__all__ = [
    "DEVICE_STATUSES", "Alarm", "BatchOutcome", "Counts", "Device", "DeviceUpdate", "Event", "FleetSummary",
    "IngestBatch", "IngestBucket", "RegistryStore", "Reject", "RejectRecord", "SQLiteStore", "SiteHealth",
    "Store", "StoreError", "TelemetryStore", "is_db_url", "mask_url", "open_store",
]
