"""Device messages from the C encoders (ef_protocol) are byte-identical to the protocol's
golden examples and to the Python canonical encoder; schema violations are refused."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
from fw_helpers import REPO, run

from edgefleet.protocol import codec

PROTOCOL = REPO / "edgefleet" / "protocol"
C_KINDS = {"result": "result", "status": "status", "ota/state": "ota_state", "ota/req": "ota_req",
           "debug": "debug"}


def driver_input(kind: str, obj: dict) -> bytes:
    """The ef_proto line format, typed from the kind's JSON Schema."""
    props = codec.schema(kind)["properties"]
    top, recs = [C_KINDS[kind]], []
    for key, val in obj.items():
        if key == "v":
            continue
        p = props[key]
        t = p["type"]
        if t == "integer":
            top.append(f"{key} u {int(val)}")
        elif t == "number":
            top.append(f"{key} f {float(val)!r}")
        elif t == "boolean":
            top.append(f"{key} b {int(val)}")
        elif t == "string":
            top.append(f"{key} s {val.encode().hex()}")
        elif t == "object" and key == "comm":
            top += comm_lines(val)
        elif t == "object" and key == "prev":  # status prev: the boot before a warm reset
            top += [f"prev.boot s {val['boot'].encode().hex()}", f"prev.res_seq u {int(val['res_seq'])}"]
        elif p["items"]["type"] == "string":
            top.append(f"{key} S {','.join(v.encode().hex() for v in val)}")
        elif p["items"]["type"] == "number":
            top.append(f"{key} F {','.join(repr(float(v)) for v in val)}")
        elif p["items"]["type"] == "integer":
            top.append(f"{key} I {','.join(str(int(v)) for v in val)}")
        else:  # result records
            for rec in val:
                recs.append("rec")
                ip = p["items"]["properties"]
                for k, v in rec.items():
                    tt = ip[k]["type"]
                    if k == "why":  # by column; a named item has "-" for its band, a band "-" for its name
                        recs.append("why.share D " + ",".join(repr(float(w["share"])) for w in v))
                        recs.append("why.lo D " + ",".join(repr(float(w.get("lo", 0.0))) for w in v))
                        recs.append("why.hi D " + ",".join(repr(float(w.get("hi", 0.0))) for w in v))
                        recs.append("why.name S " + ",".join(w.get("name", "-").encode().hex() for w in v))
                    elif tt == "string":
                        recs.append(f"{k} s {v.encode().hex()}")
                    else:
                        recs.append(f"{k} {'u' if tt == 'integer' else 'f' if tt == 'number' else 'b'} "
                                    f"{int(v) if tt != 'number' else repr(float(v))}")
    return ("\n".join(top + recs) + "\n").encode()


def comm_lines(comm: dict) -> list[str]:
    """status `comm` for ef_proto: scalars as comm.KEY, the arrays of objects column by column."""
    out = []
    for k in ("state", "hash"):
        if k in comm:
            out.append(f"comm.{k} s {comm[k].encode().hex()}")
    for k in ("target", "learned"):
        if k in comm:
            out.append(f"comm.{k} u {int(comm[k])}")
    if "progress" in comm:
        out.append("comm.progress.rpm D " + ",".join(repr(float(p["rpm"])) for p in comm["progress"]))
        out.append("comm.progress.n D " + ",".join(str(int(p["n"])) for p in comm["progress"]))
    if "classes" in comm:
        cl = comm["classes"]
        out.append("comm.classes.rpm D " + ",".join(repr(float(x)) for c in cl for x in c["rpm"]))
        for k in ("n", "thr", "hi_thr"):
            out.append(f"comm.classes.{k} D " + ",".join(repr(float(c[k])) for c in cl))
    if "drift" in comm:  # the newest drift move of a class centre
        d = comm["drift"]
        out += [f"comm.drift.cls u {int(d['cls'])}", f"comm.drift.max_shift_spreads f {float(d['max_shift_spreads'])!r}",
                f"comm.drift.ts u {int(d['ts'])}"]
    return out


