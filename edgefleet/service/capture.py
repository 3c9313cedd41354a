"""Ask nodes for raw windows of their machine, now: what `edgefleet data pull --target --seconds` does.

A node sends one raw window (a `debug` message: samples, fs, features, model input and output)
for each `debug` command, or `n` windows in a row when its birth advertises the `debug_n`
capability. So for N seconds of a machine's signal, one command at a time is queued per device
(`edgefleet serve` sends queued commands), the next once the previous one's captures are in the
store, until the device's captures add up to N seconds: one round trip per window for a node
without `debug_n` (the C node today), one per `MAX_PER_REQUEST` windows for the others. A device
that does not answer within `timeout_s` of its last command or capture is given up on and named;
the others go on.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_SECONDS = 3600.0  # per device: at most an hour of raw signal per pull (each window is one message)
MAX_PER_REQUEST = 32  # windows one command asks a `debug_n` node for (~1 MB of JSON at 25.6 kHz)


@dataclass
class DeviceCapture:
    device: str
    captures: list[tuple[int, dict]] = field(default_factory=list)  # (ts, debug body)
    seconds: float = 0.0
    pending: str | None = None  # id of the command in flight
    asked: int = 0  # windows that command asked for
    got: int = 0  # of them, arrived
    sent_at: float = 0.0  # when the command was queued, or its newest capture arrived
    many: bool = False  # the node honours `n` (its birth advertises `debug_n`)
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
    for d, s in state.items():
        info = store.device(d)
        s.many = bool(info is not None and "debug_n" in (info.caps or ()))
    k = 0
    while True:
        open_ = [s for s in state.values() if not s.failed and s.seconds < seconds]
        if not open_:
            return list(state.values())
        now = clock()
        for s in open_:
            if s.pending is None:
                k += 1
                # the first request learns the window length; then as many as the rest needs
                per = s.seconds / len(s.captures) if s.captures else 0.0
                s.asked = 1 if not (s.many and per > 0) else max(1, min(MAX_PER_REQUEST,
                                                                         math.ceil((seconds - s.seconds) / per)))
                s.pending, s.sent_at, s.got = f"pull-{run}-{k}", now, 0
                cmd = {"id": s.pending, "op": "debug"} | ({"n": s.asked} if s.asked > 1 else {})
                registry.queue_command(s.device, cmd, note=who)
                continue
            new = [e for e in store.events(s.device, kind="debug", limit=s.asked + 20)
                   if e.body.get("id") == s.pending][:s.asked]
            fresh = new[:len(new) - s.got]  # newest first: the ones not counted yet
            for got in reversed(fresh):
                body = got.body
                fs, n = float(body.get("fs") or 0.0), len(body.get("samples") or ())
                if fs <= 0 or n == 0:
                    s.failed = "its capture holds no raw samples (a node that sends features only)"
                    break
                s.captures.append((got.ts, body))
                s.seconds += n / fs
                if progress is not None:
                    progress(n / fs)
            if s.failed:
                continue
            if fresh:
                s.got, s.sent_at = len(new), now
                if s.got >= s.asked or s.seconds >= seconds:
                    s.pending = None  # a debug_n node may still send the rest: ignored (another id)
            elif now - s.sent_at > timeout_s:
                s.failed = (f"no capture within {timeout_s:g} s of asking (offline, busy commissioning, "
                            "or `edgefleet serve` is not running to send the command)")
        sleep(poll_s)
