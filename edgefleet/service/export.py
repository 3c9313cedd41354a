"""What the fleet store holds, exported: results of some devices over a time range as CSV or Parquet, and the
raw windows nodes sent in debug captures as `.npz` recordings that `edgefleet model train` reads (one per capture,
keyed `signal`, `fs`, `label`, `rpm`, `machine`, as in `../shared/data`). Used by `edgefleet data pull`.

Results are read oldest first in slices the store counts first (`Store.result_buckets`, one-hour buckets), so a
month of one result per second is written in bounded pieces, never held whole.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefleet.errors import EdgefleetError
from edgefleet.protocol import ResultRecord
from edgefleet.service.store import Store

FORMATS = ("csv", "parquet", "npz")
COLUMNS = ["device", "boot", "seq", "ts", "time", "model", "score", "thr", "anom", "inf_us", "state", "hi", "cls",
           "hi_thr", "vrms", "rpm", "why", "hint"]
SLICE_ROWS = 50_000  # results per read
HOUR_MS = 3_600_000
_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNIT_MS = {"s": 1000, "m": 60_000, "min": 60_000, "h": HOUR_MS, "d": 86_400_000, "w": 604_800_000}


class ExportError(EdgefleetError):
    """Nothing to export, or nowhere to write it."""


def parse_when(text: str, now_ms: int) -> int:
    """'2026-12-06T08:00:00Z', '2026-12-06 08:00' (UTC), a date, epoch ms, or an age: '15m', '2h', '7d' ago."""
    t = str(text).strip().lower()
    m = _REL.match(t)
    if m:
        return int(now_ms - float(m.group(1)) * _UNIT_MS[m.group(2)])
    if t.isdigit():
        return int(t)
    from datetime import datetime, timezone

    try:
        d = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ExportError(f"not a time: {text!r} (e.g. 2026-12-06T08:00:00Z, '2026-12-06 08:00' in UTC, "
                          "or an age such as 15m, 2h, 7d)") from None
    d = d.replace(tzinfo=timezone.utc) if d.tzinfo is None else d
    return int(d.timestamp() * 1000)


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{int(ms) % 1000:03d}Z"


@dataclass(frozen=True)
class Selection:
    devices: list[str]
    since_ms: int
    until_ms: int


def select(store: Store, where: str, *, devices: Sequence[str] = (), site: str | None = None,
           since_ms: int | None = None, until_ms: int) -> Selection:
    """The devices to export (named ones, a site's, or every device) with a checked range; ExportError names
    an unknown device or site (and the known ones)."""
    known = {d.device: d.site for d in store.devices()}
    if not known:
        raise ExportError(f"{where} holds no devices yet: nothing to pull")
    if since_ms is not None and since_ms >= until_ms:
        raise ExportError(f"--since ({iso(since_ms)}) must be before --until ({iso(until_ms)})")
    chosen = list(dict.fromkeys(devices))
    unknown = [d for d in chosen if d not in known]
    if unknown:
        raise ExportError(f"unknown device{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in {where} "
                          f"(it has {len(known)} device(s), e.g. {', '.join(sorted(known)[:5])})")
    if site is not None:
        at_site = sorted(d for d, s in known.items() if s == site)
        if not at_site:
            sites = sorted({s for s in known.values() if s})
            raise ExportError(f"no device at site {site!r} in {where} (sites: {', '.join(sites) or 'none'})")
        chosen = [d for d in chosen if d in at_site] if chosen else at_site
        if not chosen:
            raise ExportError(f"none of the devices given is at site {site!r}")
    return Selection(chosen or sorted(known), 0 if since_ms is None else since_ms, until_ms)


def plan(store: Store, sel: Selection) -> list[tuple[str, int, int, int]]:
    """(device, from, to, results) slices of at most about SLICE_ROWS results, oldest first, from hourly counts."""
    out = []
    for d in sel.devices:
        acc, a = 0, None
        for row in store.result_buckets(d, sel.since_ms, sel.until_ms, HOUR_MS):
            b0, n = int(row[0]), int(row[2])
            if a is None:
                a = max(b0, sel.since_ms)
            if acc and acc + n > SLICE_ROWS:
                out.append((d, a, b0 - 1, acc))
                a, acc = b0, 0
            acc += n
        if acc:
            out.append((d, a, sel.until_ms, acc))
    return out


def rows(store: Store, slices: list[tuple[str, int, int, int]]) -> Iterator[list[ResultRecord]]:
    for d, a, b, n in slices:
        yield store.score_history(d, since_ms=a, until_ms=b, limit=n + SLICE_ROWS)


def _row(r: ResultRecord) -> list:
    return [r.device, r.boot, r.seq, r.ts, iso(r.ts), r.model, r.score, r.thr, int(bool(r.anom)), r.inf_us, r.state,
            r.hi, r.cls, r.hi_thr, r.vrms, r.rpm, r.why, r.hint]


def write_csv(path: Path, batches: Iterator[list[ResultRecord]], step: Callable[[int], None]) -> int:
    n = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for batch in batches:
            w.writerows(["" if v is None else v for v in _row(r)] for r in batch)
            n += len(batch)
            step(len(batch))
    return n


def write_parquet(path: Path, batches: Iterator[list[ResultRecord]], step: Callable[[int], None]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("device", pa.string()), ("boot", pa.string()), ("seq", pa.int64()), ("ts", pa.int64()),
                        ("time", pa.timestamp("ms", tz="UTC")), ("model", pa.int64()), ("score", pa.float64()),
                        ("thr", pa.float64()), ("anom", pa.bool_()), ("inf_us", pa.int64()), ("state", pa.string()),
                        ("hi", pa.float64()), ("cls", pa.int64()), ("hi_thr", pa.float64()), ("vrms", pa.float64()),
                        ("rpm", pa.float64()), ("why", pa.string()), ("hint", pa.string())])
    n = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for batch in batches:
            cols = list(zip(*[_row(r) for r in batch]))
            data = {name: list(col) for name, col in zip(COLUMNS, cols)}
            data["time"] = data["ts"]
            data["anom"] = [bool(v) for v in data["anom"]]
            w.write_table(pa.Table.from_pydict(data, schema=schema))
            n += len(batch)
            step(len(batch))
    return n


def captures(store: Store, sel: Selection, max_per_device: int = 1000) -> Iterator[tuple[str, int, dict]]:
    """(device, ts, body) of every debug capture with raw samples in the range, oldest first per device."""
    for d in sel.devices:
        evs = [e for e in store.events(d, kind="debug", limit=max_per_device)
               if sel.since_ms <= e.ts <= sel.until_ms and e.body.get("samples") and e.body.get("fs")]
        for e in reversed(evs):
            yield d, e.ts, e.body


def rpm_near(store: Store, device: str, ts: int) -> float:
    """The running speed the device reported nearest `ts` (0: unknown), what a recording's `rpm` says."""
    near = store.score_history(device, since_ms=ts - 60_000, until_ms=ts + 60_000, limit=200)
    known = [(abs(r.ts - ts), r.rpm) for r in near if r.rpm is not None and math.isfinite(r.rpm) and r.rpm > 0]
    return float(min(known)[1]) if known else 0.0


def write_npz(folder: Path, caps: list[tuple[str, int, dict]], store: Store, label: str,
              step: Callable[[int], None]) -> int:
    """One recording per capture: `<device>-<time>.npz` with signal (g), fs, label, rpm, machine (the device)."""
    folder.mkdir(parents=True, exist_ok=True)
    for device, ts, body in caps:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{device}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(ts / 1000))}"
                                                   f"{ts % 1000:03d}")
        np.savez_compressed(folder / f"{name}.npz", signal=np.asarray(body["samples"], np.float32),
                            fs=np.float64(body["fs"]), label=np.str_(label), rpm=np.float64(rpm_near(store, device, ts)),
                            machine=np.str_(device), ts_ms=np.int64(ts), model=np.int64(body.get("model", 0)),
                            score=np.float64(body.get("score", np.nan)), units=np.str_("g"),
                            source=np.str_(json.dumps({"device": device, "ts": ts, "debug_seq": body.get("seq")})),
                            dataset=np.str_("edgefleet data pull"))
        step(1)
    return len(caps)


def check_writable(out: Path, folder: bool) -> None:
    """One line when `out` cannot be written: its folder is missing or read-only, or it is a folder/file."""
    if folder:
        if out.exists() and not out.is_dir():
            raise ExportError(f"cannot write captures to {out}: it is a file (give a folder)")
        parent = out if out.exists() else out.parent
    else:
        if out.is_dir():
            raise ExportError(f"cannot write {out}: it is a folder (give a file name)")
        parent = out.parent
    parent = parent if str(parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"cannot write {out}: folder {parent} does not exist")
    import os

    if not os.access(parent, os.W_OK):
        raise ExportError(f"cannot write {out}: folder {parent} is not writable")