SHADOW_DRIVER = REPO / "tests" / "firmware" / "c" / "ef_proto_shadow.c"


@pytest.fixture(scope="session")
def shadow_tool(fw, tmp_path_factory):
    """ef_proto_shadow: the shadow result encoder (ef_proto predates it), sanitized like ef_proto."""
    out = tmp_path_factory.mktemp("shadow") / "ef_proto_shadow"
    cc = shutil.which("cc") or "gcc"
    run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wno-sign-conversion", "-O1", "-g",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-I{REPO / 'firmware/core/include'}",
         SHADOW_DRIVER, REPO / "firmware/core/src/ef_protocol.c", "-lm", "-o", out])
    return out


def shadow_input(obj: dict) -> bytes:
    """The ef_proto_shadow line format: a header line, then one line per record."""
    sh = obj.get("shadow")
    lines = [" ".join([obj["boot"], str(obj["model"]), repr(float(obj["thr"])), str(obj["dropped"])]
                      + ([str(sh["model"]), repr(float(sh["thr"]))] if sh else []))]
    for r in obj["res"]:
        s = r.get("shadow")
        lines.append(" ".join([str(r["seq"]), str(r["ts"]), repr(float(r["score"])), str(int(r["anom"])),
                               str(r["inf_us"])] + ([repr(float(s["score"])), str(int(s["anom"]))] if s else [])))
    return ("\n".join(lines) + "\n").encode()


def c_encode(fw, kind: str, obj: dict, *, check=True, shadow_tool=None):
    if kind == "result" and "shadow" in obj:
        assert shadow_tool is not None, "a shadow result needs the ef_proto_shadow driver"
        return run([shadow_tool], input=shadow_input(obj), check=check)
    return run([fw.tool("ef_proto")], input=driver_input(kind, obj), check=check)


def golden_device_examples():
    vectors = json.loads((PROTOCOL / "vectors.json").read_text())
    return [(v["kind"], v["file"]) for v in vectors["valid"] if v["kind"] in C_KINDS]


# Goldens the C encoder does not produce yet: the test is expected to fail until it does (strict: once the C
# side writes them, the XPASS fails and the entry must go).
PYTHON_ONLY: dict[str, str] = {}


@pytest.mark.parametrize("kind, file", [
    pytest.param(k, f, marks=pytest.mark.xfail(reason=PYTHON_ONLY[f], strict=True)) if f in PYTHON_ONLY else (k, f)
    for k, f in golden_device_examples()])
def test_golden_examples_byte_identical(fw, shadow_tool, kind, file):
    golden = (PROTOCOL / file).read_bytes().rstrip(b"\n")
    obj = codec.decode(kind, golden)
    assert c_encode(fw, kind, obj, shadow_tool=shadow_tool).stdout == golden


def test_shadow_results_match_the_python_encoder(shadow_tool):
    """Shadow results of every magnitude; without `shadow` the same driver gives the plain message."""
    rng = random.Random(11)
    for with_shadow in (True, False) * 8:
        res = []
        for _ in range(rng.randrange(1, 12)):
            rec = {"seq": rng.randrange(2**32), "ts": rng.randrange(4102444800000),
                   "score": float(np.float32(10 ** rng.uniform(-9, 9))), "anom": rng.random() < 0.5,
                   "inf_us": rng.randrange(10**9)}
            if with_shadow:
                rec["shadow"] = {"score": float(np.float32(10 ** rng.uniform(-9, 9))) if rng.random() > 0.1 else 0.0,
                                 "anom": rng.random() < 0.5}
            res.append(rec)
        obj = {"v": 1, "boot": "%08x" % rng.randrange(2**32), "model": rng.randrange(1, 2**31),
               "thr": float(np.float32(rng.uniform(1e-6, 1e3))), "dropped": rng.randrange(1000), "res": res}
        if with_shadow:
            obj["shadow"] = {"model": obj["model"] + 1, "thr": float(np.float32(rng.uniform(1e-6, 1e3)))}
        proc = run([shadow_tool], input=shadow_input(obj))
        assert proc.stdout == codec.encode("result", obj)


