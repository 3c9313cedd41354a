"""The bridge's framing equals the firmware's (ef_serial) byte for byte; bad input is refused clearly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from testkit import free_port

from edgefleet.device.bridge import Bridge, BridgeError
from edgefleet.device.framing import FrameDecoder, cobs_decode, encode_frame, split_link

from .conftest import FIRMWARE, REPO

LENGTHS = [0, 1, 2, 250, 253, 254, 255, 256, 507, 508, 509, 1000, 4096]


def c_encode(payload: bytes) -> bytes:
    record = len(payload).to_bytes(2, "little") + payload  # ef_serial encode reads length-prefixed records
    return subprocess.run([str(FIRMWARE / "build" / "host" / "ef_serial"), "encode"], input=record,
                          capture_output=True, check=True).stdout


@pytest.mark.parametrize("n", LENGTHS)
def test_frames_equal_the_c_encoder(mcu, n):
    rng = np.random.default_rng(n)
    for payload in (bytes(rng.integers(0, 256, n, dtype=np.uint8)), bytes(n), b"\x01" * n):
        frame = encode_frame(payload)
        assert frame == c_encode(payload)
        assert FrameDecoder().feed(frame) == [payload]


def test_decoder_resynchronises_after_noise_and_damage():
    good = [b"result {}", b"x" * 600, b"status {\"v\":1}"]
    damaged = bytearray(encode_frame(b"will lost"))
    damaged[3] ^= 0x10
    stream = b"\x07\x08noise\x00" + encode_frame(good[0]) + bytes(damaged) + encode_frame(good[1]) + \
        encode_frame(good[2])
    dec = FrameDecoder()
    out = []
    for i in range(0, len(stream), 7):  # arbitrary chunking
        out += dec.feed(stream[i:i + 7])
    assert out == good and dec.dropped == 2
    assert split_link(b"cmd {\"a\":1}") == ("cmd", b"{\"a\":1}") and split_link(b"boot") == ("boot", b"")
    with pytest.raises(ValueError):
        cobs_decode(b"\x05ab")


def test_overlong_frame_is_dropped_without_growing_memory():
    dec = FrameDecoder(max_frame=1000)
    assert dec.feed(b"\x01" * 5000) == [] and len(dec.buf) <= 1000 and dec.dropped >= 1
    assert dec.feed(b"\x00" + encode_frame(b"ok")) == [b"ok"]


def test_bridge_refuses_unusable_endpoints_clearly():
    with pytest.raises(BridgeError, match="expected tcp://HOST:PORT"):
        Bridge("tcp://nohost", "mqtt://127.0.0.1:1", "dev-1").run()
    with pytest.raises(BridgeError, match="cannot connect"):
        Bridge(f"tcp://127.0.0.1:{free_port()}", "mqtt://127.0.0.1:1", "dev-1", connect_timeout=0.5).run()
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "bridge", "--serial", "/nonexistent/tty",
                           "--device", "dev-1"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "cannot open serial device /nonexistent/tty" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "bridge", "--serial", "tcp://127.0.0.1:1",
                           "--device", "bad id!"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "topic" in proc.stderr


def test_bridge_on_a_tty_sets_raw_speed_and_answers_boot_with_hello():
    """A pty stands in for a board's USB virtual COM port."""
    import os
    import select
    import termios
    import threading
    import time

    master, slave = os.openpty()
    b = Bridge(os.ttyname(slave), "mqtt://127.0.0.1:1", "board-1", baud=115200)
    stop = threading.Event()
    t = threading.Thread(target=b.run, args=(stop,), daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while termios.tcgetattr(slave)[3] & termios.ICANON:  # until the bridge made the line raw
            assert time.monotonic() < deadline, "the bridge did not configure the tty"
            time.sleep(0.01)
        os.write(master, b"noise\x00" + encode_frame(b"boot"))
        dec, got = FrameDecoder(), []
        while not got:
            assert time.monotonic() < deadline, "no hello from the bridge"
            if select.select([master], [], [], 0.2)[0]:
                got = dec.feed(os.read(master, 4096))
        assert got[0].startswith(b"hello ") and int(got[0][6:]) > 1_700_000_000_000
        attrs = termios.tcgetattr(slave)
        assert attrs[4] == attrs[5] == termios.B115200 and not attrs[3] & termios.ICANON
    finally:
        stop.set()
        t.join(5)
        os.close(master)
        os.close(slave)
    assert not t.is_alive() and b.stats.frames_in == 1 and b.stats.bad_frames == 1


class _Sent:
    """Stands in for the serial link: keeps the frames the bridge sends to the node."""

    def __init__(self):
        self.frames: list[bytes] = []

    def send(self, data: bytes) -> None:
        dec = FrameDecoder()
        self.frames += dec.feed(data)


def test_bridge_turns_ota_messages_into_link_messages():
    import base64
    import hashlib
    import zlib

    from edgefleet import protocol

    b = Bridge("tcp://127.0.0.1:1", "mqtt://127.0.0.1:1883", "qemu-x")
    link = _Sent()
    man = b'{"body":{"x":1},"signature":"' + b"ab" * 64 + b'"}'
    blob = bytes(range(256)) * 3
    offer = {"v": 1, "seq": 3, "campaign": "c-1", "model": 7, "size": len(blob),
             "sha256": hashlib.sha256(blob).hexdigest(), "chunk": 512, "trial_s": 9, "shadow": True,
             "manifest": man.decode()}
    b._to_node(link, "ota/offer", protocol.encode("ota/offer", offer))
    # a shadow offer without shadow_s: SHADOW_S = trial_s (the schema's default), then with one; no
    # ticket, no keysets: TLEN and KLEN 0 (the node refuses it)
    sha = offer["sha256"].encode()
    assert link.frames[-1] == (b"offer c-1 7 768 512 9 1 %d " % len(man)) + sha + b" 9 0 0"
    b._to_node(link, "ota/offer", protocol.encode("ota/offer", {**offer, "shadow_s": 4}))
    assert link.frames[-1] == (b"offer c-1 7 768 512 9 1 %d " % len(man)) + sha + b" 4 0 0"
    b._to_node(link, "ota/offer", protocol.encode("ota/offer", {**offer, "shadow": False}))
    assert link.frames[-1] == (b"offer c-1 7 768 512 9 0 %d " % len(man)) + sha + b" 0 0 0"
    # with a ticket and keysets: their lengths on the line, and the documents read as one string
    ticket = b'{"body":{"t":2},"signature":"' + b"cd" * 64 + b'"}'
    keysets = (b'{"body":{"k":1},"signature":"' + b"ef" * 64 + b'"} ') * 2 + b'{"body":{"k":3}}'
    b._to_node(link, "ota/offer", protocol.encode("ota/offer", {**offer, "ticket": ticket.decode(),
                                                                "keys": keysets.decode()}))
    assert link.frames[-1] == (b"offer c-1 7 768 512 9 1 %d " % len(man)) + sha + \
        b" 9 %d %d" % (len(ticket), len(keysets))
    docs = man + ticket + keysets
    for off in range(0, len(docs), 192):  # the node's requests, as it makes them
        b._manifest_piece(link, b"c-1 7 %d %d" % (off, min(192, len(docs) - off)))
    got = [f for f in link.frames if f.startswith(b"mdat ")]
    assert b"".join(f.split(b" ", 4)[4] for f in got) == docs
    b._manifest_piece(link, b"c-1 7 %d 10" % len(docs))  # past the end: nothing
    assert link.frames[-1] == got[-1]
    b._to_node(link, "ota/offer", protocol.encode("ota/offer", offer))
    # the manifest, in pieces the node asks for (capped), from the offer the bridge holds
    b._manifest_piece(link, b"c-1 7 0 100")
    b._manifest_piece(link, b"c-1 7 100 10000")
    assert link.frames[-2] == b"mdat c-1 7 0 " + man[:100]
    assert link.frames[-1] == b"mdat c-1 7 100 " + man[100:356]
    n = len(link.frames)
    b._manifest_piece(link, b"c-2 7 0 100")  # another campaign: nothing
    b._manifest_piece(link, b"c-1 7 0")  # malformed: counted
    assert len(link.frames) == n and b.stats.invalid == 1
    # a chunk: raw bytes (with zeros) after the header, the sender's CRC passed on for the node to check
    data = blob[256:768]
    msg = {"v": 1, "seq": 4, "campaign": "c-1", "model": 7, "off": 256, "crc": zlib.crc32(data),
           "data": base64.b64encode(data).decode()}
    b._to_node(link, "ota/data", protocol.encode("ota/data", msg))
    assert link.frames[-1] == b"data c-1 7 256 %d " % zlib.crc32(data) + data
    # an invalid offer is not forwarded; a cleared (empty retained) offer forgets the manifest
    b._to_node(link, "ota/offer", b'{"v":1,"campaign":"c-1"}')
    assert len(link.frames) == n + 1 and b.stats.invalid == 2
    b._to_node(link, "ota/offer", b"")
    b._manifest_piece(link, b"c-1 7 0 100")
    assert len(link.frames) == n + 1 and b.stats.ota_in == 6  # five offers, one chunk
