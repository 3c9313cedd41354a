"""`edgefleet doctor`: check a deployment for the settings that lose data without a trace.

A fleet loses results quietly in a few places: a broker that drops what it queues for an absent
ingest session (Mosquitto keeps 1,000 messages by default), refuses large messages, or forgets
sessions; a store that cannot be written, is of another schema version or fills its disk; device
clocks so far off that retention deletes what was just stored. Each check here measures one of
these on the running deployment and says how to fix it (docs/doctor.md).

The broker is probed with MQTT traffic, never by reading its config: the config on disk may not be
the one running, and the doctor may run on another host. Every probe uses its own client ids
(`ef-doctor-<random>-...`) and topics under a private prefix (`ef-doctor/<random>/...`), ends the
persistent sessions it creates and clears the retained message it leaves. A broker whose ACL keeps
the doctor out is reported as "could not probe: not authorized", not as a failing check.

The store is opened read-only (the file, and no -wal/-shm files created), so the doctor can run
beside `edgefleet serve`.

Probe functions take host, port and credentials and return a small frozen dataclass; `check_*`
functions turn one probe result (or store facts) into a `Check`; `run_doctor` runs them all.
"""

from __future__ import annotations

from edgefleet.service.doctor.broker_checks import (
    check_connect, check_message_size, check_queue, check_retained, check_session, check_shared, run_broker_checks,
)
from edgefleet.service.doctor.clocks import DeviceSkew, check_clock, device_skews, run_doctor, run_store_checks
from edgefleet.service.doctor.probes import (
    probe_connect, probe_message_size, probe_offline_queue, probe_persistent_session, probe_retained,
    probe_shared_subscription,
)
from edgefleet.service.doctor.report import (
    DEFAULT_BURST, DEFAULT_CLOCK_SAMPLES, DEFAULT_TIMEOUT_S, STATUSES, Check, Report,
)
from edgefleet.service.doctor.store_checks import (
    StoreFacts, check_disk, check_schema, check_store_file, check_wal, disk_runway_days, inspect_store,
)

__all__ = [
    "DEFAULT_BURST", "DEFAULT_CLOCK_SAMPLES", "DEFAULT_TIMEOUT_S", "STATUSES", "Check", "DeviceSkew", "Report",
    "StoreFacts", "check_clock", "check_connect", "check_disk", "check_message_size", "check_queue",
    "check_retained", "check_schema", "check_session", "check_shared", "check_store_file", "check_wal",
    "device_skews", "disk_runway_days", "inspect_store", "probe_connect", "probe_message_size",
    "probe_offline_queue", "probe_persistent_session", "probe_retained", "probe_shared_subscription",
    "run_broker_checks", "run_doctor", "run_store_checks",
]
