"""The per-window sensor check on the emulated Cortex-M4 node (docs/baseline.md, "Sensor faults"), the test
playing the bridge: windows of a dead (flat), clipped and dropping-out sensor and clean sines (a calibrator's,
exact and 16-bit quantized: sane, judged) among CWRU normal and fault windows. Each faulty window is a result in the state Python's check names (`sensor_check.check_window` on the
same float32 samples), with anom false and score 0; such windows do not commission (the class is learned from
32 sane windows and says so), and the machine's fault windows after it are still judged anomalous."""

from __future__ import annotations

import subprocess

import numpy as np
from testkit import free_port

from edgefleet.runtime.sensor_check import check_window
from edgefleet.toolchain.datasets import load_folder

from .conftest import FLEET_MODEL, QEMU
from .test_qemu_commission import RPM, N, cmd, flat, wait
from .test_qemu_ota import QemuSerialPeer, hello


def test_qemu_node_names_sensor_faults_and_does_not_learn_from_them(mcu, cwru_dir, tmp_path):
    recs = {r.name: r for r in load_folder(cwru_dir)}
    normal = recs["normal_0hp_97"].signal.astype(np.float32)
    w = [normal[i * N:(i + 1) * N].copy() for i in range(44)]  # 44 in the test data
    dead = [np.full(N, np.float32(0.21), np.float32) for _ in range(3)]
    clipped = [np.clip(x, -0.4 * np.abs(x).max(), 0.4 * np.abs(x).max()) for x in w[38:41]]
    dropped = [x.copy() for x in w[41:44]]
    for x in dropped:
        x[300:400] = 0.0
    fault = recs["ir007_0hp_105"].signal.astype(np.float32)
    t = np.arange(N, dtype=np.float64)  # a calibrator's clean sine, 0.1 g at 100 Hz (120 samples a period):
    sines = [0.1 * np.sin(2 * np.pi * t / 120), 0.1 * np.cos(2 * np.pi * (t + 0.5) / 120)]  # peak on 1 or 2 samples
    sines = [s.astype(np.float32) for s in (*sines, *(np.round(s * 2048) / 2048 for s in sines))]  # +-16 g 16-bit
    windows = [*w[:6], *dead, *w[6:14], *clipped, *w[14:22], *dropped, *w[22:38], *sines,
               *[fault[i * N:(i + 1) * N] for i in range(6)]]
    expected = [check_window(x) for x in windows]
    assert expected.count("sensor_dead") == 3 and expected.count("sensor_saturated") == 3
    assert [check_window(s) for s in sines] == [""] * 4  # judged, not sensor_saturated
    assert expected.count("sensor_dropout") == 3 and expected.count("") == len(windows) - 9
    np.concatenate(windows).astype("<f4").tofile(tmp_path / "s.f32")
    np.full(len(windows), RPM, "<f4").tofile(tmp_path / "rpm.f32")
    port = free_port()
    qemu = subprocess.Popen([*QEMU, "-serial", f"tcp:127.0.0.1:{port},server,nowait",
                             "-kernel", str(mcu / "ef_mcu_node.elf"), "-append",
                             f"node {FLEET_MODEL} 12000 --samples s.f32 --rpm rpm.f32 --windows {len(windows)}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    link = QemuSerialPeer(port)
    try:
        birth = hello(link)
        boot = birth["boot"]
        link.send(cmd(1, op="commission", windows=32))
        res = wait(lambda: len(r := flat(link, boot)) >= len(windows) and r, 30, "every window's result")
        done = wait(lambda: next((b for b in link.births if b["comm"]["state"] == "commissioned"), None), 10,
                    "the commissioned birth")["comm"]
        out, _ = qemu.communicate(timeout=30)
    finally:
        link.close()
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
    assert qemu.returncode == 0, out
    assert [r["seq"] for _, r in res] == list(range(len(windows)))
    for (m, r), want in zip(res, expected):
        if want:
            assert r["state"] == want and r["anom"] is False and r["score"] == 0 and "cls" not in m, r
        else:
            assert r.get("state") in (None, "commissioning"), r
    assert done["classes"][0]["n"] == 32
    learning = [r["seq"] for _, r in res if r.get("state") == "commissioning"]
    k = learning[-1]  # the last learning window: 32 sane windows since the cmd restarted commissioning
    assert all(expected[s] == "" for s in learning)
    judged = [r for _, r in res if r["seq"] > k and not expected[r["seq"]]]
    assert judged and all("state" not in r for r in judged)
    assert all(r["anom"] for r in judged[-6:])  # the fault windows, last