@pytest.mark.parametrize("mutate", [
    lambda o: o["shadow"].update(thr=0.0),            # candidate threshold must be > 0
    lambda o: o["shadow"].update(model=o["model"]),   # the candidate is not the active model
    lambda o: o["res"][0]["shadow"].update(score=-1.0),
])
def test_shadow_violations_are_refused(shadow_tool, mutate):
    obj = codec.decode("result", (PROTOCOL / "examples/result.shadow.json").read_bytes())
    mutate(obj)
    proc = run([shadow_tool], input=shadow_input(obj), check=False)
    assert proc.returncode == 2 and b"schema" in proc.stderr and proc.stdout == b""


CMD_DRIVER = REPO / "tests" / "firmware" / "c" / "ef_cmd_decode.c"
CORE_SRC = REPO / "firmware" / "core" / "src"


@pytest.fixture(scope="session")
def cmd_tool(tmp_path_factory):
    """ef_cmd_decode: the nodes' cmd decoder (core ef_cmd.c) built for the host, sanitized."""
    out = tmp_path_factory.mktemp("cmd") / "ef_cmd_decode"
    cc = shutil.which("cc") or "gcc"
    run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wno-sign-conversion", "-O1", "-g",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-I{REPO / 'firmware/core/include'}",
         CMD_DRIVER, CORE_SRC / "ef_cmd.c", "-lm", "-o", out])
    return out


def golden_cmds() -> list[str]:
    vectors = json.loads((PROTOCOL / "vectors.json").read_text())
    return [v["file"] for v in vectors["valid"] if v["kind"] == "cmd"]


@pytest.mark.parametrize("file", golden_cmds())
def test_golden_cmds_decode_in_c_as_in_python(cmd_tool, file):
    raw = (PROTOCOL / file).read_bytes().rstrip(b"\n")
    want = {k: v for k, v in codec.decode("cmd", raw).items() if k != "v"}
    assert json.loads(run([cmd_tool], input=raw).stdout) == want


def test_a_revert_golden_names_its_campaign():
    assert any("campaign" in codec.decode("cmd", (PROTOCOL / f).read_bytes()) for f in golden_cmds())


def test_revert_campaign_of_64_characters_is_accepted(cmd_tool):
    cid = "c." + "x" * 62
    raw = codec.encode("cmd", {"v": 1, "seq": 0, "id": "rv", "op": "revert", "campaign": cid})
    assert json.loads(run([cmd_tool], input=raw).stdout)["campaign"] == cid


@pytest.mark.parametrize("campaign", ['""', '"c 1"', '"' + "x" * 65 + '"', "7", '"c\u00e9"', '"c/1"', "null"])
def test_cmd_campaign_violations_are_refused(cmd_tool, campaign):
    raw = b'{"v":1,"seq":0,"id":"rv","op":"revert","campaign":%s}' % campaign.encode()
    assert codec.check("cmd", json.loads(raw)) is not None  # the schema refuses it too
    proc = run([cmd_tool], input=raw, check=False)
    assert proc.returncode == 2 and b"schema" in proc.stderr and proc.stdout == b""


def test_cmd_with_a_repeated_campaign_is_refused(cmd_tool):
    raw = b'{"v":1,"seq":0,"id":"rv","op":"revert","campaign":"a","campaign":"b"}'
    proc = run([cmd_tool], input=raw, check=False)
    assert proc.returncode == 2 and b"schema" in proc.stderr


