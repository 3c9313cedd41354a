"""Protocol v1: golden messages, canonical form, reasons, and checker == JSON Schema."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import random
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet import protocol
from edgefleet.protocol import codec
from edgefleet.protocol import ProtocolError

PKG = resources.files("edgefleet.protocol")
VECTORS = json.loads(PKG.joinpath("vectors.json").read_text())
VALID = VECTORS["valid"]
INVALID = VECTORS["invalid"]
VALIDATORS = {k: jsonschema.Draft202012Validator(protocol.schema(k)) for k in protocol.KINDS}


def golden(v: dict) -> bytes:
    return PKG.joinpath(v["file"]).read_bytes()


def test_every_kind_has_a_schema_and_a_golden_example() -> None:
    for kind in protocol.KINDS:
        jsonschema.Draft202012Validator.check_schema(protocol.schema(kind))
    assert {v["kind"] for v in VALID} == set(protocol.KINDS)


@pytest.mark.parametrize("vec", VALID, ids=[v["file"] for v in VALID])
def test_golden_decodes_and_reencodes_byte_identically(vec: dict) -> None:
    raw = golden(vec)
    msg = protocol.decode_message(vec["topic"], raw)
    assert msg.kind == vec["kind"]
    assert protocol.encode(msg.kind, msg.body) == raw
    # Key order and formatting do not depend on the input dict's order.
    shuffled = dict(reversed(list(msg.body.items())))
    assert protocol.encode(msg.kind, shuffled) == raw
    assert VALIDATORS[msg.kind].is_valid(json.loads(raw))
    assert protocol.topic(msg.device, msg.kind) == vec["topic"]


@pytest.mark.parametrize("vec", INVALID, ids=[f"{i}-{v['code']}" for i, v in enumerate(INVALID)])
def test_invalid_vectors_are_refused_with_their_reason(vec: dict) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode_message(vec["topic"], bytes.fromhex(vec["payload_hex"]))
    assert info.value.code == vec["code"]
    if vec["where"]:
        assert info.value.detail.startswith(vec["where"] + ":"), info.value.detail


def test_schema_key_order_is_the_canonical_order() -> None:
    """Every golden result lists its keys in the schema's order, and together they use every key."""
    schema = protocol.schema("result")
    top, item = list(schema["properties"]), list(schema["properties"]["res"]["items"]["properties"])
    seen_top, seen_item = set(), set()
    files = sorted(Path(str(resources.files("edgefleet.protocol") / "examples")).glob("result.*.json"))
    assert len(files) >= 4
    for f in files:
        obj = json.loads(f.read_bytes())
        assert list(obj) == [k for k in top if k in obj], f.name
        for r in obj["res"]:
            assert list(r) == [k for k in item if k in r], f.name
            seen_item |= set(r)
        seen_top |= set(obj)
    assert seen_top == set(top) and seen_item == set(item)


def shadow_body() -> dict:
    vec = next(v for v in VALID if v["file"].endswith("result.shadow.json"))
    return protocol.decode_message(vec["topic"], golden(vec)).body


def test_shadow_results_flatten_with_both_models() -> None:
    recs = protocol.result_records("pump-0001", shadow_body())
    assert [(r.model, r.anom, r.shadow_model, r.shadow_anom) for r in recs] == [(3, False, 4, True),
                                                                                 (3, False, 4, False)]
    assert recs[0].shadow_score == 0.0612 and recs[0].shadow_thr == 0.05 and recs[1].shadow_score == 0.0
    batch = next(v for v in VALID if v["file"].endswith("result.batch.json"))
    assert all(r.shadow_model is None and r.shadow_score is None
               for r in protocol.result_records("d", json.loads(golden(batch))))


