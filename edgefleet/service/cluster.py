"""A clustered MQTT broker on one host: N nats-server members with JetStream and the MQTT gateway.

Mosquitto cannot cluster (issue 18). NATS (Debian's nats-server 2.9) serves MQTT 3.1.1 on each
member and keeps MQTT sessions, QoS 1 messages and retained messages in JetStream, replicated
over the cluster, so a client whose member dies can resume its session on another member. Used
by tests/cluster/ and benchmarks/broker_cluster.py; production configs live in deploy/nats/.
`nats_config` is pure (text from parameters); `start_cluster` owns the processes.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.errors import ConfigError
from edgefleet.protocol.connect import free_port, parse_broker_url, uses_tls
from edgefleet.service.broker import BrokerError, wait_port


def parse_member_urls(text: str) -> list[tuple[str, int]]:
    """`mqtt://a:1883,mqtt://b:1883,...` (a broker cluster's members) -> [(host, port), ...].

    One URL gives a one-member list. All members must use the same scheme (plain or TLS): a node
    moving to another member keeps its TLS settings. Duplicates are refused (a typo, not a cluster)."""
    urls = [u.strip() for u in text.split(",")]
    if any(not u for u in urls):
        raise ConfigError(f"broker URLs {text!r}: an empty entry between commas")
    if len({uses_tls(u) for u in urls}) > 1:
        raise ConfigError(f"broker URLs {text!r}: mix mqtt:// and mqtts://; use one scheme for every member")
    members = [parse_broker_url(u) for u in urls]
    if len(set(members)) < len(members):
        raise ConfigError(f"broker URLs {text!r}: a member is listed twice")
    return members


def nats_binary() -> str | None:
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).exists()), None)


@dataclass(frozen=True)
class MemberPorts:
    """The three ports of one member: NATS clients (unused by edgefleet), cluster routes, MQTT,
    and the monitoring endpoint we poll for readiness."""

    client: int
    cluster: int
    mqtt: int
    http: int


def nats_config(name: str, host: str, ports: MemberPorts, routes: list[int], store_dir: Path,
                cluster_name: str = "edgefleet", max_payload: int = 1024 * 1024,
                replicas: int = 3) -> str:
    """One member's nats-server config. `routes`: the cluster ports of all members (ours is
    skipped by the server). `replicas`: copies of each MQTT session and message stream (3 of 3:
    any one member may die). MQTT ack_wait 30 s: a QoS 1 message not acknowledged by then is
    delivered again; max_ack_pending matches ingest's receive maximum (2,000)."""
    route_urls = ", ".join(f'"nats-route://{host}:{p}"' for p in routes)
    return "\n".join([
        f'server_name: "{name}"',
        f'listen: "{host}:{ports.client}"',
        f'http: "{host}:{ports.http}"',
        f"max_payload: {max_payload}",
        "jetstream {",
        f'  store_dir: "{store_dir}"',
        "  max_memory_store: 268435456",
        "  max_file_store: 4294967296",
        "}",
        "cluster {",
        f'  name: "{cluster_name}"',
        f'  listen: "{host}:{ports.cluster}"',
        f"  routes: [{route_urls}]",
        "}",
        "mqtt {",
        f'  listen: "{host}:{ports.mqtt}"',
        '  ack_wait: "30s"',
        "  max_ack_pending: 2000",
        f"  stream_replicas: {replicas}",
        "}",
        "",
    ])


@dataclass
class NatsMember:
    """One running (or killed) member. `kill()` is SIGKILL, `start()` brings it back with its data."""

    name: str
    host: str
    ports: MemberPorts
    conf: Path
    log_file: Path
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.ports.mqtt}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        binary = nats_binary()
        if binary is None:
            raise BrokerError("nats-server is not installed (apt-get install nats-server)")
        log = self.log_file.open("ab")
        self._proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        log.close()

    def kill(self) -> None:
        if self.running():
            assert self._proc is not None
            self._proc.kill()
            self._proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.running():
            assert self._proc is not None
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def varz(self, path: str = "varz") -> dict:
        with urllib.request.urlopen(f"http://{self.host}:{self.ports.http}/{path}", timeout=2.0) as r:
            return json.loads(r.read())

    def healthy(self) -> bool:
        """JetStream is up and current on this member (its /healthz says ok)."""
        try:
            return self.varz("healthz").get("status") == "ok"
        except (OSError, ValueError):
            return False


@dataclass
class NatsCluster:
    """N members on one host, each with its own data directory under `workdir`."""

    members: list[NatsMember]
    workdir: Path
    _owned_workdir: bool = False

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every running member listens for MQTT, sees all its routes and reports JetStream healthy."""
        deadline = time.monotonic() + timeout
        live = [m for m in self.members if m.running()]
        for m in live:
            if not wait_port(m.host, m.ports.mqtt, max(0.1, deadline - time.monotonic())):
                raise BrokerError(f"nats member {m.name} did not listen on {m.url} ({self._tail(m)})")
        while time.monotonic() < deadline:
            try:
                if all(m.healthy() and m.varz("routez").get("num_routes", 0) >= len(live) - 1 for m in live):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise BrokerError(f"nats cluster not ready after {timeout:g} s ({self._tail(live[0])})")

    @staticmethod
    def _tail(m: NatsMember) -> str:
        try:
            return m.log_file.read_text(errors="replace").strip().splitlines()[-1][:300]
        except (OSError, IndexError):
            return "no log"

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def __enter__(self) -> NatsCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._owned_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_cluster(n: int = 3, *, host: str = "127.0.0.1", workdir: str | Path | None = None,
                  timeout: float = 60.0, max_payload: int = 1024 * 1024) -> NatsCluster:
    """Start an n-member NATS cluster on free ports and wait until it serves MQTT with JetStream."""
    if n < 1:
        raise BrokerError("a cluster needs at least one member")
    if nats_binary() is None:
        raise BrokerError("nats-server is not installed (apt-get install nats-server)")
    wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ef-nats-"))
    ports = [MemberPorts(*(free_port(host) for _ in range(4))) for _ in range(n)]
    members = []
    for i, p in enumerate(ports):
        name = f"ef-nats-{i + 1}"
        d = wd / name
        (d / "jetstream").mkdir(parents=True, exist_ok=True)
        conf = d / "nats.conf"
        conf.write_text(nats_config(name, host, p, [q.cluster for q in ports], d / "jetstream",
                                    max_payload=max_payload, replicas=min(3, n)))
        members.append(NatsMember(name, host, p, conf, d / "nats.log"))
    cluster = NatsCluster(members, wd, _owned_workdir=workdir is None)
    for m in members:
        m.start()
    try:
        cluster.wait_ready(timeout)
    except BaseException:
        cluster.__exit__(None, None, None)
        raise
    return cluster
