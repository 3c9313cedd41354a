"""Start and stop an MQTT broker: Mosquitto when its binary exists, else amqtt in-process.

Used by the demo, `edgefleet broker`, the tests and the benchmarks. Mosquitto gets a
generated config: loopback listener, anonymous access, persistence in a directory
of the caller's choice, and queue limits raised so a persistent ingest session that is
away for a while does not lose QoS 1 messages (Mosquitto's defaults keep only 1,000).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.errors import EdgefleetError
from edgefleet.protocol.connect import free_port

log = logging.getLogger(__name__)


class BrokerError(EdgefleetError):
    """The broker did not start or stop as asked."""


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)


def wait_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass(frozen=True)
class TlsListener:
    """A second, TLS listener (Mosquitto only): the broker's certificate and key, the CA that clients'
    certificates must chain to, and with `require_certificate` mutual TLS where the certificate's
    common name becomes the MQTT username (a device cannot log in as another). `crl`: revoked
    certificates (`edgefleet pki revoke`)."""

    port: int
    ca: Path
    cert: Path
    key: Path
    require_certificate: bool = False
    crl: Path | None = None

    @classmethod
    def from_pki(cls, pki_dir: str | Path, port: int, require_certificate: bool = False) -> TlsListener:
        """The files `edgefleet pki init` writes: ca.crt, server.crt, server.key (and crl.pem if any)."""
        d = Path(pki_dir)
        missing = [n for n in ("ca.crt", "server.crt", "server.key") if not (d / n).is_file()]
        if missing:
            raise BrokerError(f"{d}: no {', '.join(missing)} (run `edgefleet pki init --dir {d}` first)")
        crl = d / "crl.pem"
        return cls(port, d / "ca.crt", d / "server.crt", d / "server.key", require_certificate,
                   crl if crl.is_file() else None)

    def config_lines(self, host: str) -> list[str]:
        lines = [f"listener {self.port} {host}", f"cafile {self.ca}", f"certfile {self.cert}",
                 f"keyfile {self.key}", "tls_version tlsv1.2"]
        if self.require_certificate:
            lines += ["require_certificate true", "use_identity_as_username true"]
        if self.crl is not None:
            lines += [f"crlfile {self.crl}"]
        return lines


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def plain_host(host: str, tls: TlsListener | None) -> str:
    """Where the plain listener binds. With client certificates required, a plain anonymous listener
    beside the TLS one would let anyone who reaches it publish as any device: it stays on loopback
    (for services on the same host), whatever --host says; the TLS listener takes --host."""
    if tls is not None and tls.require_certificate and host not in LOOPBACK:
        return "127.0.0.1"
    return host


def mosquitto_config(host: str, port: int, persistence_dir: Path | None, log_file: Path | None,
                     tls: TlsListener | None = None) -> str:
    """`host` is where the TLS listener binds, and the plain one unless `plain_host` keeps it local.
    With client certificates required, anonymous clients are allowed on the plain (loopback)
    listener only: on the TLS one the certificate is the username (per-listener settings)."""
    mutual = tls is not None and tls.require_certificate
    lines = [
        *(["per_listener_settings true"] if mutual else []),
        f"listener {port} {plain_host(host, tls)}",
        # Started as root, Mosquitto switches to user "mosquitto", which cannot write our
        # persistence or log directories: stay the user who started it.
        *(["user root"] if os.geteuid() == 0 else []),
        "allow_anonymous true",
        "set_tcp_nodelay true",
        "max_inflight_messages 0",  # the client's MQTT v5 receive-maximum sets the limit
        "max_queued_messages 1000000",  # messages kept for an offline persistent session
        "max_queued_bytes 0",
        "persistent_client_expiration 14d",
    ]
    if persistence_dir is not None:
        lines += ["persistence true", f"persistence_location {persistence_dir}/", "autosave_interval 30"]
    else:
        lines += ["persistence false"]
    if log_file is not None:
        lines += ["log_dest file " + str(log_file), "log_type error", "log_type warning", "log_type notice",
                  "log_type information", "connection_messages true", "log_timestamp_format %Y-%m-%dT%H:%M:%S"]
    else:
        lines += ["log_dest none"]
    if tls is not None:
        lines += tls.config_lines(host)
        if mutual:
            lines += ["allow_anonymous false"]  # per listener: a client without a certificate is refused
    return "\n".join(lines) + "\n"


@dataclass
class BrokerHandle:
    """A running broker. `stop()` is idempotent; `restart()` keeps port and persistence."""

    kind: str  # "mosquitto" or "amqtt"
    host: str
    port: int
    persistence_dir: Path | None = None
    workdir: Path | None = None
    log_file: Path | None = None
    tls: TlsListener | None = None
    _owned_workdir: bool = field(default=False, repr=False)
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _amqtt: _AmqttThread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{plain_host(self.host, self.tls)}:{self.port}"

    @property
    def tls_url(self) -> str | None:
        return f"mqtts://{self.host}:{self.tls.port}" if self.tls else None

    @property
    def mqtt_version(self) -> str:
        return "5" if self.kind == "mosquitto" else "3.1.1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._amqtt is not None and self._amqtt.is_alive()

    def _launch(self) -> None:
        if self.kind == "mosquitto":
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(mosquitto_config(self.host, self.port, self.persistence_dir, self.log_file, self.tls))
            self._proc = subprocess.Popen([mosquitto_binary() or "mosquitto", "-c", str(conf)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          start_new_session=True)
            ports = [(plain_host(self.host, self.tls), self.port), *([(self.host, self.tls.port)] if self.tls else [])]
            if not all(wait_port(h, p, 10.0) for h, p in ports):
                err = b""
                if self._proc.poll() is not None and self._proc.stderr:
                    err = self._proc.stderr.read()
                self.stop()
                raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port}: {err.decode(errors='replace')[:300]}")
        else:
            self._amqtt = _AmqttThread(self.host, self.port)
            self._amqtt.start()
            if not self._amqtt.ready.wait(15.0) or self._amqtt.error:
                raise BrokerError(f"amqtt did not start on {self.host}:{self.port}: {self._amqtt.error}")
        log.info("%s broker listening on %s%s", self.kind, self.url, f" and {self.tls_url}" if self.tls else "")

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown (Mosquitto writes its persistence file on SIGTERM)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._amqtt is not None:
            self._amqtt.stop(timeout)
            self._amqtt = None

    def kill(self) -> None:
        """SIGKILL (Mosquitto only): loses whatever was not yet saved."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def restart(self) -> None:
        self.stop()
        self._launch()

    def __enter__(self) -> BrokerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._owned_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


