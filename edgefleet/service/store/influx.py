"""InfluxDB 2 telemetry backend (`influx-client`), with the registry kept in SQLite.

Results go to InfluxDB as line protocol through the *synchronous* write API,
inside the SQLite transaction that records them: if InfluxDB does not accept a
batch, the transaction rolls back, `write_batch` raises, and ingest does not
acknowledge the MQTT messages, so the broker redelivers them. Nothing is
acknowledged that InfluxDB has not accepted, and the client's background
batching (which can drop points at close or exit) is never used.

SQLite keeps the registry and a ledger of (device, boot, seq) for duplicate
detection, bounded by the same retention. Shadow-mode outcomes (OTA) go to
InfluxDB as extra fields of their point and to SQLite's `shadow_results` side
table, which `shadow_results` reads: they are few (canaries during a campaign)
and the OTA manager must not depend on the query API. A point's timestamp is the node's
result time and its series is (device, boot), so a redelivered result
overwrites itself in InfluxDB instead of counting twice.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from edgefleet.protocol import ResultRecord
from edgefleet.service.store.base import BatchOutcome, IngestBatch
from edgefleet.service.store.sqlite import SQLiteStore, StoreError

log = logging.getLogger("edgefleet.service.store.influx")
MEASUREMENT = "result"


def line(r: ResultRecord) -> str:
    """One result as InfluxDB line protocol (ms precision); shadow-mode, commissioning and reading
    (vrms, rpm, why, hint) fields when present."""
    dev = _tag(r.device)
    shadow = "" if r.shadow_model is None else (
        f",shadow_model={int(r.shadow_model)}i,shadow_score={float(r.shadow_score)!r},"
        f"shadow_thr={float(r.shadow_thr)!r},shadow_anom={'true' if r.shadow_anom else 'false'}")
    if r.state:
        shadow += f',state="{r.state}"'
    if r.hi is not None:
        shadow += f",hi={float(r.hi)!r}"
    if r.cls is not None:
        shadow += f",cls={int(r.cls)}i"
    if r.hi_thr is not None:
        shadow += f",hi_thr={float(r.hi_thr)!r}"
    if r.vrms is not None:  # readings (feature definition v2): fields, so Flux can chart and aggregate them
        shadow += f",vrms={float(r.vrms)!r}"
    if r.rpm is not None:
        shadow += f",rpm={float(r.rpm)!r}"
    if r.why is not None:
        shadow += f",why={_field_str(r.why)}"
    if r.hint is not None:
        shadow += f",hint={_field_str(r.hint)}"
    return (f"{MEASUREMENT},device={dev},boot={_tag(r.boot)} seq={int(r.seq)}i,model={int(r.model)}i,"
            f"score={float(r.score)!r},thr={float(r.thr)!r},anom={'true' if r.anom else 'false'},"
            f"inf_us={int(r.inf_us)}i{shadow} {int(r.ts)}")


def _opt(value, kind):
    return None if value is None else kind(value)


def _field_str(value: str) -> str:
    """A line-protocol string field value: double quotes and backslashes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


