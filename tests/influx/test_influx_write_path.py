"""The InfluxDB store's write path against a real v2-write-API server (VictoriaMetrics),
including that server restarting mid-load: every result lands exactly once, none is lost."""

from __future__ import annotations

import threading
import time

import pytest

from edgefleet.protocol import ResultRecord
from edgefleet.service.store import IngestBatch, StoreError
from edgefleet.service.store.influx import InfluxStore, line

T0 = 1_767_225_600_000


def results(device: str, start: int, n: int, boot: str = "0000000a") -> list[ResultRecord]:
    return [ResultRecord(device, boot, s, T0 + s * 1000, 3, 0.01 * (s % 7), 0.05, s % 7 > 4, 400)
            for s in range(start, start + n)]


def open_store(tmp_path, vm, **kw) -> InfluxStore:
    return InfluxStore(tmp_path / "registry.db", url=vm.url, token="unused", org="edgefleet",
                       bucket="telemetry", setup_bucket=False, **kw)


def test_line_protocol_escapes_and_types():
    r = ResultRecord("dev 1,a=b", "0000000a", 7, T0, 3, 0.125, 0.05, True, 412)
    assert line(r) == (r"result,device=dev\ 1\,a\=b,boot=0000000a seq=7i,model=3i,score=0.125,thr=0.05,"
                       f"anom=true,inf_us=412i {T0}")


def test_line_protocol_carries_shadow_fields_only_in_shadow_mode():
    r = ResultRecord("d1", "0000000a", 7, T0, 3, 0.125, 0.05, True, 412, 4, 0.5, 0.25, True)
    assert line(r) == ("result,device=d1,boot=0000000a seq=7i,model=3i,score=0.125,thr=0.05,anom=true,"
                       f"inf_us=412i,shadow_model=4i,shadow_score=0.5,shadow_thr=0.25,shadow_anom=true {T0}")
    assert "shadow" not in line(r._replace(shadow_model=None))


def test_shadow_results_land_in_influx_and_in_the_side_table(tmp_path, victoria):
    store = open_store(tmp_path, victoria)
    recs = results("d1", 0, 5)
    recs[3:] = [r._replace(shadow_model=4, shadow_score=0.5, shadow_thr=0.25, shadow_anom=True) for r in recs[3:]]
    assert store.write_batch(IngestBatch(T0, 5, recs)).stored == 5
    (series,) = victoria.samples("result_shadow_score").values()
    assert series == {T0 + 3000, T0 + 4000}
    assert store.shadow_results(4) == recs[3:]
    store.close()


def test_batches_land_once_and_duplicates_are_not_rewritten(tmp_path, victoria):
    store = open_store(tmp_path, victoria)
    out = store.write_batch(IngestBatch(T0, 50, results("d1", 0, 50)))
    assert out.stored == 50
    again = store.write_batch(IngestBatch(T0, 60, results("d1", 40, 20)))  # 10 seen, 10 new
    assert (again.stored, again.duplicates) == (10, 10)
    (series,) = victoria.samples("result_seq").values()
    assert len(series) == 60
    store.close()


def test_unreachable_server_fails_the_batch_and_keeps_nothing(tmp_path, victoria):
    store = open_store(tmp_path, victoria, retries=1, backoff_s=0.05)
    victoria.stop()
    with pytest.raises(StoreError, match="did not accept"):
        store.write_batch(IngestBatch(T0, 5, results("d2", 0, 5)))
    # the SQLite ledger rolled back with it, so a redelivery is written, not dropped as a duplicate
    victoria.start()
    out = store.write_batch(IngestBatch(T0, 5, results("d2", 0, 5)))
    assert out.stored == 5
    assert sum(len(s) for s in victoria.samples("result_seq").values()) == 5
    store.close()


def test_server_restart_mid_load_loses_nothing(tmp_path, victoria):
    store = open_store(tmp_path, victoria, retries=30, backoff_s=0.1)
    devices, per_batch, batches = 20, 25, 40
    errors: list[Exception] = []

    def load():
        try:
            for b in range(batches):
                recs = [r for d in range(devices) for r in results(f"d{d:02d}", b * per_batch, per_batch)]
                store.write_batch(IngestBatch(T0 + b, len(recs), recs))
                time.sleep(0.05)  # paced so the restart falls in the middle
        except Exception as exc:  # surfaced below
            errors.append(exc)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.3)
    victoria.stop()  # mid-load
    time.sleep(1.0)
    victoria.start()
    t.join(timeout=120)
    assert not errors and not t.is_alive()
    assert store.write_retries > 0  # the restart really hit writes in flight
    stored = victoria.samples("result_seq")
    assert len(stored) == devices
    assert all(len(ts) == batches * per_batch for ts in stored.values())
    store.close()
