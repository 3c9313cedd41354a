"""Ask nodes for raw windows of their machine, now: what `edgefleet data pull --target --seconds` does.

A node sends one raw window (a `debug` message: samples, fs, features, model input and output)
for each `debug` command. So for N seconds of a machine's signal, one command at a time is queued
per device (`edgefleet serve` sends queued commands), the next once the previous one's capture is
in the store, until the device's captures add up to N seconds. A device that does not answer
within `timeout_s` of its last command is given up on and named; the others go on.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_SECONDS = 3600.0  # per device: at most an hour of raw signal per pull (each window is one message)


@dataclass
class DeviceCapture:
    device: str
    captures: list[tuple[int, dict]] = field(default_factory=list)  # (ts, debug body)
    seconds: float = 0.0
    pending: str | None = None  # id of the command in flight
    sent_at: float = 0.0
    failed: str = ""  # why the device was given up on


def request_captures(store, registry, devices: list[str], seconds: float, *, timeout_s: float = 30.0,
                     poll_s: float = 0.2, who: str = "edgefleet data pull",
                     progress: Callable[[float], None] | None = None,
                     clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
                     ) -> list[DeviceCapture]:
    """Captures of `seconds` of signal from each device (fewer from a device that stopped answering:
    its `failed` says why). `progress` gets the seconds added at each new capture."""
    run = secrets.token_hex(3)
    state = {d: DeviceCapture(d) for d in devices}
    k = 0
    while True:
        open_ = [s for s in state.values() if not s.failed and s.seconds < seconds]
        if not open_:
            return list(state.values())
        now = clock()
        for s in open_:
            if s.pending is None:
                k += 1
                s.pending, s.sent_at = f"pull-{run}-{k}", now
                registry.queue_command(s.device, {"id": s.pending, "op": "debug"}, note=who)
                continue
            got = next((e for e in store.events(s.device, kind="debug", limit=20) if e.body.get("id") == s.pending), None)
            if got is not None:
                body = got.body
                fs, n = float(body.get("fs") or 0.0), len(body.get("samples") or ())
                if fs <= 0 or n == 0:
                    s.failed = "its capture holds no raw samples (a node that sends features only)"
                    continue
                s.captures.append((got.ts, body))
                s.seconds += n / fs
                s.pending = None
                if progress is not None:
                    progress(n / fs)
            elif now - s.sent_at > timeout_s:
                s.failed = (f"no capture within {timeout_s:g} s of asking (offline, busy commissioning, "
                            "or `edgefleet serve` is not running to send the command)")
        sleep(poll_s)