def test_commission_cmds_decode_in_c_as_in_python(cmd_tool):
    for obj in ({"v": 1, "seq": 3, "id": "c-1", "op": "commission"},
                {"v": 1, "seq": 4, "id": "c-2", "op": "commission", "windows": 16},
                {"v": 1, "seq": 5, "id": "c-3", "op": "commission", "windows": 4096, "rpm": 1796.5},
                {"v": 1, "seq": 6, "id": "c-4", "op": "commission", "rpm": 1e6},
                {"v": 1, "seq": 7, "id": "c-5", "op": "commission_end"}):
        raw = codec.encode("cmd", obj)
        want = {k: v for k, v in codec.decode("cmd", raw).items() if k != "v"}
        assert json.loads(run([cmd_tool], input=raw).stdout) == want


@pytest.mark.parametrize("extra, reason", [
    ('"windows":15', b"windows"), ('"windows":4097', b"windows"), ('"windows":64.5', b"windows"),
    ('"windows":"64"', b"not a JSON number"), ('"rpm":0', b"rpm"), ('"rpm":-1800', b"rpm"),
    ('"rpm":1000001', b"rpm"), ('"rpm":1e999', b"not a JSON number"), ('"windows":64,"windows":32', b"twice"),
    ('"speed":1800', b"unknown key"),
])
def test_commission_cmd_with_bad_arguments_is_refused_with_a_reason(cmd_tool, extra, reason):
    raw = b'{"v":1,"seq":0,"id":"cm","op":"commission",%s}' % extra.encode()
    try:
        refused_by_schema = codec.check("cmd", json.loads(raw)) is not None
    except ValueError:  # 1e999: not even a finite JSON number
        refused_by_schema = True
    assert refused_by_schema or b"twice" in reason  # a duplicate key is lost to json.loads, not to C
    proc = run([cmd_tool], input=raw, check=False)
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.startswith(b"schema: ") and reason in proc.stderr, proc.stderr


def test_every_device_kind_has_a_golden_example():
    assert {k for k, _ in golden_device_examples()} == set(C_KINDS)


def test_random_results_match_the_python_encoder(fw):
    """%.6g over float32 scores of every magnitude, zero, large timestamps and sequence numbers."""
    rng = random.Random(5)
    for _ in range(30):
        res = []
        for _ in range(rng.randrange(1, 20)):
            score = float(np.float32(10 ** rng.uniform(-9, 9))) if rng.random() > 0.1 else 0.0
            res.append({"seq": rng.randrange(2**32), "ts": rng.randrange(4102444800000),
                        "score": score, "anom": rng.random() < 0.5, "inf_us": rng.randrange(10**9)})
        obj = {"v": 1, "boot": "%08x" % rng.randrange(2**32), "model": rng.randrange(2**32),
               "thr": float(np.float32(rng.uniform(1e-6, 1e3))), "dropped": rng.randrange(1000),
               "res": res}
        assert c_encode(fw, "result", obj).stdout == codec.encode("result", obj)


def test_debug_capture_matches_the_python_encoder(fw):
    rng = np.random.default_rng(3)
    samples = rng.normal(0, 0.3, 960).astype(np.float32)
    obj = {"v": 1, "boot": "0badf00d", "seq": 3, "ts": 1767225800000, "id": "cap-1", "model": 2,
           "fs": 12000.0, "samples": [float(x) for x in samples],
           "features": [float(x) for x in rng.normal(-4, 1, 32).astype(np.float32)],
           "q_in": [int(x) for x in rng.integers(-128, 128, 32)],
           "q_out": [int(x) for x in rng.integers(-128, 128, 32)],
           "score": float(np.float32(0.75)), "thr": float(np.float32(2.667133)), "anom": False}
    assert c_encode(fw, "debug", obj).stdout == codec.encode("debug", obj)


def test_commissioning_goldens_are_among_the_vectors():
    files = {f for _, f in golden_device_examples()} | set(golden_cmds())
    assert {"examples/result.commissioned.json", "examples/result.commissioning.json",
            "examples/status.birth-commissioned.json", "examples/status.birth-commissioning.json",
            "examples/status.birth-drift.json", "examples/cmd.commission.json"} <= files


