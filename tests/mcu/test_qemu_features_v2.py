"""Feature definition v2 on the emulated Cortex-M4F: the streaming front end against the Python
reference (the M4 build: FPU float32, newlib's libm), and a v2 node's results equal the host build's
(vrms and rpm on each result, a debug capture of the streamed window)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from edgefleet import protocol
from edgefleet.runtime.features import analyze, frame, plan

from .conftest import FIRMWARE, QEMU, REPO

sys.path.insert(0, str(REPO / "tests" / "firmware"))
from v2_helpers import standardizing, synthetic, v2_artifact, v2_params  # noqa: E402

BOOT, T0 = "0badc0de", 1767225600000


def m4_features(mcu, art: bytes, signal: np.ndarray, fs: float, n: int, tmp_path) -> np.ndarray:
    (tmp_path / "m.efm").write_bytes(art)
    np.asarray(signal, "<f4").tofile(tmp_path / "s.f32")
    proc = subprocess.run([*QEMU, "-serial", "none", "-kernel", str(mcu / "ef_mcu_infer.elf"), "-append",
                           f"features {tmp_path / 'm.efm'} {fs!r} {n} {tmp_path / 's.f32'} {tmp_path / 'o.f32'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return np.fromfile(tmp_path / "o.f32", "<f4").reshape(n, -1)


def test_m4_v2_front_end_matches_python(mcu, cwru_dir, tmp_path):
    """A CWRU recording and a 1 g DC + harmonics signal at 12 kHz, and 4 kHz: the v2 contract's tolerances."""
    from edgefleet.toolchain.datasets import load_folder

    rec = next(r for r in load_folder(cwru_dir) if r.name.startswith("ir014_0hp"))
    cases = [(v2_params(), rec.signal, rec.fs),
             (v2_params(), synthetic(12000.0, 3.2, dc=1.0, seed=7), 12000.0),
             (v2_params(f_hi=1900.0), synthetic(4000.0, 3.4, speed_hz=13.3, dc=1.0, seed=8), 4000.0)]
    for params, sig, fs in cases:
        p = plan(params, fs)
        windows = frame(sig, p.n_samples)
        a = analyze(np.asarray(windows, np.float64), fs, params)
        out = m4_features(mcu, v2_artifact(params).to_bytes(), sig, fs, len(windows), tmp_path)
        nf, nb, nl = params.n_features, params.n_bands, params.lf.n_bands
        d = np.abs(out[:, :nf] - a.features)
        assert d[:, :nb].max() <= 1e-3 and d[:, nb + nl:].max() <= 1e-3, (fs, d.max(axis=0))
        assert d[:, nb:nb + nl].max() <= 2e-3, (fs, d[:, nb:nb + nl].max())
        assert np.max(np.abs(out[:, nf] / a.vrms_mm_s - 1)) <= 5e-3
        assert np.max(np.abs(out[:, nf + 1] - a.speed_hz)) <= p.lf.fs_lf / params.lf.length