def test_result_message_builds_the_shadow_golden() -> None:
    b = shadow_body()
    built = protocol.result_message(b["boot"], b["model"], b["thr"], b["res"], b["dropped"], shadow=b["shadow"])
    assert protocol.encode("result", built) == golden(next(v for v in VALID if v["file"].endswith("result.shadow.json")))
    assert "shadow" not in protocol.result_message("9f3a0c17", 1, 1.0, [])


@pytest.mark.parametrize("mutate, where", [
    (lambda b: b.pop("shadow"), "res[0].shadow"),  # a result's shadow needs the message's shadow model
    (lambda b: b["shadow"].update(model=3), "shadow.model"),  # the candidate is not the active model
])
def test_shadow_rules_beyond_the_schema_are_refused_on_flattening(mutate, where) -> None:
    b = shadow_body()
    mutate(b)
    assert protocol.check("result", b) is None  # JSON Schema cannot say it ...
    with pytest.raises(ProtocolError) as info:  # ... so flattening (ingest) refuses it with a reason
        protocol.result_records("pump-0001", b)
    assert info.value.code == "schema" and info.value.detail.startswith(where)


@pytest.mark.parametrize("mutate, where", [
    (lambda b: b["shadow"].update(thr=0), "shadow.thr"),
    (lambda b: b["shadow"].pop("thr"), "shadow"),
    (lambda b: b["res"][0]["shadow"].update(score=-1.0), "res[0].shadow.score"),
    (lambda b: b["res"][0]["shadow"].update(model=4), "res[0].shadow"),
    (lambda b: b["res"][1]["shadow"].pop("anom"), "res[1].shadow"),
])
def test_malformed_shadow_fields_are_refused_by_the_schema(mutate, where) -> None:
    b = shadow_body()
    mutate(b)
    err = protocol.check("result", b)
    assert err is not None and err.startswith(where + ":"), err
    assert not VALIDATORS["result"].is_valid(b)


def test_offer_shadow_period_is_optional_and_bounded() -> None:
    vec = next(v for v in VALID if v["file"].endswith("ota_offer.shadow.json"))
    body = protocol.decode_message(vec["topic"], golden(vec)).body
    assert (body["shadow"], body["shadow_s"], body["trial_s"]) == (True, 600, 60)
    assert protocol.check("ota/offer", {**body, "shadow_s": 604801}).startswith("shadow_s:")
    legacy = {k: v for k, v in body.items() if k != "shadow_s"}
    assert protocol.check("ota/offer", legacy) is None


def test_result_records_flatten_a_batch() -> None:
    vec = next(v for v in VALID if v["file"].endswith("result.batch.json"))
    msg = protocol.decode_message(vec["topic"], golden(vec))
    recs = protocol.result_records(msg.device, msg.body)
    assert [r.seq for r in recs] == [41, 42, 43, 44, 4294967295]
    assert recs[1].anom is True and recs[1].score == 3.25 and recs[1].thr == 1.5
    assert {r.boot for r in recs} == {"00000001"} and {r.device for r in recs} == {"fan_02.line-b"}


def test_numbers_match_c_printf() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    buf = ctypes.create_string_buffer(64)
    rng = random.Random(7)
    values = [rng.uniform(0, 10) * 10.0 ** rng.randint(-12, 12) for _ in range(20000)]
    values += [0.5, 1.0, 100000.0, 1e6, 123456.5, 999999.5, 1e-5, 2.5e-5]
    for x in values:
        libc.snprintf(buf, 64, b"%.6g", ctypes.c_double(x))
        assert protocol.format_number(x) == buf.value.decode(), x
    assert protocol.format_number(-0.0) == "0"


def test_encode_refuses_invalid_and_topics_are_checked() -> None:
    with pytest.raises(ProtocolError, match="res"):
        protocol.encode("result", protocol.result_message("9f3a0c17", 1, 0.5, []))
    with pytest.raises(ProtocolError) as info:
        protocol.topic("a/b", "result")
    assert info.value.code == "topic"
    with pytest.raises(ProtocolError):
        protocol.topic("a", "telemetry")
    with pytest.raises(ProtocolError) as info:
        protocol.decode("result", b" " * (protocol.MAX_PAYLOAD + 1))
    assert info.value.code == "size"
    assert protocol.parse_topic("ef/v1/d1/ota/state") == ("d1", "ota/state")