def test_random_commissioned_results_and_births_match_the_python_encoder(fw):
    rng = random.Random(17)
    f32 = lambda lo, hi: float(np.float32(10 ** rng.uniform(lo, hi)))  # noqa: E731
    for _ in range(20):
        judged = rng.random() < 0.5
        res = []
        for _ in range(rng.randrange(1, 8)):
            rec = {"seq": rng.randrange(2**32), "ts": rng.randrange(4102444800000), "score": f32(-6, 6),
                   "anom": judged and rng.random() < 0.5, "inf_us": rng.randrange(10**6)}
            if judged:
                rec["hi"] = f32(-3, 3) if rng.random() > 0.1 else 0.0
            else:
                rec["state"] = rng.choice(["commissioning", "uncommissioned"])
            res.append(rec)
        obj = {"v": 1, "boot": "%08x" % rng.randrange(2**32), "model": rng.randrange(1, 100),
               "thr": f32(-3, 3), "dropped": 0, "res": res}
        if judged:
            obj.update(cls=rng.randrange(8), hi_thr=f32(-1, 2))
        assert c_encode(fw, "result", obj).stdout == codec.encode("result", obj)
        k = rng.randrange(1, 9)
        comm = ({"state": "commissioned", "hash": "%016x" % rng.randrange(2**64), "learned": rng.randrange(2**41),
                 "classes": [{"rpm": [round(float(np.float32(r * 0.95)), 1), round(float(np.float32(r * 1.05)), 1)],
                              "n": rng.randrange(16, 4097), "thr": f32(-3, 3), "hi_thr": f32(-1, 2)}
                             for r in sorted(rng.uniform(100, 9e5) for _ in range(k))]}
                if judged else
                {"state": "commissioning", "target": rng.randrange(16, 4097),
                 "progress": [{"rpm": float(np.float32(rng.uniform(0, 1e6))), "n": rng.randrange(5000)}
                              for _ in range(rng.randrange(0, 9))]})
        if judged and rng.random() < 0.5:  # the newest drift move of a class centre
            comm["drift"] = {"cls": rng.randrange(k), "max_shift_spreads": rng.choice([0.0, round(rng.uniform(0.1, 1.0), 3),
                                                                                       f32(-2, 2)]),
                             "ts": rng.randrange(4102444800000)}
        birth = {"v": 1, "boot": obj["boot"], "seq": 0, "ts": 1767225600000, "state": "online", "fw": "1.0.0",
                 "model": 1, "slot": "A", "thr": obj["thr"], "caps": ["debug", "calib", "commission"], "comm": comm}
        assert codec.check("status", birth) is None
        assert c_encode(fw, "status", birth).stdout == codec.encode("status", birth)