def _flux_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxStore(SQLiteStore):
    """`Store` with telemetry in InfluxDB 2 (writes and score queries) and the registry in SQLite."""

    def __init__(self, path: str | Path, *, url: str, token: str, org: str, bucket: str,
                 retries: int = 8, backoff_s: float = 0.25, timeout_ms: int = 10_000,
                 synchronous: str = "FULL", setup_bucket: bool = True, reads: str = "influx") -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        super().__init__(path, synchronous=synchronous)
        if reads not in ("influx", "ledger"):
            raise StoreError(f"reads must be 'influx' or 'ledger', got {reads!r}")
        # "ledger": score reads come from the local SQLite ledger (ingest priming its alarm state
        # needs only what it wrote itself, and must not depend on the query API)
        self.reads = reads
        self.url, self.org, self.bucket = url, org, bucket
        self.retries, self.backoff_s = retries, backoff_s
        self.write_retries = 0  # failed attempts that were retried (observability and tests)
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms)
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._query = self._client.query_api()
        if setup_bucket:
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        """Create the bucket with the store's retention if it does not exist (InfluxDB 2 only)."""
        try:
            buckets = self._client.buckets_api()
            if buckets.find_bucket_by_name(self.bucket) is None:
                from influxdb_client import BucketRetentionRules

                seconds = int(self.retention_days() * 86400)
                rules = BucketRetentionRules(type="expire", every_seconds=seconds) if seconds else None
                buckets.create_bucket(bucket_name=self.bucket, org=self.org, retention_rules=rules)
                log.info("created InfluxDB bucket %s (retention %s s)", self.bucket, seconds or "infinite")
        except Exception as exc:  # a write-only peer (no bucket API) still takes writes
            log.warning("could not check/create bucket %s: %s", self.bucket, exc)

    def close(self) -> None:
        try:
            self._write.close()
            self._client.close()
        finally:
            super().close()

    # ---------- writes: InfluxDB first, then the SQLite commit ----------

    def write_batch(self, batch: IngestBatch) -> BatchOutcome:
        with self._tx() as db:
            outcome = self._insert_results(db, batch.results, batch.ingest_ts, batch.seq_marks)
            self._write_points(outcome.new)
            self._registry(db, batch, outcome)
        return outcome

    def write_results(self, results: list[ResultRecord], ingest_ts: int) -> BatchOutcome:
        with self._tx() as db:
            outcome = self._insert_results(db, results, ingest_ts)
            self._write_points(outcome.new)
            return outcome

    def _write_points(self, results: list[ResultRecord]) -> None:
        if not results:
            return
        body = "\n".join(line(r) for r in results)
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                self._write.write(bucket=self.bucket, org=self.org, record=body, write_precision="ms")
                return
            except Exception as exc:
                if attempt == self.retries:
                    raise StoreError(f"InfluxDB at {self.url} did not accept {len(results)} results after "
                                     f"{self.retries + 1} attempts: {exc}") from exc
                self.write_retries += 1
                log.warning("InfluxDB write failed (%s), retry %d/%d in %.2f s", exc, attempt + 1,
                            self.retries, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    # ---------- reads the dashboard makes, in Flux ----------

    def score_history(self, device: str, since_ms: int | None = None, until_ms: int | None = None,
                      limit: int = 10000) -> list[ResultRecord]:
        if self.reads == "ledger":
            return super().score_history(device, since_ms, until_ms, limit)
        start = f"time(v: {int(since_ms if since_ms is not None else 0)} * 1000000)"
        stop = f"time(v: {int(until_ms + 1 if until_ms is not None else 2**62 // 1000000)} * 1000000)"
        q = (f'from(bucket: {_flux_str(self.bucket)})\n'
             f'  |> range(start: {start}, stop: {stop})\n'
             f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and r.device == {_flux_str(device)})\n'
             f'  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
             f'  |> group()\n  |> sort(columns: ["_time"], desc: true)\n  |> limit(n: {int(limit)})\n'
             f'  |> sort(columns: ["_time"])')
        out = []
        for table in self._query.query(q, org=self.org):
            for rec in table.records:
                v = rec.values
                out.append(ResultRecord(device, v["boot"], int(v["seq"]), int(rec.get_time().timestamp() * 1000),
                                        int(v["model"]), float(v["score"]), float(v["thr"]), bool(v["anom"]),
                                        int(v["inf_us"]), None, None, None, None, v.get("state") or "",
                                        _opt(v.get("hi"), float), _opt(v.get("cls"), int),
                                        _opt(v.get("hi_thr"), float), 0, _opt(v.get("vrms"), float),
                                        _opt(v.get("rpm"), float), v.get("why"), v.get("hint")))
        return out

    def recent_results(self, device: str, n: int) -> list[ResultRecord]:
        return self.score_history(device, limit=n)

    def count_results(self) -> int:
        if self.reads == "ledger":
            return super().count_results()
        q = (f'from(bucket: {_flux_str(self.bucket)})\n  |> range(start: 0)\n'
             f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and r._field == "seq")\n'
             '  |> group()\n  |> count()')
        tables = self._query.query(q, org=self.org)
        return sum(int(rec.get_value()) for t in tables for rec in t.records)
