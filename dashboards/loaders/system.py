"""System: ingest rate, node-to-commit lag, duplicates and rejects, from the ingest statistics."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dashboards.loaders.alarms import shelf_text
from edgefleet.clock import now_ms
from edgefleet.service.store import Store


def ingest_frame(store: Store, since_ms: int, bucket_s: int = 10, now_ms: int | None = None) -> pd.DataFrame:
    """Per time bucket: results/s, messages/s, duplicates, rejects and node-to-commit lag.

    `complete` is False for the bucket still filling at `now_ms` (its rate would read low).
    """
    buckets = store.ingest_series(since_ms, bucket_s)
    df = pd.DataFrame([b.__dict__ for b in buckets],
                      columns=["ts", "messages", "results", "duplicates", "rejected", "lag_ms_avg", "lag_ms_max"])
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    df["results_per_s"] = df["results"] / bucket_s
    df["messages_per_s"] = df["messages"] / bucket_s
    df["complete"] = True if now_ms is None else (df["ts"] + bucket_s * 1000 <= now_ms)
    return df


def ingest_rate(df: pd.DataFrame, bucket_s: int, over_s: float = 60.0) -> float | None:
    """Results per second over the newest complete buckets covering `over_s` (at least one bucket)."""
    done = df[df["complete"]]
    if done.empty:
        return None
    tail = done.tail(max(1, int(over_s // bucket_s)))
    return float(tail["results"].sum()) / (len(tail) * bucket_s)


def window_totals(ingest: pd.DataFrame) -> dict[str, int]:
    """Messages, results stored, duplicates dropped and rejects in an `ingest_frame` window.

    From the ingest statistics (indexed by time), not `Store.counts()`: counting every stored
    result is a full scan that grows with retention, too slow to repeat every refresh.
    """
    return {k: int(ingest[k].sum()) for k in ("messages", "results", "duplicates", "rejected")}


@dataclass(frozen=True)
class RejectSeries:
    by_reason: pd.DataFrame  # time, code, count (per bucket)
    latest: pd.DataFrame  # newest rejects: time, topic, code, reason, size, payload excerpt
    truncated: bool  # True when more rejects exist in the window than were read


def reject_series(store: Store, since_ms: int, bucket_s: int = 10, limit: int = 5000) -> RejectSeries:
    """Rejects by reason per time bucket, from the newest `limit` rejected messages in the window.

    Built on `store.rejects()` (no per-reason aggregate exists in the store interface); the
    exact total per bucket is in `ingest_frame()['rejected']`.
    """
    recs = store.rejects(limit=limit, since_ms=since_ms)
    df = pd.DataFrame([(r.ts, r.topic, r.code, r.reason, r.size, r.payload[:64]) for r in recs],
                      columns=["ts", "topic", "code", "reason", "size", "payload"])
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    df["payload"] = df["payload"].map(lambda b: b.decode("utf-8", "replace"))
    b = bucket_s * 1000
    grouped = (df.assign(bucket=(df["ts"] // b) * b).groupby(["bucket", "code"]).size()
               .rename("count").reset_index())
    grouped["time"] = pd.to_datetime(grouped["bucket"], unit="ms", utc=True)
    return RejectSeries(grouped[["time", "code", "count"]], df[["time", "topic", "code", "reason", "size", "payload"]],
                        len(recs) >= limit)


# ---------- results that never arrived (docs/store.md, "Loss accounting") ----------

def loss_totals(store: Store, now_ms: int) -> dict[str, int]:
    """Missing (settled), pending (may still arrive) and dropped-on-node results, fleet-wide."""
    loss = store.loss(now_ms)
    return {k: int(loss[k]) for k in ("missing", "pending_gaps", "dropped_on_node", "seq_jumps")}


def loss_frame(store: Store, since_ms: int) -> pd.DataFrame:
    """Missing results over time per device and site (samples the service takes every stats interval)."""
    rows = store.loss_series(since_ms)
    df = pd.DataFrame(rows, columns=["ts", "device", "missing", "pending", "dropped"])
    sites = {d.device: d.site or "-" for d in store.devices()}
    df["site"] = df["device"].map(lambda d: sites.get(d, "-"))
    df["time"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    return df


def loss_alarm_frame(store: Store) -> pd.DataFrame:
    """Active data-loss alarms, newest first: apart from the machines' health alarms."""
    rows = store.loss_alarms(active=True)
    df = pd.DataFrame(rows, columns=["id", "device", "raised_ts", "cleared_ts", "missing", "rate"])
    df["raised"] = pd.to_datetime(df["raised_ts"], unit="ms", utc=True)
    shelves = ({s.alarm_id: s for s in reversed(store.shelves(kind="data-loss", active_at=now_ms()))}
               if hasattr(store, "shelves") else {})  # `edgefleet alarms shelve loss-N`: no notifications
    df["alarm"] = [f"loss-{i}" for i in df["id"]]
    df["shelved"] = [shelf_text(shelves[i]) if i in shelves else "" for i in df["id"]]
    return df[["alarm", "device", "raised", "missing", "rate", "shelved"]]
