"""The serial link's framing, the one Python copy (the C one is firmware/core/src/ef_serial.c):
each frame is COBS(payload || CRC-32 little-endian) followed by 0x00 (docs/firmware.md).
A frame's payload is one link message "KIND BODY"."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

MAX_FRAME = 256 * 1024  # a debug capture of a long window fits; anything longer is noise


# ---- framing (docs/firmware.md, ef_serial) -------------------------------------------
def cobs_encode(data: bytes) -> bytes:
    """COBS without the delimiter; a full 254-byte block at the very end opens no empty block."""
    out = bytearray()
    block = bytearray()
    after_full = False
    for b in data:
        after_full = False
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
            continue
        block.append(b)
        if len(block) == 254:
            out.append(255)
            out += block
            block.clear()
            after_full = True
    if not (after_full and not block):
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(enc: bytes) -> bytes:
    """Inverse of cobs_encode; ValueError on a malformed block."""
    out = bytearray()
    i = 0
    while i < len(enc):
        code = enc[i]
        if code == 0 or i + code > len(enc):
            raise ValueError("malformed COBS block")
        out += enc[i + 1:i + code]
        i += code
        if code < 255 and i < len(enc):
            out.append(0)
    return bytes(out)


def encode_frame(payload: bytes) -> bytes:
    """One wire frame: COBS(payload || CRC-32 LE) 0x00."""
    return cobs_encode(payload + zlib.crc32(payload).to_bytes(4, "little")) + b"\0"


@dataclass
class FrameDecoder:
    """Splits a byte stream into good payloads; bad or overlong frames are counted and dropped."""

    max_frame: int = MAX_FRAME
    buf: bytearray = field(default_factory=bytearray)
    good: int = 0
    dropped: int = 0

    def feed(self, data: bytes) -> list[bytes]:
        out = []
        start = 0
        while True:
            z = data.find(b"\0", start)
            if z < 0:
                self.buf += data[start:]
                if len(self.buf) > self.max_frame:  # resynchronise at the next delimiter
                    self.buf.clear()
                    self.dropped += 1
                return out
            self.buf += data[start:z]
            start = z + 1
            raw, self.buf = bytes(self.buf), bytearray()
            if not raw:
                continue
            try:
                dec = cobs_decode(raw)
            except ValueError:
                self.dropped += 1
                continue
            if len(dec) < 4 or zlib.crc32(dec[:-4]).to_bytes(4, "little") != dec[-4:]:
                self.dropped += 1
                continue
            self.good += 1
            out.append(dec[:-4])


def split_link(payload: bytes) -> tuple[str, bytes]:
    """'KIND BODY' -> (kind, body); body is b'' for a bare kind."""
    kind, _, body = payload.partition(b" ")
    return kind.decode("ascii", "replace"), body
