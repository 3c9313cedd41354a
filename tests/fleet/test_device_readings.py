"""A hostile or broken node's readings and "why" (vrms, rpm, why, hint: feature definition v2) are refused
at decode with a reason, as every other claim is, and never reach the store."""

from __future__ import annotations

import pytest

from edgefleet.service.ingest import Inbound, decode_into
from edgefleet.service.store import IngestBatch, SQLiteStore

NOW = 1_800_000_000_000
BAND = '{"lo":22.1,"hi":27.4,"share":0.62}'


def result(extra: str, anom: str = "true") -> bytes:
    return (f'{{"v":1,"boot":"00000001","model":1,"thr":1,"dropped":0,"res":[{{"seq":0,"ts":{NOW},"score":1.5,'
            f'"anom":{anom},"inf_us":1{extra}}}]}}').encode()


@pytest.mark.parametrize("extra, code, reason", [
    (',"vrms":1e9', "schema", "res[0].vrms: 1000000000.0 is not <= 1000"),
    (',"vrms":-0.5', "schema", "res[0].vrms: -0.5 is not >= 0"),
    (',"vrms":NaN', "json", "NaN is not valid JSON"),
    (',"vrms":Infinity', "json", "Infinity is not valid JSON"),
    (',"rpm":1e999', "json", "number 1e999 is out of range"),
    (',"rpm":1e9', "schema", "res[0].rpm: 1000000000.0 is not <= 100000"),
    (',"rpm":"1500"', "schema", "res[0].rpm: expected number, got string"),
    (',"why":[' + ",".join([BAND] * 1000) + "]", "schema", "res[0].why: more than 3 items"),
    (',"why":[]', "schema", "res[0].why: fewer than 1 items"),
    (',"why":[{"lo":22.1,"hi":27.4,"share":NaN}]', "json", "NaN is not valid JSON"),
    (',"why":[{"lo":22.1,"hi":27.4,"share":0.5,"label":"x"}]', "schema", "res[0].why[0]: unexpected field 'label'"),
    (',"why":[{"lo":27.4,"hi":22.1,"share":0.5}]', "schema", "res[0].why[0]: band 27.4-22.1 Hz is empty"),
    (',"hint":"gremlins"', "schema", "res[0].hint: 'gremlins' is not one of"),
    (',"hint":"' + "x" * 10_000 + '"', "schema", "res[0].hint: 'xxxxxxxx"),
    (',"hint":"unbalance"', "schema", "res[0].hint: only an anomalous result explains itself"),  # anom false below
])
def test_hostile_readings_are_refused_with_a_reason_and_not_stored(tmp_path, extra, code, reason):
    anom = "false" if extra == ',"hint":"unbalance"' else "true"
    batch = IngestBatch(ingest_ts=NOW)
    assert decode_into(batch, Inbound("ef/v1/d-1/result", result(extra, anom), 1, 1, 0, NOW)) == code
    assert not batch.results and batch.rejects[0].reason.startswith(reason), batch.rejects[0].reason
    assert len(batch.rejects[0].reason) < 600  # one line, bounded, whatever the payload size
    store = SQLiteStore(tmp_path / "s.db")
    store.write_batch(batch)
    assert store.count_results() == 0 and store.rejects()[0].code == code
    store.close()


def test_plausible_readings_are_stored_as_sent(tmp_path):
    batch = IngestBatch(ingest_ts=NOW)
    extra = ',"vrms":6.42,"rpm":1497,"why":[' + BAND + '],"hint":"unbalance"'
    assert decode_into(batch, Inbound("ef/v1/d-1/result", result(extra), 1, 1, 0, NOW)) is None
    store = SQLiteStore(tmp_path / "s.db")
    store.write_batch(batch)
    (rec,) = store.score_history("d-1")
    assert (rec.vrms, rec.rpm, rec.why, rec.hint) == (6.42, 1497.0, "[" + BAND + "]", "unbalance")
    store.close()


