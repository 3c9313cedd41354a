"""Commissioning on the emulated Cortex-M4 node (docs/baseline.md), the test playing the bridge:

the node commissions by itself; `cmd commission` restarts it with 32 windows per class on recorded CWRU
normal windows (the speed input: an rpm file beside the samples); then it judges every window by its
class: the held-out normal windows pass and every fault window is anomalous, with the same record and
the same verdicts as the host build on the same windows. Bad arguments are refused and change nothing.
After a `reboot` (a system reset: QEMU keeps its flash) the node is commissioned from its first window,
with the same record; it re-commissions on command, and its stack stays within bounds.
"""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest

from edgefleet.toolchain.datasets import load_folder
from testkit import free_port

from .conftest import FIRMWARE, FLEET_MODEL, QEMU
from .test_qemu_ota import QemuSerialPeer, hello

N, RPM = 960, 1796.0
FAULTS = ("ir007_0hp_105", "b014_0hp_185", "or021at6_0hp_234")
STACK_RESERVED = 3584  # firmware/ports/mps2-an386/mps2-an386.ld


def cmd(seq: int, **body) -> bytes:
    return b"cmd " + json.dumps({"v": 1, "seq": seq, "id": f"c{seq}", **body}, separators=(",", ":")).encode()


def wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (v := cond()):
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def flat(link: QemuSerialPeer, boot: str) -> list[tuple[dict, dict]]:
    return [(m, r) for m in list(link.results) if m["boot"] == boot for r in m["res"]]


@pytest.fixture(scope="module")
def recording(cwru_dir, tmp_path_factory):
    """44 CWRU normal windows, then 10 windows of each of three fault files, all at 1796 rpm."""
    recs = {r.name: r for r in load_folder(cwru_dir)}
    sig = np.concatenate([recs["normal_0hp_97"].signal[:44 * N]] + [recs[f].signal[:10 * N] for f in FAULTS])
    tmp = tmp_path_factory.mktemp("comm")
    sig.astype("<f4").tofile(tmp / "s.f32")
    np.full(sig.size // N, RPM, "<f4").tofile(tmp / "rpm.f32")
    return tmp


def host_run(recording, k: int) -> list[dict]:
    """The host build on the same windows, commissioning from window k with 32 windows."""
    out = subprocess.run([str(FIRMWARE / "build" / "host" / "ef_node"), str(FLEET_MODEL), str(recording / "s.f32"),
                          "12000", "--protocol", "0badc0de", "--rpm", str(recording / "rpm.f32"),
                          "--cmd", str(k), '{"v":1,"seq":0,"id":"h","op":"commission","windows":32}'],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"v"')]


def test_qemu_node_commissions_judges_and_keeps_its_baseline_across_a_reset(mcu, recording, tmp_path):
    port = free_port()
    qemu = subprocess.Popen([*QEMU, "-serial", f"tcp:127.0.0.1:{port},server,nowait",
                             "-kernel", str(mcu / "ef_mcu_node.elf"), "-append",
                             f"node {FLEET_MODEL} 12000 --samples s.f32 --rpm rpm.f32 --windows 120"],
                            cwd=recording, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    link = QemuSerialPeer(port)
    try:
        birth = hello(link)
        assert birth["caps"] == ["debug", "calib", "commission"]
        assert birth["comm"] == {"state": "commissioning", "target": 64, "progress": []}
        boot = birth["boot"]
        # commission again, 32 windows per class (the recording has 44 normal ones)
        link.send(cmd(1, op="commission", windows=32))
        done = wait(lambda: next((b for b in link.births if b["comm"]["state"] == "commissioned"), None), 20,
                    "the commissioned birth")["comm"]
        assert [b["comm"].get("target") for b in link.births[:3]] == [64, 32, None]
        link.send(cmd(2, op="commission", windows=2048))  # above the node's 1,024 windows per class: refused
        link.send(b'cmd {"v":1,"seq":3,"id":"c3","op":"commission","rpm":0}')  # schema: rpm > 0
        res = wait(lambda: (r := flat(link, boot)) and r[-1][1]["seq"] >= 73 and r, 20, "74 windows")
        assert [r["seq"] for _, r in res] == list(range(len(res)))
        learning = [r["seq"] for _, r in res if r.get("state") == "commissioning"]
        k = learning[-1] - 31  # the cmd restarted commissioning at window k
        assert learning == list(range(k + 32)) and k + 32 <= 44
        assert done["classes"][0]["rpm"] == [1706.2, 1885.8] and done["classes"][0]["n"] == 32
        judged = [(m, r) for m, r in res[k + 32:74]]
        assert all(m["cls"] == 0 and "state" not in r and r["hi"] > 0 for m, r in judged)
        assert not any(r["anom"] for _, r in judged if r["seq"] < 44)  # held-out normal windows pass
        assert all(r["anom"] for _, r in judged if r["seq"] >= 44)     # every fault window is flagged
        assert len(link.births) == 3  # the refused cmds changed nothing
        # the host build, commissioned on the same windows: the same classes and the same verdicts
        host = host_run(recording, k)
        h_done = [m for m in host if "res" not in m][-1]["comm"]
        for a, b in zip(h_done["classes"], done["classes"]):
            assert (a["rpm"], a["n"]) == (b["rpm"], b["n"])
            assert a["thr"] == pytest.approx(b["thr"], rel=1e-5) and a["hi_thr"] == pytest.approx(b["hi_thr"], rel=1e-5)
        h_res = [r for m in host if "res" in m for r in m["res"]]
        for (_, r), h in zip(judged, h_res[k + 32:74]):
            assert (r["seq"], r["anom"]) == (h["seq"], h["anom"])
            assert r["score"] == pytest.approx(h["score"], rel=1e-5) and r["hi"] == pytest.approx(h["hi"], rel=1e-5)

        # a reset: the record is still there, every window judged from the first one
        link.send(cmd(4, op="reboot"))
        birth2 = hello(link)
        assert birth2["boot"] != boot and birth2["comm"] == done
        res2 = wait(lambda: len(r := flat(link, birth2["boot"])) >= 5 and r, 10, "results after the reset")
        assert all(m.get("cls") == 0 and "state" not in r for m, r in res2)
        # and it commissions again on command (16 windows): a new record, announced
        link.send(cmd(5, op="commission", windows=16))
        again = wait(lambda: next((b for b in link.births if b["boot"] == birth2["boot"]
                                   and b["comm"]["state"] == "commissioned"
                                   and b["comm"]["hash"] != done["hash"]), None), 20, "the new record")["comm"]
        assert again["classes"][0]["n"] == 16
        out, _ = qemu.communicate(timeout=30)  # the node stops after 120 windows of this boot
    finally:
        link.close()
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
    assert qemu.returncode == 0, out
    assert "commission refused (capacity)" in out and "rpm: not a number in (0, 1000000]" in out
    used = int(out.split("stack used: ")[1].split()[0])
    assert used < STACK_RESERVED - 1024, f"stack high-water mark {used} B (learning a class included)"