@pytest.mark.parametrize("kind, obj", [
    ("result", {"boot": "9f3a0c17", "model": 1, "thr": 1.0, "dropped": 0, "cls": 8, "hi_thr": 1.0,
                "res": [{"seq": 0, "ts": 1, "score": 1.0, "anom": False, "inf_us": 1}]}),  # cls 0..7
    ("result", {"boot": "9f3a0c17", "model": 1, "thr": 1.0, "dropped": 0, "cls": 0, "hi_thr": 0.0,
                "res": [{"seq": 0, "ts": 1, "score": 1.0, "anom": False, "inf_us": 1}]}),  # hi_thr > 0
    ("result", {"boot": "9f3a0c17", "model": 1, "thr": 1.0, "dropped": 0,
                "res": [{"seq": 0, "ts": 1, "score": 1.0, "anom": False, "inf_us": 1, "hi": -0.5}]}),
    ("result", {"boot": "9f3a0c17", "model": 1, "thr": 1.0, "dropped": 0,
                "res": [{"seq": 0, "ts": 1, "score": 1.0, "anom": False, "inf_us": 1, "state": "learning"}]}),
    ("status", {"boot": "9f3a0c17", "seq": 0, "ts": 1, "state": "lost", "comm": {"state": "done"}}),
    ("status", {"boot": "9f3a0c17", "seq": 0, "ts": 1, "state": "lost", "comm": {"state": "commissioned",
                                                                                "hash": "C35F3DA0FC2BF302"}}),
    ("status", {"boot": "9f3a0c17", "seq": 0, "ts": 1, "state": "lost", "comm": {"state": "commissioning",
                                                                                "target": 0}}),
    ("status", {"boot": "9f3a0c17", "seq": 0, "ts": 1, "state": "lost", "comm": {
        "state": "commissioned", "classes": [{"rpm": [0, 2e6], "n": 1, "thr": 1.0, "hi_thr": 1.0}]}}),
    ("status", {"boot": "9f3a0c17", "seq": 0, "ts": 1, "state": "lost", "comm": {
        "state": "commissioned", "classes": [{"rpm": [0, 0], "n": 1, "thr": 1.0, "hi_thr": 0.0}]}}),
    ("status", {"boot": "9f3a0c17", "seq": 0, "ts": 1, "state": "lost", "comm": {
        "state": "commissioning", "progress": [{"rpm": 1.0, "n": 1}] * 9}}),
    ("result", {"boot": "9F3A0C17", "model": 1, "thr": 1.0, "dropped": 0, "res": []}),  # uppercase
    ("result", {"boot": "9f3a0c17", "model": 1, "thr": 0.0, "dropped": 0, "res": []}),  # thr > 0
    ("result", {"boot": "9f3a0c17", "model": 1, "thr": 1.0, "dropped": 0,
                "res": [{"seq": 0, "ts": 1, "score": -1.0, "anom": False, "inf_us": 1}]}),
    ("status", {"boot": "9f3a0c17", "seq": 0, "ts": 1, "state": "online"}),  # birth without fw etc.
    ("status", {"boot": "9f3a0c17", "seq": 0, "ts": 1, "state": "sleeping"}),
    ("ota/state", {"boot": "9f3a0c17", "seq": 0, "ts": 1, "campaign": "c 1", "model": 1, "state": "trial"}),
    ("ota/state", {"boot": "9f3a0c17", "seq": 0, "ts": 1, "campaign": "c1", "model": 1, "state": "trial",
                   "reason": "x" * 201}),
    ("ota/req", {"boot": "9f3a0c17", "seq": 0, "campaign": "c1", "model": 1, "off": 0, "len": 0}),
    ("ota/state", {"boot": "9f3a0c17", "seq": 0, "ts": 4102444800001, "campaign": "c1", "model": 1,
                   "state": "trial"}),
])
def test_schema_violations_are_refused(fw, kind, obj):
    assert codec.check(kind, {"v": 1, **obj}) is not None  # the schema refuses it too
    proc = c_encode(fw, kind, obj, check=False)
    assert proc.returncode == 2 and b"schema" in proc.stderr and proc.stdout == b""


def test_random_v2_readings_match_the_python_encoder(fw):
    """vrms (%.4g) and rpm (%.5g), feature definition v2's readings, with and without the commissioning
    fields, as the Python canonical encoder writes them; out of range or not finite: refused."""
    rng = random.Random(23)
    for _ in range(30):
        res = []
        for _ in range(rng.randrange(1, 10)):
            rec = {"seq": rng.randrange(2**32), "ts": rng.randrange(4102444800000),
                   "score": float(np.float32(10 ** rng.uniform(-6, 6))), "anom": rng.random() < 0.3,
                   "inf_us": rng.randrange(10**6)}
            if rng.random() < 0.3:
                rec["anom"] = False
                rec["state"] = rng.choice(["commissioning", "uncommissioned"])
            if rng.random() < 0.8:
                rec["vrms"] = float(np.float32(10 ** rng.uniform(-4, 3))) if rng.random() > 0.1 else 0.0
                rec["vrms"] = min(rec["vrms"], 1000.0)
            if rng.random() < 0.8:
                rec["rpm"] = float(np.float32(rng.uniform(30.0, 1e5)))
            res.append(rec)
        obj = {"v": 1, "boot": "%08x" % rng.randrange(2**32), "model": rng.randrange(1, 100),
               "thr": float(np.float32(rng.uniform(1e-3, 10))), "dropped": 0, "res": res}
        assert codec.check("result", obj) is None
        assert c_encode(fw, "result", obj).stdout == codec.encode("result", obj)
    base = {"seq": 0, "ts": 1, "score": 1.0, "anom": False, "inf_us": 1}
    for bad in ({"vrms": -0.5}, {"vrms": 1000.5}, {"vrms": float("nan")}, {"rpm": 29.9}, {"rpm": 1e5 + 1},
                {"rpm": float("inf")}):
        obj = {"boot": "9f3a0c17", "model": 1, "thr": 1.0, "dropped": 0, "res": [{**base, **bad}]}
        proc = c_encode(fw, "result", obj, check=False)
        assert proc.returncode != 0 and proc.stdout == b"", bad


