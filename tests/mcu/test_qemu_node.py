"""The node loop on the emulated Cortex-M4F: same results as the host build, frames a bridge can read."""

from __future__ import annotations

import itertools
import json
import re
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from testkit import free_port

from edgefleet import protocol
from edgefleet.device.framing import FrameDecoder, split_link

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
    assert birth["fw"] == "1.0.0" and birth["caps"] == ["debug", "calib", "commission"] and birth["boot"] == BOOT
    assert birth["comm"] == {"state": "commissioning", "target": 64, "progress": []}  # no baseline yet
    m4 = [protocol.decode("result", b) for k, b in frames if k == "result"]
    host = subprocess.run([str(FIRMWARE / "build" / "host" / "ef_node"), str(FLEET_MODEL), str(rec), str(fs),
                           "--protocol", BOOT, "--t0", str(T0)], capture_output=True, text=True, check=True)
    ref = [json.loads(line) for line in host.stdout.splitlines() if line.startswith('{"v"') and '"res"' in line]
    assert len(m4) == len(ref) == 40
    assert all(r["state"] == "commissioning" and not r["anom"] for m in m4 for r in m["res"])  # 40 of 64
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


def test_qemu_node_answers_commands_read_from_its_uart(mcu, recording, tmp_path):
    """hello, then cmd frames (bad ones among them) fed to UART0; the node's answers come back framed.

    Bytes sent before the guest enables its UART can be lost in QEMU's CMSDK UART model, so
    hello is repeated until the node answers, as `edgefleet bridge` does."""
    from edgefleet.device.framing import encode_frame

    rec, fs = recording
    cmds = [b'{"v":1,"seq":0,"id":"d-1","op":"debug"}',
            b'{"v":1,"seq":1,"id":"t-1","op":"set_threshold","thr":0.25}',
            b'{"v":1,"seq":2,"id":"t-1","op":"set_threshold","thr":0.5}',  # same id again: a QoS 1 repeat
            b'{"v":1,"seq":3,"id":"x","op":"format_disk"}',                   # not in the enum
            b'{"v":2,"seq":4,"id":"y","op":"ping"}',                          # wrong version
            b'{"v":1,"seq":5,"id":"z","op":"ping","extra":1}',                # unknown key
            b'{"v":1,"seq":6,"id":"c-1","op":"calibrate","n":4}']
    feed = b"".join(encode_frame(b"cmd " + c) for c in cmds)
    feed += b"\x01\x02garbage\x00"  # line noise: dropped by the frame CRC, nothing else happens
    (tmp_path / "in.bin").write_bytes(feed)
    port = free_port()
    proc = subprocess.Popen([*QEMU, "-serial", f"tcp:127.0.0.1:{port},server,nowait", "-kernel",
                             str(mcu / "ef_mcu_node.elf"), "-append",
                             f"node {FLEET_MODEL} {fs} --samples {rec} --windows 16"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        received = bytearray()
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "QEMU's serial port did not open"
                time.sleep(0.05)
        with sock:  # as the bridge does: hello once the node says `boot`, cmds once it answered
            sock.settimeout(0.5)
            dec = FrameDecoder()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                received += chunk
                kinds = [split_link(p)[0] for p in dec.feed(chunk)]
                if "boot" in kinds:
                    sock.sendall(encode_frame(b"hello 1767225600000"))
                if "will" in kinds:
                    break
            sock.sendall(feed)
            sock.settimeout(30)
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except OSError as e:
                proc.kill()
                raise AssertionError(f"{e}; received {bytes(received[:300])!r}; qemu: {proc.communicate()[0]}")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    frames = [split_link(p) for p in FrameDecoder().feed(bytes(received))]
    status = [protocol.decode("status", b) for k, b in frames if k == "status"]
    thr = [t for t, _ in itertools.groupby(s["thr"] for s in status)]  # a repeated hello repeats the birth
    assert thr[:2] == [pytest.approx(0.648337), 0.25] and len(thr) == 3  # birth, set_threshold, calibration
    assert thr[2] != 0.25  # the calibrated threshold, announced after 4 windows
    debug = [(b, protocol.decode("debug", b)) for k, b in frames if k == "debug"]
    assert len(debug) == 1
    raw, dbg = debug[0]
    assert protocol.encode("debug", dbg) == raw  # canonical, byte for byte
    assert encode_frame(b"debug " + raw) in bytes(received)  # the node's streamed COBS is ef_serial's
    assert dbg["id"] == "d-1" and len(dbg["samples"]) == 960 and dbg["fs"] == fs
    res = [protocol.decode("result", b)["res"][0] for k, b in frames if k == "result"]
    assert len(res) == 16
    k = [r["score"] for r in res].index(dbg["score"])  # the window it captured (same ts, same score)
    assert res[k]["ts"] == dbg["ts"]
    assert dbg["samples"] == pytest.approx(np.fromfile(rec, "<f4")[960 * k:960 * (k + 1)].tolist(), rel=6e-6)
    used = int(out.split("stack used: ")[1].split()[0])
    ld = (Path(__file__).resolve().parents[2] / "firmware" / "ports" / "mps2-an386" / "mps2-an386.ld").read_text()
    reserved = int(re.search(r"STACK_SIZE : (\d+);", ld).group(1))  # what the image reserves (3,584 B since OTA auth)
    assert used < reserved - 256, f"stack high-water mark {used} B leaves too little of the {reserved} B reserved"
