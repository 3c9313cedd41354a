"""The node loop on the emulated Cortex-M4F: same results as the host build, frames a bridge can read."""

from __future__ import annotations

import json
import subprocess

import pytest

from edgefleet import protocol
from edgefleet.bridge import FrameDecoder, split_link

from .conftest import FIRMWARE, FLEET_MODEL, QEMU

BOOT, T0 = "0badc0de", 1767225600000


def qemu_node(mcu, tmp_path, *args: str) -> list[tuple[str, bytes]]:
    uart = tmp_path / "uart.bin"
    proc = subprocess.run([*QEMU, "-serial", f"file:{uart}", "-kernel", str(mcu / "ef_mcu_node.elf"),
                           "-append", " ".join(["node", *args])], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dec = FrameDecoder()
    frames = [split_link(p) for p in dec.feed(uart.read_bytes())]
    assert dec.dropped == 0
    return frames


def test_qemu_node_results_equal_the_host_build(mcu, recording, tmp_path):
    rec, fs = recording
    frames = qemu_node(mcu, tmp_path, str(FLEET_MODEL), str(fs), "--samples", str(rec), "--once", "--nopace",
                       "--boot", BOOT, "--t0", str(T0))
    kinds = [k for k, _ in frames]
    assert kinds[:3] == ["boot", "will", "status"]
    will, birth = protocol.decode("status", frames[1][1]), protocol.decode("status", frames[2][1])
    assert (will["state"], will["seq"], birth["state"], birth["seq"]) == ("lost", 0, "online", 1)
    assert birth["fw"] == "1.0.0" and birth["caps"] == ["debug", "calib"] and birth["boot"] == BOOT
    m4 = [protocol.decode("result", b) for k, b in frames if k == "result"]
    host = subprocess.run([str(FIRMWARE / "build" / "host" / "ef_node"), str(FLEET_MODEL), str(rec), str(fs),
                           "--protocol", BOOT, "--t0", str(T0)], capture_output=True, text=True, check=True)
    ref = [json.loads(line) for line in host.stdout.splitlines() if line.startswith('{"v"')]
    assert len(m4) == len(ref) == 40
    strip = lambda m: {**m, "res": [{k: v for k, v in r.items() if k != "inf_us"} for r in m["res"]]}  # noqa: E731
    assert [strip(m) for m in m4] == [strip(m) for m in ref]  # scores, decisions, seq, ts: identical
    for _, body in frames[1:]:  # every message canonical, as the C encoder promises
        kind = "status" if _ in ("will", "status") else _
        assert protocol.encode(kind, protocol.decode(kind, body)) == body


def test_qemu_node_refuses_a_rate_the_model_cannot_serve(mcu, tmp_path):
    uart = tmp_path / "uart.bin"
    proc = subprocess.run([*QEMU, "-serial", f"file:{uart}", "-kernel", str(mcu / "ef_mcu_node.elf"),
                           "-append", f"node {FLEET_MODEL} 4000 --nopace --t0 {T0} --windows 3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "rate" in proc.stdout + proc.stderr


@pytest.mark.parametrize("windows", [5])
def test_qemu_node_synthetic_machine_runs_windows(mcu, tmp_path, windows):
    frames = qemu_node(mcu, tmp_path, str(FLEET_MODEL), "12000", "--nopace", "--boot", BOOT, "--t0", str(T0),
                       "--windows", str(windows))
    res = [protocol.decode("result", b)["res"][0] for k, b in frames if k == "result"]
    assert [r["seq"] for r in res] == list(range(windows))
    assert all(r["score"] > 0 for r in res)
