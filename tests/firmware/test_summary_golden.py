"""Summary mode in C (ef_protocol.c): the summary encoder is byte-identical to the goldens and to the Python
canonical encoder, the node's accumulator computes what protocol.summary_of_scores computes, and what the
service refuses (protocol.summary_record) the C encoder refuses too."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
from fw_helpers import REPO, run

from edgefleet import protocol
from edgefleet.protocol import codec

PROTOCOL = REPO / "edgefleet" / "protocol"
DRIVER = REPO / "tests" / "firmware" / "c" / "ef_proto_summary.c"
HEAD = ("boot", "seq", "ts", "period", "model", "thr", "dropped")


@pytest.fixture(scope="module")
def summary_tool(tmp_path_factory):
    out = tmp_path_factory.mktemp("summary") / "ef_proto_summary"
    cc = shutil.which("cc") or "gcc"
    run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wno-sign-conversion", "-O1", "-g",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-I{REPO / 'firmware/core/include'}",
         DRIVER, REPO / "firmware/core/src/ef_protocol.c", "-lm", "-o", out])
    return out


def encode_line(obj: dict) -> bytes:
    vals = [obj[k] for k in (*HEAD, "n", "anom", "min", "mean", "p95", "max")]
    if "vrms" in obj:
        vals += [obj["vrms"], obj["vrms_max"]]
    return ("E " + " ".join(v if isinstance(v, str) else repr(v) for v in vals) + "\n").encode()


def goldens() -> list[str]:
    vectors = json.loads((PROTOCOL / "vectors.json").read_text())
    return [v["file"] for v in vectors["valid"] if v["kind"] == "summary"]


def test_there_are_summary_goldens_with_and_without_vrms():
    files = goldens()
    assert len(files) >= 2
    assert {"vrms" in json.loads((PROTOCOL / f).read_text()) for f in files} == {True, False}


@pytest.mark.parametrize("file", goldens())
def test_golden_summaries_byte_identical(summary_tool, file):
    golden = (PROTOCOL / file).read_bytes().rstrip(b"\n")
    obj = codec.decode("summary", golden)
    protocol.summary_record("d", obj)  # the golden obeys the rules beyond the schema too
    assert run([summary_tool], input=encode_line(obj)).stdout == golden


def test_random_summaries_match_the_python_encoder(summary_tool):
    rng = random.Random(41)
    f32 = lambda lo, hi: float(np.float32(10 ** rng.uniform(lo, hi)))  # noqa: E731
    for _ in range(40):
        vals = sorted(f32(-6, 5.9) if rng.random() > 0.05 else 0.0 for _ in range(4))
        n = rng.randrange(2, 3600)
        obj = {"v": 1, "boot": "%08x" % rng.randrange(2**32), "seq": rng.randrange(2**32),
               "ts": rng.randrange(4102444800000), "period": rng.randrange(max(1000, n * 10), 3600001),
               "model": rng.randrange(2**32), "thr": f32(-4, 3), "dropped": rng.randrange(1000), "n": n,
               "anom": rng.randrange(n + 1), "min": vals[0], "mean": vals[rng.choice((1, 2))], "p95": vals[2],
               "max": vals[3]}
        if rng.random() < 0.5:
            vm = float(np.float32(rng.uniform(0, 1000)))
            obj.update(vrms=float(np.float32(rng.uniform(0, vm))), vrms_max=vm)
        assert codec.check("summary", obj) is None
        protocol.summary_record("d", obj)
        assert run([summary_tool], input=encode_line(obj)).stdout == codec.encode("summary", obj)


def test_the_node_accumulator_computes_what_python_computes(summary_tool):
    """ef_summary_add/fill over a period's float32 scores: n, anom, min, p95 (nearest rank) and max exactly as
    protocol.summary_of_scores, the mean to the canonical 6 digits."""
    rng = np.random.default_rng(5)
    for n in (1, 2, 19, 20, 21, 100, 300, 1024):
        scores = [float(x) for x in rng.lognormal(-3, 0.8, n).astype(np.float32)]
        thr = 0.1
        flags = [s > thr for s in scores]
        vrms = [float(x) for x in rng.uniform(0.5, 8, n).astype(np.float32)]
        want = protocol.summary_of_scores("0badf00d", 3, 1767226200000, 300000, 7, thr, scores, sum(flags),
                                          vrms=vrms)
        lines = ["A 0badf00d 3 1767226200000 300000 7 0.1 0"]
        lines += [f"{s!r} {int(a)} {v!r}" for s, a, v in zip(scores, flags, vrms)]
        got = json.loads(run([summary_tool], input=("\n".join(lines) + "\n").encode()).stdout)
        canon = json.loads(codec.encode("summary", want))
        for k in ("n", "anom", "min", "p95", "max", "vrms_max", "seq", "ts", "period", "model"):
            assert got[k] == canon[k], (n, k)
        assert got["mean"] == pytest.approx(canon["mean"], rel=2e-6)
        assert got["vrms"] == pytest.approx(canon["vrms"], rel=2e-4)


@pytest.mark.parametrize("order", ["ascending", "descending", "ties"])
def test_the_p95_from_the_kept_top_scores_is_the_sorted_ones(summary_tool, order):
    """The accumulator keeps only the top EF_SUMMARY_TOP (52) scores: at any n up to 1,024 and in any order the
    p95 is still the ceil(0.95 n)-th smallest of them all (n 1,020-1,024 need all 52)."""
    rng = np.random.default_rng(11)
    for n in (52, 53, 1019, 1020, 1024):
        scores = [float(x) for x in rng.lognormal(-3, 0.8, n).astype(np.float32)]
        if order == "ties":
            scores = [float(np.float32(round(s, 2) + 0.001)) for s in scores]
        scores.sort(reverse=order == "descending")
        want = protocol.summary_of_scores("0badf00d", 0, 1767226200000, 3600000, 1, 0.1, scores, 0)
        lines = ["A 0badf00d 0 1767226200000 3600000 1 0.1 0"] + [f"{s!r} 0" for s in scores]
        got = json.loads(run([summary_tool], input=("\n".join(lines) + "\n").encode()).stdout)
        canon = json.loads(codec.encode("summary", want))
        assert [got[k] for k in ("n", "min", "p95", "max")] == [canon[k] for k in ("n", "min", "p95", "max")], n


def test_a_full_accumulator_says_capacity(summary_tool):
    lines = ["A 0badf00d 0 1767226200000 3600000 1 0.1 0"] + ["0.01 0"] * 1025
    proc = run([summary_tool], input=("\n".join(lines) + "\n").encode(), check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == b"capacity" and proc.stdout == b""


def test_a_window_without_vrms_leaves_the_summary_without_vrms(summary_tool):
    lines = ["A 0badf00d 0 1767226200000 60000 1 0.1 0", "0.01 0 2.5", "0.02 0"]
    got = json.loads(run([summary_tool], input=("\n".join(lines) + "\n").encode()).stdout)
    assert "vrms" not in got and got["n"] == 2 and got["p95"] == 0.02


GOOD = {"v": 1, "boot": "9f3a0c17", "seq": 1, "ts": 1767226200000, "period": 300000, "model": 3, "thr": 0.05,
        "dropped": 0, "n": 300, "anom": 2, "min": 0.01, "mean": 0.02, "p95": 0.04, "max": 0.06}


@pytest.mark.parametrize("bad", [
    {"n": 0}, {"anom": 301}, {"n": 30001},  # more than one window per 10 ms of the period
    {"period": 999}, {"period": 3600001}, {"mean": 0.07}, {"mean": 0.005}, {"p95": 0.07}, {"min": 0.08},
    {"max": 2e6, "p95": 1.5e6}, {"thr": 0.0}, {"min": float("nan")}, {"max": float("inf")},
    {"n": 1, "anom": 0},  # one window, four different numbers
    {"vrms": 3.0, "vrms_max": 2.0}, {"vrms": 3.0, "vrms_max": 1001.0}, {"boot": "9F3A0C17"}, {"ts": 4102444800001},
])
def test_what_the_service_refuses_the_c_encoder_refuses(summary_tool, bad):
    obj = {**GOOD, **bad}
    try:
        refused = codec.check("summary", obj) is not None
        if not refused:
            protocol.summary_record("d", obj)
    except protocol.ProtocolError:
        refused = True
    assert refused, bad
    proc = run([summary_tool], input=encode_line(obj), check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == b"schema" and proc.stdout == b"", bad
