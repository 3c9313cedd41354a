"""Summary mode on the emulated Cortex-M4F node (`--summary-every MS`, issue 18): through `edgefleet bridge`,
Mosquitto and `edgefleet serve`, the store holds the node's summaries (one per period, seq from 0 without a
hole, every window of a period counted) and no per-window result."""

from __future__ import annotations

import signal
import subprocess
import sys

from edgefleet.service.broker import start_broker

from testkit import free_port

from .conftest import FLEET_MODEL, QEMU, REPO
from .test_qemu_fleet import ENV, q, wait_for

DEVICE = "qemu-m4-sum"
EVERY_MS = 1000  # 80 ms windows: 12 or 13 a period


def test_qemu_node_in_summary_mode_is_stored_as_summaries(mcu, recording, tmp_path):
    rec, fs = recording
    broker = start_broker(prefer="mosquitto", workdir=tmp_path / "broker")
    url, db, port = f"mqtt://127.0.0.1:{broker.port}", tmp_path / "fleet.db", free_port()
    procs: dict[str, subprocess.Popen] = {}

    def spawn(name, argv):
        procs[name] = subprocess.Popen(argv, cwd=REPO, env=ENV, stdout=(tmp_path / f"{name}.out").open("wb"),
                                       stderr=(tmp_path / f"{name}.log").open("wb"))

    def logs() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(tmp_path.glob("*.log")))

    def stored():  # (the store creates its summaries table with the first summary)
        if not (db.exists() and q(db, "SELECT 1 FROM sqlite_master WHERE name = 'summaries'")):
            return []
        return q(db, "SELECT boot, seq, ts, period, model, thr, dropped, n, anom, s_min, s_p95, s_max, vrms "
                     "FROM summaries WHERE device = ? ORDER BY seq", DEVICE)

    try:
        spawn("serve", [sys.executable, "-m", "edgefleet", "serve", "--broker", url, "--db", str(db),
                        "--role", "ingest"])
        wait_for(lambda: "subscribed" in (tmp_path / "serve.log").read_text(), 30, "ingest subscribed")
        spawn("qemu", [*QEMU, "-serial", f"tcp:127.0.0.1:{port},server,nowait", "-kernel",
                       str(mcu / "ef_mcu_node.elf"), "-append",
                       f"node {FLEET_MODEL} {fs} --samples {rec} --no-commission --summary-every {EVERY_MS}"])
        spawn("bridge", [sys.executable, "-m", "edgefleet", "bridge", "--serial", f"tcp://127.0.0.1:{port}",
                         "--broker", url, "--device", DEVICE])
        rows = wait_for(lambda: len(r := stored()) >= 5 and r, 60, "5 summaries of the QEMU node", logs)
        qemu = procs["qemu"]
        qemu.send_signal(signal.SIGTERM)
        qemu.wait(10)
        assert procs["bridge"].wait(15) == 0
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
    rows = stored()
    boots = {r[0] for r in rows}
    assert len(boots) == 1 and [r[1] for r in rows] == list(range(len(rows)))  # one boot, seq 0, 1, ... no hole
    for boot, seq, ts, period, model, thr, dropped, n, anom, lo, p95, hi, vrms in rows:
        assert (period, model, dropped, vrms) == (EVERY_MS, 1, 0, None)  # v1 model: no velocity
        assert abs(thr - 0.648337) < 1e-6 and 0 <= anom <= n and 0 < lo <= p95 <= hi
        assert n <= 13  # one period's windows at most (the first one may be short: it starts mid-period)
    ends = [r[2] for r in rows]
    assert all(b // EVERY_MS > a // EVERY_MS for a, b in zip(ends, ends[1:]))  # one summary per period, in order
    assert sum(r[7] for r in rows[1:]) >= 11 * (len(rows) - 1)  # periods after the first hold (nearly) all
    assert q(db, "SELECT count(*) FROM results WHERE device = ?", DEVICE)[0][0] == 0  # no per-window result
    assert q(db, "SELECT count(*) FROM rejected")[0][0] == 0
