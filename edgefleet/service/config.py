"""One place for the fleet service's settings: defaults, overridden by EDGEFLEET_* environment
variables, overridden by command-line options. Checked at load time with exact messages."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from edgefleet.errors import ConfigError
from edgefleet.protocol import MAX_PAYLOAD
from edgefleet.protocol.connect import (
    TlsFiles,
    broker_credentials,
    client_tls,
    parse_broker_url,
    redact,
)

__all__ = ["DEFAULT_DB", "ConfigError", "Settings", "broker_credentials", "default_db", "load_settings",
           "parse_broker_url", "parse_failure_hi"]

ENV_PREFIX = "EDGEFLEET_"
# The one default store of every command (serve, stats, ota, commission, the dashboard); relative to
# the working directory. `edgefleet demo` keeps its own store under var/demo/ and names it in its hints.
DEFAULT_DB = "var/edgefleet.db"


def default_db(env: Mapping[str, str] | None = None) -> str:
    """$EDGEFLEET_DB, else DEFAULT_DB: what a command uses when no --db is given."""
    env = os.environ if env is None else env
    return env.get(ENV_PREFIX + "DB") or DEFAULT_DB


@dataclass(frozen=True)
class Settings:
    """Every field can be set as EDGEFLEET_<FIELD NAME IN CAPITALS>, e.g. EDGEFLEET_BROKER_URL."""

    broker_url: str = "mqtt://127.0.0.1:1883"
    # credentials outside the URL, so no password sits in argv or a log line (EDGEFLEET_BROKER_PASSWORD)
    broker_username: str = ""
    broker_password: str = ""
    # mqtts:// only: the CA of the broker's certificate (empty: system store), our certificate and key
    # for mutual TLS (EDGEFLEET_MQTT_CA, EDGEFLEET_MQTT_CERT, EDGEFLEET_MQTT_KEY; docs/security.md)
    mqtt_ca: str = ""
    mqtt_cert: str = ""
    mqtt_key: str = ""
    db: str = DEFAULT_DB
    mqtt_version: str = "auto"  # "5", "3.1.1" (the amqtt fallback broker) or "auto": try 5, then 3.1.1
    # shared-subscription group: ingest processes in one group split the load. Default "" = a plain
    # subscription, because Mosquitto 2.0.11 does not restore shared subscriptions after a restart
    # (messages published before ingest re-subscribes are lost; docs/store.md). Set a group only
    # when running several ingest processes.
    ingest_group: str = ""
    ingest_client_id: str = "ef-ingest-1"  # stable: the broker keeps this session while we are away
    session_expiry_s: int = 7 * 24 * 3600
    receive_max: int = 2000  # QoS 1 messages the broker may have in flight to ingest (unacked)
    batch_max: int = 1000  # messages per commit
    batch_ms: int = 50  # longest wait to fill a batch
    # 1: a second thread decodes the next batch while the worker writes, commits and acknowledges the one
    # before; 0: one thread does both in turn. Off by default: no gain beyond the noise on this machine
    # (docs/store.md, "What limits the end-to-end rate")
    ingest_overlap: int = 0
    ingest_trace: str = ""  # a file: one JSON line per batch with its phase times (service/ingest_phases.py)
    max_payload: int = MAX_PAYLOAD
    sqlite_sync: str = "FULL"  # FULL: a commit survives power loss before we acknowledge
    retention_days: float = 0.0  # 0: keep the store's setting (default 30 days)
    alarm_k: int = 3
    alarm_n: int = 5
    alarm_m: int = 5
    # the fleet's failure level for remaining life, as "low,typical,high" HI ratios at failure
    # (`benchmarks/run_to_failure.py --calibrate` on the fleet's own failures); empty: the shipped
    # calibration, AlarmPolicy.failure_hi (docs/baseline.md, "Remaining life")
    failure_hi: str = ""
    health_interval_s: float = 5.0  # recompute a device's trend at most this often
    stats_interval_s: float = 10.0  # ingest logs its rates this often
    influx_url: str = ""  # InfluxDB 2 telemetry backend when set (docs/store.md)
    influx_token: str = ""
    influx_org: str = ""
    influx_bucket: str = "edgefleet"
    notify_config: str = ""  # alarm notifications: a TOML file of channels and routes (docs/notifications.md)

    def failure_levels(self) -> tuple[float, float, float] | None:
        """failure_hi as (low, typical, high); None: the shipped calibration."""
        return parse_failure_hi(self.failure_hi) if self.failure_hi.strip() else None

    def alarm_policy(self):
        """The alarm rules these settings ask for (k of n, m, the failure level; the rest as shipped)."""
        from edgefleet.service.alarms import AlarmPolicy

        levels = self.failure_levels()
        return AlarmPolicy(k=self.alarm_k, n=self.alarm_n, m=self.alarm_m, **({"failure_hi": levels} if levels else {}))

    @property
    def broker_host_port(self) -> tuple[str, int]:
        return self.broker_members[0]

    @property
    def broker_members(self) -> list[tuple[str, int]]:
        """(host, port) of each broker: broker_url may list a cluster's members, comma-separated
        (docs/brokers.md); ingest starts on the first and moves to the next when it fails."""
        from edgefleet.service.cluster import parse_member_urls

        return parse_member_urls(self.broker_url)

    def credentials(self) -> tuple[str | None, str | None]:
        """(user, password): from the (first) URL if it has them, else from broker_username/broker_password."""
        user, password = broker_credentials(self.broker_url.split(",")[0].strip())
        return (user or self.broker_username or None, password or self.broker_password or None)

    def tls(self):
        """The client TLS context for an mqtts:// broker URL, None for mqtt://."""
        return client_tls(self.broker_url, TlsFiles(self.mqtt_ca or None, self.mqtt_cert or None,
                                                    self.mqtt_key or None))

    @property
    def broker_display(self) -> str:
        """The broker URL as it may be logged: without its password."""
        return ",".join(redact(u.strip()) for u in self.broker_url.split(","))