def test_qemu_v2_node_results_equal_the_host_build(mcu, tmp_path):
    """A v2 node streams ~1 s windows in pieces: the same result messages as the host build (vrms, rpm
    from the estimate: no speed input)."""
    from edgefleet.device.framing import FrameDecoder, split_link

    fs, params = 12000.0, v2_params()
    p = plan(params, fs)
    sig = synthetic(fs, 4.2 * p.n_samples / fs, speed_hz=24.7, dc=1.0, seed=9)
    windows = frame(sig, p.n_samples)
    a = analyze(np.asarray(windows, np.float64), fs, params)
    (tmp_path / "v2.efm").write_bytes(standardizing(params, a.features, threshold=2.0).to_bytes())
    sig.astype("<f4").tofile(tmp_path / "rec.f32")
    args = f"node v2.efm {fs!r} --samples rec.f32 --once --nopace --boot {BOOT} --t0 {T0} --no-commission"
    proc = subprocess.run([*QEMU, "-serial", "file:uart.bin", "-kernel", str(mcu / "ef_mcu_node.elf"), "-append",
                           args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames = [split_link(f) for f in FrameDecoder().feed((tmp_path / "uart.bin").read_bytes())]
    m4 = [protocol.decode("result", b) for k, b in frames if k == "result"]
    host = subprocess.run([str(FIRMWARE / "build" / "host" / "ef_node"), "v2.efm", "rec.f32", repr(fs), "--protocol",
                           BOOT, "--t0", str(T0), "--no-commission"], capture_output=True, text=True, check=True,
                          cwd=tmp_path)
    ref = [json.loads(line) for line in host.stdout.splitlines() if line.startswith('{"v"') and '"res"' in line]
    assert len(m4) == len(ref) == len(windows) == 4
    strip = lambda m: {**m, "res": [{k: v for k, v in r.items() if k != "inf_us"} for r in m["res"]]}  # noqa: E731
    assert [strip(m) for m in m4] == [strip(m) for m in ref]
    got = [m["res"][0] for m in m4]
    assert np.allclose([r["vrms"] for r in got], a.vrms_mm_s, rtol=2e-3)  # %.4g of a value within 0.5%
    assert all(abs(r["rpm"] / 60 - s) <= p.lf.fs_lf / params.lf.length + 0.01 for r, s in zip(got, a.speed_hz))


def test_qemu_v2_node_debug_capture_streams_the_window(mcu, tmp_path):
    """`debug` on a v2 node: the ~1 s window is never held whole, so the capture's samples are sent as
    the pieces arrive; the message is canonical and holds exactly the window its result scored."""
    from edgefleet.device.framing import FrameDecoder, encode_frame, split_link

    from testkit import free_port

    fs, params = 12000.0, v2_params()
    p = plan(params, fs)
    sig = synthetic(fs, 3.1 * p.n_samples / fs, dc=1.0, seed=11)
    (tmp_path / "v2.efm").write_bytes(v2_artifact(params, threshold=10.0).to_bytes())
    sig.astype("<f4").tofile(tmp_path / "rec.f32")
    port = free_port()
    proc = subprocess.Popen([*QEMU, "-serial", f"tcp:127.0.0.1:{port},server,nowait", "-kernel",
                             str(mcu / "ef_mcu_node.elf"), "-append",
                             f"node v2.efm {fs!r} --samples rec.f32 --once --no-commission"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    received = bytearray()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "QEMU's serial port did not open"
                time.sleep(0.05)
        with sock:
            sock.settimeout(0.5)
            dec = FrameDecoder()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                received += chunk
                kinds = [split_link(f)[0] for f in dec.feed(chunk)]
                if "boot" in kinds:
                    sock.sendall(encode_frame(b"hello 1767225600000"))
                if "will" in kinds:
                    break
            sock.sendall(encode_frame(b'cmd {"v":1,"seq":0,"id":"d-2","op":"debug"}'))
            sock.settimeout(60)
            while chunk := sock.recv(1 << 20):
                received += chunk
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    frames = [split_link(f) for f in FrameDecoder(max_frame=1 << 20).feed(bytes(received))]
    debug = [(b, protocol.decode("debug", b)) for k, b in frames if k == "debug"]
    assert len(debug) == 1
    raw, dbg = debug[0]
    assert protocol.encode("debug", dbg) == raw and dbg["id"] == "d-2"
    assert len(dbg["samples"]) == p.n_samples and len(dbg["features"]) == params.n_features
    res = [protocol.decode("result", b)["res"][0] for k, b in frames if k == "result"]
    k = [r["ts"] for r in res].index(dbg["ts"])
    assert res[k]["score"] == dbg["score"]
    assert dbg["samples"] == pytest.approx(sig[p.n_samples * k:p.n_samples * (k + 1)].tolist(), rel=6e-6)
    a = analyze(np.asarray(dbg["samples"], np.float64)[None, :], fs, params)
    assert np.abs(np.asarray(dbg["features"]) - a.features[0]).max() <= 2e-3


def test_qemu_v2_node_explains_anomalies_as_the_host_build(mcu, tmp_path):
    """A commissioning v2 node (fleet-v2) with no speed input and a bearing in its config: it learns its
    class at the speed its front end estimates and then explains each anomaly (`why`, `hint`); the M4's
    results equal the host build's where both flag the window (their features agree within the v2
    contract, so a window near its threshold may be judged differently)."""
    from device_sim.physics import Fault, make_machines, synthesize, vary_machines, with_faults
    from edgefleet.device.framing import FrameDecoder, split_link

    fs, model = 12000.0, REPO / "edgefleet" / "models" / "fleet-v2" / "model.efm"
    rng = np.random.default_rng(3)
    m = vary_machines(make_machines(1, rng, bearing=None), rng)

    def synth(mm, seconds, t0):
        return np.concatenate([synthesize(mm, np.array([t0 + i]), 12000, fs, rng)[0] for i in range(seconds)])

    parts = [synth(m, 70, 0.0)] + [synth(with_faults(m, [0], k, onset_s=-1, ramp_s=1e-6, peak_mm_s=3.0), 6, 100.0 + i)
                                   for i, k in enumerate((Fault.UNBALANCE, Fault.MISALIGNMENT, Fault.LOOSENESS))]
    np.concatenate(parts).astype("<f4").tofile(tmp_path / "rec.f32")
    (tmp_path / "v2.efm").write_bytes(model.read_bytes())
    bearing = "9,7.94,39.04,0"
    args = f"node v2.efm {fs!r} --samples rec.f32 --once --nopace --boot {BOOT} --t0 {T0} --bearing {bearing}"
    proc = subprocess.run([*QEMU, "-serial", "file:uart.bin", "-kernel", str(mcu / "ef_mcu_node.elf"), "-append",
                           args], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames = [split_link(f) for f in FrameDecoder().feed((tmp_path / "uart.bin").read_bytes())]
    m4 = [protocol.decode("result", b)["res"][0] for k, b in frames if k == "result"]
    host = subprocess.run([str(FIRMWARE / "build" / "host" / "ef_node"), "v2.efm", "rec.f32", repr(fs), "--protocol",
                           BOOT, "--t0", str(T0), "--bearing", bearing], capture_output=True, text=True, check=True,
                          cwd=tmp_path)
    ref = [json.loads(line)["res"][0] for line in host.stdout.splitlines() if line.startswith('{"v"') and '"res"' in line]
    assert len(m4) == len(ref) >= 80
    both = [(a, b) for a, b in zip(m4, ref) if a["anom"] and b["anom"]]
    assert len(both) >= 12
    same = sum(a["why"] == b["why"] and a["hint"] == b["hint"] for a, b in both)
    close = all([w["lo"] if "lo" in w else w["name"] for w in a["why"]] == [w["lo"] if "lo" in w else w["name"]
                                                                          for w in b["why"]] for a, b in both)
    used = int((proc.stdout + proc.stderr).split("stack used: ")[1].split()[0])
    print(f"QEMU vs host: {same} of {len(both)} flagged windows with identical why and hint; stack used {used} B")
    assert used < 3584 - 1024, f"stack high-water mark {used} B (learning a class and explaining anomalies)"
    assert close and same >= len(both) - 2
    assert {r["hint"] for r in m4 if r["anom"]} >= {"unbalance", "misalignment"}
    # a bearing that cannot be (ball above half the pitch) is refused at start, as Python's BearingGeometry
    bad = subprocess.run([*QEMU, "-serial", "none", "-kernel", str(mcu / "ef_mcu_node.elf"), "-append",
                          f"node v2.efm {fs!r} --samples rec.f32 --once --nopace --bearing 9,39.04,7.94,0"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and "bad-bearing" in bad.stdout + bad.stderr
