"""Summary mode on the emulated Cortex-M4F node (`--summary-every MS`, issue 18): through `edgefleet bridge`,
Mosquitto and `edgefleet serve`, the store holds the node's summaries (one per period, seq from 0 without a
hole) and no per-window result; after a reboot the new boot's summaries count from 0 again. On a fixed
timeline the M4 node's summaries are the host node's byte for byte."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from testkit import free_port

from edgefleet import protocol
from edgefleet.device.framing import FrameDecoder, split_link
from edgefleet.service.broker import start_broker

from .conftest import FIRMWARE, FLEET_MODEL, QEMU, REPO
from .test_qemu_fleet import (  # (send_cmd addresses DEVICE)
    DEVICE,
    ENV,
    q,
    send_cmd,
    stop_all,
    wait_for,
)

EVERY_MS = 1000  # 80 ms windows: 12 or 13 a period
STACK_RESERVED = 3584  # ports/mps2-an386/mps2-an386.ld


def short_names(tmp_path, rec) -> tuple[str, str]:
    """The node reads its command line through semihosting into 256 B: under pytest-xdist absolute temp paths
    grow by popen-gwN/ and the line was cut (a usage message). Links in QEMU's working folder instead."""
    for name, target in (("model.efm", FLEET_MODEL), ("rec.f32", rec)):
        if not (tmp_path / name).exists():
            (tmp_path / name).symlink_to(Path(target).resolve())
    return "model.efm", "rec.f32"


def test_qemu_node_in_summary_mode_is_stored_as_summaries(mcu, recording, tmp_path):
    rec, fs = recording
    broker = start_broker(prefer="mosquitto", workdir=tmp_path / "broker")
    url, db, port = f"mqtt://127.0.0.1:{broker.port}", tmp_path / "fleet.db", free_port()
    procs: dict[str, subprocess.Popen] = {}

    def spawn(name, argv, cwd=REPO):
        procs[name] = subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=(tmp_path / f"{name}.out").open("wb"),
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
        model, samples = short_names(tmp_path, rec)
        spawn("qemu", [*QEMU, "-serial", f"tcp:127.0.0.1:{port},server,nowait", "-kernel",
                       str(mcu / "ef_mcu_node.elf"), "-append",
                       f"node {model} {fs} --samples {samples} --no-commission --summary-every {EVERY_MS}"],
              cwd=tmp_path)
        spawn("bridge", [sys.executable, "-m", "edgefleet", "bridge", "--serial", f"tcp://127.0.0.1:{port}",
                         "--broker", url, "--device", DEVICE])
        first = wait_for(lambda: len(r := stored()) >= 4 and r, 60, "4 summaries of the QEMU node", logs)[0][0]
        send_cmd(url, {"v": 1, "seq": 0, "id": "r-1", "op": "reboot"})  # the open period was RAM: lost
        wait_for(lambda: len({r[0] for r in stored()} - {first}) == 1 and stored()[-1][1] >= 2, 60,
                 "3 summaries of the next boot", logs)
        qemu = procs["qemu"]
        qemu.send_signal(signal.SIGTERM)
        qemu.wait(10)
        assert procs["bridge"].wait(15) == 0
    finally:
        stop_all(procs)
        broker.stop()
    rows = stored()
    by_boot = {b: [r for r in rows if r[0] == b] for b in dict.fromkeys(r[0] for r in rows)}
    assert len(by_boot) == 2 and first in by_boot
    for boot_rows in by_boot.values():
        assert sorted(r[1] for r in boot_rows) == list(range(len(boot_rows)))  # seq from 0 per boot, no hole
        ends = sorted(r[2] for r in boot_rows)
        assert all(b // EVERY_MS > a // EVERY_MS for a, b in zip(ends, ends[1:]))  # one summary per period
    for boot, seq, ts, period, model, thr, dropped, n, anom, lo, p95, hi, vrms in rows:
        assert (period, model, dropped, vrms) == (EVERY_MS, 1, 0, None)  # v1 model: no velocity
        assert abs(thr - 0.648337) < 1e-6 and 0 <= anom <= n and 0 < lo <= p95 <= hi
    # 12.5 windows a second when QEMU keeps pace (a loaded host lags, then catches up: not exactly 12-13)
    ns = [r[7] for r in rows if r[1] > 0]  # (a boot's first period starts mid-period)
    assert max(ns) > 1 and sum(ns) >= 6 * len(ns)
    assert q(db, "SELECT count(*) FROM results WHERE device = ?", DEVICE)[0][0] == 0  # no per-window result
    assert q(db, "SELECT count(*) FROM rejected")[0][0] == 0


def test_qemu_node_summaries_equal_the_host_build(mcu, recording, tmp_path):
    """On a fixed timeline the M4 node's summaries are the host node's byte for byte (which are the simulated
    node's: tests/firmware/test_node_summary_parity.py), across its commissioning (64 windows by the model's
    threshold, then its class's); and summary mode stays within the stack the image reserves."""
    from .test_qemu_node import BOOT, T0

    rec, fs = recording
    uart = tmp_path / "uart.bin"
    model, samples = short_names(tmp_path, rec)
    proc = subprocess.run([*QEMU, "-serial", f"file:{uart}", "-kernel", str(mcu / "ef_mcu_node.elf"), "-append",
                           f"node {model} {fs} --samples {samples} --nopace --boot {BOOT} --t0 {T0} --windows 120 "
                           f"--summary-every {EVERY_MS}"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames = [split_link(p) for p in FrameDecoder().feed(uart.read_bytes())]
    m4 = [b for k, b in frames if k == "summary"]
    assert not [k for k, _ in frames if k == "result"]
    looped = tmp_path / "looped.f32"  # the node loops the 40-window recording: 120 windows
    np.tile(np.fromfile(rec, "<f4"), 3).tofile(looped)
    host = subprocess.run([str(FIRMWARE / "build" / "host" / "ef_node"), str(FLEET_MODEL), str(looped), str(fs),
                           "--protocol", BOOT, "--t0", str(T0), "--summary-every", str(EVERY_MS)],
                          capture_output=True, check=True)
    ref = [line for line in host.stdout.splitlines() if line.startswith(b'{"v"')]
    ref = [m for m in ref if b'"period"' in m]
    assert m4 == ref
    bodies = [protocol.decode("summary", b) for b in m4]
    # 120 windows of 80 ms: 1 s periods of 12 or 13, one closed early when commissioning ends (window 64),
    # the last (windows 113-119) still open
    assert sum(b["n"] for b in bodies) == 113 and len({b["thr"] for b in bodies}) == 2
    assert [b["seq"] for b in bodies] == list(range(len(bodies)))
    used = int((proc.stdout + proc.stderr).split("stack used: ")[1].split()[0])
    print(f"summary mode: stack high-water {used} B of {STACK_RESERVED} B reserved")
    assert used <= STACK_RESERVED - 1024, f"stack high-water mark {used} B (summary mode, commissioning included)"
