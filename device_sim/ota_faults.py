"""Faults for OTA tests and benchmarks, on the device side of the simulated link.

Chunks lost or corrupted as a node receives them (`LinkOptions.ota_data_hook`), and
chosen nodes rebooted once in the middle of their download (at the chunk that crosses
half the artifact) or of their trial. Everything a node does in answer is its own
logic: re-requests after a timeout or a bad CRC, a fresh download after a reboot, a
revert after a reboot during trial.
"""

from __future__ import annotations

import base64
import random
import threading
from collections import Counter
from typing import TYPE_CHECKING

from device_sim.link import NodeLink, Shard

if TYPE_CHECKING:
    from device_sim.fleet import Fleet


class OtaFaults:
    """Chunk loss and corruption on the node's side of the link, and reboots in the middle of
    a download (at the chunk that crosses half the artifact) or of a trial."""

    def __init__(self, loss: float, corrupt: float, reboot_download: set[str], reboot_trial: set[str],
                 seed: int) -> None:
        self.loss, self.corrupt = loss, corrupt
        self.enabled = False
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.want_download = set(reboot_download)
        self.want_trial = set(reboot_trial)

    def on_chunk(self, shard: Shard, link: NodeLink, body: dict) -> dict | None:
        """LinkOptions.ota_data_hook: runs in the node's shard thread for every chunk."""
        if not self.enabled:
            return body
        dev, d = link.node.device_id, link.node.ota.download
        with self.lock:
            self.counts["chunks_seen"] += 1
            if dev in self.want_download and d is not None and int(body["off"]) == d.offset \
                    and d.offset >= d.size // 2:
                self.want_download.discard(dev)
                self.counts["reboots_mid_download"] += 1
                shard.call(lambda: shard.reboot(link))  # not inside this client's own callback
                return None
            r = self.rng.random()
            if r < self.loss:
                self.counts["chunks_lost"] += 1
                return None
            if r < self.loss + self.corrupt:
                self.counts["chunks_corrupted"] += 1
                raw = bytearray(base64.b64decode(body["data"]))
                raw[self.rng.randrange(len(raw))] ^= 1 << self.rng.randrange(8)
                return {**body, "data": base64.b64encode(bytes(raw)).decode()}
        return body

    def reboot_trials(self, fleet: Fleet) -> None:
        """Reboot each chosen node once while it is on trial (checked again in its shard thread)."""
        if not self.enabled or not self.want_trial:
            return
        for i, lk in enumerate(fleet.links):
            if lk.node.device_id in self.want_trial and lk.node.ota.slots.trial:
                sh = fleet.shards[int(fleet.shard_of[i])]
                sh.call(lambda sh=sh, lk=lk: self._reboot_if_trial(sh, lk))

    def _reboot_if_trial(self, shard: Shard, link: NodeLink) -> None:
        dev = link.node.device_id
        with self.lock:
            if dev not in self.want_trial or not link.node.ota.slots.trial:
                return
            self.want_trial.discard(dev)
            self.counts["reboots_mid_trial"] += 1
        shard.reboot(link)
