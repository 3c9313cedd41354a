"""One OTA manager per fleet on a shared PostgreSQL (edgefleet/service/leader.py): two `serve --role
ota` processes, one leads and the other stands by; kill -9 of the leader and the standby takes over
and works (it sends a command queued after the kill); a leader whose lock session is cut steps down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgefleet.service.leader import APPLICATION_NAME, LEADER_LOCK_KEY
from edgefleet.service.store.postgres import PostgresStore, connect

from .conftest import purge_session

REPO = Path(__file__).resolve().parents[2]


class OtaProcess:
    """`edgefleet serve --role ota` as a child process, its log lines kept."""

    def __init__(self, broker_url: str, url: str, client_id: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--role", "ota", "--broker",
                                      broker_url, "--db", url, "--client-id", client_id], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def wait_for(self, text: str, timeout: float = 30, times: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(text) >= times:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} (x{times}) in the log:\n" + "".join(self.lines[-30:]))

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def lock_holders(url: str) -> int:
    conn = connect(url, migrate_schema=False)
    try:
        key = LEADER_LOCK_KEY
        return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                            " AND classid = %s AND objid = %s", ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)
                            ).fetchone()[0]
    finally:
        conn.close()


@pytest.mark.slow
def test_one_ota_manager_leads_and_a_standby_takes_over_after_kill9(mosquitto, pg_server, unique) -> None:
    from edgefleet.service.ota.registry import OtaRegistry

    url = pg_server.create_db()
    store = PostgresStore(url)
    store.set_device_meta("pump-1", site="north")
    ids = [unique("ef-ota-a"), unique("ef-ota-b")]
    a = OtaProcess(mosquitto.url, url, ids[0])
    a.wait_for("OTA manager running")
    b = OtaProcess(mosquitto.url, url, ids[1])
    b.wait_for("standby: another process runs the OTA manager")
    assert lock_holders(url) == 1 and b.count("OTA manager running") == 0
    a.kill9()
    t0 = time.monotonic()
    b.wait_for("OTA manager running", timeout=15)
    takeover_s = time.monotonic() - t0
    reg = OtaRegistry(url)
    reg.queue_command("pump-1", {"op": "commission", "id": "comm-takeover"})
    b.wait_for("sent 1 queued device command(s)", timeout=15)  # the new leader works on the shared registry
    assert reg.pending_commands() == []
    a = OtaProcess(mosquitto.url, url, ids[0])  # back again: now the standby
    a.wait_for("standby: another process runs the OTA manager")
    assert lock_holders(url) == 1
    # the leader's lock session is cut (as by a server restart or a network cut): it steps down, and
    # exactly one of the two leads afterwards
    admin = connect(url, migrate_schema=False)
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
                  " AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)",
                  (APPLICATION_NAME,))
    admin.close()
    b.wait_for("lost the leader lock's connection", timeout=15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and a.count("OTA manager running") + b.count("OTA manager running") < 2:
        time.sleep(0.1)
    # b led once before; now one of the two leads (the standby a, or b again if it was quicker)
    assert a.count("OTA manager running") + b.count("OTA manager running") == 2, \
        "".join(a.lines[-15:]) + "\n---\n" + "".join(b.lines[-15:])
    assert lock_holders(url) == 1
    print(f"\ntakeover after kill -9 of the leader: {takeover_s:.1f} s")
    assert a.terminate() == 0 and b.terminate() == 0
    assert lock_holders(url) == 0
    reg.close()
    store.close()
    for cid in ids:
        purge_session((mosquitto.host, mosquitto.port), f"{cid}-ota")
