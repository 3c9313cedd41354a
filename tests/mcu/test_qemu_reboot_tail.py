"""The emulated Cortex-M4F node keeps its boot id and newest result seq across a warm reset (the
top of RAM, board_retained) and names them in the next boot's birth (status `prev`), so the fleet
counts the results the reset took from RAM (issue 20). QEMU resets on SYSRESETREQ without
reloading that RAM, as a real MCU's SRAM keeps its content over a system reset."""

from __future__ import annotations

import socket
import subprocess
import time

from testkit import free_port

from edgefleet import protocol
from edgefleet.device.framing import FrameDecoder, encode_frame, split_link

from .conftest import FLEET_MODEL, QEMU


class Uart:
    """QEMU's UART0 on a TCP port, read as frames."""

    def __init__(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "QEMU's serial port did not open"
                time.sleep(0.05)
        self.sock.settimeout(0.3)
        self.dec = FrameDecoder()
        self.frames: list[tuple[str, bytes]] = []

    def until(self, pred, timeout: float, on_frame=None) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, f"timed out; frames so far: {[k for k, _ in self.frames][-20:]}"
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            for p in self.dec.feed(chunk):
                self.frames.append(split_link(p))
                if on_frame:
                    on_frame(self.frames[-1])

    def send(self, payload: bytes) -> None:
        self.sock.sendall(encode_frame(payload))


def test_a_warm_reset_names_the_previous_boot_and_its_last_seq_in_the_next_birth(mcu, recording):
    rec, fs = recording
    port = free_port()
    proc = subprocess.Popen([*QEMU, "-serial", f"tcp:127.0.0.1:{port},server,nowait", "-kernel",
                             str(mcu / "ef_mcu_node.elf"), "-append",
                             f"node {FLEET_MODEL} {fs} --samples {rec} --windows 40"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        uart = Uart(port)
        hello = {"ms": 1767225600000}

        def greet(frame):  # as the bridge does: hello whenever the node says `boot`
            if frame[0] == "boot":
                uart.send(f"hello {hello['ms']}".encode())

        births = lambda: [protocol.decode("status", b) for k, b in uart.frames if k == "status"]  # noqa: E731
        results = lambda: [protocol.decode("result", b) for k, b in uart.frames if k == "result"]  # noqa: E731
        uart.until(lambda: len(results()) >= 3, 60, greet)
        first = births()[0]
        assert "prev" not in first  # QEMU starts with zeroed RAM: no record, no prev
        uart.send(b'cmd {"v":1,"seq":0,"id":"r-1","op":"reboot"}')
        hello["ms"] += 3_600_000  # a later clock: the new boot draws another id
        n_births = len(births())
        uart.until(lambda: any(s["boot"] != first["boot"] for s in births()[n_births:]), 60, greet)
        old = [r for m in results() if m["boot"] == first["boot"] for r in m["res"]]
        second = next(s for s in births()[n_births:] if s["boot"] != first["boot"])
        assert second["prev"]["boot"] == first["boot"]
        # the newest seq the old boot assigned: every one it sent, and any it had not sent yet
        assert second["prev"]["res_seq"] >= max(r["seq"] for r in old)
        assert second["prev"]["res_seq"] <= max(r["seq"] for r in old) + 1
        raw = next(b for k, b in uart.frames if k == "status" and protocol.decode("status", b) == second)
        assert protocol.encode("status", second) == raw  # canonical, byte for byte
    finally:
        proc.kill()
        proc.wait()
