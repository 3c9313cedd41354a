"""A real Mosquitto run from the production config in deploy/ (paths and listener rewritten for a
test), and paho clients that report what the broker answered."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from testkit import free_port, stop_process, wait_port

from edgefleet.service import dynsec

REPO = Path(__file__).resolve().parents[2]
DEPLOY_CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
SECRET = "test-fleet-secret-0123456789"
INGEST_PW = "ingest-password-0123"
ADMIN_PW = "admin-password-0123"


def write_accounts(out: Path, devices: int = 3, fmt: str = "dynsec", admin: bool = False) -> None:
    """`python -m edgefleet.service.deploy_passwords` as compose runs it."""
    env = dict(os.environ, EDGEFLEET_FLEET_SECRET=SECRET, EDGEFLEET_INGEST_PASSWORD=INGEST_PW)
    env.pop("EDGEFLEET_BROKER_ADMIN_PASSWORD", None)
    if admin:
        env["EDGEFLEET_BROKER_ADMIN_PASSWORD"] = ADMIN_PW
    subprocess.run([str(REPO / ".venv/bin/python"), "-m", "edgefleet.service.deploy_passwords", "--devices",
                    str(devices), "--format", fmt, "--out", str(out)], env=env, check=True, capture_output=True)


def deploy_config(workdir: Path, port: int, security_file: Path, extra: str = "") -> Path:
    """deploy/mosquitto/mosquitto.conf with the listener on loopback:port, the plugin at this host's
    path, its file in workdir, no persistence and a log file."""
    plugin = dynsec.plugin_path()
    if plugin is None:
        pytest.fail("mosquitto_dynamic_security.so not found (apt-get install mosquitto)")
    lines = []
    for line in DEPLOY_CONF.read_text().splitlines():
        if line.startswith("listener "):
            line = f"listener {port} 127.0.0.1"
        elif line.startswith("plugin "):
            line = f"plugin {plugin}"
        elif line.startswith("plugin_opt_config_file"):
            line = f"plugin_opt_config_file {security_file}"
        elif line.startswith(("persistence", "autosave_interval", "log_dest")):
            continue
        lines.append(line)
    # as root, mosquitto drops to user "mosquitto", which cannot read pytest's 0700 tmp dirs
    head = ["user root"] if os.geteuid() == 0 else []
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(head + lines + ["persistence false", f"log_dest file {workdir / 'mosquitto.log'}",
                                              "log_type all", extra]) + "\n")
    return conf


def legacy_config(workdir: Path, port: int, password_file: Path) -> Path:
    """The deploy config as it was before the plugin: password file + ACL file (kept to show the
    attack it let through)."""
    acl = workdir / "acl"
    acl.write_text("user ef-ingest-1\ntopic read ef/v1/#\ntopic read $share/ingest/ef/v1/#\n"
                   + "".join(f"pattern write ef/v1/%u/{k}\n" for k in ("result", "status", "debug", "ota/state", "ota/req"))
                   + "".join(f"pattern read ef/v1/%u/{k}\n" for k in ("cmd", "ota/offer", "ota/data")))
    head = "user root\n" if os.geteuid() == 0 else ""
    conf = workdir / "legacy.conf"
    conf.write_text(f"{head}listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {password_file}\n"
                    f"acl_file {acl}\nuse_username_as_clientid true\npersistence false\n")
    return conf


@contextmanager
def mosquitto(conf: Path, port: int) -> Iterator[subprocess.Popen]:
    if not shutil.which("mosquitto"):
        pytest.fail("mosquitto is not installed (scripts/setup.sh installs it)")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_port(port, timeout=10)
        yield proc
    finally:
        stop_process(proc)


@contextmanager
def deploy_broker(tmp_path: Path, devices: int = 3, admin: bool = False) -> Iterator[int]:
    """The production broker config on a free loopback port; yields the port."""
    accounts = tmp_path / "dynamic-security.json"
    write_accounts(accounts, devices, admin=admin)
    port = free_port()
    with mosquitto(deploy_config(tmp_path, port, accounts), port):
        yield port


class Peer:
    """A paho MQTT v5 client that records CONNACK, SUBACK reason codes and messages."""

    def __init__(self, port: int, user: str | None, password: str | None, client_id: str = "", *,
                 tls: dict[str, Any] | None = None, host: str = "127.0.0.1") -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"{user}-{time.time_ns()}",
                             protocol=mqtt.MQTTv5)
        if user:
            self.c.username_pw_set(user, password)
        if tls is not None:
            self.c.tls_set(**tls)
        self.rc: Any = None
        self.subacks: list[list[str]] = []
        self.messages: list[str] = []
        self.disconnects = 0
        self.c.on_connect = lambda _c, _u, _f, rc, _p: setattr(self, "rc", rc)
        self.c.on_subscribe = lambda _c, _u, _m, rcs, _p: self.subacks.append([str(r) for r in rcs])
        self.c.on_message = lambda _c, _u, m: self.messages.append(m.topic)
        self.c.on_disconnect = lambda *a: setattr(self, "disconnects", self.disconnects + 1)
        self.c.connect(host, port)
        self.c.loop_start()
        deadline = time.time() + 5
        while self.rc is None and time.time() < deadline:
            time.sleep(0.02)

    @property
    def ok(self) -> bool:
        return self.rc is not None and not self.rc.is_failure

    def subscribe(self, topic: str, qos: int = 1) -> list[str]:
        n = len(self.subacks)
        self.c.subscribe(topic, qos)
        deadline = time.time() + 5
        while len(self.subacks) == n and time.time() < deadline:
            time.sleep(0.02)
        return self.subacks[-1] if len(self.subacks) > n else ["(no SUBACK)"]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