def parse_failure_hi(raw: str) -> tuple[float, float, float]:
    """'low,typical,high' HI ratios at failure, each finite, 1 < low <= typical <= high."""
    parts = [p.strip() for p in raw.split(",")]
    try:
        lo, mid, hi = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"failure_hi {raw!r}: expected three numbers low,typical,high (HI ratios at failure, "
                          "e.g. 4.5,6.6,8.5)") from None
    if not (1.0 < lo <= mid <= hi and math.isfinite(hi)):
        raise ConfigError(f"failure_hi {raw!r}: need 1 < low <= typical <= high, finite (a machine fails above "
                          "its HI limit, ratio 1)")
    return lo, mid, hi


def _convert(name: str, kind: Any, raw: str) -> Any:
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r}: expected a {kind if isinstance(kind, str) else kind.__name__}") from None
    return raw


def _check(s: Settings) -> Settings:
    s.broker_members  # noqa: B018 (each member's URL checked, one scheme for all)
    if s.mqtt_version not in ("auto", "5", "3.1.1"):
        raise ConfigError(f"mqtt_version must be auto, 5 or 3.1.1, got {s.mqtt_version!r}")
    if not (1 <= s.receive_max <= 65535):
        raise ConfigError(f"receive_max must be 1..65535 (MQTT packet ids are 16-bit), got {s.receive_max}")
    if not (1 <= s.batch_max <= s.receive_max):
        raise ConfigError(f"batch_max must be 1..receive_max ({s.receive_max}), got {s.batch_max}: "
                          "a batch waits for its messages, so it cannot hold more than may be in flight")
    if s.ingest_overlap not in (0, 1):
        raise ConfigError(f"ingest_overlap must be 0 or 1, got {s.ingest_overlap}")
    if s.batch_ms < 1 or s.session_expiry_s < 0 or s.max_payload < 64:
        raise ConfigError("batch_ms >= 1, session_expiry_s >= 0 and max_payload >= 64 are required")
    if s.sqlite_sync.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError(f"sqlite_sync must be OFF, NORMAL, FULL or EXTRA, got {s.sqlite_sync!r}")
    if not (1 <= s.alarm_k <= s.alarm_n) or s.alarm_m < 1:
        raise ConfigError(f"alarms need 1 <= k <= n and m >= 1 (k={s.alarm_k}, n={s.alarm_n}, m={s.alarm_m})")
    if s.failure_hi.strip():
        parse_failure_hi(s.failure_hi)
    if s.retention_days < 0:
        raise ConfigError(f"retention_days must be >= 0, got {s.retention_days}")
    for name in ("ingest_group", "ingest_client_id"):
        value = getattr(s, name)
        if (not value and name != "ingest_group") or any(c in value for c in "/+#"):
            raise ConfigError(f"{name} {value!r} must be non-empty without '/', '+' or '#'")
    return s


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults < EDGEFLEET_* environment < keyword overrides (None values are ignored)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is not None and raw != "":
            values[f.name] = _convert(f.name, f.type, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(values) - {f.name for f in fields(Settings)}
    if unknown:
        raise ConfigError(f"unknown settings {sorted(unknown)}")
    return _check(replace(Settings(), **values))
