"""A real server speaking the InfluxDB v2 write API: Debian's VictoriaMetrics, on a free loopback port."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from testkit import free_port


class VictoriaMetrics:
    def __init__(self, workdir: Path) -> None:
        self.bin = shutil.which("victoria-metrics")
        if not self.bin:
            pytest.fail("victoria-metrics is not installed (scripts/apt-packages.txt lists it)")
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.bin, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.workdir}",
             "-retentionPeriod=100y", "-search.disableCache"],
            stdout=open(self.workdir.parent / "vm.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=0.5).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("victoria-metrics did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def samples(self, metric: str) -> dict[tuple, set[int]]:
        """Series labels -> the set of sample timestamps (ms) stored for `metric`."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        q = urllib.parse.quote(f'{{__name__="{metric}"}}')
        raw = urllib.request.urlopen(f"{self.url}/api/v1/export?match[]={q}", timeout=30).read().decode()
        out: dict[tuple, set[int]] = {}
        for ln in raw.splitlines():
            row = json.loads(ln)
            key = tuple(sorted((k, v) for k, v in row["metric"].items() if k != "__name__"))
            out.setdefault(key, set()).update(row["timestamps"])
        return out


@pytest.fixture()
def victoria(tmp_path):
    vm = VictoriaMetrics(tmp_path / "vmdata")
    vm.start()
    yield vm
    vm.stop()