class _AmqttThread(threading.Thread):
    """amqtt's broker on its own event loop in a daemon thread (MQTT 3.1.1 only)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(name="amqtt-broker", daemon=True)
        self.host, self.port = host, port
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_evt: asyncio.Event | None = None

    def run(self) -> None:
        from amqtt.broker import Broker

        async def main() -> None:
            self._stop_evt = asyncio.Event()
            broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                             "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}})
            try:
                await broker.start()
            except BaseException as exc:  # report to the starting thread
                self.error = exc
                self.ready.set()
                return
            self.ready.set()
            await self._stop_evt.wait()
            await broker.shutdown()

        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(main())
        finally:
            self._loop.close()

    def stop(self, timeout: float) -> None:
        if self._loop is not None and self._stop_evt is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop_evt.set)
        self.join(timeout)


def start_broker(port: int | None = None, *, host: str = "127.0.0.1", prefer: str = "auto",
                 persistence_dir: str | Path | None = None, workdir: str | Path | None = None,
                 log_file: str | Path | None = None, tls: TlsListener | None = None) -> BrokerHandle:
    """Start a broker on `port` (a free one if None). prefer: "auto" (Mosquitto if installed,
    else amqtt), "mosquitto" or "amqtt". `tls`: also a TLS listener (Mosquitto only)."""
    if prefer not in ("auto", "mosquitto", "amqtt"):
        raise BrokerError(f"prefer must be auto, mosquitto or amqtt, got {prefer!r}")
    kind = "mosquitto" if prefer == "mosquitto" or (prefer == "auto" and mosquitto_binary()) else "amqtt"
    if tls is not None and kind != "mosquitto":
        raise BrokerError("a TLS listener needs Mosquitto (apt-get install mosquitto)")
    if kind == "mosquitto" and not mosquitto_binary():
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto), use prefer='amqtt'")
    wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ef-broker-"))
    wd.mkdir(parents=True, exist_ok=True)
    pdir = Path(persistence_dir) if persistence_dir else None
    if pdir:
        pdir.mkdir(parents=True, exist_ok=True)
    handle = BrokerHandle(kind, host, port or free_port(host), pdir, wd, Path(log_file) if log_file else None,
                          tls=tls, _owned_workdir=workdir is None)
    handle._launch()
    return handle
