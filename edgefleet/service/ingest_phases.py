"""Where ingest's time goes, batch by batch: waiting for messages, filling the batch, decoding, the
store's write and commit, alarms, acknowledging.

Throughput through `serve` is bounded by the broker's window (Receive Maximum messages
unacknowledged) over the time a message spends between its arrival and its PUBACK, so the phases
say which part to fix. The stats line carries the totals; with `EDGEFLEET_INGEST_TRACE=PATH` every
batch is also written as one JSON line (benchmarks/ingest_pipeline.py reads them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import IO

# idle: waiting for a batch's first message; fill: for its last; decode; taken: the decoded batch waiting
# for the worker (with ingest_overlap: while the batch before is written); write: the store's write and
# commit (and priming the alarm tracker); alarms; ack. Their sum is a batch's time through ingest.
PHASES = ("idle", "fill", "decode", "taken", "write", "alarms", "ack")


@dataclass
class BatchPhases:
    """Sums of the phase times (seconds) since the last `line()`, and the optional per-batch trace."""

    trace_path: str = ""
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    batches: int = 0
    messages: int = 0
    full: int = 0
    _trace: IO[str] | None = None

    def record(self, marks: dict[str, float], messages: int, full: bool, **extra: object) -> None:
        """`marks`: monotonic time at the start of the wait and at the end of each phase, in PHASES order."""
        t = [marks["start"], *(marks[p] for p in PHASES)]
        for p, a, b in zip(PHASES, t, t[1:]):
            self.sums[p] += b - a
        self.batches += 1
        self.messages += messages
        self.full += full
        if self.trace_path:
            if self._trace is None:
                self._trace = open(self.trace_path, "a", buffering=1)  # noqa: SIM115 (kept open, line-buffered)
            self._trace.write(json.dumps({"t": round(time.time(), 4), "n": messages, "full": full, **extra,
                                          **{p: round(1e3 * (b - a), 2) for p, a, b in zip(PHASES, t, t[1:])}})
                              + "\n")

    def line(self) -> str:
        """Mean per batch of each phase (ms), the mean batch and the share of full ones; then reset."""
        if not self.batches:
            return "no batches"
        n = self.batches
        out = (f"{n} batches of {self.messages / n:.0f} msgs ({100 * self.full / n:.0f} % full); per batch ms: "
               + ", ".join(f"{p} {1e3 * self.sums[p] / n:.1f}" for p in PHASES))
        self.sums = dict.fromkeys(PHASES, 0.0)
        self.batches = self.messages = self.full = 0
        return out
