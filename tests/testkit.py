"""The one home of the suite's plumbing: free ports, the clock, waiting for a port, and stopping
the processes a test started (with everything they spawned). Import as `from testkit import ...`
(pytest puts tests/ on the path, beside the root conftest)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edgefleet.clock import now_ms
from edgefleet.protocol.connect import free_port

__all__ = ["child_processes", "free_port", "kill_tree", "now_ms", "run_lock", "stop_process", "wait_port"]


def wait_port(port: int, up: bool = True, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Until `host:port` accepts connections (up) or refuses them (down); RuntimeError after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            if up:
                return
        except OSError:
            if not up:
                return
        time.sleep(0.02)
    raise RuntimeError(f"port {port} did not come {'up' if up else 'down'} within {timeout:g} s")


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; the whole process group when the child leads one
    (started with start_new_session=True). Returns the exit code (None if there was no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        group = os.getpgid(proc.pid) == proc.pid
        (os.killpg if group else os.kill)(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            (os.killpg if group else os.kill)(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


@contextlib.contextmanager
def run_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock named `name` for this checkout, across processes: parallel pytest
    workers (pytest-xdist) or two runs in one checkout would otherwise run `make` in the same
    build folder at once and corrupt it. Blocks until the lock is free."""
    repo = hashlib.sha256(str(Path(__file__).resolve().parents[1]).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"edgefleet-{repo}-{name}.lock"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def child_processes(match: tuple[str, ...] = ("edgefleet", "mosquitto", "benchmarks/")) -> dict[int, str]:
    """This process's live children whose command line contains one of `match`: pid -> command."""
    me, out = os.getpid(), {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != me or fields[0] == "Z":
                continue
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if any(m in cmd for m in match):
            out[int(stat.parent.name)] = cmd
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and everything it spawned (a leaked benchmark's broker and serve too); reap `pid`."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += [c for c, pp in parent.items() if pp == p]
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
