"""A slow disk on demand, for the soak test and benchmarks only: every SQLite commit first sleeps.

`EDGEFLEET_TEST_COMMIT_DELAY_FILE` names a file holding a number of milliseconds; while the file
exists, each commit of the SQLite store sleeps that long first, as if fsync took that long. A file,
not a number in the variable, so a running `edgefleet serve` can be slowed and sped up again
(benchmarks/soak.py writes and removes it on its schedule). Unset (always, in production): no cost
beyond one attribute test per commit.
"""

from __future__ import annotations

import os
import time

ENV = "EDGEFLEET_TEST_COMMIT_DELAY_FILE"
_PATH = os.environ.get(ENV) or None
MAX_DELAY_MS = 60_000  # a typo in the file must not stall the store for hours


def delay_ms(path: str | None = _PATH) -> float:
    """The delay the file asks for now: 0 without the variable, the file, or a number in it."""
    if path is None:
        return 0.0
    try:
        with open(path, encoding="ascii") as f:
            ms = float(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0
    return min(max(ms, 0.0), MAX_DELAY_MS) if ms == ms else 0.0


def before_commit() -> None:
    """Sleep as long as the delay file says (nothing when the variable is not set)."""
    if _PATH is not None:
        ms = delay_ms(_PATH)
        if ms > 0:
            time.sleep(ms / 1000.0)


__all__ = ["ENV", "MAX_DELAY_MS", "before_commit", "delay_ms"]