def test_integer_valued_floats_are_integers_as_in_json_schema() -> None:
    body = json.loads(golden(VALID[0]))
    body["res"][0]["seq"] = 5.0
    assert protocol.check("result", body) is None
    assert b'"seq":5,' in protocol.encode("result", body)


# ---- agreement of the compiled checker with jsonschema on fuzzed input ----

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**40, max_value=2**40),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                      st.sampled_from(["online", "lost", "A", "ota", "9f3a0c17", "calibrate", "trial",
                                       "c-1", "1.0.0", "AAAA", "0" * 64, "a\n", ""]),
                      st.sampled_from([0, 1, 2, -1, 1.0, 0.5, 4294967295, 4294967296, 127, -128, 128]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=12)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_golden(draw):
    vec = draw(st.sampled_from(VALID))
    body = json.loads(golden(vec))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(body))[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = body
        for p in path[:-1]:
            parent = parent[p]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_value)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(json_value)
        else:
            parent.append(draw(json_value))
    return vec["kind"], body


@settings(max_examples=2000, deadline=None)
@given(mutated_golden())
def test_checker_agrees_with_jsonschema_on_mutated_golden(case) -> None:
    kind, body = case
    valid = VALIDATORS[kind].is_valid(body)
    assert (codec._kind(kind).check(body, "") is None) == valid, body  # the explaining checker
    assert codec._kind(kind).fast(body) == valid, body  # the generated fast path


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(protocol.KINDS), json_value)
def test_checker_agrees_with_jsonschema_on_random_json(kind, value) -> None:
    valid = VALIDATORS[kind].is_valid(value)
    assert (codec._kind(kind).check(value, "") is None) == valid
    assert codec._kind(kind).fast(value) == valid


def test_fast_path_defers_to_the_full_checker_for_non_json_types() -> None:
    import numpy as np

    body = json.loads(golden(VALID[0]))
    body["thr"] = np.float64(0.5)  # a float subclass: not what json.loads makes
    assert not codec._kind("result").fast(body)
    assert protocol.check("result", body) is None


# ---- readings and why (feature definition v2): vrms, rpm, why, hint ----

def why_body() -> dict:
    vec = next(v for v in VALID if v["file"].endswith("result.why.json"))
    return protocol.decode_message(vec["topic"], golden(vec)).body


def test_why_golden_flattens_with_its_readings() -> None:
    (rec,) = protocol.result_records("pump-0001", why_body())
    assert (rec.vrms, rec.rpm, rec.hint, rec.anom) == (6.42, 1497.0, "unbalance", True)
    assert protocol.why_items(rec.why) == [{"lo": 22.1, "hi": 27.4, "share": 0.62}, {"name": "vrms", "share": 0.21},
                                           {"lo": 17.9, "hi": 22.1, "share": 0.05}]
    assert rec.why == '[{"lo":22.1,"hi":27.4,"share":0.62},{"name":"vrms","share":0.21},{"lo":17.9,"hi":22.1,"share":0.05}]'
    old = protocol.result_records("d", json.loads(golden(VALID[0])))[0]
    assert (old.vrms, old.rpm, old.why, old.hint) == (None, None, None, None)  # v1 nodes: nothing changes


