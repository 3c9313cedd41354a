"""Which ISO 20816 machine class each device is, for the alarm tracker's zone-D rule.

The classes live in the store's settings (`edgefleet machine class`), per device or per site; the
ingest loop asks for every result, so they are read at most once a minute and the site of each
device is learned from its status messages. A store without machine classes (InfluxDB) gives the
default class to every device.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edgefleet.service.iso20816 import DEFAULT_CLASS, class_for

log = logging.getLogger(__name__)

REFRESH_S = 60.0


class MachineClasses:
    """`of(device)`: the device's class; `saw_site(device, site)` from a status message."""

    def __init__(self, read: Callable[[], dict[str, dict[str, str]]] | None, clock: Callable[[], float] = time.monotonic):
        self._read, self._clock = read, clock
        self._by_device: dict[str, str] = {}
        self._by_site: dict[str, str] = {}
        self._sites: dict[str, str] = {}
        self._at = -REFRESH_S

    def saw_site(self, device: str, site: str | None) -> None:
        if site:
            self._sites[device] = site

    def of(self, device: str) -> str:
        now = self._clock()
        if self._read is not None and now - self._at >= REFRESH_S:
            self._at = now
            try:
                classes = self._read()
                self._by_device, self._by_site = dict(classes.get("device", {})), dict(classes.get("site", {}))
            except Exception as exc:  # keep the last known classes; the zone rule must not stop ingest
                log.warning("could not read machine classes (%s); keeping the last known", exc)
        if not self._by_device and not self._by_site:
            return DEFAULT_CLASS
        return class_for(device, self._sites.get(device), self._by_device, self._by_site)[0]
