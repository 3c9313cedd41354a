"""One OTA manager (and notifier) per fleet on a shared PostgreSQL store: the process that holds a
PostgreSQL advisory lock runs them; the others stand by and take over when it stops.

The lock is a session lock on a connection of its own, so it lasts exactly as long as the leader's
session: a process that exits, is killed -9 or loses its connection releases it, and a standby
that polls `pg_try_advisory_lock` every `poll_s` seconds takes over. A leader checks its lock
connection at the same pace; if the connection is gone (server restart, network), another process
may hold the lock already, so it stops what it runs at once and competes again. Between the
moment a leader's session ends and its next check, both may run for up to `poll_s`: the OTA
manager's decisions are idempotent per campaign step, and that window is what the tests measure.
(A host that vanishes without closing its TCP connections holds the lock until the server's TCP
keepalive gives up: set `tcp_keepalives_idle` on the server for a faster takeover.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from edgefleet.service.store.url import mask_url

log = logging.getLogger("edgefleet.leader")

LEADER_LOCK_KEY = 0x6566_6F74_616D_6772  # "efotamgr": the fleet's singletons
APPLICATION_NAME = "edgefleet-leader"  # how the lock's session shows in pg_stat_activity


class Leadership:
    """Run `start()` (returning things with a `stop()`) only while this process holds the lock."""

    def __init__(self, url: str, start: Callable[[], list[Any]], *, poll_s: float = 1.0,
                 what: str = "OTA manager") -> None:
        self.url = url
        self._start = start
        self.poll_s = poll_s
        self.what = what
        self._conn: Any = None
        self._running: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="leader", daemon=True)
        self.leading = threading.Event()
        self._said_standby = False

    def start(self) -> Leadership:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._step_down("stopping")
        self._close()

    # ---------- the loop ----------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.leading.is_set():
                    self._conn.execute("SELECT 1")  # still our session, so still our lock
                else:
                    self._try_lead()
            except Exception as exc:  # the lock's connection failed: we may no longer hold it
                if self.leading.is_set():
                    log.warning("lost the leader lock's connection (%s): stopping the %s here",
                                " ".join(str(exc).split())[:200], self.what)
                    self._step_down("lock lost")
                self._close()
            self._stop.wait(self.poll_s)

    def _try_lead(self) -> None:
        from edgefleet.service.store.postgres import connect

        if self._conn is None:
            self._conn = connect(self.url, migrate_schema=False, application_name=APPLICATION_NAME)
        got = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()[0]
        if not got:
            if not self._said_standby:
                log.info("standby: another process runs the %s on %s; taking over when it stops",
                         self.what, mask_url(self.url))
                self._said_standby = True
            return
        self.leading.set()
        self._said_standby = False
        log.info("leading: this process runs the %s (advisory lock on %s)", self.what, mask_url(self.url))
        try:
            self._running = [x for x in self._start() if x is not None]
        except Exception as exc:  # e.g. the broker refuses it: free the lock for a process that can
            log.error("cannot start the %s: %s", self.what, " ".join(str(exc).split()) or type(exc).__name__)
            self._step_down("start failed")
            self._close()  # frees the lock for a process that can
            self._stop.wait(5 * self.poll_s)

    def _step_down(self, why: str) -> None:
        running, self._running = self._running, []
        for part in reversed(running):
            try:
                part.stop()
            except Exception:
                log.exception("stopping %s (%s)", type(part).__name__, why)
        self.leading.clear()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # ends the session: the lock goes with it
            except Exception:
                pass


__all__ = ["APPLICATION_NAME", "LEADER_LOCK_KEY", "Leadership"]