def test_result_message_builds_the_why_golden_from_numpy_and_contributors() -> None:
    import numpy as np

    from edgefleet.runtime.diagnosis import Contributor

    b = why_body()
    r = dict(b["res"][0])
    r["vrms"], r["rpm"] = np.float32(6.42), np.float64(1497.0)
    r["why"] = [Contributor(20, 0.62, "22.1-27.4 Hz", 22.1, 27.4), Contributor(35, 0.21, "vrms"),
                Contributor(19, 0.05, "17.9-22.1 Hz", 17.9, 22.1)]
    built = protocol.result_message(b["boot"], b["model"], b["thr"], [r], b["dropped"])
    assert protocol.encode("result", built) == golden(next(v for v in VALID if v["file"].endswith("result.why.json")))
    plain = protocol.result_message("9f3a0c17", 1, 1.0, [{"seq": 0, "ts": 1, "score": 0.5, "anom": False, "inf_us": 1,
                                                          "vrms": 1.0, "why": None, "hint": None}])
    assert set(plain["res"][0]) == {"seq", "ts", "score", "anom", "inf_us", "vrms"}
    no_error = protocol.result_message("9f3a0c17", 1, 1.0, [{"seq": 0, "ts": 1, "score": 2.0, "anom": True,
                                                             "inf_us": 1, "why": []}])
    assert "why" not in no_error["res"][0]  # contributors() of a zero error is empty: no `why` at all


@pytest.mark.parametrize("mutate, where", [
    (lambda r: r.update(anom=False), "res[0].why"),  # only an anomalous result explains itself
    (lambda r: (r.update(anom=False), r.pop("why")), "res[0].hint"),
    (lambda r: r["why"][1].update(lo=1.0, hi=2.0), "res[0].why[1]"),  # a band and a name at once
    (lambda r: r["why"][0].pop("hi"), "res[0].why[0]"),  # half a band
    (lambda r: r["why"][0].update(lo=30.0), "res[0].why[0]"),  # lo above hi
    (lambda r: r["why"][2].update(share=0.3), "res[0].why[2].share"),  # not largest first
    (lambda r: r["why"][0].update(share=0.8), "res[0].why"),  # shares above the whole error
])
def test_why_rules_beyond_the_schema_are_refused_on_flattening(mutate, where) -> None:
    b = why_body()
    mutate(b["res"][0])
    assert protocol.check("result", b) is None  # JSON Schema cannot say it ...
    with pytest.raises(ProtocolError) as info:  # ... so flattening (ingest) refuses it with a reason
        protocol.result_records("pump-0001", b)
    assert info.value.code == "schema" and info.value.detail.startswith(where + ":"), info.value.detail


def test_reading_formats_match_c_printf() -> None:
    """vrms is written as printf("%.4g"), rpm as "%.5g" (their schema's x-canonical), zero as 0."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    buf = ctypes.create_string_buffer(64)
    rng = random.Random(3)
    b = why_body()
    for _ in range(2000):
        vrms, rpm = rng.uniform(0, 1000) * 10.0 ** rng.randint(-6, 0), rng.uniform(30, 100000)
        b["res"][0].update(vrms=vrms, rpm=rpm)
        text = protocol.encode("result", b).decode()
        libc.snprintf(buf, 64, b"%.4g", ctypes.c_double(vrms))
        assert f'"vrms":{buf.value.decode()},' in text
        libc.snprintf(buf, 64, b"%.5g", ctypes.c_double(rpm))
        assert f'"rpm":{buf.value.decode()},' in text
    b["res"][0]["vrms"] = -0.0
    assert b'"vrms":0,' in protocol.encode("result", b)


def test_hints_are_the_schema_enum_and_the_runtime_names() -> None:
    from edgefleet.runtime import diagnosis

    items = protocol.schema("result")["properties"]["res"]["items"]["properties"]
    assert tuple(items["hint"]["enum"]) == protocol.HINTS == diagnosis.HINTS
    assert tuple(items["why"]["items"]["properties"]["name"]["enum"]) == protocol.WHY_NAMES


def test_a_bad_canonical_format_in_a_schema_is_refused() -> None:
    from edgefleet.protocol.canonical import compile_encoder

    with pytest.raises(ValueError, match="x-canonical"):
        compile_encoder({"type": "number", "x-canonical": "%s"})
