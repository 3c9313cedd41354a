"""Protocol v1: golden messages, canonical form, reasons, and checker == JSON Schema."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import random
from importlib import resources

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
    raw = golden(next(v for v in VALID if v["file"].endswith("result.batch.json")))
    keys = list(json.loads(raw))
    assert keys == list(protocol.schema("result")["properties"])


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