def test_random_why_and_hint_match_the_python_encoder(fw):
    """An anomalous result's `why` (1-3 bands or named features, largest share first) and `hint`, as the
    Python canonical encoder writes them; the rules JSON Schema cannot state are the C encoder's too."""
    rng = random.Random(29)
    names = ["vrms", "kurtosis", "crest"]
    hints = ["unbalance", "misalignment", "looseness", "bearing_outer_race", "bearing_inner_race", "bearing_ball",
             "bearing", "unknown"]
    for _ in range(40):
        res = []
        for _ in range(rng.randrange(1, 6)):
            rec = {"seq": rng.randrange(2**32), "ts": rng.randrange(4102444800000),
                   "score": float(np.float32(10 ** rng.uniform(-3, 3))), "anom": rng.random() < 0.7,
                   "inf_us": rng.randrange(10**6), "vrms": round(rng.uniform(0, 50), 2), "rpm": round(rng.uniform(300, 4500))}
            if rec["anom"]:
                shares = sorted((round(rng.uniform(0, 0.33), 3) for _ in range(rng.randrange(1, 4))), reverse=True)
                why = []
                for s in shares:
                    if rng.random() < 0.3:
                        why.append({"name": rng.choice(names), "share": s})
                    else:
                        lo = float(np.float32(rng.uniform(0, 20000)))
                        why.append({"lo": lo, "hi": float(np.float32(lo + rng.uniform(0.5, 5000))), "share": s})
                rec["why"] = why
                if rng.random() < 0.8:
                    rec["hint"] = rng.choice(hints)
            res.append(rec)
        obj = {"v": 1, "boot": "%08x" % rng.randrange(2**32), "model": rng.randrange(1, 100),
               "thr": float(np.float32(rng.uniform(1e-3, 10))), "dropped": 0, "res": res}
        assert codec.check("result", obj) is None
        assert c_encode(fw, "result", obj).stdout == codec.encode("result", obj)
    base = {"seq": 0, "ts": 1, "score": 1.0, "anom": True, "inf_us": 1}
    band = {"lo": 10.0, "hi": 20.0, "share": 0.5}
    for bad in ({"why": [band], "anom": False}, {"hint": "unbalance", "anom": False}, {"hint": "gearbox"},
                {"why": [{"lo": 20.0, "hi": 10.0, "share": 0.5}]}, {"why": [{"name": "rms", "share": 0.5}]},
                {"why": [{**band, "share": 0.2}, {**band, "share": 0.3}]},  # not largest first
                {"why": [{**band, "share": 0.6}, {**band, "share": 0.6}]},  # more than the whole
                {"why": [band] * 4}, {"why": [{**band, "share": 1.5}]}, {"why": [{**band, "hi": 60000.0}]}):
        obj = {"boot": "9f3a0c17", "model": 1, "thr": 1.0, "dropped": 0, "res": [{**base, **bad}]}
        proc = c_encode(fw, "result", obj, check=False)
        assert proc.returncode != 0 and proc.stdout == b"", bad