def test_a_version_4_store_gains_the_reading_columns_in_place(tmp_path):
    import sqlite3

    from edgefleet.protocol import ResultRecord
    from edgefleet.service.alarms import AlarmChange
    from edgefleet.service.store.sqlite import SCHEMA_VERSION

    path = tmp_path / "v4.db"
    store = SQLiteStore(path)
    store.write_batch(IngestBatch(NOW, 1, [ResultRecord("m-1", "00000001", 0, NOW, 1, 0.5, 1.0, False, 9)]))
    store.apply_alarm_changes([AlarmChange("raise", "m-1", NOW, "warning", 2.0, 1.0, 2.0)], [])
    store.close()
    db = sqlite3.connect(path)  # what a version-4 file looks like: none of the columns version 5 adds
    for table, cols in (("results", ("vrms", "rpm", "why", "hint")), ("alarms", ("why", "hint"))):
        for c in cols:
            db.execute(f"ALTER TABLE {table} DROP COLUMN {c}")
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    assert store._q("PRAGMA user_version")[0][0] == SCHEMA_VERSION >= 5
    old = store.score_history("m-1")[0]
    assert (old.vrms, old.rpm, old.why, old.hint) == (None, None, None, None)
    assert store.active_alarm("m-1").why is None
    store.write_batch(IngestBatch(NOW, 1, [ResultRecord("m-1", "00000001", 1, NOW + 1, 1, 0.5, 1.0, False, 9,
                                                        vrms=2.5, rpm=1800.0)]))
    assert store.vrms_history("m-1") == [(NOW + 1, 2.5, 1800.0)]
    store.close()


def test_the_alarm_tracker_hands_the_raising_windows_why_to_the_alarm():
    from edgefleet.protocol import ResultRecord
    from edgefleet.service.alarms import AlarmPolicy, AlarmTracker

    why = '[{"lo":22.1,"hi":27.4,"share":0.62}]'
    tracker = AlarmTracker(AlarmPolicy(k=3, n=5, m=2))

    def window(seq, anom, why=None, hint=None):
        return ResultRecord("m", "00000001", seq, NOW + seq, 1, 2.0 if anom else 0.1, 1.0, anom, 1, why=why, hint=hint)

    changes = tracker.observe_many([window(0, True, why, "unbalance"), window(1, False), window(2, True),
                                    window(3, True)])  # the raising window says nothing: the newest that did
    assert [(c.op, c.why, c.hint) for c in changes] == [("raise", why, "unbalance")]
    changes = tracker.observe_many([window(4, False), window(5, False)])
    assert [c.op for c in changes] == ["clear"]
    changes = tracker.observe_many([window(6, True, None, "looseness"), window(7, True), window(8, True, why, "misalignment")])
    assert [(c.op, c.why, c.hint) for c in changes] == [("raise", why, "misalignment")]
    old = AlarmTracker(AlarmPolicy(k=3, n=5, m=2)).observe_many([window(s, True) for s in range(3)])
    assert [(c.why, c.hint) for c in old] == [(None, None)]  # nodes that do not explain themselves


def test_influx_points_carry_readings_as_fields():
    from edgefleet.protocol import ResultRecord
    from edgefleet.service.store.influx import line

    why = '[{"lo":22.1,"hi":27.4,"share":0.62},{"name":"vrms","share":0.21}]'
    point = line(ResultRecord("d-1", "00000001", 3, NOW, 5, 0.91, 0.25, True, 2210, vrms=6.42, rpm=1497.0, why=why,
                              hint="unbalance"))
    assert ",vrms=6.42,rpm=1497.0," in point and ',hint="unbalance" ' in point
    assert 'why="[{\\"lo\\":22.1,\\"hi\\":27.4,\\"share\\":0.62},{\\"name\\":\\"vrms\\",\\"share\\":0.21}]"' in point
    plain = line(ResultRecord("d-1", "00000001", 3, NOW, 5, 0.1, 0.25, False, 2210))
    assert "vrms" not in plain and "why" not in plain and "hint" not in plain  # v1 nodes: the points of before
