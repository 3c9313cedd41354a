"""`edgefleet data pull --target ... --seconds N`: ask running nodes for raw windows now, end to end
(a real Mosquitto, `edgefleet serve` and `edgefleet sim` as processes), and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from testkit import stop_process

from edgefleet.service.broker import start_broker
from edgefleet.service.store import SQLiteStore

REPO = Path(__file__).resolve().parents[2]


def ef(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefleet", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def started(argv: list[str], ready: str, timeout: float = 60) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "edgefleet", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, EDGEFLEET_SQLITE_SYNC="NORMAL"))
    seen = threading.Event()
    lines: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if ready in line:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    if not seen.wait(timeout):
        stop_process(proc)
        raise AssertionError(f"{argv[0]} did not start:\n" + "".join(lines[-20:]))
    return proc


@pytest.mark.slow
def test_pull_asks_the_nodes_and_writes_recordings_with_machine_and_rpm(tmp_path: Path) -> None:
    db, out = tmp_path / "fleet.db", tmp_path / "recordings"
    with start_broker(prefer="mosquitto", workdir=tmp_path / "broker", log_file=tmp_path / "mosquitto.log") as b:
        serve = started(["serve", "--broker", b.url, "--db", str(db), "--client-id", "ef-ingest-pull"], "subscribed to")
        sim = subprocess.Popen([sys.executable, "-m", "edgefleet", "sim", "--broker", b.url, "--nodes", "2",
                                "--faulty", "0", "--prefix", "pull-", "--no-commission", "--period", "0.25",
                                "--ota-key", "none", "--duration", "120", "--model",
                                str(REPO / "edgefleet" / "models" / "fleet-v2")], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            store = SQLiteStore(db)
            deadline = time.monotonic() + 60
            while len(store.devices()) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(store.devices()) == 2, "the simulated nodes never reported"
            t0 = time.monotonic()
            p = ef("data", "pull", "--target", "all", "--seconds", "4", "--out", str(out), "--db", str(db))
            took = time.monotonic() - t0
            assert p.returncode == 0, p.stderr
            assert "Traceback" not in p.stderr
            files = sorted(out.glob("*.npz"))
            per_machine: dict[str, float] = {}
            for f in files:
                with np.load(f) as z:
                    per_machine[str(z["machine"])] = per_machine.get(str(z["machine"]), 0.0) + \
                        len(z["signal"]) / float(z["fs"])
                    assert float(z["rpm"]) > 0 and str(z["label"]) == "normal"
            assert sorted(per_machine) == ["pull-0000", "pull-0001"]
            assert all(s >= 4 for s in per_machine.values()), per_machine
            # the simulated nodes advertise debug_n: after one capture that tells the window length, the
            # rest comes from one command asking for several windows in a row
            import sqlite3

            with sqlite3.connect(db) as con:
                cmds = [json.loads(b) for (b,) in con.execute("SELECT body FROM device_commands")]
            debug_cmds = [c for c in cmds if c.get("op") == "debug"]
            assert len(debug_cmds) == 4 and len(files) == 8, (debug_cmds, len(files))
            assert sorted(c.get("n", 1) for c in debug_cmds) == [1, 1, 3, 3], debug_cmds  # 1 + 3 windows of 1.06 s
            assert "2 of 2 machine(s), 2 complete" in p.stdout
            print(f"\n{len(files)} recordings, {per_machine} in {took:.1f} s")
            # a target that matches nothing: one line, with what the store knows
            bad = ef("data", "pull", "--target", "site=nowhere", "--seconds", "1", "--out", str(tmp_path / "x"),
                     "--db", str(db))
            assert bad.returncode == 2 and "no device in the store matches" in bad.stderr and "Traceback" not in bad.stderr
        finally:
            stop_process(sim, 20)
            stop_process(serve, 20)


def test_pull_live_option_errors_are_one_line(tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    SQLiteStore(db).close()
    cases = [
        (["--target", "all"], "--target and --seconds go together"),
        (["--target", "all", "--seconds", "5000"], "at most 3600"),
        (["--target", "all", "--seconds", "2", "--since", "1h"], "takes no --device, --site, --since or --until"),
    ]
    for extra, msg in cases:
        p = ef("data", "pull", *extra, "--out", str(tmp_path / "o"), "--db", str(db), timeout=60)
        assert p.returncode == 2, (extra, p.stderr)
        assert msg in p.stderr and "Traceback" not in p.stderr, (extra, p.stderr)
