"""Commissioning requests from people (the CLI, the dashboard): the `cmd` a node gets, checked here
once, and queued for `edgefleet serve` to send (docs/baseline.md)."""

from __future__ import annotations

import secrets

from edgefleet import protocol
from edgefleet.errors import EdgefleetError
from edgefleet.service.ota.campaign import Target
from edgefleet.service.ota.registry import OtaRegistry
from edgefleet.service.store import Store


def command_body(*, windows: int | None = None, rpm: float | None = None, end: bool = False) -> dict:
    """The `cmd` body (without v and seq, which the sender adds), checked against the protocol."""
    if end and (windows is not None or rpm is not None):
        raise EdgefleetError("ending commissioning takes no window count or speed class")
    body: dict = {"id": f"comm-{secrets.token_hex(4)}", "op": "commission_end" if end else "commission"}
    if windows is not None:
        if not 16 <= windows <= 4096:
            raise EdgefleetError(f"windows per class must be between 16 and 4096, got {windows}")
        body["windows"] = windows
    if rpm is not None:
        if not 0 < rpm <= 1_000_000:
            raise EdgefleetError(f"a speed class must be a speed in rev/min above 0, got {rpm:g}")
        body["rpm"] = rpm
    err = protocol.check("cmd", {"v": protocol.PROTOCOL_VERSION, "seq": 0, **body})
    if err:
        raise EdgefleetError(f"not a valid commission command: {err}")
    return body


def target_devices(store: Store, target: str) -> list[str]:
    """The devices a target (`all`, `site=S`, `line=L`, `tag=T`) names among those the store knows;
    EdgefleetError for a bad target or no match. The CLI and the dashboard both pick them here."""
    t = Target.parse(target.strip())
    devices = sorted(d.device for d in store.devices()
                     if t.matches({"site": d.site, "line": d.line, "tags": list(d.tags)}))
    if not devices:
        raise EdgefleetError(f"no device in the store matches target {t}")
    return devices


def queue(registry: OtaRegistry, devices: list[str], body: dict, who: str) -> int:
    """Queue `body` for every device; returns how many were queued."""
    for d in devices:
        registry.queue_command(d, body, note=who)
    return len(devices)
