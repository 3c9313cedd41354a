"""The one wall clock of the package: integer milliseconds since the Unix epoch (UTC), the unit
of every `ts` on the wire and in the stores (docs/protocol.md)."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
