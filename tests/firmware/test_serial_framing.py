"""Serial framing (COBS + CRC-32, 0x00 delimiter) of the C core against the Python one
(`edgefleet.device.framing`, the bridge's), and resynchronisation after garbage, on the sanitized
build. One COBS per language: these tests hold the two against each other."""

from __future__ import annotations

import json
import random
import struct
import zlib

import pytest

from edgefleet.device.framing import cobs_decode, cobs_encode
from fw_helpers import run


def frame(payload: bytes) -> bytes:
    return cobs_encode(payload + struct.pack("<I", zlib.crc32(payload))) + b"\0"


def records(payloads) -> bytes:
    return b"".join(struct.pack("<H", len(p)) + p for p in payloads)


def parse_records(blob: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(blob):
        (n,) = struct.unpack_from("<H", blob, i)
        out.append(blob[i + 2:i + 2 + n])
        i += 2 + n
    return out


def decode(fw, stream: bytes):
    proc = run([fw.tool("ef_serial"), "decode"], input=stream)
    return parse_records(proc.stdout), json.loads(proc.stderr.decode().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def payloads():
    rng = random.Random(4)
    edge = [b"", b"\0", b"\0\0\0", b"\x01" * 253, b"\x01" * 254, b"\x01" * 255, bytes(range(256)),
            b"\xff" * 600, bytes(1000)]
    rand = [bytes(rng.choice([0, rng.randrange(256)]) for _ in range(rng.randrange(1, 700)))
            for _ in range(200)]
    return edge + rand


def test_encoding_matches_the_reference_byte_for_byte(fw, payloads):
    proc = run([fw.tool("ef_serial"), "encode"], input=records(payloads))
    assert proc.stdout == b"".join(frame(p) for p in payloads)


def test_round_trip(fw, payloads):
    got, summary = decode(fw, b"".join(frame(p) for p in payloads))
    assert got == payloads and summary == {"frames": len(payloads), "dropped": 0}


def test_resynchronises_after_garbage_and_rejects_damaged_frames(fw, payloads):
    rng = random.Random(9)
    # join mid-stream: the tail of a frame we missed glues onto the first one, which is lost
    stream, expected, damaged = bytearray(b or 7 for b in rng.randbytes(37)), [], 1
    stream += frame(payloads[0])
    for p in payloads[1:]:
        f = bytearray(frame(p))
        roll = rng.random()
        if roll < 0.2 and len(f) > 2:  # flip a bit inside the frame body
            i = rng.randrange(len(f) - 1)
            f[i] ^= 1 << rng.randrange(8)
            if f[i] == 0:
                f[i] = 0x55
            damaged += 1
        elif roll < 0.3:  # noise between frames, ended by a delimiter
            stream += bytes(b or 1 for b in rng.randbytes(rng.randrange(1, 50))) + b"\0"
            expected.append(p)
        else:
            expected.append(p)
        stream += f
    got, summary = decode(fw, bytes(stream))
    # every intact frame survives, no damaged one gets through
    assert got == expected
    assert summary["frames"] == len(expected) and summary["dropped"] >= damaged


def test_random_streams_never_crash(fw):
    rng = random.Random(11)
    for _ in range(20):
        blob = rng.randbytes(rng.randrange(1, 20000))
        got, summary = decode(fw, blob)
        assert summary["frames"] == len(got)


def test_node_publishes_protocol_results_over_the_serial_link(fw, shipped_model, cwru_dir, tmp_path):
    """Recorded samples -> C node loop -> protocol v1 result messages -> COBS frames: what a
    gateway receives decodes (reference COBS + CRC) into schema-valid results with the node's scores."""
    import numpy as np

    from edgefleet.toolchain.datasets import load_folder
    from edgefleet.protocol import codec

    rec = next(r for r in load_folder(cwru_dir) if not r.is_normal)
    rec.signal[:30000].astype("<f4").tofile(tmp_path / "s.f32")
    base = [fw.tool("ef_node"), shipped_model / "model.efm", tmp_path / "s.f32", repr(rec.fs)]
    plain = [json.loads(x) for x in run(base).stdout.decode().splitlines()[:-1]]
    # the node judging by the model's own threshold, as the plain run (a commissioning node gives
    # no verdict while it learns; tests/firmware/test_node_commissioning.py)
    stream = run(base + ["--protocol", "0a1b2c3d", "--serial", "--no-commission"]).stdout
    frames = [f for f in stream.split(b"\0") if f]
    assert len(frames) == len(plain) > 10
    for i, (f, p) in enumerate(zip(frames, plain)):
        body = cobs_decode(f)
        payload, crc = body[:-4], struct.unpack("<I", body[-4:])[0]
        assert zlib.crc32(payload) == crc
        msg = codec.decode("result", payload)
        assert msg["boot"] == "0a1b2c3d" and msg["model"] == 1
        (r,) = msg["res"]
        assert r["seq"] == i and r["anom"] == p["anom"]
        assert np.isclose(r["score"], p["score"], rtol=1e-5)
        assert r["ts"] == 1767225600000 + round(i * 960 / rec.fs * 1000)
