"""`edgefleet demo` as a service manager runs it: SIGTERM stops every child; a busy dashboard port
is refused with the way out; a kept database is announced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from testkit import free_port

REPO = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_sigterm_stops_every_child_and_the_db_is_announced(tmp_path):
    argv = [sys.executable, "-m", "edgefleet", "demo", "--nodes", "5", "--faulty", "0", "--no-dashboard",
            "--workdir", str(tmp_path)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            break
    text = "".join(lines)
    assert "export EDGEFLEET_DB=" in text and "kept" not in text, text
    kids = children_of(proc.pid)
    assert len(kids) >= 3  # broker, serve, sim
    wait_until = time.time() + 60  # serve opens the store once imported: seconds on a loaded 2-core host
    while not (tmp_path / "fleet.db").exists() and time.time() < wait_until:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    time.sleep(0.5)
    alive = [k for k in kids if os.path.exists(f"/proc/{k}") and "zombie" not in
             open(f"/proc/{k}/status").read().lower()]
    assert alive == []
    again = subprocess.run(argv + ["--duration", "1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "the last run's, kept" in again.stdout


def test_a_busy_dashboard_port_is_refused_with_the_way_out(tmp_path):
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        proc = subprocess.run([sys.executable, "-m", "edgefleet", "demo", "--dashboard-port", str(port),
                               "--workdir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"--dashboard-port {port + 1}" in proc.stderr and "Traceback" not in proc.stderr
